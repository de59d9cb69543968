//! The `shop:inventory` interface in Rust, for both of its WIT variants
//! (`wit/inventory.wit`, async, for WASIp3; `wit/p2/inventory.wit`,
//! synchronous, for WASIp2). Each build generates its own bindings, whose
//! types differ only in name, so the conversions between them and
//! shop-core's are written once here as macros, expanded next to each
//! build's bindings with the name of its generated module.

/// For the importing side (`order`, `order-events`): expands to
/// `error_from_wit`, `product_from_wit`, `items_to_wit` and
/// `receipt_from_wit` over the bindings module `$wit`.
#[macro_export]
macro_rules! inventory_import_conversions {
    ($wit:ident) => {
        fn error_from_wit(e: $wit::Error) -> $crate::__shop_core::orders::InventoryError {
            use $crate::__shop_core::orders::InventoryError;
            match e {
                $wit::Error::UnknownProduct(id) => InventoryError::UnknownProduct(id),
                $wit::Error::InsufficientStock(s) => {
                    InventoryError::InsufficientStock { product_id: s.product_id, requested: s.requested, available: s.available }
                }
                $wit::Error::ReservationNotFound(id) => InventoryError::ReservationNotFound(id),
                $wit::Error::ReservationExpired(id) => InventoryError::ReservationExpired(id),
                $wit::Error::ReservationReleased(id) => InventoryError::ReservationReleased(id),
                $wit::Error::ReservationCommitted(id) => InventoryError::ReservationCommitted(id),
                $wit::Error::Unavailable(message) => InventoryError::Unavailable(message),
            }
        }

        fn product_from_wit(p: $wit::Product) -> $crate::__shop_core::orders::CatalogProduct {
            $crate::__shop_core::orders::CatalogProduct { product_id: p.product_id, name: p.name, price: p.price, currency: p.currency }
        }

        fn items_to_wit(items: &[$crate::__shop_core::orders::ReservationItem]) -> Vec<$wit::ReservationItem> {
            items.iter().map(|i| $wit::ReservationItem { product_id: i.product_id.clone(), quantity: i.quantity }).collect()
        }

        fn receipt_from_wit(r: $wit::Reservation) -> $crate::__shop_core::orders::ReservationReceipt {
            $crate::__shop_core::orders::ReservationReceipt { reservation_id: r.reservation_id, expires_at: r.expires_at }
        }
    };
}

/// For the exporting side (`inventory`): expands to one async function per
/// interface function (`get_product`, `reserve`, `release`, `commit`), each
/// running the inventory service of runtime `$runtime` and answering in the
/// types of the bindings module `$wit`. The component's `Guest` impl awaits
/// them (WASIp3) or runs them to completion (WASIp2).
#[macro_export]
macro_rules! inventory_export_calls {
    ($wit:ident, $runtime:ty) => {
        /// The interface has no admin routes, so its calls need no admin token.
        async fn interface_service() -> Result<$crate::services::Inventory<$runtime>, $wit::Error> {
            $crate::services::inventory_service::<$runtime>(String::new()).await.map_err($wit::Error::Unavailable)
        }

        fn error_to_wit(e: $crate::__shop_core::orders::InventoryError) -> $wit::Error {
            use $crate::__shop_core::orders::InventoryError;
            match e {
                InventoryError::UnknownProduct(id) => $wit::Error::UnknownProduct(id),
                InventoryError::InsufficientStock { product_id, requested, available } => {
                    $wit::Error::InsufficientStock($wit::Shortage { product_id, requested, available })
                }
                InventoryError::ReservationNotFound(id) => $wit::Error::ReservationNotFound(id),
                InventoryError::ReservationExpired(id) => $wit::Error::ReservationExpired(id),
                InventoryError::ReservationReleased(id) => $wit::Error::ReservationReleased(id),
                InventoryError::ReservationCommitted(id) => $wit::Error::ReservationCommitted(id),
                InventoryError::Unavailable(message) => $wit::Error::Unavailable(message),
            }
        }

        async fn get_product(product_id: String) -> Result<Option<$wit::Product>, $wit::Error> {
            use $crate::__shop_core::orders::Inventory;
            let product = interface_service().await?.get_product(&product_id).await.map_err(error_to_wit)?;
            Ok(product.map(|p| $wit::Product { product_id: p.product_id, name: p.name, price: p.price, currency: p.currency }))
        }

        async fn reserve(order_id: String, items: Vec<$wit::ReservationItem>, ttl_seconds: u32) -> Result<$wit::Reservation, $wit::Error> {
            use $crate::__shop_core::orders::{Inventory, ReservationItem};
            let items: Vec<ReservationItem> =
                items.into_iter().map(|i| ReservationItem { product_id: i.product_id, quantity: i.quantity }).collect();
            let receipt = interface_service().await?.reserve(&order_id, &items, ttl_seconds).await.map_err(error_to_wit)?;
            Ok($wit::Reservation { reservation_id: receipt.reservation_id, expires_at: receipt.expires_at })
        }

        async fn release(reservation_id: String) -> Result<(), $wit::Error> {
            use $crate::__shop_core::orders::Inventory;
            interface_service().await?.release(&reservation_id).await.map_err(error_to_wit)
        }

        async fn commit(reservation_id: String) -> Result<(), $wit::Error> {
            use $crate::__shop_core::orders::Inventory;
            interface_service().await?.commit(&reservation_id).await.map_err(error_to_wit)
        }
    };
}
