//! wharf: a Spin-compatible host for WebAssembly components.
//!
//! A small core (engine, app loading, instance limits) surrounded by one
//! module per capability, as Spin's factors are: the HTTP trigger, the Redis
//! trigger, key-value with its backends, outbound HTTP, outbound Redis and
//! variables.

pub mod allowed_hosts;
pub mod bindings;
pub mod key_value;
pub mod manifest;
pub mod outbound_http;
pub mod outbound_redis;
pub mod state;
pub mod variables;
pub mod http_trigger;
