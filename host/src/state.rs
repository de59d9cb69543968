//! Per-instance state: what one `Store` holds for one component instance.

use crate::capabilities::key_value::KeyValueAccess;
use crate::capabilities::outbound_http::OutboundHttp;
use crate::capabilities::outbound_mqtt::MqttAccess;
use crate::capabilities::outbound_pg::PgAccess;
use crate::capabilities::outbound_redis::RedisAccess;
use crate::capabilities::sqlite::SqliteAccess;
use crate::capabilities::unsupported::Unsupported;
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub struct InstanceState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub outbound_http: OutboundHttp,
    pub key_value: KeyValueAccess,
    pub redis: RedisAccess,
    pub mqtt: MqttAccess,
    pub postgres: PgAccess,
    pub sqlite: SqliteAccess,
    pub unsupported: Unsupported,
    /// The component's variables, rendered from their templates at load time.
    pub variables: Arc<HashMap<String, String>>,
}

impl InstanceState {
    /// The view `ProxyHandler` uses (it wants a plain function).
    pub fn http_view(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { hooks: &mut self.outbound_http, table: &mut self.table, ctx: &mut self.http }
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        self.http_view()
    }
}
