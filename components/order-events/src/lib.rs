//! Moves orders on payment events (`payments.completed`, `payments.failed`,
//! `payments.refunded`).

use shop_spin::SpinP3;
use spin_sdk::redis_subscriber;

#[redis_subscriber]
async fn on_message(message: Vec<u8>) -> Result<(), String> {
    shop_wiring::services::order_events::<SpinP3>(&message).await
}
