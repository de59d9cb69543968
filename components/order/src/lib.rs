//! The order component: `/orders/...`. Stock goes through the
//! `shop:inventory` import (the inventory component, composed in at load
//! time); events go to Redis.

use shop_core::auth::CustomerAuth;
use shop_core::orders::{OrderService, OrdersConfig};
use shop_spin::{Reply, InventoryClient, RedisPublisher, SpinKv, WasiClock, WasiRandom, api_request, milliseconds_variable, response, unavailable, variable};
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
    config.customer_auth = customer_auth().await?;
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
    // `idempotency_ttl_seconds` (default 86400): life of idempotency records
    // and processed-event markers; the reconcile deletes expired ones.
    if let Some(ms) = milliseconds_variable("idempotency_ttl_seconds").await? {
        config.idempotency_ttl_ms = ms;
    }
    Ok(OrderService::new(kv, InventoryClient, publisher, WasiClock, WasiRandom, config))
}

/// Customer authentication from `customer_auth` ("jwt", the default, or
/// "none"), `jwt_verification_key` and `jwt_audience`. "none" is a switch for
/// the sandbox and the README walkthrough: honoured only when `environment`
/// is "development", and logged on every request; any other environment
/// refuses to serve with it.
async fn customer_auth() -> Result<CustomerAuth, String> {
    let mode = variable("customer_auth").await.unwrap_or_else(|_| "jwt".to_string());
    match mode.trim() {
        "none" => {
            let environment = variable("environment").await.unwrap_or_default();
            if environment.trim() != "development" {
                return Err(format!("customer_auth = \"none\" is refused in environment {environment:?}: it is for development only"));
            }
            eprintln!("customer authentication is OFF (customer_auth = \"none\", environment = development): requests name their user");
            Ok(CustomerAuth::Off)
        }
        "jwt" => {
            let key = variable("jwt_verification_key").await.unwrap_or_default();
            let audience = variable("jwt_audience").await.unwrap_or_else(|_| "shop".to_string());
            CustomerAuth::from_key(&key, &audience)
        }
        other => Err(format!("variable `customer_auth`: expected \"jwt\" or \"none\", got {other:?}")),
    }
}

