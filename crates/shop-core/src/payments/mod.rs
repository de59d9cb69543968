//! The payment service (`/payments...`) and the payment worker's event
//! handlers.
//!
//! Key layout:
//! - `payments:record:{payment_id}`: the payment record with its outbox
//!   (compare-and-swap).
//! - `payments:idem:client:u{owner}:{Idempotency-Key}`: a client's
//!   idempotency claim, per user owning the order, holding the payment id
//!   and, once settled, the answer (see [`crate::idempotency`]);
//!   `payments:idem:order:{order_id}`: the worker's own claim for an order's
//!   charge. The two never meet, nor do two users' keys.
//! - `payments:paid:{order_id}`: the id of the payment that paid the order,
//!   claimed once (compare-and-swap on an absent key) when a charge is approved.
//! - `payments:stats:{completed|failed|refunded|attempts}`: counters for `/metrics`.
//!
//! Decisions:
//! - `POST /payments` and `GET /payments/{id}` are customer routes, like the
//!   order routes ([`crate::auth`]): a customer pays and reads payments of its
//!   own orders only; another user's order is as unknown as a missing one (422
//!   `unknown_order`, 404 for a payment), so ids reveal nothing. The admin
//!   token may act on any.
//! - `POST /payments` first checks the order: it must exist (else 422
//!   `unknown_order`), await payment (else 409 `order_not_awaiting_payment`)
//!   and match amount and currency (else 422 `amount_mismatch`). Nothing is
//!   charged otherwise.
//! - It answers 201 with status `completed`, 402 `payment_declined` (body:
//!   the error plus the failed `payment`) on a decline, and 502
//!   `gateway_unavailable` / 504 `gateway_timeout` when all attempts were
//!   transient; the payment then stays `pending`, and a retry with the same
//!   Idempotency-Key resumes it.
//! - An approved charge that does not pay its order after all (another
//!   payment paid it first, or the order was cancelled meanwhile) is refunded
//!   at once, with the reason in `refund_reason`; the answer is 409
//!   `payment_refunded` with the payment.
//! - The provider sees the idempotency key `{payment_id}` on every attempt
//!   of a charge and `refund_{payment_id}` for its refund, so retries, resumed
//!   payments and concurrent refunds move money once.
//! - `POST /payments/{id}/refund` is an admin route (it moves money); it
//!   refunds a completed payment in full, once; repeating it answers 200 with
//!   the refunded payment.
//! - Outcome events (ids `evt_{payment_id}_{completed|failed|refunded}`) are
//!   written into the payment record's outbox in the same write as the status
//!   they announce, then published; an event leaves the outbox only once a
//!   subscriber received it. A replayed request, a repeated
//!   `orders.payment_requested` and the order reconcile ([`deliver_outbox`])
//!   send what is left.
//! - The worker charges an order under the payment id [`order_charge_id`]:
//!   the order's own charge. Only its failure cancels the order; a declined
//!   `POST /payments` by anyone leaves the order waiting for payment.

mod gateway;

pub use gateway::{
    Gateway, GatewayOutcome, ProviderGateway, ProviderTransport, RetryPolicy, Settled, outcome_from_response, with_retries,
};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{Caller, CustomerAuth};
use crate::events::{
    Event, EventError, EventOutcome, ORDERS_CANCELLED, ORDERS_PAYMENT_REQUESTED, OrderCancelledData,
    OrderPaymentRequestedData, PAYMENTS_COMPLETED, PAYMENTS_FAILED, PAYMENTS_REFUNDED, PaymentCompletedData,
    PaymentFailedData, PaymentRefundedData,
};
use crate::http::{ApiError, ApiRequest, ApiResponse, Method, allow, respond};
use crate::idempotency::{self, Claim};
use crate::json::{Fields, is_identifier, parse_body};
use crate::kv::{Change, Kv, StoreError, create_json, get_json, read_counter, update_json};
use crate::orders::load_order;
use crate::ops::{MetricFamily, MetricKind};
use crate::ports::{Clock, Publisher, Random, Sleeper, random_id};
use crate::time::rfc3339;

const SOURCE: &str = "payments";

