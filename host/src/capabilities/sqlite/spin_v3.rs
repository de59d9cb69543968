//! `spin:sqlite/sqlite@3.0.0` (WASIp2 Spin 3.x, spin-sdk 5's `sqlite3`): the
//! calls of [`super::p2`] plus `changes` and `last-insert-rowid`, synchronous
//! in WIT.

super::connection_in_wit!(crate::bindings::p2::spin::sqlite::sqlite, {
    async fn last_insert_rowid(&mut self, self_: Resource<Connection>) -> wasmtime::Result<i64> {
        Ok(self.table.get(&self_)?.last_insert_rowid().await?)
    }

    async fn changes(&mut self, self_: Resource<Connection>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&self_)?.changes().await?)
    }
});
