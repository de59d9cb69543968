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

#[derive(Default)]
pub struct InventoryClient;

shop_wiring::inventory_import_conversions!(wit);

impl Inventory for InventoryClient {
    async fn get_product(&self, product_id: &str) -> Result<Option<CatalogProduct>, InventoryError> {
        wit::get_product(product_id.to_string()).await.map(|p| p.map(product_from_wit)).map_err(error_from_wit)
    }

    async fn reserve(&self, order_id: &str, items: &[ReservationItem], ttl_seconds: u32) -> Result<ReservationReceipt, InventoryError> {
        wit::reserve(order_id.to_string(), items_to_wit(items), ttl_seconds).await.map(receipt_from_wit).map_err(error_from_wit)
    }

    async fn release(&self, reservation_id: &str) -> Result<(), InventoryError> {
        wit::release(reservation_id.to_string()).await.map_err(error_from_wit)
    }

    async fn commit(&self, reservation_id: &str) -> Result<(), InventoryError> {
        wit::commit(reservation_id.to_string()).await.map_err(error_from_wit)
    }
}
