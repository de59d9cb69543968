//! Product records: price, currency and the two stock figures.

use serde::{Deserialize, Serialize};

use crate::http::ApiError;
use crate::kv::{Change, Kv, StoreError, get_json, update_json};

/// Most products the catalog index holds; the product list reads them all.
pub const MAX_PRODUCTS: usize = 10_000;

pub const PRODUCT_IDS_KEY: &str = "inventory:product_ids";

pub fn product_key(product_id: &str) -> String {
    format!("inventory:product:{product_id}")
}

/// A product as stored and as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub product_id: String,
    pub name: String,
    pub sku: Option<String>,
    /// Minor units.
    pub price: i64,
    pub currency: String,
    /// Units that can still be reserved.
    pub available: i64,
    /// Units held by live reservations.
    pub reserved: i64,
}

/// A product's fields from `PUT /inventory/products/{id}`.
pub struct ProductUpdate {
    pub name: String,
    pub sku: Option<String>,
    pub price: i64,
    pub currency: String,
    /// New `available` figure.
    pub stock: i64,
}

pub async fn load_product(kv: &impl Kv, product_id: &str) -> Result<Option<Product>, StoreError> {
    get_json(kv, &product_key(product_id)).await
}

/// Creates or replaces a product; true when it is new. Replacing keeps
/// `reserved`: live reservations still hold their units and give them back
/// on release, so `stock` sets only the units free for new reservations.
pub async fn put_product(kv: &impl Kv, product_id: &str, update: &ProductUpdate) -> Result<(Product, bool), ApiError> {
    add_to_index(kv, product_id).await?;
    update_json(kv, &product_key(product_id), |current: Option<Product>| {
        let created = current.is_none();
        let product = Product {
            product_id: product_id.to_string(),
            name: update.name.clone(),
            sku: update.sku.clone(),
            price: update.price,
            currency: update.currency.clone(),
            available: update.stock,
            reserved: current.map_or(0, |existing| existing.reserved),
        };
        Ok::<_, StoreError>(Change::Write(product.clone(), (product, created)))
    })
    .await
    .map_err(ApiError::from)
}

/// Records the id in the sorted product index (before the product itself is
/// written, so a listed id whose product is missing is only skipped).
async fn add_to_index(kv: &impl Kv, product_id: &str) -> Result<(), ApiError> {
    update_json(kv, PRODUCT_IDS_KEY, |current: Option<Vec<String>>| {
        let mut ids = current.unwrap_or_default();
        match ids.binary_search_by(|id| id.as_str().cmp(product_id)) {
            Ok(_) => Ok(Change::Keep(())),
            Err(_) if ids.len() >= MAX_PRODUCTS => Err(ApiError::new(
                409,
                "catalog_full",
                format!("the catalog holds at most {MAX_PRODUCTS} products"),
            )),
            Err(position) => {
                ids.insert(position, product_id.to_string());
                Ok(Change::Write(ids, ()))
            }
        }
    })
    .await
}

/// How a reservation's units move between the stock figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movement {
    /// Reserved units go back to available (release or expiry of a held reservation).
    Unreserve,
    /// Reserved units are sold (commit).
    Consume,
    /// Sold units come back (release of a committed reservation: a cancelled sale).
    Restock,
}

/// Applies a movement of `quantity` units to a product. A product that no
/// longer exists has nothing to move.
pub async fn move_units(kv: &impl Kv, product_id: &str, quantity: i64, movement: Movement) -> Result<(), StoreError> {
    update_json(kv, &product_key(product_id), |current: Option<Product>| {
        let Some(mut product) = current else {
            return Ok(Change::Keep(()));
        };
        match movement {
            Movement::Unreserve => {
                product.reserved -= quantity;
                product.available += quantity;
            }
            Movement::Consume => product.reserved -= quantity,
            Movement::Restock => product.available += quantity,
        }
        Ok::<_, StoreError>(Change::Write(product, ()))
    })
    .await
}
