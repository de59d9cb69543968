//! Placing an order: validation, pricing from the catalog, reserving stock,
//! writing the order with its index entries, and idempotent retries.

use serde::Serialize;

use super::index::{
    CREATOR_CLAIM, PendingIndex, SEQUENCE_KEY, finish_pending, order_key, order_number_key, placed_amount_key, position_key,
    user_position_key, user_sequence_key,
};
use super::model::{Order, OrderItem, OrderRecord, OrderStatus, StockStep};
use crate::payments::{PaymentStatus, hold_token};
use super::{Inventory, InventoryError, OrderService, ReservationItem, ReservationReceipt};
use crate::events::{Event, ORDERS_CREATED, ORDERS_PAYMENT_REQUESTED, OrderCreatedData, OrderPaymentRequestedData};
use crate::auth::Caller;
use crate::http::{ApiError, ApiRequest, ApiResponse};
use crate::idempotency::{self, Claim};
use crate::json::{Fields, parse_body};
use crate::kv::{Kv, StoreError, create_json, json_entries, read_counter};
use crate::money::{checked_sum, line_total};
use crate::ports::{Clock, Publisher, Random, random_id};
use crate::time::{compact_utc, rfc3339};

pub const MAX_ADDRESS_CHARS: usize = 500;
pub const MAX_NOTES_CHARS: usize = 1000;
pub const MAX_TOKEN_CHARS: usize = 256;

/// A validated `POST /orders` body; its JSON form is the idempotency fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewOrder {
    pub user_id: u64,
    pub items: Vec<ReservationItem>,
    pub shipping_address: Option<String>,
    pub billing_address: Option<String>,
    pub notes: Option<String>,
    pub payment_token: Option<String>,
    /// Sent as `{product_id, quantity}` rather than `items`: errors then
    /// name the top-level fields.
    #[serde(skip)]
    pub single_item: bool,
}

impl NewOrder {
    /// Reads a `POST /orders` body sent by `caller`: a customer's orders are
    /// its own (`user_id` may be left out, or must be the token's user).
    pub fn parse(body: &[u8], caller: Caller) -> Result<NewOrder, ApiError> {
        let body = parse_body(body)?;
        let fields = Fields::of_body(
            &body,
            &[
                "user_id",
                "items",
                "product_id",
                "quantity",
                "shipping_address",
                "billing_address",
                "notes",
                "payment_token",
            ],
        )?;
        let named = fields.optional_integer("user_id", 1, i64::MAX)?.map(|user_id| user_id as u64);
        let user_id = caller.user_id(named, "user_id")?.ok_or_else(|| ApiError::validation("user_id", "user_id is required"))?;
        let single_item = !fields.has("items") && (fields.has("product_id") || fields.has("quantity"));
        let items = if single_item {
            vec![ReservationItem::parse(&fields)?]
        } else {
            if let Some(extra) = ["product_id", "quantity"].into_iter().find(|name| fields.has(name)) {
                return Err(ApiError::validation(extra, format!("{extra} cannot be given together with items")));
            }
            ReservationItem::parse_list(&fields, "items")?
        };
        Ok(NewOrder {
            user_id,
            items,
            shipping_address: fields.optional_text("shipping_address", 0, MAX_ADDRESS_CHARS)?.map(str::to_string),
            billing_address: fields.optional_text("billing_address", 0, MAX_ADDRESS_CHARS)?.map(str::to_string),
            notes: fields.optional_text("notes", 0, MAX_NOTES_CHARS)?.map(str::to_string),
            payment_token: fields.optional_text("payment_token", 1, MAX_TOKEN_CHARS)?.map(str::to_string),
            single_item,
        })
    }

    /// The request field holding `member` of item `index`.
    fn item_field(&self, index: usize, member: &str) -> String {
        if self.single_item { member.to_string() } else { format!("items[{index}].{member}") }
    }

    /// The request field of the first item with `product_id`.
    fn product_field(&self, product_id: &str) -> Option<String> {
        let index = self.items.iter().position(|item| item.product_id == product_id)?;
        Some(self.item_field(index, "product_id"))
    }
}

/// Lines priced from the catalog and their total.
struct Priced {
    lines: Vec<OrderItem>,
    total_amount: i64,
    currency: String,
}