/// Status of a payment; orders carry the same vocabulary as `payment_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Completed,
    Failed,
    Refunded,
}

impl PaymentStatus {
    pub fn name(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Completed => "completed",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Refunded => "refunded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub payment_id: String,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    pub status: PaymentStatus,
    pub provider_ref: Option<String>,
    /// Provider calls made for the charge so far.
    pub attempts: u32,
    pub failure_reason: Option<String>,
    /// Why an approved charge was refunded automatically: it did not pay its order.
    #[serde(default)]
    pub refund_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A payment as stored: the served payment and its outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PaymentRecord {
    #[serde(flatten)]
    payment: Payment,
    /// Outcome events written with the status they announce, not yet received
    /// by a subscriber.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    outbox: Vec<Event>,
}

/// The payment id under which the payment worker charges an order's own
/// token: `pay_` and the order id's random part, so that the order side can
/// tell its own charge from anyone else's.
pub fn order_charge_id(order_id: &str) -> String {
    format!("pay_{}", order_id.strip_prefix("ord_").unwrap_or(order_id))
}

/// Where an order's payment token waits for the payment worker: written
/// when the order is placed, read only by the worker, deleted once the charge
/// is settled or the order cancelled. The token is in no event and no order.
fn token_key(order_id: &str) -> String {
    format!("payments:token:{order_id}")
}

/// Keeps `token` for the worker's charge of `order_id`.
pub async fn hold_token(kv: &impl Kv, order_id: &str, token: &str) -> Result<(), StoreError> {
    kv.set(&token_key(order_id), token.as_bytes()).await
}

/// Forgets the token of `order_id` (charged, declined or cancelled).
pub async fn drop_token(kv: &impl Kv, order_id: &str) -> Result<(), StoreError> {
    kv.delete(&token_key(order_id)).await
}

fn paid_key(order_id: &str) -> String {
    format!("payments:paid:{order_id}")
}

async fn load_record(kv: &impl Kv, payment_id: &str) -> Result<Option<PaymentRecord>, StoreError> {
    if !is_identifier(payment_id) {
        return Ok(None);
    }
    get_json(kv, &record_key(payment_id)).await
}

/// The payment side's answer to "was this order paid?": the completed (and
/// not refunded) payment that paid it, if any. The order reconcile and
/// cancellations ask it before deciding that an order went unpaid.
pub async fn completed_payment_of(kv: &impl Kv, order_id: &str) -> Result<Option<Payment>, StoreError> {
    let Some(payment_id) = get_json::<String>(kv, &paid_key(order_id)).await? else {
        return Ok(None);
    };
    let payment = load_record(kv, &payment_id).await?.map(|record| record.payment);
    Ok(payment.filter(|payment| payment.status == PaymentStatus::Completed && payment.refund_reason.is_none()))
}

/// The order's own charge (see [`order_charge_id`]) if it was declined.
pub async fn failed_order_charge(kv: &impl Kv, order_id: &str) -> Result<Option<Payment>, StoreError> {
    let payment = load_record(kv, &order_charge_id(order_id)).await?.map(|record| record.payment);
    Ok(payment.filter(|payment| payment.status == PaymentStatus::Failed))
}

/// Publishes what is left in a payment's outbox and removes the events a
/// subscriber received; returns how many stay for a later attempt.
pub async fn deliver_outbox(kv: &impl Kv, publisher: &impl Publisher, payment_id: &str) -> Result<usize, StoreError> {
    let Some(record) = load_record(kv, payment_id).await? else {
        return Ok(0);
    };
    let mut delivered = Vec::new();
    for event in &record.outbox {
        if event.publish(publisher).await.is_ok() {
            delivered.push(event.event_id.clone());
        }
    }
    if delivered.is_empty() {
        return Ok(record.outbox.len());
    }
    update_json(kv, &record_key(payment_id), |current: Option<PaymentRecord>| {
        let mut record = current.ok_or_else(|| StoreError::new("payment record vanished"))?;
        record.outbox.retain(|event| !delivered.contains(&event.event_id));
        let left = record.outbox.len();
        Ok::<_, StoreError>(Change::Write(record, left))
    })
    .await
}

/// The event announcing a settled payment's status (None while pending).
fn outcome_event(payment: &Payment, occurred_at: String) -> Option<Event> {
    let (suffix, event_type, data) = match payment.status {
        PaymentStatus::Completed => {
            let data = PaymentCompletedData {
                payment_id: payment.payment_id.clone(),
                order_id: payment.order_id.clone(),
                amount: payment.amount,
                currency: payment.currency.clone(),
                provider_ref: payment.provider_ref.clone().unwrap_or_default(),
            };
            ("completed", PAYMENTS_COMPLETED, serde_json::to_value(data))
        }
        PaymentStatus::Failed => {
            let data = PaymentFailedData {
                payment_id: payment.payment_id.clone(),
                order_id: payment.order_id.clone(),
                reason: payment.failure_reason.clone().unwrap_or_default(),
            };
            ("failed", PAYMENTS_FAILED, serde_json::to_value(data))
        }
        PaymentStatus::Refunded => {
            let data = PaymentRefundedData {
                payment_id: payment.payment_id.clone(),
                order_id: payment.order_id.clone(),
                amount: payment.amount,
                currency: payment.currency.clone(),
            };
            ("refunded", PAYMENTS_REFUNDED, serde_json::to_value(data))
        }
        PaymentStatus::Pending => return None,
    };
    let data = data.expect("event data is plain data");
    Some(Event::new(format!("evt_{}_{suffix}", payment.payment_id), event_type, occurred_at, SOURCE, &data))
}

/// A charge to make; its JSON form is the idempotency fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChargeRequest {
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    pub payment_token: String,
}

#[derive(Debug, Clone)]
pub struct PaymentsConfig {
    pub admin_token: String,
    /// How callers of `POST /payments` and `GET /payments/{id}` are
    /// authenticated (the order service's setting).
    pub customer_auth: CustomerAuth,
    pub retry: RetryPolicy,
    /// How long a charge in progress keeps its idempotency key from others;
    /// longer than all attempts and backoffs together.
    pub claim_lease_ms: u64,
    /// How long an idempotency record lives; after it the key is new again
    /// (the worker's charge of an order keeps its payment id, so it resumes).
    pub idempotency_ttl_ms: u64,
}

impl PaymentsConfig {
    pub fn new(admin_token: impl Into<String>) -> PaymentsConfig {
        PaymentsConfig {
            admin_token: admin_token.into(),
            customer_auth: CustomerAuth::Unconfigured,
            retry: RetryPolicy::default(),
            claim_lease_ms: 60_000,
            idempotency_ttl_ms: idempotency::DEFAULT_TTL_MS,
        }
    }
}

fn unknown_order(order_id: &str) -> ApiError {
    ApiError::new(422, "unknown_order", format!("order {order_id} does not exist")).with_field("order_id")
}

/// The payment service over its ports.
#[derive(Clone)]
pub struct PaymentService<K, G, P, C, R, S> {
    kv: K,
    gateway: G,
    publisher: P,
    clock: C,
    random: R,
    sleeper: S,
    config: PaymentsConfig,
}

/// Counters kept for `/metrics`.
const STAT_OUTCOMES: [&str; 3] = ["completed", "failed", "refunded"];

fn record_key(payment_id: &str) -> String {
    format!("payments:record:{payment_id}")
}

fn stat_key(name: &str) -> String {
    format!("payments:stats:{name}")
}

/// A charge's answer and whether it repeats an earlier one.
struct Charged {
    response: ApiResponse,
    payment_id: String,
    replayed: bool,
}

impl<K: Kv, G: Gateway, P: Publisher, C: Clock, R: Random, S: Sleeper> PaymentService<K, G, P, C, R, S> {
    pub fn new(kv: K, gateway: G, publisher: P, clock: C, random: R, sleeper: S, config: PaymentsConfig) -> Self {
        PaymentService { kv, gateway, publisher, clock, random, sleeper, config }
    }

