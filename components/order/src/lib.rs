//! The order component: `/orders/...`. Stock goes through the
//! `shop:inventory` import (the inventory component, composed in at load
//! time); events go to Redis.

use shop_core::orders::{OrderService, OrdersConfig};
use shop_spin::{Reply, InventoryClient, RedisPublisher, SpinKv, WasiClock, WasiRandom, api_request, response, unavailable, variable};
use spin_sdk::http::Request;
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> Reply {
    let request = match api_request(request).await {
        Ok(r) => r,
        Err(e) => return response(e),
    };
    match service().await {
        Ok(service) => response(service.handle(request).await),
        Err(e) => unavailable(e),
    }
}

async fn service() -> Result<OrderService<SpinKv, InventoryClient, RedisPublisher, WasiClock, WasiRandom>, String> {
    let kv = SpinKv::open_default().await.map_err(|e| e.message)?;
    let publisher = RedisPublisher { url: variable("redis_url").await? };
    let mut config = OrdersConfig::new(variable("admin_token").await?);
    // spin.toml `reconcile_after_seconds` (default 300, OrdersConfig's own):
    // how long an open order must be untouched before the reconcile drives it
    // on. Optional, so manifests that do not define it keep the default.
    if let Some(ms) = milliseconds_variable("reconcile_after_seconds").await? {
        config.stuck_after_ms = ms;
    }
    // `payment_timeout_seconds` (default 900): how long an order without a
    // payment token waits for `POST /payments` before the reconcile cancels it.
    if let Some(ms) = milliseconds_variable("payment_timeout_seconds").await? {
        config.payment_timeout_ms = ms;
    }
    Ok(OrderService::new(kv, InventoryClient, publisher, WasiClock, WasiRandom, config))
}

/// An optional variable of whole seconds, in milliseconds.
async fn milliseconds_variable(name: &str) -> Result<Option<u64>, String> {
    let Ok(text) = variable(name).await else { return Ok(None) };
    let seconds: u64 = text.trim().parse().map_err(|_| format!("variable `{name}`: expected whole seconds, got {text:?}"))?;
    Ok(Some(seconds.saturating_mul(1000)))
}
