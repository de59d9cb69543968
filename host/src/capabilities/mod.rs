//! What a guest imports besides plain WASI, one module per capability. Each
//! keeps its configuration and app-wide state (stores, connection pools,
//! resolved variables) apart from the per-instance access it grants.

pub mod key_value;
pub mod outbound_http;
pub mod outbound_mqtt;
pub mod outbound_pg;
pub mod outbound_redis;
pub(crate) mod redis_connection;
pub mod sockets;
pub mod sqlite;
pub mod unsupported;
pub mod variables;
pub mod wasi_2023_10_18;
