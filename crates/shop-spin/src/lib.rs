//! The WASIp3 adapter (`spin-sdk` 7): shop-core's ports over what a
//! component built for Spin 4.1+ and `wharf` can import, gathered as
//! [`SpinP3`], the `shop_wiring::Runtime` the WASIp3 components run with.
//! Its WASIp2 counterpart is `shop-spin-p2`; what the two share is in
//! `shop-wiring`. (The crate keeps its first name, `shop-spin`: the WASIp3
//! build is the main one, and renaming it would touch every component.)
//!
//! - [`SpinKv`]: `spin:key-value` for plain reads and writes,
//!   `wasi:keyvalue/atomics` for increment and compare-and-swap, and
//!   `wasi:keyvalue/batch` for reads and writes of many keys in one call, on
//!   the same store (hosts back these interfaces with one store per label).
//! - [`RedisConnection`]: outbound Redis, for the events
//!   (`shop_wiring::RedisPublisher`) and the key-value store over Redis
//!   (`key_value = "redis"`).
//! - [`InventoryClient`]: the `shop:inventory` import, as the order side's
//!   `Inventory` port.
//! - [`ComposedProvider`]: the `shop:payments/provider` import (the sandbox,
//!   composed in), as the payment side's `Gateway`.
//! - [`WasiClock`], [`WasiRandom`], [`WasiSleeper`].

use shop_core::http::{ApiRequest, ApiResponse, Method};
use shop_core::kv::{Kv, StoreError};
use shop_core::ports::{Clock, Random, Sleeper};
use spin_sdk::experimental::wasi::keyvalue::{atomics, batch, store as wasi_kv};
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{Request, Response};
use std::rc::Rc;

use shop_wiring::keyvalue_atomics::{store_error, while_locked};
use shop_wiring::redis_kv::{RedisCommands, RedisReply};

mod inventory_client;
mod payments_client;
mod provider;
pub use inventory_client::InventoryClient;
pub use payments_client::ComposedProvider;
pub use provider::HttpProvider;

/// The WASIp3 build's runtime for the shared wiring in `shop-wiring`.
pub struct SpinP3;

impl shop_wiring::Runtime for SpinP3 {
    type SpinKv = SpinKv;
    type Redis = RedisConnection;
    type Provider = HttpProvider;
    type ComposedProvider = ComposedProvider;
    type Inventory = InventoryClient;
    type Clock = WasiClock;
    type Random = WasiRandom;
    type Sleeper = WasiSleeper;

    async fn read_variable(name: &str) -> Result<String, String> {
        spin_sdk::variables::get(name).await.map_err(|e| format!("variable `{name}`: {e:?}"))
    }

    async fn open_spin_kv() -> Result<SpinKv, StoreError> {
        SpinKv::open_default().await
    }

    async fn open_redis(url: &str) -> Result<RedisConnection, StoreError> {
        spin_sdk::redis::Connection::open(url).await.map(RedisConnection).map_err(store_error)
    }

    fn provider(base_url: String) -> HttpProvider {
        HttpProvider { base_url }
    }
}

/// The key-value store every component of the shop uses.
pub const STORE: &str = "default";

/// The store through both interfaces; clones share the opened handles.
#[derive(Clone)]
pub struct SpinKv {
    store: Rc<spin_sdk::key_value::Store>,
    bucket: Rc<wasi_kv::Bucket>,
}

impl SpinKv {
    pub async fn open_default() -> Result<SpinKv, StoreError> {
        let store = spin_sdk::key_value::Store::open(STORE).await.map_err(store_error)?;
        let bucket = wasi_kv::open(STORE).map_err(store_error)?;
        Ok(SpinKv { store: Rc::new(store), bucket: Rc::new(bucket) })
    }
}

impl Kv for SpinKv {
    shop_wiring::keyvalue_atomics_methods!(atomics, bucket, WasiSleeper);
    shop_wiring::keyvalue_batch_methods!(batch, bucket, WasiSleeper);

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        while_locked(&WasiSleeper, async || self.store.get(key).await.map_err(store_error)).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        while_locked(&WasiSleeper, async || self.store.set(key, value).await.map_err(store_error)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        while_locked(&WasiSleeper, async || self.store.delete(key).await.map_err(store_error)).await
    }
}

/// A connection of outbound Redis, for `shop_wiring::redis_kv`.
pub struct RedisConnection(spin_sdk::redis::Connection);

impl RedisCommands for RedisConnection {
    async fn execute(&self, command: &str, arguments: &[&[u8]]) -> Result<Vec<RedisReply>, StoreError> {
        use spin_sdk::redis::RedisParameter;
        let arguments = arguments.iter().map(|argument| RedisParameter::Binary(argument.to_vec()));
        let replies = self.0.execute(command, arguments).await.map_err(store_error)?;
        Ok(replies.into_iter().map(redis_reply).collect())
    }
}

shop_wiring::redis_reply_conversion!(spin_sdk::redis);

#[derive(Default)]
pub struct WasiClock;

impl Clock for WasiClock {
    fn now_ms(&self) -> u64 {
        let now = spin_sdk::wasip3::clocks::system_clock::now();
        now.seconds as u64 * 1000 + u64::from(now.nanoseconds) / 1_000_000
    }
}

#[derive(Default)]
pub struct WasiRandom;

impl Random for WasiRandom {
    fn next_u64(&self) -> u64 {
        spin_sdk::wasip3::random::random::get_random_u64()
    }
}

#[derive(Default)]
pub struct WasiSleeper;

impl Sleeper for WasiSleeper {
    async fn sleep(&self, milliseconds: u64) {
        spin_sdk::wasip3::clocks::monotonic_clock::wait_for(milliseconds.saturating_mul(1_000_000)).await;
    }
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

/// Serves one request with a handler of `shop_wiring::services`.
pub async fn serve<F: Future<Output = ApiResponse>>(request: Request, handler: impl FnOnce(ApiRequest) -> F) -> Reply {
    match api_request(request).await {
        Ok(request) => response(handler(request).await),
        Err(e) => response(e),
    }
}
