//! The order service (`/orders...`) and its handlers for payment events.
//!
//! Routes:
//! - `POST /orders`: place an order (optional `Idempotency-Key`).
//! - `GET /orders?user_id=&status=&page=&page_size=`: newest first.
//! - `GET /orders/summary`, `GET /orders/{id}`.
//! - `PUT /orders/{id}/status` (admin), `DELETE /orders/{id}?reason=`.
//! - `POST /orders/reconcile?limit=` and `POST /orders/reindex?limit=` (admin;
//!   a reindex works through `limit` orders per call, 1000 by default).
//!
//! The key layout is described in [`index`]; idempotency claims live at
//! `orders:idem:{key}` and processed-event markers at `orders:event:{event_id}`.
//!
//! Decisions:
//! - Unknown JSON members and query parameters are refused with 400 naming
//!   them, so that a misspelt optional field is not silently dropped.
//! - An order is placed in one request: priced from the catalog, its stock
//!   reserved, and answered 201 in status `confirmed` with payment `pending`.
//! - With an `Idempotency-Key`, validation errors (400) are not remembered;
//!   every other answer is, and replayed with its status and body. A retry
//!   while the first request is still running gets 409
//!   `idempotency_key_in_progress`.
//! - Customer routes (`POST /orders`, `GET /orders`, `GET|DELETE
//!   /orders/{id}`) take a bearer JWT ([`crate::auth`]): a customer places,
//!   lists, reads and cancels its own orders only (`user_id` comes from the
//!   token; another user's order is 404). The admin token works there too
//!   and acts for any user. `GET /orders/summary` is for admins.
//! - Summary: `pending_orders` counts `pending` and `confirmed` (not yet
//!   paid); `completed_orders` counts `delivered`; revenue counts orders that
//!   are `paid`, `processing`, `shipped` or `delivered`. Amounts are never
//!   added across currencies: `total_revenue` and `average_order_value`
//!   (rounded down) are for the configured reporting currency, and
//!   `revenue_by_currency` lists every currency.
//! - Reconcile: open orders not updated for `stuck_after_ms` are driven on:
//!   undelivered events are sent again, stock is committed or released to
//!   match the status, orders awaiting payment with a token get
//!   `orders.payment_requested` again (the payment worker charges once per
//!   order), and orders awaiting payment without a token for longer than
//!   `payment_timeout_ms` (by then their reservation has expired) are cancelled.
//!   It also replays the order journal and the list of orders placed
//!   ([`index`]): index updates whose writer stopped right after writing the
//!   order are finished, once.

mod create;
mod index;
mod inventory_port;
mod lifecycle;
mod model;

pub use index::{CLAIM_LEASE_MS, CurrencyRevenue, IndexedState, ListFilter, PendingIndex, ReindexReport};
pub use inventory_port::{
    CatalogProduct, Inventory, InventoryError, MAX_ITEMS, MAX_QUANTITY, ReservationItem, ReservationReceipt, item_field,
};
pub use lifecycle::ReconcileReport;
pub use model::{Order, OrderItem, OrderRecord, OrderStatus, StockStep};

#[cfg(any(test, feature = "testing"))]
pub use index::{SEQUENCE_KEY, order_key, position_key};

use serde_json::{Value, json};

use self::index::{Indexes, Totals, reindex};
use crate::auth::{Caller, CustomerAuth};
use crate::events::{
    Event, EventError, EventOutcome, PAYMENTS_COMPLETED, PAYMENTS_FAILED, PAYMENTS_REFUNDED, PaymentCompletedData, PaymentFailedData,
    PaymentRefundedData,
};
use crate::http::{ApiError, ApiRequest, ApiResponse, Method, PageRequest, Query, allow, respond};
use crate::idempotency;
use crate::json::is_identifier;
use crate::kv::{Kv, StoreError, get_json};
use crate::ops::{MetricFamily, MetricKind};
use crate::ports::{Clock, Publisher, Random, random_id};
use crate::time::rfc3339;

const SOURCE: &str = "orders";

/// The stored order (None for ids that cannot be order ids). The payment
/// service reads it to check a charge against the order before making it.
pub async fn load_order(kv: &impl Kv, order_id: &str) -> Result<Option<OrderRecord>, StoreError> {
    if !is_identifier(order_id) {
        return Ok(None);
    }
    get_json(kv, &index::order_key(order_id)).await
}

/// The payment events the order service consumes.
enum PaymentEvent {
    Completed(PaymentCompletedData),
    Failed(PaymentFailedData),
    Refunded(PaymentRefundedData),
}