    /// Serves `/payments...`.
    pub async fn handle(&self, request: ApiRequest) -> ApiResponse {
        respond(self.route(&request).await)
    }

    async fn route(&self, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
        request.check_body_size()?;
        match request.segments().as_slice() {
            ["payments"] => {
                allow(request, &[(Method::Post, "POST")])?;
                self.create_payment(request).await
            }
            ["payments", payment_id] => {
                allow(request, &[(Method::Get, "GET")])?;
                let caller = self.caller(request)?;
                let payment = self.load(payment_id).await?.ok_or_else(|| ApiError::not_found("payment"))?;
                let owner = load_order(&self.kv, &payment.order_id).await?.map(|record| record.order.user_id);
                if !owner.is_some_and(|owner| caller.may_access(owner)) {
                    return Err(ApiError::not_found("payment"));
                }
                Ok(ApiResponse::json(200, &payment))
            }
            ["payments", payment_id, "refund"] => {
                allow(request, &[(Method::Post, "POST")])?;
                request.require_admin(&self.config.admin_token)?;
                let (payment, _) = self.refund(payment_id, None).await?;
                Ok(ApiResponse::json(200, &payment))
            }
            _ => Err(ApiError::no_route(&request.path)),
        }
    }

    /// Who sent a request to a customer route (401 without a valid token).
    fn caller(&self, request: &ApiRequest) -> Result<Caller, ApiError> {
        self.config.customer_auth.caller(request, &self.config.admin_token, self.clock.now_ms())
    }

