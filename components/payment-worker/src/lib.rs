//! Charges orders on `orders.created` (when they carry a payment token) and
//! refunds on `orders.cancelled`, through the same path as `POST /payments`,
//! so the same event twice charges once.

use shop_core::payments::{PaymentService, PaymentsConfig};
use shop_spin::{HttpProvider, RedisPublisher, SpinKv, WasiClock, WasiRandom, WasiSleeper, event_outcome, variable};
use spin_sdk::redis_subscriber;

#[redis_subscriber]
async fn on_message(message: Vec<u8>) -> Result<(), String> {
    let kv = SpinKv::open_default().await.map_err(|e| e.message)?;
    let gateway = HttpProvider::gateway(variable("payment_gateway_url").await?);
    let publisher = RedisPublisher { url: variable("redis_url").await? };
    let config = PaymentsConfig::new(variable("admin_token").await?);
    let service = PaymentService::new(kv, gateway, publisher, WasiClock, WasiRandom, WasiSleeper, config);
    event_outcome(service.handle_event(&message).await)
}