#[derive(Debug, Clone)]
pub struct OrdersConfig {
    pub admin_token: String,
    /// How customer routes (placing, listing, reading, cancelling orders)
    /// know who is asking; admins use the admin token there too.
    pub customer_auth: CustomerAuth,
    pub reservation_ttl_seconds: u32,
    /// How long a request holding an idempotency key keeps it from retries.
    pub idempotency_lease_ms: u64,
    /// How long an idempotency record and a processed-event marker live.
    pub idempotency_ttl_ms: u64,
    /// An open order untouched this long is driven on by the reconcile.
    pub stuck_after_ms: u64,
    /// An order without a payment token is cancelled by the reconcile after this long.
    pub payment_timeout_ms: u64,
    /// Open orders one reconcile looks at when the request names no `limit`.
    pub reconcile_batch: u64,
    /// Currency of the summary's `total_revenue` and `average_order_value`.
    pub reporting_currency: String,
}

impl OrdersConfig {
    pub fn new(admin_token: impl Into<String>) -> OrdersConfig {
        OrdersConfig {
            admin_token: admin_token.into(),
            customer_auth: CustomerAuth::Unconfigured,
            reservation_ttl_seconds: 900,
            idempotency_lease_ms: 30_000,
            idempotency_ttl_ms: crate::idempotency::DEFAULT_TTL_MS,
            stuck_after_ms: 300_000,
            payment_timeout_ms: 900_000,
            reconcile_batch: 100,
            reporting_currency: "USD".to_string(),
        }
    }
}

/// The order service over its ports.
#[derive(Clone)]
pub struct OrderService<K, I, P, C, R> {
    kv: K,
    inventory: I,
    publisher: P,
    clock: C,
    random: R,
    config: OrdersConfig,
}

impl<K: Kv, I: Inventory, P: Publisher, C: Clock, R: Random> OrderService<K, I, P, C, R> {
    pub fn new(kv: K, inventory: I, publisher: P, clock: C, random: R, config: OrdersConfig) -> Self {
        OrderService { kv, inventory, publisher, clock, random, config }
    }

    /// Serves `/orders...`.
    pub async fn handle(&self, request: ApiRequest) -> ApiResponse {
        respond(self.route(&request).await)
    }

    async fn route(&self, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
        request.check_body_size()?;
        match request.segments().as_slice() {
            ["orders"] => match allow(request, &[(Method::Get, "GET"), (Method::Post, "POST")])? {
                Method::Post => self.create_order(request, self.caller(request)?).await,
                _ => self.list_orders(request, self.caller(request)?).await,
            },
            // Matched before `{id}`: these words are never order ids.
            ["orders", "summary"] => {
                allow(request, &[(Method::Get, "GET")])?;
                if let Caller::Customer { .. } = self.caller(request)? {
                    return Err(ApiError::new(403, "forbidden", "the summary covers every user's orders: admins only"));
                }
                self.summary().await
            }
            ["orders", "reconcile"] => {
                allow(request, &[(Method::Post, "POST")])?;
                request.require_admin(&self.config.admin_token)?;
                let query = Query::parse(request, &["limit"])?;
                let limit = query.integer("limit", 1, 1000, self.config.reconcile_batch)?;
                Ok(ApiResponse::json(200, &self.reconcile(limit as usize).await?))
            }
            ["orders", "reindex"] => {
                allow(request, &[(Method::Post, "POST")])?;
                request.require_admin(&self.config.admin_token)?;
                let query = Query::parse(request, &["limit"])?;
                let batch = query.integer("limit", 1, 10_000, 1000)?;
                Ok(ApiResponse::json(200, &reindex(&self.kv, batch).await?))
            }
            ["orders", order_id] => match allow(request, &[(Method::Get, "GET"), (Method::Delete, "DELETE")])? {
                Method::Delete => self.cancel_order(order_id, request, self.caller(request)?).await,
                _ => {
                    let caller = self.caller(request)?;
                    // Someone else's order is not found, as if it did not exist.
                    let record = self
                        .load(order_id)
                        .await?
                        .filter(|record| caller.may_access(record.order.user_id))
                        .ok_or_else(|| ApiError::not_found("order"))?;
                    Ok(ApiResponse::json(200, &record.order))
                }
            },
            ["orders", order_id, "status"] => {
                allow(request, &[(Method::Put, "PUT")])?;
                request.require_admin(&self.config.admin_token)?;
                self.put_status(order_id, request).await
            }
            _ => Err(ApiError::no_route(&request.path)),
        }
    }

    /// Who sent a request to a customer route (401 without a valid token).
    fn caller(&self, request: &ApiRequest) -> Result<Caller, ApiError> {
        self.config.customer_auth.caller(request, &self.config.admin_token, self.clock.now_ms())
    }

    async fn load(&self, order_id: &str) -> Result<Option<OrderRecord>, StoreError> {
        load_order(&self.kv, order_id).await
    }