    async fn load(&self, payment_id: &str) -> Result<Option<Payment>, StoreError> {
        Ok(load_record(&self.kv, payment_id).await?.map(|record| record.payment))
    }

    async fn create_payment(&self, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
        let caller = self.caller(request)?;
        let key = match request.header("idempotency-key") {
            Some(key) if (1..=255).contains(&key.len()) => key,
            _ => return Err(ApiError::validation("Idempotency-Key", "the Idempotency-Key header (1 to 255 characters) is required")),
        };
        idempotency::check_client_key(key)?;
        let body = parse_body(&request.body)?;
        let fields = Fields::of_body(&body, &["order_id", "amount", "currency", "payment_token"])?;
        let charge = ChargeRequest {
            order_id: fields.identifier("order_id")?.to_string(),
            amount: fields.integer("amount", 1, i64::MAX)?,
            currency: fields.currency("currency")?.to_string(),
            payment_token: fields.text("payment_token", 1, 256)?.to_string(),
        };
        let owner = match load_order(&self.kv, &charge.order_id).await? {
            Some(record) if caller.may_access(record.order.user_id) => record.order.user_id,
            _ => return Err(unknown_order(&charge.order_id)),
        };
        let claim_key = format!("payments:idem:client:u{owner}:{key}");
        let fresh_id = random_id(&self.random, "pay_");
        Ok(self.charge(&claim_key, fresh_id, &charge).await?.response)
    }

    /// Refuses a charge its order cannot take: unknown order, an order not
    /// awaiting payment, or another amount or currency.
    async fn check_order(&self, charge: &ChargeRequest) -> Result<(), ApiError> {
        let Some(record) = load_order(&self.kv, &charge.order_id).await? else {
            return Err(unknown_order(&charge.order_id));
        };
        let order = &record.order;
        if !order.status.awaits_payment() || order.payment_status == PaymentStatus::Completed {
            return Err(ApiError::new(
                409,
                "order_not_awaiting_payment",
                format!("order {} is {} with payment {}: it takes no payment", order.id, order.status.name(), order.payment_status.name()),
            )
            .with_field("order_id"));
        }
        if (order.total_amount, order.currency.as_str()) != (charge.amount, charge.currency.as_str()) {
            let field = if order.currency != charge.currency { "currency" } else { "amount" };
            return Err(ApiError::new(
                422,
                "amount_mismatch",
                format!("order {} is for {} {}, not {} {}", order.id, order.total_amount, order.currency, charge.amount, charge.currency),
            )
            .with_field(field));
        }
        Ok(())
    }

