//! `wasi:keyvalue@0.2.0-draft2` (store, atomics, batch) over [`Backend`]s.
//! One version serves WASIp2 and WASIp3 guests alike. Its functions are
//! synchronous in WIT; the host side is async and blocks only the calling
//! instance's store while it runs.

use super::{BackendError, Cas, KEYS_PAGE, OpenStore};
use crate::bindings::imports::wasi::keyvalue::{atomics, batch, store as wasi_kv};
use crate::state::InstanceState;
use wasmtime::component::Resource;

fn wasi_err(e: BackendError) -> wasi_kv::Error {
    wasi_kv::Error::Other(e.0)
}

impl wasi_kv::Host for InstanceState {
    async fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<OpenStore>, wasi_kv::Error>> {
        match self.key_value.open_as(&identifier, wasi_kv::Error::AccessDenied, wasi_kv::Error::NoSuchStore) {
            Ok(store) => Ok(Ok(self.table.push(store)?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl wasi_kv::HostBucket for InstanceState {
    async fn get(&mut self, self_: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, wasi_kv::Error>> {
        Ok(self.backend_of(&self_)?.get(&key).await.map_err(wasi_err))
    }

    async fn set(&mut self, self_: Resource<OpenStore>, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), wasi_kv::Error>> {
        Ok(self.backend_of(&self_)?.set(&key, &value).await.map_err(wasi_err))
    }

    async fn delete(&mut self, self_: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<(), wasi_kv::Error>> {
        Ok(self.backend_of(&self_)?.delete(&key).await.map_err(wasi_err))
    }

    async fn exists(&mut self, self_: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<bool, wasi_kv::Error>> {
        Ok(self.backend_of(&self_)?.exists(&key).await.map_err(wasi_err))
    }

    async fn list_keys(&mut self, self_: Resource<OpenStore>, cursor: Option<String>) -> wasmtime::Result<Result<wasi_kv::KeyResponse, wasi_kv::Error>> {
        let page = self.backend_of(&self_)?.keys(cursor.as_deref(), KEYS_PAGE).await;
        Ok(page.map(|p| wasi_kv::KeyResponse { keys: p.keys, cursor: p.next }).map_err(wasi_err))
    }

    async fn drop(&mut self, rep: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl atomics::Host for InstanceState {
    async fn increment(&mut self, bucket: Resource<OpenStore>, key: String, delta: i64) -> wasmtime::Result<Result<i64, wasi_kv::Error>> {
        Ok(self.backend_of(&bucket)?.increment(&key, delta).await.map_err(wasi_err))
    }

    async fn swap(&mut self, cas: Resource<Cas>, value: Vec<u8>) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Cas { backend, key, current } = self.table.delete(cas)?;
        match backend.compare_and_swap(&key, current.as_deref(), &value).await {
            Ok(true) => Ok(Ok(())),
            // The guest gets a fresh handle with the value now stored, to retry with.
            Ok(false) => {
                let current = match backend.get(&key).await {
                    Ok(current) => current,
                    Err(e) => return Ok(Err(atomics::CasError::StoreError(wasi_err(e)))),
                };
                let handle = self.table.push(Cas { backend, key, current })?;
                Ok(Err(atomics::CasError::CasFailed(handle)))
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(wasi_err(e)))),
        }
    }
}

impl atomics::HostCas for InstanceState {
    async fn new(&mut self, bucket: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<Resource<Cas>, wasi_kv::Error>> {
        let backend = self.backend_of(&bucket)?;
        match backend.get(&key).await {
            Ok(current) => Ok(Ok(self.table.push(Cas { backend, key, current })?)),
            Err(e) => Ok(Err(wasi_err(e))),
        }
    }

    async fn current(&mut self, self_: Resource<Cas>) -> wasmtime::Result<Result<Option<Vec<u8>>, wasi_kv::Error>> {
        Ok(Ok(self.table.get(&self_)?.current.clone()))
    }

    async fn drop(&mut self, rep: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl batch::Host for InstanceState {
    async fn get_many(&mut self, bucket: Resource<OpenStore>, keys: Vec<String>) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, wasi_kv::Error>> {
        let backend = self.backend_of(&bucket)?;
        Ok(match backend.get_many(&keys).await {
            Ok(values) => Ok(keys.into_iter().zip(values).collect()),
            Err(e) => Err(wasi_err(e)),
        })
    }

    async fn set_many(&mut self, bucket: Resource<OpenStore>, key_values: Vec<(String, Vec<u8>)>) -> wasmtime::Result<Result<(), wasi_kv::Error>> {
        Ok(self.backend_of(&bucket)?.set_many(&key_values).await.map_err(wasi_err))
    }

    async fn delete_many(&mut self, bucket: Resource<OpenStore>, keys: Vec<String>) -> wasmtime::Result<Result<(), wasi_kv::Error>> {
        let backend = self.backend_of(&bucket)?;
        for key in keys {
            if let Err(e) = backend.delete(&key).await {
                return Ok(Err(wasi_err(e)));
            }
        }
        Ok(Ok(()))
    }
}
