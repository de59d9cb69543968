//! `spin:key-value/key-value@3.0.0` (WASIp3 Spin) over [`Backend`]s: async
//! functions, keys as a stream.

use super::{Backend, BackendError, BackendResult, KEYS_PAGE, KeyPage, OpenStore};
use crate::bindings::imports::spin::key_value::key_value as spin_kv;
use crate::state::InstanceState;
use futures::future::BoxFuture;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use wasmtime::StoreContextMut;
use wasmtime::component::{
    Accessor, Destination, FutureReader, HasSelf, Resource, StreamProducer, StreamReader, StreamResult, VecBuffer,
};

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
