//! The inventory component: `/inventory/...` over HTTP, and the
//! `shop:inventory/inventory` export that `order` and `order-events` import.

use shop_spin::{Reply, SpinP3, serve};
use spin_sdk::http::Request;
use spin_sdk::http_service;

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "inventory-provider",
    path: "../../wit",
    generate_all,
});

use exports::shop::inventory::inventory as wit;

#[http_service]
async fn handle(request: Request) -> Reply {
    serve(request, shop_wiring::services::inventory::<SpinP3>).await
}

struct Provider;
export!(Provider);

shop_wiring::inventory_export_calls!(wit, SpinP3);

impl wit::Guest for Provider {
    async fn get_product(product_id: String) -> Result<Option<wit::Product>, wit::Error> {
        get_product(product_id).await
    }

    async fn reserve(order_id: String, items: Vec<wit::ReservationItem>, ttl_seconds: u32) -> Result<wit::Reservation, wit::Error> {
        reserve(order_id, items, ttl_seconds).await
    }

    async fn release(reservation_id: String) -> Result<(), wit::Error> {
        release(reservation_id).await
    }

    async fn commit(reservation_id: String) -> Result<(), wit::Error> {
        commit(reservation_id).await
    }
}