impl<K: Kv, I: Inventory, P: Publisher, C: Clock, R: Random> OrderService<K, I, P, C, R> {
    pub(super) async fn create_order(&self, request: &ApiRequest, caller: Caller) -> Result<ApiResponse, ApiError> {
        let new_order = NewOrder::parse(&request.body, caller)?;
        let Some(key) = request.header("idempotency-key") else {
            return self.place_new(&random_id(&self.random, "ord_"), &new_order).await;
        };
        if !(1..=255).contains(&key.len()) {
            return Err(ApiError::validation("Idempotency-Key", "the Idempotency-Key header must have 1 to 255 characters"));
        }
        idempotency::check_client_key(key)?;
        // Per user: one customer's key never answers another's request.
        let claim_key = format!("orders:idem:u{}:{key}", new_order.user_id);
        let fingerprint = idempotency::fingerprint(&new_order);
        let fresh_id = random_id(&self.random, "ord_");
        let now = self.clock.now_ms();
        let terms = idempotency::Terms { lease_ms: self.config.idempotency_lease_ms, ttl_ms: self.config.idempotency_ttl_ms };
        match idempotency::claim(&self.kv, &claim_key, &fingerprint, fresh_id, now, terms).await? {
            Claim::Owned { resource_id, .. } => {
                let answer = self.place(&resource_id, &new_order).await;
                match &answer {
                    Err(error) if error.status >= 500 => {
                        // Best effort: without it the key is free again once the lease ends.
                        let _ = idempotency::abandon(&self.kv, &claim_key).await;
                    }
                    Ok(response) => idempotency::complete(&self.kv, &claim_key, response).await?,
                    Err(error) => idempotency::complete(&self.kv, &claim_key, &error.clone().into_response()).await?,
                }
                answer
            }
            Claim::Replay { response, .. } => Ok(response),
            Claim::InProgress => Err(ApiError::new(
                409,
                "idempotency_key_in_progress",
                "a request with this Idempotency-Key is still being processed; retry later",
            )),
            Claim::Mismatch => Err(ApiError::new(
                422,
                "idempotency_key_reused",
                "the Idempotency-Key was used for a different request",
            )
            .with_field("Idempotency-Key")),
        }
    }

    /// Places the order with id `order_id`, or answers with it if an earlier
    /// attempt under the same idempotency key already placed it.
    async fn place(&self, order_id: &str, new_order: &NewOrder) -> Result<ApiResponse, ApiError> {
        if let Some(existing) = self.load(order_id).await? {
            return Ok(ApiResponse::json(201, &existing.order));
        }
        self.place_new(order_id, new_order).await
    }

    /// Places the order with id `order_id`, which no earlier attempt used.
    async fn place_new(&self, order_id: &str, new_order: &NewOrder) -> Result<ApiResponse, ApiError> {
        let priced = self.price(new_order).await?;
        self.count_placed_amount(&priced).await?;
        let receipt = self
            .inventory
            .reserve(order_id, &new_order.items, self.config.reservation_ttl_seconds)
            .await
            .map_err(|error| error.to_api_error(error.product_id().and_then(|id| new_order.product_field(id))))?;
        let record = match self.store_new_order(order_id, new_order, priced, &receipt).await {
            Ok(record) => record,
            Err(error) => {
                // Best effort: an unreleased reservation expires on its own.
                let _ = self.inventory.release(&receipt.reservation_id).await;
                return Err(error.into());
            }
        };
        let mut events = vec![self.created_event(&record)];
        events.extend(self.payment_request(&record));
        self.publish(order_id, events).await?;
        Ok(ApiResponse::json(201, &record.order))
    }

    /// Prices every line from the catalog, in one currency, with checked arithmetic.
    async fn price(&self, new_order: &NewOrder) -> Result<Priced, ApiError> {
        let mut lines: Vec<OrderItem> = Vec::with_capacity(new_order.items.len());
        let mut currency: Option<String> = None;
        for (index, item) in new_order.items.iter().enumerate() {
            let product_field = new_order.item_field(index, "product_id");
            let product = self
                .inventory
                .get_product(&item.product_id)
                .await
                .map_err(|error| error.to_api_error(None))?
                .ok_or_else(|| {
                    InventoryError::UnknownProduct(item.product_id.clone()).to_api_error(Some(product_field.clone()))
                })?;
            let currency = currency.get_or_insert_with(|| product.currency.clone());
            if *currency != product.currency {
                return Err(ApiError::new(
                    422,
                    "mixed_currency",
                    format!("product {} is priced in {}, the order in {currency}", product.product_id, product.currency),
                )
                .with_field(product_field));
            }
            let subtotal = line_total(product.price, item.quantity).ok_or_else(|| {
                ApiError::new(422, "amount_overflow", "the line total is too large")
                    .with_field(new_order.item_field(index, "quantity"))
            })?;
            lines.push(OrderItem {
                product_id: product.product_id,
                product_name: product.name,
                unit_price: product.price,
                quantity: item.quantity,
                subtotal,
            });
        }
        let total_amount = checked_sum(lines.iter().map(|line| line.subtotal))
            .ok_or_else(|| ApiError::new(422, "amount_overflow", "the order total is too large").with_field("items"))?;
        let currency = currency.expect("orders have at least one item");
        Ok(Priced { lines, total_amount, currency })
    }