    /// An event from this service, stamped now with a fresh id.
    fn event(&self, event_type: &str, data: &impl serde::Serialize) -> Event {
        let event_id = random_id(&self.random, "evt_");
        Event::new(event_id, event_type, rfc3339(self.clock.now_ms()), SOURCE, data)
    }

    async fn list_orders(&self, request: &ApiRequest, caller: Caller) -> Result<ApiResponse, ApiError> {
        let query = Query::parse(request, &["user_id", "status", "page", "page_size"])?;
        let named = match query.text("user_id") {
            Some(_) => Some(query.integer("user_id", 1, i64::MAX as u64, 1)?),
            None => None,
        };
        // A customer lists its own orders only.
        let user_id = caller.user_id(named, "user_id")?;
        let status = match query.text("status") {
            Some(name) => Some(OrderStatus::parse(name).ok_or_else(|| {
                let names: Vec<&str> = OrderStatus::ALL.iter().map(|status| status.name()).collect();
                ApiError::validation("status", format!("status must be one of {}", names.join(", ")))
            })?),
            None => None,
        };
        let page = PageRequest::from_query(&query)?;
        let (records, total) = Indexes::live(&self.kv).await?.page(ListFilter { user_id, status }, page).await?;
        let orders: Vec<Value> = records.iter().map(|record| json!(record.order)).collect();
        Ok(ApiResponse::json(200, &page.envelope("orders", orders, total)))
    }

    /// Order counts and revenue from the counters (constant store reads).
    async fn summary(&self) -> Result<ApiResponse, ApiError> {
        let totals: Totals = Indexes::live(&self.kv).await?.totals().await?;
        let total_orders: i64 = totals.by_status.iter().map(|(_, count)| count).sum();
        let reporting = totals.revenue.iter().find(|revenue| revenue.currency == self.config.reporting_currency);
        Ok(ApiResponse::json(
            200,
            &json!({
                "total_orders": total_orders,
                "pending_orders": totals.count(OrderStatus::Pending) + totals.count(OrderStatus::Confirmed),
                "completed_orders": totals.count(OrderStatus::Delivered),
                "cancelled_orders": totals.count(OrderStatus::Cancelled),
                "refunded_orders": totals.count(OrderStatus::Refunded),
                "currency": self.config.reporting_currency,
                "total_revenue": reporting.map_or(0, |revenue| revenue.total_revenue),
                "average_order_value": reporting.map_or(0, |revenue| revenue.average_order_value),
                "revenue_by_currency": totals.revenue,
            }),
        ))
    }

    /// Handles `payments.completed`, `payments.failed` and `payments.refunded` (the Redis-triggered
    /// component passes the raw payload). Repeats change nothing.
    pub async fn handle_event(&self, payload: &[u8]) -> Result<EventOutcome, EventError> {
        let event = Event::parse(payload)?;
        if event.event_id.is_empty() || event.event_id.len() > 128 {
            return Err(EventError::Malformed("event_id must have 1 to 128 characters".to_string()));
        }
        // Parsed before anything is read or written: garbage changes nothing.
        let payment = match event.event_type.as_str() {
            PAYMENTS_COMPLETED => PaymentEvent::Completed(event.data()?),
            PAYMENTS_FAILED => PaymentEvent::Failed(event.data()?),
            PAYMENTS_REFUNDED => PaymentEvent::Refunded(event.data()?),
            other => return Err(EventError::UnknownType(other.to_string())),
        };
        let marker = format!("orders:event:{}", event.event_id);
        if idempotency::is_marked(&self.kv, &marker, self.clock.now_ms()).await? {
            return Ok(EventOutcome::Duplicate);
        }
        let outcome = match payment {
            PaymentEvent::Completed(data) => self.on_payment_completed(data).await?,
            PaymentEvent::Failed(data) => self.on_payment_failed(data).await?,
            PaymentEvent::Refunded(data) => self.on_payment_refunded(data).await?,
        };
        idempotency::mark(&self.kv, &marker, self.clock.now_ms(), self.config.idempotency_ttl_ms).await?;
        Ok(outcome)
    }

    /// Order figures for `/metrics`, from the counters.
    pub async fn metrics(&self) -> Result<Vec<MetricFamily>, StoreError> {
        let totals = Indexes::live(&self.kv).await?.totals().await?;
        let by_status =
            totals.by_status.iter().map(|(status, count)| (vec![("status", status.name().to_string())], *count)).collect();
        let revenue =
            totals.revenue.iter().map(|revenue| (vec![("currency", revenue.currency.clone())], revenue.total_revenue)).collect();
        Ok(vec![
            MetricFamily::new("shop_orders", "Orders by status.", MetricKind::Gauge, by_status),
            MetricFamily::new(
                "shop_revenue_minor_units",
                "Revenue of paid, not cancelled or refunded orders, in minor units.",
                MetricKind::Gauge,
                revenue,
            ),
        ])
    }
}
