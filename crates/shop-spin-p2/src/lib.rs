//! The WASIp2 adapter (`spin-sdk` 5): shop-core's ports over what a
//! component built for Spin 3.x (and SpinKube's `containerd-shim-spin`) can
//! import, gathered as [`SpinP2`], the `shop_wiring::Runtime` the WASIp2
//! components (`components/p2/*`) run with. The WASIp3 adapter is
//! `shop-spin`; what the two share is in `shop-wiring`.
//!
//! Every import here is one Spin 3.6 provides (checked against its factors
//! at tag v3.6.3); none is 4.x only:
//! - [`SpinKv`]: `wasi:keyvalue/store`, `wasi:keyvalue/atomics` and
//!   `wasi:keyvalue/batch` (`@0.2.0-draft2`);
//! - [`RedisConnection`], for the events (`shop_wiring::RedisPublisher`)
//!   and the key-value store over Redis (`key_value = "redis"`):
//!   `fermyon:spin/redis@2.0.0`;
//! - variables: `fermyon:spin/variables@2.0.0`;
//! - [`HttpProvider`]: `wasi:http/outgoing-handler@0.2.0`;
//! - [`InventoryClient`]: `shop:inventory/inventory@0.1.0`, synchronous
//!   variant (`wit/p2`);
//! - [`ComposedProvider`]: `shop:payments/provider@0.1.0`, synchronous
//!   variant (`wit/p2/payments`);
//! - [`WasiClock`], [`WasiRandom`], [`WasiSleeper`]: `wasi:clocks@0.2`,
//!   `wasi:random@0.2`.
//!
//! Every import of WASIp2 is synchronous: a call holds the instance until
//! the host answers. That costs no concurrency here, since Spin gives each
//! WASIp2 request an instance of its own.

use shop_core::http::{ApiError, ApiRequest, ApiResponse, Method};
use shop_core::kv::{Kv, StoreError};
use shop_core::ports::{Clock, Random, Sleeper};
use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};
use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use shop_wiring::keyvalue_atomics::{store_error, while_locked};
use shop_wiring::redis_kv::{RedisCommands, RedisReply};

mod inventory_client;
mod payments_client;
mod provider;
pub use inventory_client::InventoryClient;
pub use payments_client::ComposedProvider;
pub use provider::HttpProvider;

/// The key-value store every component of the shop uses.
pub const STORE: &str = "default";

/// The store through `wasi:keyvalue` only. Its `atomics` interface is what
/// gives the WASIp2 build the same guarantees as the WASIp3 one: `increment`
/// (order numbers, stock and payment counters) and compare-and-swap (stock
/// reservations that never oversell, order updates that never lose a
/// concurrent one, a charge claimed once so it is made exactly once). Spin
/// 3.x implements both on its SQLite store; on its Redis store every
/// compare-and-swap fails (docs/real-spin.md), so with Redis the shop uses
/// `key_value = "redis"` ([`RedisConnection`]) instead. Clones share the
/// opened bucket.
#[derive(Clone)]
pub struct SpinKv {
    bucket: Rc<store::Bucket>,
}

impl Kv for SpinKv {
    shop_wiring::keyvalue_atomics_methods!(atomics, bucket, WasiSleeper);
    shop_wiring::keyvalue_batch_methods!(batch, bucket, WasiSleeper);

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        while_locked(&WasiSleeper, async || self.bucket.get(key).map_err(store_error)).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        while_locked(&WasiSleeper, async || self.bucket.set(key, value).map_err(store_error)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        while_locked(&WasiSleeper, async || self.bucket.delete(key).map_err(store_error)).await
    }
}

/// A connection of outbound Redis, for `shop_wiring::redis_kv`.
pub struct RedisConnection(spin_sdk::redis::Connection);

impl RedisCommands for RedisConnection {
    async fn execute(&self, command: &str, arguments: &[&[u8]]) -> Result<Vec<RedisReply>, StoreError> {
        use spin_sdk::redis::RedisParameter;
        let arguments: Vec<RedisParameter> = arguments.iter().map(|argument| RedisParameter::Binary(argument.to_vec())).collect();
        let replies = self.0.execute(command, &arguments).map_err(store_error)?;
        Ok(replies.into_iter().map(redis_reply).collect())
    }
}

shop_wiring::redis_reply_conversion!(spin_sdk::redis);

#[derive(Default)]
pub struct WasiClock;