    /// Charges once per idempotency claim, however often and concurrently it
    /// is called; `fresh_id` is the payment id if the claim is new.
    async fn charge(&self, claim_key: &str, fresh_id: String, charge: &ChargeRequest) -> Result<Charged, ApiError> {
        let now = self.clock.now_ms();
        let fingerprint = idempotency::fingerprint(charge);
        let terms = idempotency::Terms { lease_ms: self.config.claim_lease_ms, ttl_ms: self.config.idempotency_ttl_ms };
        let claim = idempotency::claim(&self.kv, claim_key, &fingerprint, fresh_id, now, terms).await?;
        let payment_id = match claim {
            Claim::Owned { resource_id, .. } => resource_id,
            Claim::Replay { resource_id, response } => {
                // The first answer was stored; its events may not have reached anyone.
                deliver_outbox(&self.kv, &self.publisher, &resource_id).await?;
                return Ok(Charged { response, payment_id: resource_id, replayed: true });
            }
            Claim::InProgress => {
                return Err(ApiError::new(409, "payment_in_progress", "a payment with this Idempotency-Key is in progress"));
            }
            Claim::Mismatch => {
                return Err(ApiError::new(422, "idempotency_key_reused", "the Idempotency-Key was used for another payment"));
            }
        };
        let settled = async {
            // A payment already on record is being resumed: it was checked then.
            if self.load(&payment_id).await?.is_none() {
                self.check_order(charge).await?;
            }
            self.settle_charge(&payment_id, charge).await
        };
        match settled.await {
            Ok((response, true)) => {
                idempotency::complete(&self.kv, claim_key, &response).await?;
                Ok(Charged { response, payment_id, replayed: false })
            }
            Ok((response, false)) => {
                idempotency::abandon(&self.kv, claim_key).await?;
                Ok(Charged { response, payment_id, replayed: false })
            }
            Err(error) => {
                // Best effort: without it the key is free again once the lease ends.
                let _ = idempotency::abandon(&self.kv, claim_key).await;
                Err(error)
            }
        }
    }

    /// Why an approved charge would not pay its order, if it would not:
    /// another payment paid it first, or it no longer awaits this payment.
    /// Claims the order's paid slot for this payment otherwise.
    async fn unmatched_reason(&self, payment_id: &str, order_id: &str) -> Result<Option<String>, StoreError> {
        let slot = paid_key(order_id);
        if !create_json(&self.kv, &slot, &payment_id).await? {
            let holder: Option<String> = get_json(&self.kv, &slot).await?;
            if holder.as_deref() != Some(payment_id) {
                return Ok(Some(format!("order {order_id} was already paid by {}", holder.unwrap_or_default())));
            }
        }
        let Some(record) = load_order(&self.kv, order_id).await? else {
            return Ok(Some(format!("order {order_id} does not exist")));
        };
        let order = &record.order;
        let takes_it = order.status.awaits_payment() || order.payment_id.as_deref() == Some(payment_id);
        Ok((!takes_it).then(|| format!("order {order_id} is {}", order.status.name())))
    }

