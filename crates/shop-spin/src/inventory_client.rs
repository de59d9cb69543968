//! The `shop:inventory` import as the order side's `Inventory` port. At load
//! time the host (or Spin) plugs the `inventory` component into this import.

use shop_core::orders::{CatalogProduct, Inventory, InventoryError, ReservationItem, ReservationReceipt};

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "inventory-consumer",
    path: "../../wit",
    generate_all,
});

use shop::inventory::inventory as wit;

pub struct InventoryClient;

fn error(e: wit::Error) -> InventoryError {
    match e {
        wit::Error::UnknownProduct(id) => InventoryError::UnknownProduct(id),
        wit::Error::InsufficientStock(s) => {
            InventoryError::InsufficientStock { product_id: s.product_id, requested: s.requested, available: s.available }
        }
        wit::Error::ReservationNotFound(id) => InventoryError::ReservationNotFound(id),
        wit::Error::ReservationExpired(id) => InventoryError::ReservationExpired(id),
        wit::Error::ReservationReleased(id) => InventoryError::ReservationReleased(id),
        wit::Error::ReservationCommitted(id) => InventoryError::ReservationCommitted(id),
        wit::Error::Unavailable(message) => InventoryError::Unavailable(message),
    }
}

impl Inventory for InventoryClient {
    async fn get_product(&self, product_id: &str) -> Result<Option<CatalogProduct>, InventoryError> {
        let product = wit::get_product(product_id.to_string()).await.map_err(error)?;
        Ok(product.map(|p| CatalogProduct { product_id: p.product_id, name: p.name, price: p.price, currency: p.currency }))
    }

    async fn reserve(&self, order_id: &str, items: &[ReservationItem], ttl_seconds: u32) -> Result<ReservationReceipt, InventoryError> {
        let items = items.iter().map(|i| wit::ReservationItem { product_id: i.product_id.clone(), quantity: i.quantity }).collect();
        let r = wit::reserve(order_id.to_string(), items, ttl_seconds).await.map_err(error)?;
        Ok(ReservationReceipt { reservation_id: r.reservation_id, expires_at: r.expires_at })
    }

    async fn release(&self, reservation_id: &str) -> Result<(), InventoryError> {
        wit::release(reservation_id.to_string()).await.map_err(error)
    }

    async fn commit(&self, reservation_id: &str) -> Result<(), InventoryError> {
        wit::commit(reservation_id.to_string()).await.map_err(error)
    }
}
