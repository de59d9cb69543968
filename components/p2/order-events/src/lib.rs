//! The `order-events` component for WASIp2 (Spin 3.x's inbound Redis export,
//! `fermyon:spin/inbound-redis`): the same work as `components/order-events`,
//! through `shop-spin-p2`.

use shop_spin_p2::SpinP2;
use spin_sdk::redis_component;

#[redis_component]
async fn on_message(message: Vec<u8>) -> Result<(), String> {
    shop_wiring::services::order_events::<SpinP2>(&message).await
}