    /// Makes the payment record (or resumes it) and drives the provider
    /// call; the flag tells whether the answer is final.
    async fn settle_charge(&self, payment_id: &str, charge: &ChargeRequest) -> Result<(ApiResponse, bool), ApiError> {
        let now = rfc3339(self.clock.now_ms());
        let fresh = PaymentRecord {
            payment: Payment {
                payment_id: payment_id.to_string(),
                order_id: charge.order_id.clone(),
                amount: charge.amount,
                currency: charge.currency.clone(),
                status: PaymentStatus::Pending,
                provider_ref: None,
                attempts: 0,
                failure_reason: None,
                refund_reason: None,
                created_at: now.clone(),
                updated_at: now,
            },
            outbox: Vec::new(),
        };
        create_json(&self.kv, &record_key(payment_id), &fresh).await?;
        let payment = self.load(payment_id).await?.ok_or_else(|| StoreError::new("payment record vanished"))?;
        match payment.status {
            PaymentStatus::Pending => {}
            // An earlier owner took the money but could not give it back yet.
            PaymentStatus::Completed if payment.refund_reason.is_some() => return self.refund_unmatched(payment).await,
            // An earlier owner settled it but did not store the answer.
            _ => {
                deliver_outbox(&self.kv, &self.publisher, payment_id).await?;
                return Ok((charge_response(&payment), true));
            }
        }

        let (settled, attempts) = with_retries(&self.config.retry, &self.sleeper, || {
            self.gateway.charge(payment_id, charge.amount, &charge.currency, &charge.payment_token)
        })
        .await;
        self.kv.increment(&stat_key("attempts"), i64::from(attempts)).await?;
        let unmatched = match &settled {
            Settled::Approved { .. } => self.unmatched_reason(payment_id, &charge.order_id).await?,
            _ => None,
        };
        let now_ms = self.clock.now_ms();
        let now = rfc3339(now_ms);
        let payment = update_json(&self.kv, &record_key(payment_id), |current: Option<PaymentRecord>| {
            let mut record = current.ok_or_else(|| StoreError::new("payment record vanished"))?;
            let payment = &mut record.payment;
            if payment.status != PaymentStatus::Pending {
                return Ok::<_, StoreError>(Change::Keep(record.payment));
            }
            payment.attempts += attempts;
            payment.updated_at = now.clone();
            match &settled {
                Settled::Approved { provider_ref } => {
                    payment.status = PaymentStatus::Completed;
                    payment.provider_ref = Some(provider_ref.clone());
                    payment.failure_reason = None;
                    payment.refund_reason = unmatched.clone();
                }
                Settled::Declined { reason } => {
                    payment.status = PaymentStatus::Failed;
                    payment.failure_reason = Some(reason.clone());
                }
                Settled::Unavailable { reason, .. } => payment.failure_reason = Some(reason.clone()),
            }
            // The outcome goes out with the status, in this one write; a
            // charge to be refunded announces only its refund.
            if payment.refund_reason.is_none() {
                record.outbox.extend(outcome_event(&record.payment, now.clone()));
            }
            Ok(Change::Write(record.clone(), record.payment))
        })
        .await?;

        if let Settled::Unavailable { reason, timed_out } = &settled {
            let error = if *timed_out {
                ApiError::new(504, "gateway_timeout", format!("payment provider did not answer: {reason}"))
            } else {
                ApiError::new(502, "gateway_unavailable", format!("payment provider unavailable: {reason}"))
            };
            let mut body = error.body();
            body["payment"] = json!(payment);
            return Ok((ApiResponse::json(error.status, &body), false));
        }
        let outcome = match payment.status {
            PaymentStatus::Completed => "completed",
            _ => "failed",
        };
        self.kv.increment(&stat_key(outcome), 1).await?;
        if payment.refund_reason.is_some() {
            return self.refund_unmatched(payment).await;
        }
        deliver_outbox(&self.kv, &self.publisher, payment_id).await?;
        Ok((charge_response(&payment), true))
    }

    /// Gives back an approved charge that did not pay its order: 409
    /// `payment_refunded` with the refunded payment, or 502/504 (not final)
    /// while the provider cannot refund.
    async fn refund_unmatched(&self, payment: Payment) -> Result<(ApiResponse, bool), ApiError> {
        let reason = payment.refund_reason.clone().unwrap_or_default();
        match self.refund(&payment.payment_id, Some(&reason)).await {
            Ok((refunded, _)) => {
                let error = ApiError::new(409, "payment_refunded", format!("the charge was refunded: {reason}")).with_field("order_id");
                let mut body = error.body();
                body["payment"] = json!(refunded);
                Ok((ApiResponse::json(409, &body), true))
            }
            Err(error) if error.status >= 500 => {
                let mut body = error.body();
                body["payment"] = json!(payment);
                Ok((ApiResponse::json(error.status, &body), false))
            }
            Err(error) => Err(error),
        }
    }

