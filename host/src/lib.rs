//! wharf: a Spin-compatible host for WebAssembly components.
//!
//! A small core (engine, app loading, instance limits) with the two triggers
//! (HTTP, Redis) and, in [`capabilities`], one module per capability a guest
//! imports, as Spin's factors are: key-value with its backends, outbound
//! HTTP, outbound Redis and variables. Where WASIp2 and WASIp3 guests import
//! different versions of an interface, each version has a module of its own
//! (`p2`, `p3`) over the capability's shared core.

pub mod allowed_hosts;
pub mod app;
pub mod capabilities;
pub mod bindings;
pub mod confined;
mod compose;
mod componentize;
pub mod engine;
mod files;
mod guest_log;
pub mod manifest;
pub mod memory_budget;
pub mod metrics;
pub mod metrics_server;
pub mod oci;
pub mod redis_trigger;
pub mod state;
pub mod runtime_config;
pub mod http_trigger;
