//! What the order service needs from the inventory service. The inventory
//! service implements it directly (native tests, one store); the order
//! component implements it by calling the inventory component's WIT export.

use crate::http::ApiError;
use crate::json::Fields;
use crate::kv::StoreError;

/// Most lines in one order or reservation.
pub const MAX_ITEMS: usize = 50;
/// Most units of one line.
pub const MAX_QUANTITY: i64 = 1000;

/// Catalog facts an order is priced from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogProduct {
    pub product_id: String,
    pub name: String,
    /// Minor units.
    pub price: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReservationItem {
    pub product_id: String,
    pub quantity: i64,
}

impl ReservationItem {
    /// Reads `name` as 1 to [`MAX_ITEMS`] objects `{product_id, quantity}`.
    pub fn parse_list(fields: &Fields<'_>, name: &str) -> Result<Vec<ReservationItem>, ApiError> {
        fields
            .objects(name, 1, MAX_ITEMS, &["product_id", "quantity"])?
            .iter()
            .map(ReservationItem::parse)
            .collect()
    }

    /// Reads `product_id` and `quantity` (1 to [`MAX_QUANTITY`]) of one object.
    pub fn parse(fields: &Fields<'_>) -> Result<ReservationItem, ApiError> {
        Ok(ReservationItem {
            product_id: fields.identifier("product_id")?.to_string(),
            quantity: fields.integer("quantity", 1, MAX_QUANTITY)?,
        })
    }
}

/// A reservation made for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationReceipt {
    pub reservation_id: String,
    /// RFC 3339.
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryError {
    UnknownProduct(String),
    InsufficientStock { product_id: String, requested: i64, available: i64 },
    ReservationNotFound(String),
    /// Held past its time: its stock went back.
    ReservationExpired(String),
    ReservationReleased(String),
    /// Its units are sold; only the cancellation of its order brings them back.
    ReservationCommitted(String),
    Unavailable(String),
}

impl From<StoreError> for InventoryError {
    fn from(error: StoreError) -> InventoryError {
        InventoryError::Unavailable(error.message)
    }
}

impl InventoryError {
    /// The HTTP answer, naming `field` (the request field holding the
    /// product at fault) where one is at fault.
    pub fn to_api_error(&self, field: Option<String>) -> ApiError {
        let error = match self {
            InventoryError::UnknownProduct(product_id) => {
                ApiError::new(422, "unknown_product", format!("product {product_id} does not exist"))
            }
            InventoryError::InsufficientStock { product_id, requested, available } => ApiError::new(
                409,
                "insufficient_stock",
                format!("product {product_id}: {requested} requested, {available} available"),
            ),
            InventoryError::ReservationNotFound(_) => ApiError::not_found("reservation"),
            InventoryError::ReservationExpired(id) => {
                ApiError::new(409, "reservation_expired", format!("reservation {id} expired"))
            }
            InventoryError::ReservationReleased(id) => {
                ApiError::new(409, "reservation_released", format!("reservation {id} was released"))
            }
            InventoryError::ReservationCommitted(id) => ApiError::new(
                409,
                "reservation_committed",
                format!("reservation {id} is committed: its units are sold and cannot be released"),
            ),
            InventoryError::Unavailable(message) => ApiError::new(503, "store_unavailable", message.clone()),
        };
        match field {
            Some(field) => error.with_field(field),
            None => error,
        }
    }

    /// The product this error is about, if any.
    pub fn product_id(&self) -> Option<&str> {
        match self {
            InventoryError::UnknownProduct(product_id)
            | InventoryError::InsufficientStock { product_id, .. } => Some(product_id),
            _ => None,
        }
    }
}

#[allow(async_fn_in_trait, reason = "components are single-threaded; no Send bound is wanted")]
pub trait Inventory {
    async fn get_product(&self, product_id: &str) -> Result<Option<CatalogProduct>, InventoryError>;
    /// Reserves every item or none.
    async fn reserve(
        &self,
        order_id: &str,
        items: &[ReservationItem],
        ttl_seconds: u32,
    ) -> Result<ReservationReceipt, InventoryError>;
    /// The order was cancelled: gives the stock back (a committed
    /// reservation is restocked, once); repeating it changes nothing.
    async fn release(&self, reservation_id: &str) -> Result<(), InventoryError>;
    /// Makes the reservation final (the stock is sold); repeating it changes nothing.
    async fn commit(&self, reservation_id: &str) -> Result<(), InventoryError>;
}

/// The request field naming the first item with `product_id`, e.g. `items[2].product_id`.
pub fn item_field(items: &[ReservationItem], product_id: &str) -> Option<String> {
    items
        .iter()
        .position(|item| item.product_id == product_id)
        .map(|index| format!("items[{index}].product_id"))
}
