//! Charges orders on `orders.payment_requested` (orders placed with a payment
//! token) and refunds on `orders.cancelled`, through the same path as
//! `POST /payments`, so the same event twice charges once.

use shop_spin::SpinP3;
use spin_sdk::redis_subscriber;

#[redis_subscriber]
async fn on_message(message: Vec<u8>) -> Result<(), String> {
    shop_wiring::services::payment_worker::<SpinP3>(&message).await
}
