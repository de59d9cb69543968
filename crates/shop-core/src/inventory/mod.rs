//! The inventory service (`/inventory...`): the product catalog with stock,
//! and reservations of stock for orders.
//!
//! Key layout:
//! - `inventory:product:{product_id}`: product with `available` and `reserved` (compare-and-swap).
//! - `inventory:product_ids`: sorted list of product ids (at most [`catalog::MAX_PRODUCTS`]).
//! - `inventory:reservation:{reservation_id}`: the reservation and its status (compare-and-swap).
//! - `inventory:reservation_seq` / `inventory:reservation_at:{n}`: reservations in the order made,
//!   walked by the expiry sweep from `inventory:sweep_cursor`; the sequence
//!   is also `/metrics`' count of reservations created.
//! - `inventory:stats:reservations:{committed|released|expired}`: counters for `/metrics`.
//!
//! Decisions:
//! - `PUT /inventory/products/{id}` (admin) answers 201 when it created the
//!   product, 200 when it replaced it. `stock` sets the units free for new
//!   reservations (`available`); units held by live reservations stay in
//!   `reserved` and follow their reservation.
//! - Reservation routes are admin-only: the order flow reserves, commits
//!   and releases through the composed `shop:inventory` interface.
//! - Reservations expire after `ttl_seconds` (default 900, at most
//!   [`MAX_TTL_SECONDS`], over HTTP and the interface alike).
//!   An expired reservation gives its units back when it is next touched
//!   (read, commit, release), when a sweep reaches it (`POST /inventory/sweep`,
//!   admin, or [`InventoryService::sweep_expired`]), and a reservation that
//!   comes up short first sweeps once and tries again.
//! - Releasing is idempotent (200 with the reservation whatever its end),
//!   except that a committed reservation is never released (409
//!   `reservation_committed`): its units are sold. Only the interface's
//!   `release`, called when the reservation's order is cancelled, restocks
//!   them, once. Committing an expired or released reservation is 409.

mod catalog;
mod reservations;

pub use catalog::{MAX_PRODUCTS, Product};
pub use reservations::{Reservation, ReservationStatus, SweepReport};

use serde_json::{Value, json};

use self::catalog::{PRODUCT_IDS_KEY, ProductUpdate, load_product, put_product};
use self::reservations::{ENDINGS, Ending, SEQUENCE_KEY, end, move_all, record, stat_key, sweep, take_all};
use crate::http::{ApiError, ApiRequest, ApiResponse, Method, PageRequest, Query, allow, respond};
use crate::json::{Fields, is_identifier, parse_body};
use crate::kv::{Kv, StoreError, get_json, read_counter};
use crate::ops::{MetricFamily, MetricKind};
use crate::orders::{CatalogProduct, Inventory, InventoryError, ReservationItem, ReservationReceipt, item_field};
use crate::ports::{Clock, Random, random_id};
use crate::time::rfc3339;

/// Longest a reservation may hold stock: twice the order flow's 900 s, so
/// that nobody can lock the stock away for a day.
pub const MAX_TTL_SECONDS: u32 = 1800;

#[derive(Debug, Clone)]
pub struct InventoryConfig {
    pub admin_token: String,
    pub default_ttl_seconds: u32,
    pub max_ttl_seconds: u32,
    /// Reservations one sweep examines at most.
    pub sweep_batch: u64,
}

impl InventoryConfig {
    pub fn new(admin_token: impl Into<String>) -> InventoryConfig {
        InventoryConfig { admin_token: admin_token.into(), default_ttl_seconds: 900, max_ttl_seconds: MAX_TTL_SECONDS, sweep_batch: 200 }
    }
}

/// The inventory service over its ports.
#[derive(Clone)]
pub struct InventoryService<K, C, R> {
    kv: K,
    clock: C,
    random: R,
    config: InventoryConfig,
}

impl<K: Kv, C: Clock, R: Random> InventoryService<K, C, R> {
    pub fn new(kv: K, clock: C, random: R, config: InventoryConfig) -> Self {
        InventoryService { kv, clock, random, config }
    }

    /// Serves `/inventory...`.
    pub async fn handle(&self, request: ApiRequest) -> ApiResponse {
        respond(self.route(&request).await)
    }

