//! The guest-facing side: `spin:key-value` and `wasi:keyvalue` over [`Backend`]s.

use super::{Backend, BackendError, BackendResult, Cas, KeyPage, KeyValueAccess, OpenError, OpenStore};
use crate::bindings::imports::spin::key_value::key_value as spin_kv;
use crate::bindings::imports::wasi::keyvalue::{atomics, batch, store as wasi_kv};
use crate::state::InstanceState;
use futures::future::BoxFuture;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use wasmtime::StoreContextMut;
use wasmtime::component::{
    Accessor, Destination, FutureReader, HasSelf, Resource, StreamProducer, StreamReader, StreamResult, VecBuffer,
};

/// Keys fetched from the backend per `get-keys` stream read.
const KEYS_PAGE: usize = 256;

impl KeyValueAccess {
    fn open_as<E>(&self, label: &str, denied: E, missing: E) -> Result<OpenStore, E> {
        self.open(label).map_err(|e| match e {
            OpenError::AccessDenied => denied,
            OpenError::NoSuchStore => missing,
        })
    }
}

fn backend<T>(
    accessor: &Accessor<T, HasSelf<InstanceState>>,
    store: &Resource<OpenStore>,
) -> wasmtime::Result<Arc<dyn Backend>> {
    accessor.with(|mut a| Ok(a.get().table.get(store)?.backend.clone()))
}

fn spin_err(e: BackendError) -> spin_kv::Error {
    spin_kv::Error::Other(e.0)
}

impl<T: Send> spin_kv::HostStoreWithStore<T> for HasSelf<InstanceState> {
    async fn open(accessor: &Accessor<T, Self>, label: String) -> wasmtime::Result<Result<Resource<OpenStore>, spin_kv::Error>> {
        accessor.with(|mut a| {
            let state = a.get();
            match state.key_value.open_as(&label, spin_kv::Error::AccessDenied, spin_kv::Error::NoSuchStore) {
                Ok(store) => Ok(Ok(state.table.push(store)?)),
                Err(e) => Ok(Err(e)),
            }
        })
    }

    async fn get(accessor: &Accessor<T, Self>, self_: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, spin_kv::Error>> {
        Ok(backend(accessor, &self_)?.get(&key).await.map_err(spin_err))
    }

    async fn set(accessor: &Accessor<T, Self>, self_: Resource<OpenStore>, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), spin_kv::Error>> {
        Ok(backend(accessor, &self_)?.set(&key, &value).await.map_err(spin_err))
    }

    async fn delete(accessor: &Accessor<T, Self>, self_: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<(), spin_kv::Error>> {
        Ok(backend(accessor, &self_)?.delete(&key).await.map_err(spin_err))
    }

    async fn exists(accessor: &Accessor<T, Self>, self_: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<bool, spin_kv::Error>> {
        Ok(backend(accessor, &self_)?.exists(&key).await.map_err(spin_err))
    }

    async fn get_keys(
        accessor: &Accessor<T, Self>,
        self_: Resource<OpenStore>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), spin_kv::Error>>)> {
        let backend = backend(accessor, &self_)?;
        let (result_tx, result_rx) = tokio::sync::oneshot::channel();
        let producer = KeysProducer { backend, cursor: None, finished: false, pending: None, result_tx: Some(result_tx) };
        let result = async move { Ok::<_, wasmtime::Error>(result_rx.await.unwrap_or(Ok(()))) };
        accessor.with(|mut a| Ok((StreamReader::new(&mut a, producer)?, FutureReader::new(&mut a, result)?)))
    }

    async fn drop(accessor: &Accessor<T, Self>, rep: Resource<OpenStore>) -> wasmtime::Result<()> {
        accessor.with(|mut a| a.get().table.delete(rep).map(drop).map_err(Into::into))
    }
}

impl spin_kv::HostStore for InstanceState {}
impl spin_kv::Host for InstanceState {}

/// Streams keys a page at a time, so a store with millions of keys is never
/// held in memory at once. A backend error ends the stream and is reported
/// through the `get-keys` result future.
struct KeysProducer {
    backend: Arc<dyn Backend>,
    cursor: Option<String>,
    finished: bool,
    pending: Option<BoxFuture<'static, BackendResult<KeyPage>>>,
    result_tx: Option<tokio::sync::oneshot::Sender<Result<(), spin_kv::Error>>>,
}

impl<D> StreamProducer<D> for KeysProducer {
    type Item = String;
    type Buffer = VecBuffer<String>;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _store: StoreContextMut<'a, D>,
        mut destination: Destination<'a, String, VecBuffer<String>>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        if self.finished {
            return Poll::Ready(Ok(StreamResult::Dropped));
        }
        let this = &mut *self;
        // A page may be empty while more follow (Redis SCAN does that), and
        // a read must deliver at least one key or end: fetch until it can.
        loop {
            let pending = this.pending.get_or_insert_with(|| {
                let backend = this.backend.clone();
                let cursor = this.cursor.clone();
                Box::pin(async move { backend.keys(cursor.as_deref(), KEYS_PAGE).await })
            });
            let page = match pending.as_mut().poll(cx) {
                Poll::Pending if finish => return Poll::Ready(Ok(StreamResult::Cancelled)),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(page) => page,
            };
            this.pending = None;
            let outcome = match page {
                Ok(page) if page.keys.is_empty() && page.next.is_some() => {
                    this.cursor = page.next;
                    continue;
                }
                Ok(page) => {
                    let more = page.next.is_some();
                    this.cursor = page.next;
                    destination.set_buffer(page.keys.into());
                    if more {
                        return Poll::Ready(Ok(StreamResult::Completed));
                    }
                    Ok(())
                }
                Err(e) => Err(spin_err(e)),
            };
            this.finished = true;
            if let Some(tx) = this.result_tx.take() {
                let _ = tx.send(outcome);
            }
            return Poll::Ready(Ok(StreamResult::Dropped));
        }
    }
}

