//! The `shop:inventory` import, synchronous variant (`wit/p2`), as the order
//! side's `Inventory` port. At load time Spin plugs the WASIp2 `inventory`
//! component into this import (`[component.<id>.dependencies]`).

use shop_core::orders::{CatalogProduct, Inventory, InventoryError, ReservationItem, ReservationReceipt};

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "inventory-consumer",
    path: "../../wit/p2",
    generate_all,
});

use shop::inventory::inventory as wit;

#[derive(Default)]
pub struct InventoryClient;

shop_wiring::inventory_import_conversions!(wit);

impl Inventory for InventoryClient {
    async fn get_product(&self, product_id: &str) -> Result<Option<CatalogProduct>, InventoryError> {
        wit::get_product(product_id).map(|p| p.map(product_from_wit)).map_err(error_from_wit)
    }

    async fn reserve(&self, order_id: &str, items: &[ReservationItem], ttl_seconds: u32) -> Result<ReservationReceipt, InventoryError> {
        wit::reserve(order_id, &items_to_wit(items), ttl_seconds).map(receipt_from_wit).map_err(error_from_wit)
    }

    async fn release(&self, reservation_id: &str) -> Result<(), InventoryError> {
        wit::release(reservation_id).map_err(error_from_wit)
    }

    async fn commit(&self, reservation_id: &str) -> Result<(), InventoryError> {
        wit::commit(reservation_id).map_err(error_from_wit)
    }
}
