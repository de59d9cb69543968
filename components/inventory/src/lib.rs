//! The inventory component: `/inventory/...` over HTTP, and the
//! `shop:inventory/inventory` export that `order` and `order-events` import.

use shop_core::inventory::{InventoryConfig, InventoryService};
use shop_core::orders::{Inventory, InventoryError, ReservationItem};
use shop_spin::{Reply, SpinKv, WasiClock, WasiRandom, api_request, response, unavailable, variable};
use spin_sdk::http::Request;
use spin_sdk::http_service;

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "inventory-provider",
    path: "../../wit",
    generate_all,
});

use exports::shop::inventory::inventory as wit;

type Service = InventoryService<SpinKv, WasiClock, WasiRandom>;

async fn service(admin_token: String) -> Result<Service, String> {
    let kv = SpinKv::open_default().await.map_err(|e| e.message)?;
    Ok(InventoryService::new(kv, WasiClock, WasiRandom, InventoryConfig::new(admin_token)))
}

#[http_service]
async fn handle(request: Request) -> Reply {
    let request = match api_request(request).await {
        Ok(r) => r,
        Err(e) => return response(e),
    };
    let token = match variable("admin_token").await {
        Ok(t) => t,
        Err(e) => return unavailable(e),
    };
    match service(token).await {
        Ok(service) => response(service.handle(request).await),
        Err(e) => unavailable(e),
    }
}

struct Provider;
export!(Provider);

/// The interface has no admin routes, so its calls need no admin token.
async fn interface_service() -> Result<Service, wit::Error> {
    service(String::new()).await.map_err(wit::Error::Unavailable)
}

fn to_wit(e: InventoryError) -> wit::Error {
    match e {
        InventoryError::UnknownProduct(id) => wit::Error::UnknownProduct(id),
        InventoryError::InsufficientStock { product_id, requested, available } => {
            wit::Error::InsufficientStock(wit::Shortage { product_id, requested, available })
        }
        InventoryError::ReservationNotFound(id) => wit::Error::ReservationNotFound(id),
        InventoryError::ReservationExpired(id) => wit::Error::ReservationExpired(id),
        InventoryError::ReservationReleased(id) => wit::Error::ReservationReleased(id),
        InventoryError::ReservationCommitted(id) => wit::Error::ReservationCommitted(id),
        InventoryError::Unavailable(message) => wit::Error::Unavailable(message),
    }
}

impl wit::Guest for Provider {
    async fn get_product(product_id: String) -> Result<Option<wit::Product>, wit::Error> {
        let product = interface_service().await?.get_product(&product_id).await.map_err(to_wit)?;
        Ok(product.map(|p| wit::Product { product_id: p.product_id, name: p.name, price: p.price, currency: p.currency }))
    }

    async fn reserve(order_id: String, items: Vec<wit::ReservationItem>, ttl_seconds: u32) -> Result<wit::Reservation, wit::Error> {
        let items: Vec<ReservationItem> =
            items.into_iter().map(|i| ReservationItem { product_id: i.product_id, quantity: i.quantity }).collect();
        let receipt = interface_service().await?.reserve(&order_id, &items, ttl_seconds).await.map_err(to_wit)?;
        Ok(wit::Reservation { reservation_id: receipt.reservation_id, expires_at: receipt.expires_at })
    }

    async fn release(reservation_id: String) -> Result<(), wit::Error> {
        interface_service().await?.release(&reservation_id).await.map_err(to_wit)
    }

    async fn commit(reservation_id: String) -> Result<(), wit::Error> {
        interface_service().await?.commit(&reservation_id).await.map_err(to_wit)
    }
}
