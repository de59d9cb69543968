//! Operations: `GET /health` (key-value and Redis checks; 503 naming the one
//! that failed), `GET /metrics` (business figures from the services'
//! counters) and `GET /info`.

use shop_core::http::ApiRequest;
use shop_core::inventory::{InventoryConfig, InventoryService};
use shop_core::kv::Kv;
use shop_core::ops::{self, HealthCheck, OpsEndpoint, ServiceInfo};
use shop_core::orders::{OrderService, OrdersConfig};
use shop_core::payments::{PaymentService, PaymentsConfig};
use shop_spin::{Reply, HttpProvider, RedisPublisher, SpinKv, WasiClock, WasiRandom, WasiSleeper, api_request, redis_ping, response, unavailable, variable};
use spin_sdk::http::Request;
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> Reply {
    let request = match api_request(request).await {
        Ok(r) => r,
        Err(e) => return response(e),
    };
    match answer(&request).await {
        Ok(r) => response(r),
        Err(e) => unavailable(e),
    }
}

async fn answer(request: &ApiRequest) -> Result<shop_core::http::ApiResponse, String> {
    let Some(endpoint) = OpsEndpoint::of(request) else {
        return Ok(shop_core::http::ApiError::not_found("route").into_response());
    };
    if let Err(r) = OpsEndpoint::check_method(request) {
        return Ok(r);
    }
    let redis_url = variable("redis_url").await?;
    Ok(match endpoint {
        OpsEndpoint::Health => ops::health_response(&health(&redis_url).await),
        OpsEndpoint::Info => ops::info_response(&ServiceInfo {
            name: "shop".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            environment: variable("environment").await?,
        }),
        OpsEndpoint::Metrics => {
            let token = variable("admin_token").await?;
            let error = |e: shop_core::kv::StoreError| e.message;
            let inventory = || async { Ok::<_, String>(InventoryService::new(SpinKv::open_default().await.map_err(error)?, WasiClock, WasiRandom, InventoryConfig::new(token.clone()))) };
            // Metrics read counters only; the order service's inventory port is
            // the local service rather than the import, so ops needs no dependency.
            let orders = OrderService::new(SpinKv::open_default().await.map_err(error)?, inventory().await?, RedisPublisher { url: redis_url.clone() }, WasiClock, WasiRandom, OrdersConfig::new(token.clone()));
            let inventory = inventory().await?;
            let gateway = HttpProvider::gateway(variable("payment_gateway_url").await?);
            let payments = PaymentService::new(SpinKv::open_default().await.map_err(error)?, gateway, RedisPublisher { url: redis_url }, WasiClock, WasiRandom, WasiSleeper, PaymentsConfig::new(token));
            let mut families = orders.metrics().await.map_err(error)?;
            families.extend(inventory.metrics().await.map_err(error)?);
            families.extend(payments.metrics().await.map_err(error)?);
            ops::metrics_response(&families)
        }
    })
}

async fn health(redis_url: &str) -> Vec<HealthCheck> {
    let key_value = match SpinKv::open_default().await {
        Ok(kv) => kv.get("health:probe").await.map(drop).map_err(|e| e.message),
        Err(e) => Err(e.message),
    };
    let redis = redis_ping(redis_url).await;
    [("key_value", key_value), ("redis", redis)]
        .into_iter()
        .map(|(name, result)| HealthCheck { name: name.into(), ok: result.is_ok(), detail: result.err() })
        .collect()
}
