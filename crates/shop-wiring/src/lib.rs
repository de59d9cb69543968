//! The components' wiring, once for both builds of the shop.
//!
//! The shop is built twice: for WASIp3 (`spin-sdk` 7, adapter `shop-spin`,
//! what `wharf` and Spin 4.1+ run) and for WASIp2 (`spin-sdk` 5, adapter
//! `shop-spin-p2`, what Spin 3.x and SpinKube's shim run). The two SDKs bind
//! different imports with different types, so each build has an adapter of
//! its own; everything that does not depend on those imports lives here:
//! which variables configure which service, how a service is assembled from
//! the ports, how an event's outcome is reported. A component of either
//! build is then its SDK's export macro and one call into a module here,
//! with the adapter's [`Runtime`] as type parameter.
//!
//! This crate depends on shop-core only, so it builds and tests natively.

#![allow(async_fn_in_trait, reason = "components are single-threaded; no Send bound is wanted")]

use shop_core::events::{EventError, EventOutcome};
use shop_core::http::{ApiError, ApiResponse};
use shop_core::kv::{Kv, StoreError};
use shop_core::orders::Inventory;
use shop_core::payments::{Gateway, ProviderTransport};
use shop_core::ports::{Clock, PublishError, Publisher, Random, Sleeper};

pub mod config;
pub mod instance;
pub mod inventory_wit;
pub mod keyvalue_atomics;
pub mod payments_wit;
pub mod redis_kv;
pub mod services;

use redis_kv::{RedisCommands, RedisKv, SelectedKv, StoreChoice};

/// The key-value store of runtime `R`'s components ([`Runtime::open_kv`]).
pub type ShopKv<R> = SelectedKv<<R as Runtime>::SpinKv, RedisKv<<R as Runtime>::Redis>>;

/// What a component can import, as shop-core's ports: one implementation
/// per Spin ABI (`shop_spin::SpinP3`, `shop_spin_p2::SpinP2`).
pub trait Runtime {
    /// Spin's key-value store (`wasi:keyvalue`, and `spin:key-value` on
    /// WASIp3); a handle whose clones share the opened store.
    type SpinKv: Kv + Clone + 'static;
    /// A connection of outbound Redis.
    type Redis: RedisCommands;
    /// A payment provider over outbound HTTP ([`Runtime::provider`]).
    type Provider: ProviderTransport;
    /// The `shop:payments/provider` import (the sandbox, composed in).
    type ComposedProvider: Gateway + Default;
    /// The `shop:inventory` import (the inventory component, composed in).
    type Inventory: Inventory + Default;
    type Clock: Clock + Default;
    type Random: Random + Default;
    type Sleeper: Sleeper + Default;

    /// A variable of the component as the host has it, or an error naming it.
    async fn read_variable(name: &str) -> Result<String, String>;
    /// Spin's key-value store `default`, opened.
    async fn open_spin_kv() -> Result<Self::SpinKv, StoreError>;
    /// A connection to Redis at `url` (`redis://...`), through outbound Redis.
    async fn open_redis(url: &str) -> Result<Self::Redis, StoreError>;
    /// The payment provider at `base_url` (`scheme://host[:port]`, no
    /// trailing slash).
    fn provider(base_url: String) -> Self::Provider;

    /// A variable of the component, read once per instance
    /// ([`instance::variable`]), or an error naming it.
    async fn variable(name: &str) -> Result<String, String>
    where
        Self: Sized,
    {
        instance::variable(name, async |name: &str| Self::read_variable(name).await).await
    }

    /// The key-value store every component of the shop uses, as the
    /// `key_value` variable chooses ([`redis_kv::store_choice`]): Spin's
    /// store `default`, or Redis at `redis_url` through outbound Redis.
    async fn open_kv() -> Result<ShopKv<Self>, String>
    where
        Self: Sized,
    {
        let choice = redis_kv::store_choice(Self::variable("key_value").await.ok().as_deref())?;
        let opened = match choice {
            StoreChoice::Spin => instance::opened(Self::open_spin_kv).await.map(SelectedKv::Spin),
            StoreChoice::Redis => Self::open_redis(&Self::variable("redis_url").await?).await.map(|c| SelectedKv::Redis(RedisKv::new(c))),
        };
        opened.map_err(|e| e.message)
    }

    /// Whether Redis at `url` answers (for `/health`).
    async fn redis_ping(url: &str) -> Result<(), String>
    where
        Self: Sized,
    {
        let connection = Self::open_redis(url).await.map_err(|e| e.message)?;
        connection.execute("PING", &[]).await.map(drop).map_err(|e| e.message)
    }
}

/// A 503 in the shop's error shape, for when a dependency is unreachable
/// before a service can even be built.
pub fn unavailable(message: impl Into<String>) -> ApiResponse {
    ApiError::new(503, "service_unavailable", message).into_response()
}

/// What a Redis subscriber reports for an event. Events it cannot use
/// (garbage, unknown types, contradictions) are logged and skipped, as
/// redelivering them would never help; only an unreachable dependency is an
/// error, so it shows in the host's log (reconcile re-drives the order later).
pub fn event_outcome(outcome: Result<EventOutcome, EventError>) -> Result<(), String> {
    match outcome {
        Ok(EventOutcome::Applied) => Ok(()),
        Ok(EventOutcome::Duplicate) => {
            println!("event already applied; nothing to do");
            Ok(())
        }
        Ok(EventOutcome::Ignored(reason)) => {
            println!("event ignored: {reason}");
            Ok(())
        }
        Err(e @ (EventError::Malformed(_) | EventError::UnknownType(_) | EventError::Rejected(_))) => {
            eprintln!("event skipped: {e}");
            Ok(())
        }
        Err(e @ EventError::Unavailable(_)) => Err(e.to_string()),
    }
}

#[doc(hidden)]
pub use shop_core as __shop_core;

/// Publishes the shop's events through outbound Redis at `url` (the
/// `redis_url` variable), on a connection of runtime `R`. `PUBLISH` goes
/// through `execute`, whose reply is the number of receivers (the SDKs'
/// `publish` drops it).
pub struct RedisPublisher<R> {
    url: String,
    runtime: std::marker::PhantomData<R>,
}

impl<R> RedisPublisher<R> {
    pub fn new(url: String) -> Self {
        RedisPublisher { url, runtime: std::marker::PhantomData }
    }
}

impl<R: Runtime> Publisher for RedisPublisher<R> {
    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64, PublishError> {
        let error = |e: StoreError| PublishError { message: format!("redis: {}", e.message) };
        let connection = R::open_redis(&self.url).await.map_err(error)?;
        match connection.execute("PUBLISH", &[channel.as_bytes(), payload]).await.map_err(error)?.as_slice() {
            [redis_kv::RedisReply::Int64(receivers)] => Ok(u64::try_from(*receivers).unwrap_or(0)),
            other => Err(PublishError { message: format!("redis: unexpected PUBLISH reply {other:?}") }),
        }
    }
}