    /// Refunds a completed payment in full; the flag is false when it was
    /// refunded before. `automatic` names why the shop itself refunds it.
    pub async fn refund(&self, payment_id: &str, automatic: Option<&str>) -> Result<(Payment, bool), ApiError> {
        let payment = self.load(payment_id).await?.ok_or_else(|| ApiError::not_found("payment"))?;
        match payment.status {
            PaymentStatus::Refunded => return Ok((payment, false)),
            PaymentStatus::Completed => {}
            PaymentStatus::Pending | PaymentStatus::Failed => {
                return Err(ApiError::new(409, "payment_not_refundable", "only completed payments can be refunded"));
            }
        }
        let provider_ref = payment.provider_ref.clone().unwrap_or_default();
        let refund_key = format!("refund_{payment_id}");
        let (settled, _) = with_retries(&self.config.retry, &self.sleeper, || {
            self.gateway.refund(&refund_key, &provider_ref, payment.amount, &payment.currency)
        })
        .await;
        match settled {
            Settled::Approved { .. } => {}
            Settled::Declined { reason } => {
                return Err(ApiError::new(402, "refund_declined", format!("the provider refused the refund: {reason}")));
            }
            Settled::Unavailable { reason, timed_out } => {
                let (status, code) = if timed_out { (504, "gateway_timeout") } else { (502, "gateway_unavailable") };
                return Err(ApiError::new(status, code, format!("payment provider unavailable: {reason}")));
            }
        }
        let now = rfc3339(self.clock.now_ms());
        let (payment, newly_refunded) = update_json(&self.kv, &record_key(payment_id), |current: Option<PaymentRecord>| {
            let mut record = current.ok_or_else(|| StoreError::new("payment record vanished"))?;
            if record.payment.status == PaymentStatus::Refunded {
                return Ok::<_, StoreError>(Change::Keep((record.payment, false)));
            }
            record.payment.status = PaymentStatus::Refunded;
            record.payment.updated_at = now.clone();
            if let Some(reason) = automatic {
                record.payment.refund_reason = Some(reason.to_string());
            }
            record.outbox.extend(outcome_event(&record.payment, now.clone()));
            Ok(Change::Write(record.clone(), (record.payment, true)))
        })
        .await?;
        if newly_refunded {
            self.kv.increment(&stat_key("refunded"), 1).await?;
        }
        deliver_outbox(&self.kv, &self.publisher, payment_id).await?;
        Ok((payment, newly_refunded))
    }

    /// Says again what became of a settled payment, for a consumer that
    /// missed it: what is left in its outbox, or else its outcome event once
    /// more (consumers drop repeats by event id).
    async fn announce_again(&self, payment_id: &str) -> Result<(), StoreError> {
        if deliver_outbox(&self.kv, &self.publisher, payment_id).await? > 0 {
            return Ok(());
        }
        if let Some(payment) = self.load(payment_id).await?
            && let Some(event) = outcome_event(&payment, rfc3339(self.clock.now_ms()))
        {
            // Best effort: the order reconcile asks the payment side directly.
            let _ = event.publish(&self.publisher).await;
        }
        Ok(())
    }

    /// The payment worker: charges on `orders.payment_requested` and refunds
    /// on `orders.cancelled` (when a refund is required). Repeated events move
    /// money once.
    pub async fn handle_event(&self, payload: &[u8]) -> Result<EventOutcome, EventError> {
        self.perform(PaymentWork::of(payload)?).await
    }

    /// Does what an event asked ([`PaymentWork::of`]).
    pub async fn perform(&self, work: PaymentWork) -> Result<EventOutcome, EventError> {
        match work {
            PaymentWork::Charge(order) => self.on_payment_requested(order).await,
            PaymentWork::Refund(payment_id) => self.on_order_cancelled(&payment_id).await,
            PaymentWork::Nothing(reason) => Ok(EventOutcome::Ignored(reason)),
        }
    }

