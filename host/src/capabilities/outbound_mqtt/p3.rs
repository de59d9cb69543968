//! `spin:mqtt/mqtt@3.0.0` (WASIp3 Spin 4.x): async functions.

use super::Connection;
use crate::state::InstanceState;
use wasmtime::component::{Accessor, HasSelf, Resource};

super::convert_to_wit!(crate::bindings::imports::spin::mqtt::mqtt);

type Outcome<R> = wasmtime::Result<Result<R, wit::Error>>;

impl<T: Send> wit::HostConnectionWithStore<T> for HasSelf<InstanceState> {
    async fn open(
        accessor: &Accessor<T, Self>,
        address: String,
        username: String,
        password: String,
        keep_alive_secs: u64,
    ) -> Outcome<Resource<Connection>> {
        accessor.with(|mut a| {
            let state = a.get();
            match state.mqtt.open(&address, username, password, keep_alive_secs) {
                Ok(connection) => Ok(Ok(state.table.push(connection)?)),
                Err(e) => Ok(Err(e.into())),
            }
        })
    }

    /// Waits for the broker without holding the instance's state.
    async fn publish(accessor: &Accessor<T, Self>, self_: Resource<Connection>, topic: String, payload: Vec<u8>, qos: wit::Qos) -> Outcome<()> {
        let published = accessor.with(|mut a| Ok::<_, wasmtime::Error>(a.get().table.get(&self_)?.publish(topic, payload, qos.into())))?;
        Ok(published.await.map_err(Into::into))
    }

    async fn drop(accessor: &Accessor<T, Self>, rep: Resource<Connection>) -> wasmtime::Result<()> {
        accessor.with(|mut a| a.get().table.delete(rep).map(drop).map_err(Into::into))
    }
}

impl wit::HostConnection for InstanceState {}

impl wit::Host for InstanceState {}