impl Clock for WasiClock {
    fn now_ms(&self) -> u64 {
        let now = wasi::clocks::wall_clock::now();
        now.seconds * 1000 + u64::from(now.nanoseconds) / 1_000_000
    }
}

#[derive(Default)]
pub struct WasiRandom;

impl Random for WasiRandom {
    fn next_u64(&self) -> u64 {
        wasi::random::random::get_random_u64()
    }
}

#[derive(Default)]
pub struct WasiSleeper;

impl Sleeper for WasiSleeper {
    /// Waits without blocking: the payment side races a provider call
    /// against a sleep (its timeout), so the sleep must let the call's
    /// response arrive meanwhile.
    async fn sleep(&self, milliseconds: u64) {
        let deadline = wasi::clocks::monotonic_clock::now().saturating_add(milliseconds.saturating_mul(1_000_000));
        Sleep { deadline, _registration: None }.await
    }
}

/// Until the monotonic clock reaches `deadline`, registered with spin-sdk's
/// executor, which wakes the request's future when the clock's pollable is
/// ready.
struct Sleep {
    deadline: u64,
    /// The pending registration; dropping it (on completion or when the
    /// sleep loses a race) drops its pollable.
    _registration: Option<spin_executor::CancelOnDropToken>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if wasi::clocks::monotonic_clock::now() >= self.deadline {
            return Poll::Ready(());
        }
        let pollable = wasi::clocks::monotonic_clock::subscribe_instant(self.deadline);
        self._registration = Some(spin_executor::push_waker_and_get_token(pollable, context.waker().clone()).into());
        Poll::Pending
    }
}

/// The WASIp2 build's runtime for the shared wiring in `shop-wiring`.
pub struct SpinP2;

impl shop_wiring::Runtime for SpinP2 {
    type SpinKv = SpinKv;
    type Redis = RedisConnection;
    type Provider = HttpProvider;
    type ComposedProvider = ComposedProvider;
    type Inventory = InventoryClient;
    type Clock = WasiClock;
    type Random = WasiRandom;
    type Sleeper = WasiSleeper;

    async fn read_variable(name: &str) -> Result<String, String> {
        spin_sdk::variables::get(name).map_err(|e| format!("variable `{name}`: {e:?}"))
    }

    async fn open_spin_kv() -> Result<SpinKv, StoreError> {
        Ok(SpinKv { bucket: Rc::new(store::open(STORE).map_err(store_error)?) })
    }

    async fn open_redis(url: &str) -> Result<RedisConnection, StoreError> {
        spin_sdk::redis::Connection::open(url).map(RedisConnection).map_err(store_error)
    }

    fn provider(base_url: String) -> HttpProvider {
        HttpProvider { base_url }
    }
}

/// The incoming request as the services take it: every header kept, in
/// order, even repeated or not visible ASCII (lossily decoded), so that the
/// services refuse such a header instead of never seeing it.
async fn api_request(request: IncomingRequest) -> Result<ApiRequest, ApiResponse> {
    let method = Method::parse(&request.method().to_string());
    let mut api = ApiRequest::new(method, &request.path_with_query().unwrap_or_else(|| "/".into()));
    api.headers = request
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), String::from_utf8_lossy(&value).into_owned()))
        .collect();
    api.body = request
        .into_body()
        .await
        .map_err(|e| ApiError::new(400, "invalid_body", format!("cannot read the request body: {e:?}")).into_response())?;
    Ok(api)
}

/// Sends the service's answer, every header kept.
async fn respond(api: ApiResponse, out: ResponseOutparam) {
    let headers: Vec<(String, Vec<u8>)> = api.headers.into_iter().map(|(name, value)| (name, value.into_bytes())).collect();
    let fields = Fields::from_list(&headers).unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(fields);
    // Statuses come from shop-core's own constants, all valid.
    let _ = response.set_status_code(api.status);
    if let Err(e) = out.set_with_body(response, api.body).await {
        eprintln!("response body not sent: {e:?}");
    }
}

/// Serves one request with a handler of `shop_wiring::services`.
pub async fn serve<F: Future<Output = ApiResponse>>(request: IncomingRequest, out: ResponseOutparam, handler: impl FnOnce(ApiRequest) -> F) {
    let answer = match api_request(request).await {
        Ok(request) => handler(request).await,
        Err(e) => e,
    };
    respond(answer, out).await
}
