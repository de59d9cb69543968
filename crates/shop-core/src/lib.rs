//! Domain logic of the shop: orders, inventory, payments and the payment
//! sandbox, written against small ports so that it runs natively in tests and
//! inside WebAssembly components alike.
//!
//! A component is a thin adapter: it turns its spin-sdk request into an
//! [`http::ApiRequest`], calls the service's `handle`, and turns the
//! [`http::ApiResponse`] back. Event-triggered components call the service's
//! `handle_event` with the raw message payload. All business rules, routing
//! within a service, JSON shapes and error bodies live here.
//!
//! Ports (implemented by components over host imports, and in memory by the
//! `testing` module):
//! - [`kv::Kv`]: key-value store with atomic increment and compare-and-swap,
//! - [`ports::Publisher`], [`ports::Clock`], [`ports::Random`], [`ports::Sleeper`],
//! - [`orders::Inventory`]: the order service's view of the inventory service,
//! - [`payments::Gateway`]: the payment provider.
//!
//! See `README.md` beside `Cargo.toml` for the design notes and key layout.

pub mod auth;
pub mod events;
pub mod http;
pub mod idempotency;
pub mod inventory;
pub mod json;
pub mod kv;
pub mod money;
pub mod ops;
pub mod orders;
pub mod payments;
pub mod ports;
pub mod rank_set;
pub mod sandbox;
pub mod time;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
