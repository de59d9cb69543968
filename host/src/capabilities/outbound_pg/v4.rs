//! `spin:postgres/postgres@4.0.0` (Spin 3.x, and 4.x through its 4.2.0):
//! the model's own types.

use super::Connection;
use super::model as wit;
use crate::state::InstanceState;
use wasmtime::component::Resource;

type Outcome<R> = wasmtime::Result<Result<R, wit::Error>>;

impl wit::HostConnection for InstanceState {
    async fn open(&mut self, address: String) -> Outcome<Resource<Connection>> {
        Ok(self.open_postgres(&address, &[]).await?)
    }

    async fn query(&mut self, self_: Resource<Connection>, statement: String, params: Vec<wit::ParameterValue>) -> Outcome<wit::RowSet> {
        let rows = self.table.get(&self_)?.query(statement, params);
        Ok(rows.await)
    }

    async fn execute(&mut self, self_: Resource<Connection>, statement: String, params: Vec<wit::ParameterValue>) -> Outcome<u64> {
        let changed = self.table.get(&self_)?.execute(statement, params);
        Ok(changed.await)
    }

    async fn drop(&mut self, rep: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl wit::Host for InstanceState {}