// wasi:keyvalue. Its functions are synchronous in WIT; the host side is async
// and blocks only the calling instance's store while it runs.

fn wasi_err(e: BackendError) -> wasi_kv::Error {
    wasi_kv::Error::Other(e.0)
}

impl InstanceState {
    fn bucket(&self, bucket: &Resource<OpenStore>) -> wasmtime::Result<Arc<dyn Backend>> {
        Ok(self.table.get(bucket)?.backend.clone())
    }
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
        Ok(self.bucket(&self_)?.get(&key).await.map_err(wasi_err))
    }

    async fn set(&mut self, self_: Resource<OpenStore>, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), wasi_kv::Error>> {
        Ok(self.bucket(&self_)?.set(&key, &value).await.map_err(wasi_err))
    }

    async fn delete(&mut self, self_: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<(), wasi_kv::Error>> {
        Ok(self.bucket(&self_)?.delete(&key).await.map_err(wasi_err))
    }

    async fn exists(&mut self, self_: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<bool, wasi_kv::Error>> {
        Ok(self.bucket(&self_)?.exists(&key).await.map_err(wasi_err))
    }

    async fn list_keys(&mut self, self_: Resource<OpenStore>, cursor: Option<String>) -> wasmtime::Result<Result<wasi_kv::KeyResponse, wasi_kv::Error>> {
        let page = self.bucket(&self_)?.keys(cursor.as_deref(), KEYS_PAGE).await;
        Ok(page.map(|p| wasi_kv::KeyResponse { keys: p.keys, cursor: p.next }).map_err(wasi_err))
    }

    async fn drop(&mut self, rep: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl atomics::Host for InstanceState {
    async fn increment(&mut self, bucket: Resource<OpenStore>, key: String, delta: i64) -> wasmtime::Result<Result<i64, wasi_kv::Error>> {
        Ok(self.bucket(&bucket)?.increment(&key, delta).await.map_err(wasi_err))
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
        let backend = self.bucket(&bucket)?;
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
        let backend = self.bucket(&bucket)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            match backend.get(&key).await {
                Ok(value) => out.push((key, value)),
                Err(e) => return Ok(Err(wasi_err(e))),
            }
        }
        Ok(Ok(out))
    }

    async fn set_many(&mut self, bucket: Resource<OpenStore>, key_values: Vec<(String, Vec<u8>)>) -> wasmtime::Result<Result<(), wasi_kv::Error>> {
        let backend = self.bucket(&bucket)?;
        for (key, value) in key_values {
            if let Err(e) = backend.set(&key, &value).await {
                return Ok(Err(wasi_err(e)));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(&mut self, bucket: Resource<OpenStore>, keys: Vec<String>) -> wasmtime::Result<Result<(), wasi_kv::Error>> {
        let backend = self.bucket(&bucket)?;
        for key in keys {
            if let Err(e) = backend.delete(&key).await {
                return Ok(Err(wasi_err(e)));
            }
        }
        Ok(Ok(()))
    }
}
