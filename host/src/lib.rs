//! wharf: a Spin-compatible host for WebAssembly components.
//!
//! A small core (engine, app loading, instance limits) surrounded by one
//! module per capability, as Spin's factors are: the HTTP trigger, the Redis
//! trigger, key-value with its backends, outbound HTTP, outbound Redis and
//! variables.

pub mod allowed_hosts;
pub mod app;
pub mod bindings;
pub mod confined;
mod compose;
pub mod engine;
mod files;
mod guest_log;
pub mod key_value;
pub mod manifest;
pub mod metrics;
pub mod metrics_server;
pub mod oci;
pub mod outbound_http;
pub mod outbound_redis;
pub mod redis_trigger;
pub mod state;
pub mod runtime_config;
pub mod variables;
mod variables_host;
pub mod http_trigger;
