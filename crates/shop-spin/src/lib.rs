//! Adapters from shop-core's ports to what a Spin component can import, so
//! each component is only wiring: build the service, convert the request,
//! call `handle` (or `handle_event`), convert the response.
//!
//! - [`SpinKv`]: `spin:key-value` for plain reads and writes, and
//!   `wasi:keyvalue/atomics` for increment and compare-and-swap on the same
//!   store (hosts back both interfaces with one store per label).
//! - [`RedisPublisher`]: events over outbound Redis.
//! - [`InventoryClient`]: the `shop:inventory` import, as the order side's
//!   `Inventory` port.
//! - [`WasiClock`], [`WasiRandom`], [`WasiSleeper`].

use shop_core::events::{EventError, EventOutcome};
use shop_core::http::{ApiRequest, ApiResponse, Method};
use shop_core::kv::{Kv, StoreError};
use shop_core::ports::{Clock, PublishError, Publisher, Random, Sleeper};
use spin_sdk::experimental::wasi::keyvalue::{atomics, store as wasi_kv};
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{Request, Response};

mod inventory_client;
mod provider;
pub use inventory_client::InventoryClient;
pub use provider::HttpProvider;

/// The key-value store every component of the shop uses.
pub const STORE: &str = "default";

fn store_error(e: impl std::fmt::Debug) -> StoreError {
    StoreError::new(format!("{e:?}"))
}

pub struct SpinKv {
    store: spin_sdk::key_value::Store,
    bucket: wasi_kv::Bucket,
}

impl SpinKv {
    pub async fn open_default() -> Result<SpinKv, StoreError> {
        let store = spin_sdk::key_value::Store::open(STORE).await.map_err(store_error)?;
        let bucket = wasi_kv::open(STORE).map_err(store_error)?;
        Ok(SpinKv { store, bucket })
    }
}

impl Kv for SpinKv {
    type CasToken = atomics::Cas;

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(key).await.map_err(store_error)
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.store.set(key, value).await.map_err(store_error)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.store.delete(key).await.map_err(store_error)
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        // shop-core reads a counter as `increment(key, 0)`. A read needs no
        // atomicity, and the async `get` lets the instance run its other
        // requests meanwhile, where the synchronous wasi:keyvalue call holds
        // the whole instance until the store answers. Counters are decimal
        // text on every backend.
        if delta == 0 {
            return match self.get(key).await? {
                None => Ok(0),
                Some(bytes) => std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| StoreError::new(format!("counter `{key}` is not an integer"))),
            };
        }
        atomics::increment(&self.bucket, key, delta).map_err(store_error)
    }

    async fn cas_read(&self, key: &str) -> Result<(Option<Vec<u8>>, atomics::Cas), StoreError> {
        let cas = atomics::Cas::new(&self.bucket, key).map_err(store_error)?;
        let current = cas.current().map_err(store_error)?;
        Ok((current, cas))
    }

    async fn cas_swap(&self, token: atomics::Cas, value: &[u8]) -> Result<bool, StoreError> {
        match atomics::swap(token, value) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(e)) => Err(store_error(e)),
        }
    }
}

/// Publishes to Redis at `url` (the `redis_url` variable).
pub struct RedisPublisher {
    pub url: String,
}

impl Publisher for RedisPublisher {
    /// `PUBLISH` through `execute`, whose reply is the number of receivers
    /// (spin-sdk's `publish` drops it).
    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64, PublishError> {
        use spin_sdk::redis::{RedisParameter, RedisResult};
        let error = |e: spin_sdk::redis::Error| PublishError { message: format!("redis: {e:?}") };
        let connection = spin_sdk::redis::Connection::open(&self.url).await.map_err(error)?;
        let arguments = [RedisParameter::Binary(channel.as_bytes().to_vec()), RedisParameter::Binary(payload.to_vec())];
        match connection.execute("PUBLISH", arguments).await.map_err(error)?.as_slice() {
            [RedisResult::Int64(receivers)] => Ok(u64::try_from(*receivers).unwrap_or(0)),
            other => Err(PublishError { message: format!("redis: unexpected PUBLISH reply {other:?}") }),
        }
    }
}

/// Whether Redis at `url` answers (for `/health`).
pub async fn redis_ping(url: &str) -> Result<(), String> {
    let connection = spin_sdk::redis::Connection::open(url).await.map_err(|e| format!("{e:?}"))?;
    connection.execute("PING", Vec::<spin_sdk::redis::RedisParameter>::new()).await.map(drop).map_err(|e| format!("{e:?}"))
}

pub struct WasiClock;

impl Clock for WasiClock {
    fn now_ms(&self) -> u64 {
        let now = spin_sdk::wasip3::clocks::system_clock::now();
        now.seconds as u64 * 1000 + u64::from(now.nanoseconds) / 1_000_000
    }
}

pub struct WasiRandom;

impl Random for WasiRandom {
    fn next_u64(&self) -> u64 {
        spin_sdk::wasip3::random::random::get_random_u64()
    }
}

pub struct WasiSleeper;

impl Sleeper for WasiSleeper {
    async fn sleep(&self, milliseconds: u64) {
        spin_sdk::wasip3::clocks::monotonic_clock::wait_for(milliseconds.saturating_mul(1_000_000)).await;
    }
}

/// A variable of the component, or an error naming it.
pub async fn variable(name: &str) -> Result<String, String> {
    spin_sdk::variables::get(name).await.map_err(|e| format!("variable `{name}`: {e:?}"))
}

/// An optional variable of whole seconds, in milliseconds (None when the
/// manifest does not define it).
pub async fn milliseconds_variable(name: &str) -> Result<Option<u64>, String> {
    let Ok(text) = variable(name).await else { return Ok(None) };
    let seconds: u64 = text.trim().parse().map_err(|_| format!("variable `{name}`: expected whole seconds, got {text:?}"))?;
    Ok(Some(seconds.saturating_mul(1000)))
}

/// The spin-sdk request as the services take it.
pub async fn api_request(request: Request) -> Result<ApiRequest, ApiResponse> {
    let method = Method::parse(request.method().as_str());
    let path_and_query = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let mut api = ApiRequest::new(method, &path_and_query);
    api.headers = request
        .headers()
        .iter()
        // Kept even when not visible ASCII (lossily decoded), so that the
        // services refuse such a header instead of never seeing it.
        .map(|(name, value)| (name.as_str().to_ascii_lowercase(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    api.body = request
        .into_body()
        .bytes()
        .await
        .map_err(|e| shop_core::http::ApiError::new(400, "invalid_body", format!("cannot read the request body: {e:?}")).into_response())?
        .to_vec();
    Ok(api)
}

/// What the HTTP components answer.
pub type Reply = Response<spin_sdk::http::FullBody<bytes::Bytes>>;

/// The service's answer as a spin-sdk response.
pub fn response(api: ApiResponse) -> Reply {
    let mut builder = Response::builder().status(api.status);
    for (name, value) in &api.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(spin_sdk::http::FullBody::new(api.body.into()))
        .unwrap_or_else(|_| Response::new(spin_sdk::http::FullBody::new(bytes::Bytes::new())))
}

/// A 503 in the shop's error shape, for when a dependency is unreachable
/// before a service can even be built.
pub fn unavailable(message: impl Into<String>) -> Reply {
    response(shop_core::http::ApiError::new(503, "service_unavailable", message).into_response())
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