    /// Adds the order's total to `orders:placed_amount:{currency}` before
    /// anything else is written, or refuses the order (422
    /// `amount_overflow`) when that sum would pass `i64::MAX`. Revenue sums
    /// orders of the currency, each at most once, so it stays within that
    /// sum: its counters can never overflow half-way through an order's
    /// index update. The sum is never decreased (a cancelled order keeps its
    /// share): decreasing it would have to be exactly once per cancellation,
    /// and 2^63 - 1 minor units leave room for any real shop.
    async fn count_placed_amount(&self, priced: &Priced) -> Result<(), ApiError> {
        let key = placed_amount_key(&priced.currency);
        let Err(error) = self.kv.increment(&key, priced.total_amount).await else {
            return Ok(());
        };
        // Every store refuses an increment that would overflow, and changes nothing then.
        if read_counter(&self.kv, &key).await?.checked_add(priced.total_amount).is_none() {
            return Err(ApiError::new(
                422,
                "amount_overflow",
                format!("orders in {} would together pass the largest amount the shop can count", priced.currency),
            )
            .with_field("items"));
        }
        Err(error.into())
    }

    /// Writes the list entries, then the order owing its index entries,
    /// then those. The global list's entry is the creator's journal entry
    /// (`index.rs`).
    async fn store_new_order(
        &self,
        order_id: &str,
        new_order: &NewOrder,
        priced: Priced,
        receipt: &ReservationReceipt,
    ) -> Result<OrderRecord, StoreError> {
        let now_ms = self.clock.now_ms();
        let now = rfc3339(now_ms);
        let user_id = new_order.user_id;
        let position = self.kv.increment(SEQUENCE_KEY, 1).await? as u64;
        let user_position = self.kv.increment(&user_sequence_key(user_id), 1).await? as u64;
        let order_number = self.claim_order_number(order_id, now_ms).await?;
        // The list entries in one batch, both before the record's
        // compare-and-swap, as one by one.
        self.kv
            .set_many(&json_entries([
                (position_key(position), order_id.to_string()),
                (user_position_key(user_id, user_position), order_id.to_string()),
            ]))
            .await?;
        let record = OrderRecord {
            order: Order {
                id: order_id.to_string(),
                order_number,
                user_id,
                items: priced.lines,
                total_amount: priced.total_amount,
                currency: priced.currency,
                status: OrderStatus::Confirmed,
                payment_status: PaymentStatus::Pending,
                payment_id: None,
                reservation_id: Some(receipt.reservation_id.clone()),
                refund_required: false,
                shipping_address: new_order.shipping_address.clone(),
                billing_address: new_order.billing_address.clone(),
                notes: new_order.notes.clone(),
                created_at: now.clone(),
                updated_at: now.clone(),
                confirmed_at: Some(now),
                paid_at: None,
                shipped_at: None,
                delivered_at: None,
                cancelled_at: None,
            },
            has_payment_token: new_order.payment_token.is_some(),
            position,
            user_position,
            stock: StockStep::Held,
            undelivered: Vec::new(),
            cancel_reason: None,
            created_ms: now_ms,
            updated_ms: now_ms,
            index_pending: Some(PendingIndex { indexed: None, claim: CREATOR_CLAIM, claimed_ms: now_ms }),
        };
        if let Some(token) = &new_order.payment_token {
            hold_token(&self.kv, order_id, token).await?;
        }
        if !create_json(&self.kv, &order_key(order_id), &record).await? {
            return Err(StoreError::new(format!("order {order_id} already exists")));
        }
        finish_pending(&self.kv, record.clone(), CREATOR_CLAIM, now_ms).await?;
        Ok(OrderRecord { index_pending: None, ..record })
    }

    /// `orders.created` for an order.
    fn created_event(&self, record: &OrderRecord) -> Event {
        let data = OrderCreatedData {
            order_id: record.order.id.clone(),
            order_number: record.order.order_number.clone(),
            user_id: record.order.user_id,
            total_amount: record.order.total_amount,
            currency: record.order.currency.clone(),
            has_payment_token: record.has_payment_token,
        };
        self.event(ORDERS_CREATED, &data)
    }

    /// `orders.payment_requested` for an order placed with a payment token:
    /// the payment worker charges it. None for an order without one, which is
    /// paid through `POST /payments`.
    pub(super) fn payment_request(&self, record: &OrderRecord) -> Option<Event> {
        if !record.has_payment_token {
            return None;
        }
        let data = OrderPaymentRequestedData {
            order_id: record.order.id.clone(),
            total_amount: record.order.total_amount,
            currency: record.order.currency.clone(),
        };
        Some(self.event(ORDERS_PAYMENT_REQUESTED, &data))
    }

    /// `ORD` + UTC `YYYYMMDDHHMMSS` + 6 random hex digits, claimed in the
    /// store so that no two orders share one.
    async fn claim_order_number(&self, order_id: &str, now_ms: u64) -> Result<String, StoreError> {
        let stamp = compact_utc(now_ms);
        for _ in 0..8 {
            let number = format!("ORD{stamp}{:06X}", self.random.next_u64() & 0xFF_FFFF);
            if create_json(&self.kv, &order_number_key(&number), &order_id).await? {
                return Ok(number);
            }
        }
        Err(StoreError::new("could not find a free order number"))
    }
}