    async fn route(&self, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
        request.check_body_size()?;
        match request.segments().as_slice() {
            ["inventory", "products"] => {
                allow(request, &[(Method::Get, "GET")])?;
                self.list_products(request).await
            }
            ["inventory", "products", product_id] => {
                match allow(request, &[(Method::Get, "GET"), (Method::Put, "PUT")])? {
                    Method::Put => {
                        request.require_admin(&self.config.admin_token)?;
                        self.put_product(product_id, request).await
                    }
                    _ => {
                        let product = self.product(product_id).await?.ok_or_else(|| ApiError::not_found("product"))?;
                        Ok(ApiResponse::json(200, &product))
                    }
                }
            }
            // Reservations are the order flow's business (through the composed
            // `shop:inventory` interface); over HTTP they are an admin's tool.
            ["inventory", "reservations"] => {
                allow(request, &[(Method::Post, "POST")])?;
                request.require_admin(&self.config.admin_token)?;
                self.create_reservation(request).await
            }
            ["inventory", "reservations", reservation_id] => {
                let ending = match allow(request, &[(Method::Get, "GET"), (Method::Delete, "DELETE")])? {
                    Method::Delete => Ending::Release,
                    _ => Ending::ExpireIfDue,
                };
                request.require_admin(&self.config.admin_token)?;
                self.end_reservation(reservation_id, ending).await
            }
            ["inventory", "reservations", reservation_id, "commit"] => {
                allow(request, &[(Method::Post, "POST")])?;
                request.require_admin(&self.config.admin_token)?;
                self.end_reservation(reservation_id, Ending::Commit).await
            }
            ["inventory", "sweep"] => {
                allow(request, &[(Method::Post, "POST")])?;
                request.require_admin(&self.config.admin_token)?;
                let report = self.sweep_expired().await.map_err(|error| error.to_api_error(None))?;
                Ok(ApiResponse::json(200, &report))
            }
            _ => Err(ApiError::no_route(&request.path)),
        }
    }

    async fn product(&self, product_id: &str) -> Result<Option<Product>, StoreError> {
        if !is_identifier(product_id) {
            return Ok(None);
        }
        load_product(&self.kv, product_id).await
    }

    async fn put_product(&self, product_id: &str, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
        if !is_identifier(product_id) {
            return Err(ApiError::validation("product_id", "product ids have 1 to 64 characters of [A-Za-z0-9_-]"));
        }
        let body = parse_body(&request.body)?;
        let fields = Fields::of_body(&body, &["name", "sku", "price", "currency", "stock"])?;
        let update = ProductUpdate {
            name: fields.text("name", 1, 200)?.to_string(),
            sku: fields.optional_text("sku", 1, 64)?.map(str::to_string),
            price: fields.integer("price", 0, i64::MAX)?,
            currency: fields.currency("currency")?.to_string(),
            stock: fields.integer("stock", 0, 1_000_000_000)?,
        };
        let (product, created) = put_product(&self.kv, product_id, &update).await?;
        Ok(ApiResponse::json(if created { 201 } else { 200 }, &product))
    }

    async fn list_products(&self, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
        let query = Query::parse(request, &["page", "page_size"])?;
        let page = PageRequest::from_query(&query)?;
        let ids: Vec<String> = get_json(&self.kv, PRODUCT_IDS_KEY).await?.unwrap_or_default();
        let mut products = Vec::new();
        for product_id in ids.iter().skip(page.skip() as usize).take(page.page_size as usize) {
            if let Some(product) = load_product(&self.kv, product_id).await? {
                products.push(json!(product));
            }
        }
        Ok(ApiResponse::json(200, &page.envelope("products", products, ids.len() as u64)))
    }

    async fn create_reservation(&self, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
        let body = parse_body(&request.body)?;
        let fields = Fields::of_body(&body, &["order_id", "items", "ttl_seconds"])?;
        let order_id = fields.identifier("order_id")?;
        let items = ReservationItem::parse_list(&fields, "items")?;
        let max_ttl = i64::from(self.config.max_ttl_seconds);
        let ttl_seconds = fields
            .optional_integer("ttl_seconds", 1, max_ttl)?
            .map_or(self.config.default_ttl_seconds, |ttl| ttl as u32);
        let reservation = self
            .reserve_stock(order_id, &items, ttl_seconds)
            .await
            .map_err(|error| error.to_api_error(error.product_id().and_then(|id| item_field(&items, id))))?;
        Ok(ApiResponse::json(201, &reservation_view(&reservation)))
    }

