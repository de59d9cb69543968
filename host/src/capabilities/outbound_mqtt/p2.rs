//! `fermyon:spin/mqtt@2.0.0` (WASIp2 Spin 2.x/3.x): synchronous in WIT.

use super::Connection;
use crate::state::InstanceState;
use wasmtime::component::Resource;

super::convert_to_wit!(crate::bindings::p2::fermyon::spin2_0_0::mqtt);

type Outcome<R> = wasmtime::Result<Result<R, wit::Error>>;

impl wit::HostConnection for InstanceState {
    async fn open(&mut self, address: String, username: String, password: String, keep_alive_secs: u64) -> Outcome<Resource<Connection>> {
        match self.mqtt.open(&address, username, password, keep_alive_secs) {
            Ok(connection) => Ok(Ok(self.table.push(connection)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn publish(&mut self, self_: Resource<Connection>, topic: String, payload: Vec<u8>, qos: wit::Qos) -> Outcome<()> {
        let published = self.table.get(&self_)?.publish(topic, payload, qos.into());
        Ok(published.await.map_err(Into::into))
    }

    async fn drop(&mut self, rep: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl wit::Host for InstanceState {}
