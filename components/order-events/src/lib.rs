//! Moves orders on payment events (`payments.completed`, `payments.failed`,
//! `payments.refunded`).

use shop_core::orders::{OrderService, OrdersConfig};
use shop_spin::{InventoryClient, RedisPublisher, SpinKv, WasiClock, WasiRandom, event_outcome, variable};
use spin_sdk::redis_subscriber;

#[redis_subscriber]
async fn on_message(message: Vec<u8>) -> Result<(), String> {
    let kv = SpinKv::open_default().await.map_err(|e| e.message)?;
    let publisher = RedisPublisher { url: variable("redis_url").await? };
    let config = OrdersConfig::new(variable("admin_token").await?);
    let service = OrderService::new(kv, InventoryClient, publisher, WasiClock, WasiRandom, config);
    event_outcome(service.handle_event(&message).await)
}