    async fn end_reservation(&self, reservation_id: &str, ending: Ending) -> Result<ApiResponse, ApiError> {
        if !is_identifier(reservation_id) {
            return Err(ApiError::not_found("reservation"));
        }
        let reservation = end(&self.kv, reservation_id, ending, self.clock.now_ms())
            .await
            .map_err(|error| error.to_api_error(None))?;
        Ok(ApiResponse::json(200, &reservation_view(&reservation)))
    }

    /// Reserves all items or none for `ttl_seconds`, at most the configured
    /// maximum (the interface's callers are capped like HTTP's).
    pub async fn reserve_stock(
        &self,
        order_id: &str,
        items: &[ReservationItem],
        ttl_seconds: u32,
    ) -> Result<Reservation, InventoryError> {
        let ttl_seconds = ttl_seconds.clamp(1, self.config.max_ttl_seconds);
        let mut taken = take_all(&self.kv, items).await;
        // Expired reservations may be sitting on the missing units.
        if matches!(taken, Err(InventoryError::InsufficientStock { .. })) && self.sweep_expired().await?.expired > 0 {
            taken = take_all(&self.kv, items).await;
        }
        taken?;
        let now_ms = self.clock.now_ms();
        let expires_at_ms = now_ms + u64::from(ttl_seconds) * 1000;
        let reservation = Reservation {
            reservation_id: random_id(&self.random, "res_"),
            order_id: order_id.to_string(),
            items: items.to_vec(),
            status: ReservationStatus::Held,
            expires_at_ms,
            expires_at: rfc3339(expires_at_ms),
            created_at: rfc3339(now_ms),
        };
        if let Err(error) = record(&self.kv, &reservation).await {
            // Best effort, as in `take_all`: a failed give-back only undersells.
            let _ = move_all(&self.kv, items, catalog::Movement::Unreserve).await;
            return Err(error.into());
        }
        Ok(reservation)
    }

    /// Expires due reservations among the next batch after the sweep cursor.
    pub async fn sweep_expired(&self) -> Result<SweepReport, InventoryError> {
        sweep(&self.kv, self.config.sweep_batch, self.clock.now_ms()).await
    }

    /// Reservation counters for `/metrics`.
    pub async fn metrics(&self) -> Result<Vec<MetricFamily>, StoreError> {
        let mut samples = vec![(vec![("event", "created".to_string())], read_counter(&self.kv, SEQUENCE_KEY).await?)];
        for outcome in ENDINGS {
            samples.push((vec![("event", outcome.to_string())], read_counter(&self.kv, &stat_key(outcome)).await?));
        }
        Ok(vec![MetricFamily::new(
            "shop_reservations_total",
            "Reservations created and ended, by event.",
            MetricKind::Counter,
            samples,
        )])
    }
}

/// A reservation as served: without the internal millisecond deadline.
fn reservation_view(reservation: &Reservation) -> Value {
    json!({
        "reservation_id": reservation.reservation_id,
        "order_id": reservation.order_id,
        "items": reservation.items,
        "status": reservation.status,
        "expires_at": reservation.expires_at,
        "created_at": reservation.created_at,
    })
}

impl<K: Kv, C: Clock, R: Random> Inventory for InventoryService<K, C, R> {
    async fn get_product(&self, product_id: &str) -> Result<Option<CatalogProduct>, InventoryError> {
        Ok(self.product(product_id).await?.map(|product| CatalogProduct {
            product_id: product.product_id,
            name: product.name,
            price: product.price,
            currency: product.currency,
        }))
    }

    async fn reserve(
        &self,
        order_id: &str,
        items: &[ReservationItem],
        ttl_seconds: u32,
    ) -> Result<ReservationReceipt, InventoryError> {
        let reservation = self.reserve_stock(order_id, items, ttl_seconds).await?;
        Ok(ReservationReceipt { reservation_id: reservation.reservation_id, expires_at: reservation.expires_at })
    }

    async fn release(&self, reservation_id: &str) -> Result<(), InventoryError> {
        end(&self.kv, reservation_id, Ending::OrderCancelled, self.clock.now_ms()).await.map(drop)
    }

    async fn commit(&self, reservation_id: &str) -> Result<(), InventoryError> {
        end(&self.kv, reservation_id, Ending::Commit, self.clock.now_ms()).await.map(drop)
    }
}
