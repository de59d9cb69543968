//! `fermyon:spin/key-value@2.0.0` (WASIp2 Spin 2.x/3.x) over [`Backend`]s:
//! synchronous functions in WIT, all keys in one list.

use super::{BackendError, KEYS_PAGE, OpenStore};
use crate::bindings::p2::fermyon::spin2_0_0::key_value::{self as wit, Error};
use crate::state::InstanceState;
use wasmtime::component::Resource;

fn other(e: BackendError) -> Error {
    Error::Other(e.0)
}

impl wit::HostStore for InstanceState {
    async fn open(&mut self, label: String) -> wasmtime::Result<Result<Resource<OpenStore>, Error>> {
        match self.key_value.open_as(&label, Error::AccessDenied, Error::NoSuchStore) {
            Ok(store) => Ok(Ok(self.table.push(store)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn get(&mut self, self_: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(self.backend_of(&self_)?.get(&key).await.map_err(other))
    }

    async fn set(&mut self, self_: Resource<OpenStore>, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.backend_of(&self_)?.set(&key, &value).await.map_err(other))
    }

    async fn delete(&mut self, self_: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.backend_of(&self_)?.delete(&key).await.map_err(other))
    }

    async fn exists(&mut self, self_: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<bool, Error>> {
        Ok(self.backend_of(&self_)?.exists(&key).await.map_err(other))
    }

    /// Every key at once, as the interface has it; read from the backend a
    /// page at a time.
    async fn get_keys(&mut self, self_: Resource<OpenStore>) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let backend = self.backend_of(&self_)?;
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            match backend.keys(cursor.as_deref(), KEYS_PAGE).await {
                Ok(page) => {
                    keys.extend(page.keys);
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None => return Ok(Ok(keys)),
                    }
                }
                Err(e) => return Ok(Err(other(e))),
            }
        }
    }

    async fn drop(&mut self, rep: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl wit::Host for InstanceState {}
