//! `spin:sqlite/sqlite@3.1.0` (WASIp3 Spin, spin-sdk 7's `sqlite`): the
//! synchronous calls of [`super::spin_v3`], and their `async` twins, whose
//! `execute-async` hands the rows over as a stream. The rows come from the
//! same bounded [`Connection::execute`] as every other version's (at most
//! `MAX_RESULT_BYTES`), so a stream holds no more than a list would; the
//! stream is for the guest, which reads them as they are delivered.

use wasmtime::component::{Accessor, FutureReader, HasSelf, StreamReader};

super::connection_in_wit!(crate::bindings::imports::spin::sqlite::sqlite, {
    async fn last_insert_rowid(&mut self, self_: Resource<Connection>) -> wasmtime::Result<i64> {
        Ok(self.table.get(&self_)?.last_insert_rowid().await?)
    }

    async fn changes(&mut self, self_: Resource<Connection>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&self_)?.changes().await?)
    }
});

/// The instance's connection `self_`, shared, so a call can run without the store.
fn connection<T>(accessor: &Accessor<T, HasSelf<InstanceState>>, self_: &Resource<Connection>) -> wasmtime::Result<Connection> {
    accessor.with(|mut a| Ok(a.get().table.get(self_)?.clone()))
}

impl<T: Send> wit::HostConnectionWithStore<T> for HasSelf<InstanceState> {
    async fn open_async(accessor: &Accessor<T, Self>, database: String) -> Outcome<Resource<Connection>> {
        let access = accessor.with(|mut a| a.get().sqlite.clone());
        match access.open(&database).await {
            Ok(connection) => accessor.with(|mut a| Ok(Ok(a.get().table.push(connection)?))),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        self_: Resource<Connection>,
        statement: String,
        parameters: Vec<wit::Value>,
    ) -> Outcome<(Vec<String>, StreamReader<wit::RowResult>, FutureReader<Result<(), wit::Error>>)> {
        let parameters = parameters.into_iter().map(from_wit).collect();
        let result = match connection(accessor, &self_)?.execute(statement, parameters).await {
            Ok(result) => wit::QueryResult::from(result),
            Err(e) => return Ok(Err(e.into())),
        };
        accessor.with(|mut a| {
            let rows = StreamReader::new(&mut a, result.rows)?;
            let done = FutureReader::new(&mut a, async { Ok::<_, wasmtime::Error>(Ok(())) })?;
            Ok(Ok((result.columns, rows, done)))
        })
    }

    async fn last_insert_rowid_async(accessor: &Accessor<T, Self>, self_: Resource<Connection>) -> wasmtime::Result<i64> {
        Ok(connection(accessor, &self_)?.last_insert_rowid().await?)
    }

    async fn changes_async(accessor: &Accessor<T, Self>, self_: Resource<Connection>) -> wasmtime::Result<u64> {
        Ok(connection(accessor, &self_)?.changes().await?)
    }
}
