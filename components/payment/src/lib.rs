//! The payment component: `/payments/...`, charging through the provider at
//! the `payment_gateway_url` variable (the sandbox by default).

use shop_core::payments::{PaymentService, PaymentsConfig};
use shop_spin::{Reply, HttpProvider, RedisPublisher, SpinKv, WasiClock, WasiRandom, WasiSleeper, api_request, milliseconds_variable, response, unavailable, variable};
use spin_sdk::http::Request;
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> Reply {
    let request = match api_request(request).await {
        Ok(r) => r,
        Err(e) => return response(e),
    };
    let service = async {
        let kv = SpinKv::open_default().await.map_err(|e| e.message)?;
        let gateway = HttpProvider::gateway(variable("payment_gateway_url").await?);
        let publisher = RedisPublisher { url: variable("redis_url").await? };
        let mut config = PaymentsConfig::new(variable("admin_token").await?);
        if let Some(ms) = milliseconds_variable("idempotency_ttl_seconds").await? {
            config.idempotency_ttl_ms = ms;
        }
        Ok::<_, String>(PaymentService::new(kv, gateway, publisher, WasiClock, WasiRandom, WasiSleeper, config))
    };
    match service.await {
        Ok(service) => response(service.handle(request).await),
        Err(e) => unavailable(e),
    }
}