    async fn on_payment_requested(&self, order: OrderPaymentRequestedData) -> Result<EventOutcome, EventError> {
        let Some(token) = self.kv.get(&token_key(&order.order_id)).await? else {
            // Charged (or the order cancelled) before: say again how it ended.
            self.announce_again(&order_charge_id(&order.order_id)).await?;
            return Ok(EventOutcome::Duplicate);
        };
        let payment_token = String::from_utf8(token).map_err(|_| StoreError::new("payment token is not text"))?;
        let charge = ChargeRequest {
            order_id: order.order_id.clone(),
            amount: order.total_amount,
            currency: order.currency,
            payment_token,
        };
        let claim_key = format!("payments:idem:order:{}", order.order_id);
        let charged = match self.charge(&claim_key, order_charge_id(&order.order_id), &charge).await {
            Ok(charged) => charged,
            Err(error) if error.code == "payment_in_progress" => return Ok(EventOutcome::Duplicate),
            Err(error) => return Err(event_error(error)),
        };
        if matches!(charged.response.status, 502 | 504) {
            return Err(EventError::Unavailable(format!(
                "charging order {} stays pending: {}",
                order.order_id,
                String::from_utf8_lossy(&charged.response.body)
            )));
        }
        // Settled one way or another: the token is not needed any more.
        drop_token(&self.kv, &order.order_id).await?;
        if !charged.replayed {
            return Ok(EventOutcome::Applied);
        }
        self.announce_again(&charged.payment_id).await?;
        Ok(EventOutcome::Duplicate)
    }

    async fn on_order_cancelled(&self, payment_id: &str) -> Result<EventOutcome, EventError> {
        match self.refund(payment_id, None).await {
            Ok((_, true)) => Ok(EventOutcome::Applied),
            Ok((_, false)) => {
                // Refunded before: say so again, in case that event was lost.
                self.announce_again(payment_id).await?;
                Ok(EventOutcome::Duplicate)
            }
            Err(error) => Err(event_error(error)),
        }
    }

    /// Payment counters for `/metrics`.
    pub async fn metrics(&self) -> Result<Vec<MetricFamily>, StoreError> {
        let mut outcomes = Vec::new();
        for outcome in STAT_OUTCOMES {
            let count = read_counter(&self.kv, &stat_key(outcome)).await?;
            outcomes.push((vec![("outcome", outcome.to_string())], count));
        }
        let attempts = read_counter(&self.kv, &stat_key("attempts")).await?;
        Ok(vec![
            MetricFamily::new("shop_payments_total", "Payments settled, by outcome.", MetricKind::Counter, outcomes),
            MetricFamily::new(
                "shop_payment_provider_attempts_total",
                "Calls made to the payment provider for charges.",
                MetricKind::Counter,
                vec![(vec![], attempts)],
            ),
        ])
    }
}

/// What an event asks of the payment worker, read from the event alone, so
/// that an event with nothing to do costs no store or configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentWork {
    /// `orders.payment_requested`: charge the token the order holds.
    Charge(OrderPaymentRequestedData),
    /// `orders.cancelled` of an order whose payment needs a refund: the payment id.
    Refund(String),
    /// Understood, nothing to do; the reason, for the log.
    Nothing(String),
}

impl PaymentWork {
    pub fn of(payload: &[u8]) -> Result<PaymentWork, EventError> {
        let event = Event::parse(payload)?;
        match event.event_type.as_str() {
            ORDERS_PAYMENT_REQUESTED => Ok(PaymentWork::Charge(event.data()?)),
            ORDERS_CANCELLED => {
                let order: OrderCancelledData = event.data()?;
                if !order.refund_required {
                    return Ok(PaymentWork::Nothing("no refund required".to_string()));
                }
                match order.payment_id {
                    Some(payment_id) => Ok(PaymentWork::Refund(payment_id)),
                    None => Err(EventError::Rejected(format!("order {} needs a refund but names no payment", order.order_id))),
                }
            }
            other => Err(EventError::UnknownType(other.to_string())),
        }
    }
}

fn charge_response(payment: &Payment) -> ApiResponse {
    match payment.status {
        PaymentStatus::Failed => {
            let reason = payment.failure_reason.as_deref().unwrap_or("declined");
            let mut body = ApiError::new(402, "payment_declined", format!("the payment was declined: {reason}")).body();
            body["payment"] = json!(payment);
            ApiResponse::json(402, &body)
        }
        _ => ApiResponse::json(201, payment),
    }
}

/// An HTTP-shaped failure met while handling an event.
fn event_error(error: ApiError) -> EventError {
    if error.status >= 500 {
        EventError::Unavailable(error.message)
    } else {
        EventError::Rejected(format!("{}: {}", error.code, error.message))
    }
}
