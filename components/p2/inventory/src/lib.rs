//! The `inventory` component for WASIp2: `/inventory/...` over
//! `wasi:http/incoming-handler@0.2.0`, and the synchronous
//! `shop:inventory/inventory` export (`wit/p2`) that the WASIp2 `order` and
//! `order-events` import. The same work as `components/inventory`, through
//! `shop-spin-p2`.

use shop_spin_p2::{SpinP2, serve};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "inventory-provider",
    path: "../../../wit/p2",
    generate_all,
});

use exports::shop::inventory::inventory as wit;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    serve(request, out, shop_wiring::services::inventory::<SpinP2>).await
}

struct Provider;
export!(Provider);

shop_wiring::inventory_export_calls!(wit, SpinP2);

/// Each call runs to completion on spin-sdk's executor: the interface is
/// synchronous on WASIp2, the service async.
impl wit::Guest for Provider {
    fn get_product(product_id: String) -> Result<Option<wit::Product>, wit::Error> {
        spin_sdk::http::run(get_product(product_id))
    }

    fn reserve(order_id: String, items: Vec<wit::ReservationItem>, ttl_seconds: u32) -> Result<wit::Reservation, wit::Error> {
        spin_sdk::http::run(reserve(order_id, items, ttl_seconds))
    }

    fn release(reservation_id: String) -> Result<(), wit::Error> {
        spin_sdk::http::run(release(reservation_id))
    }

    fn commit(reservation_id: String) -> Result<(), wit::Error> {
        spin_sdk::http::run(commit(reservation_id))
    }
}
