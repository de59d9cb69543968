//! The payment service (`/payments...`) and the payment worker's event
//! handlers.
//!
//! Key layout:
//! - `payments:record:{payment_id}`: the payment record (compare-and-swap).
//! - `payments:idem:{idempotency key}`: idempotency claim holding the payment
//!   id and, once settled, the answer (see [`crate::idempotency`]). The
//!   worker charges an order under the key `order:{order_id}`.
//! - `payments:stats:{completed|failed|refunded|attempts}`: counters for `/metrics`.
//!
//! Decisions:
//! - `POST /payments` answers 201 with status `completed`, 402
//!   `payment_declined` (body: the error plus the failed `payment`) on a
//!   decline, and 502 `gateway_unavailable` / 504 `gateway_timeout` when all
//!   attempts were transient; the payment then stays `pending`, and a retry
//!   with the same Idempotency-Key resumes it.
//! - The provider sees the idempotency key `{payment_id}` on every attempt
//!   of a charge and `refund_{payment_id}` for its refund, so retries, resumed
//!   payments and concurrent refunds move money once.
//! - `POST /payments/{id}/refund` is an admin route (it moves money); it
//!   refunds a completed payment in full, once; repeating it answers 200 with
//!   the refunded payment.
//! - Outcome events have ids `evt_{payment_id}_{completed|failed}`; the
//!   worker publishes them again when an `orders.created` event repeats, so a
//!   lost event is recovered by the order reconcile re-publishing
//!   `orders.created`.

mod gateway;

pub use gateway::{
    Gateway, GatewayOutcome, ProviderGateway, ProviderTransport, RetryPolicy, Settled, outcome_from_response, with_retries,
};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::events::{
    Event, EventError, EventOutcome, ORDERS_CANCELLED, ORDERS_CREATED, OrderCancelledData, OrderCreatedData,
    PAYMENTS_COMPLETED, PAYMENTS_FAILED, PAYMENTS_REFUNDED, PaymentCompletedData, PaymentFailedData, PaymentRefundedData,
};
use crate::http::{ApiError, ApiRequest, ApiResponse, Method, allow, respond};
use crate::idempotency::{self, Claim};
use crate::json::{Fields, is_identifier, parse_body};
use crate::kv::{Change, Kv, StoreError, create_json, get_json, read_counter, update_json};
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
    pub created_at: String,
    pub updated_at: String,
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
    pub retry: RetryPolicy,
    /// How long a charge in progress keeps its idempotency key from others;
    /// longer than all attempts and backoffs together.
    pub claim_lease_ms: u64,
}

impl PaymentsConfig {
    pub fn new(admin_token: impl Into<String>) -> PaymentsConfig {
        PaymentsConfig { admin_token: admin_token.into(), retry: RetryPolicy::default(), claim_lease_ms: 60_000 }
    }
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
                let payment = self.load(payment_id).await?.ok_or_else(|| ApiError::not_found("payment"))?;
                Ok(ApiResponse::json(200, &payment))
            }
            ["payments", payment_id, "refund"] => {
                allow(request, &[(Method::Post, "POST")])?;
                request.require_admin(&self.config.admin_token)?;
                let (payment, _) = self.refund(payment_id).await?;
                Ok(ApiResponse::json(200, &payment))
            }
            _ => Err(ApiError::no_route(&request.path)),
        }
    }

    async fn load(&self, payment_id: &str) -> Result<Option<Payment>, StoreError> {
        if !is_identifier(payment_id) {
            return Ok(None);
        }
        get_json(&self.kv, &record_key(payment_id)).await
    }

    async fn create_payment(&self, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
        let key = match request.header("idempotency-key") {
            Some(key) if (1..=255).contains(&key.len()) => key,
            _ => return Err(ApiError::validation("Idempotency-Key", "the Idempotency-Key header (1 to 255 characters) is required")),
        };
        let body = parse_body(&request.body)?;
        let fields = Fields::of_body(&body, &["order_id", "amount", "currency", "payment_token"])?;
        let charge = ChargeRequest {
            order_id: fields.identifier("order_id")?.to_string(),
            amount: fields.integer("amount", 1, i64::MAX)?,
            currency: fields.currency("currency")?.to_string(),
            payment_token: fields.text("payment_token", 1, 256)?.to_string(),
        };
        Ok(self.charge(key, &charge).await?.response)
    }

    /// Charges once per idempotency key, however often and concurrently it is called.
    async fn charge(&self, key: &str, charge: &ChargeRequest) -> Result<Charged, ApiError> {
        let claim_key = format!("payments:idem:{key}");
        let now = self.clock.now_ms();
        let fingerprint = idempotency::fingerprint(charge);
        let fresh_id = random_id(&self.random, "pay_");
        let claim = idempotency::claim(&self.kv, &claim_key, &fingerprint, fresh_id, now, self.config.claim_lease_ms).await?;
        let payment_id = match claim {
            Claim::Owned { resource_id, .. } => resource_id,
            Claim::Replay { resource_id, response } => {
                return Ok(Charged { response, payment_id: resource_id, replayed: true });
            }
            Claim::InProgress => {
                return Err(ApiError::new(409, "payment_in_progress", "a payment with this Idempotency-Key is in progress"));
            }
            Claim::Mismatch => {
                return Err(ApiError::new(422, "idempotency_key_reused", "the Idempotency-Key was used for another payment"));
            }
        };
        match self.settle_charge(&payment_id, charge).await {
            Ok((response, true)) => {
                idempotency::complete(&self.kv, &claim_key, &response).await?;
                Ok(Charged { response, payment_id, replayed: false })
            }
            Ok((response, false)) => {
                idempotency::abandon(&self.kv, &claim_key).await?;
                Ok(Charged { response, payment_id, replayed: false })
            }
            Err(error) => {
                // Best effort: without it the key is free again once the lease ends.
                let _ = idempotency::abandon(&self.kv, &claim_key).await;
                Err(error)
            }
        }
    }

    /// Makes the payment record (or resumes it) and drives the provider
    /// call; the flag tells whether the answer is final.
    async fn settle_charge(&self, payment_id: &str, charge: &ChargeRequest) -> Result<(ApiResponse, bool), ApiError> {
        let now = rfc3339(self.clock.now_ms());
        let fresh = Payment {
            payment_id: payment_id.to_string(),
            order_id: charge.order_id.clone(),
            amount: charge.amount,
            currency: charge.currency.clone(),
            status: PaymentStatus::Pending,
            provider_ref: None,
            attempts: 0,
            failure_reason: None,
            created_at: now.clone(),
            updated_at: now,
        };
        create_json(&self.kv, &record_key(payment_id), &fresh).await?;
        let payment = self.load(payment_id).await?.ok_or_else(|| StoreError::new("payment record vanished"))?;
        if payment.status != PaymentStatus::Pending {
            // An earlier owner settled it but did not store the answer.
            return Ok((charge_response(&payment), true));
        }

        let (settled, attempts) = with_retries(&self.config.retry, &self.sleeper, || {
            self.gateway.charge(payment_id, charge.amount, &charge.currency, &charge.payment_token)
        })
        .await;
        self.kv.increment(&stat_key("attempts"), i64::from(attempts)).await?;
        let now = rfc3339(self.clock.now_ms());
        let payment = update_json(&self.kv, &record_key(payment_id), |current: Option<Payment>| {
            let mut payment = current.ok_or_else(|| StoreError::new("payment record vanished"))?;
            if payment.status != PaymentStatus::Pending {
                return Ok::<_, StoreError>(Change::Keep(payment));
            }
            payment.attempts += attempts;
            payment.updated_at = now.clone();
            match &settled {
                Settled::Approved { provider_ref } => {
                    payment.status = PaymentStatus::Completed;
                    payment.provider_ref = Some(provider_ref.clone());
                    payment.failure_reason = None;
                }
                Settled::Declined { reason } => {
                    payment.status = PaymentStatus::Failed;
                    payment.failure_reason = Some(reason.clone());
                }
                Settled::Unavailable { reason, .. } => payment.failure_reason = Some(reason.clone()),
            }
            Ok(Change::Write(payment.clone(), payment))
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
        self.publish_outcome(&payment).await;
        Ok((charge_response(&payment), true))
    }

    /// Publishes `payments.completed`, `payments.failed` or `payments.refunded`
    /// for a settled payment, with an id fixed per payment and outcome so that
    /// consumers can drop repeats.
    async fn publish_outcome(&self, payment: &Payment) {
        let occurred_at = rfc3339(self.clock.now_ms());
        let event = match payment.status {
            PaymentStatus::Completed => {
                let data = PaymentCompletedData {
                    payment_id: payment.payment_id.clone(),
                    order_id: payment.order_id.clone(),
                    amount: payment.amount,
                    currency: payment.currency.clone(),
                    provider_ref: payment.provider_ref.clone().unwrap_or_default(),
                };
                Event::new(format!("evt_{}_completed", payment.payment_id), PAYMENTS_COMPLETED, occurred_at, SOURCE, &data)
            }
            PaymentStatus::Failed => {
                let data = PaymentFailedData {
                    payment_id: payment.payment_id.clone(),
                    order_id: payment.order_id.clone(),
                    reason: payment.failure_reason.clone().unwrap_or_default(),
                };
                Event::new(format!("evt_{}_failed", payment.payment_id), PAYMENTS_FAILED, occurred_at, SOURCE, &data)
            }
            PaymentStatus::Refunded => {
                let data = PaymentRefundedData {
                    payment_id: payment.payment_id.clone(),
                    order_id: payment.order_id.clone(),
                    amount: payment.amount,
                    currency: payment.currency.clone(),
                };
                Event::new(format!("evt_{}_refunded", payment.payment_id), PAYMENTS_REFUNDED, occurred_at, SOURCE, &data)
            }
            PaymentStatus::Pending => return,
        };
        // A lost event is published again when the order reconcile re-sends
        // `orders.created` and the worker replays this payment.
        let _ = event.publish(&self.publisher).await;
    }

    /// Refunds a completed payment in full; the flag is false when it was
    /// refunded before.
    pub async fn refund(&self, payment_id: &str) -> Result<(Payment, bool), ApiError> {
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
        let (payment, newly_refunded) = update_json(&self.kv, &record_key(payment_id), |current: Option<Payment>| {
            let mut payment = current.ok_or_else(|| StoreError::new("payment record vanished"))?;
            if payment.status == PaymentStatus::Refunded {
                return Ok::<_, StoreError>(Change::Keep((payment, false)));
            }
            payment.status = PaymentStatus::Refunded;
            payment.updated_at = now.clone();
            Ok(Change::Write(payment.clone(), (payment, true)))
        })
        .await?;
        if newly_refunded {
            self.kv.increment(&stat_key("refunded"), 1).await?;
            self.publish_outcome(&payment).await;
        }
        Ok((payment, newly_refunded))
    }

    /// The payment worker: charges on `orders.created` (when the order
    /// carries a payment token) and refunds on `orders.cancelled` (when a
    /// refund is required). Repeated events move money once.
    pub async fn handle_event(&self, payload: &[u8]) -> Result<EventOutcome, EventError> {
        let event = Event::parse(payload)?;
        match event.event_type.as_str() {
            ORDERS_CREATED => self.on_order_created(event.data()?).await,
            ORDERS_CANCELLED => self.on_order_cancelled(event.data()?).await,
            other => Err(EventError::UnknownType(other.to_string())),
        }
    }

    async fn on_order_created(&self, order: OrderCreatedData) -> Result<EventOutcome, EventError> {
        let Some(payment_token) = order.payment_token else {
            return Ok(EventOutcome::Ignored("the order has no payment token".to_string()));
        };
        let charge = ChargeRequest {
            order_id: order.order_id.clone(),
            amount: order.total_amount,
            currency: order.currency,
            payment_token,
        };
        let charged = match self.charge(&format!("order:{}", order.order_id), &charge).await {
            Ok(charged) => charged,
            Err(error) if error.status == 409 => return Ok(EventOutcome::Duplicate),
            Err(error) => return Err(event_error(error)),
        };
        if matches!(charged.response.status, 502 | 504) {
            return Err(EventError::Unavailable(format!(
                "charging order {} stays pending: {}",
                order.order_id,
                String::from_utf8_lossy(&charged.response.body)
            )));
        }
        if !charged.replayed {
            return Ok(EventOutcome::Applied);
        }
        if let Some(payment) = self.load(&charged.payment_id).await? {
            self.publish_outcome(&payment).await;
        }
        Ok(EventOutcome::Duplicate)
    }

    async fn on_order_cancelled(&self, order: OrderCancelledData) -> Result<EventOutcome, EventError> {
        if !order.refund_required {
            return Ok(EventOutcome::Ignored("no refund required".to_string()));
        }
        let Some(payment_id) = order.payment_id else {
            return Err(EventError::Rejected(format!("order {} needs a refund but names no payment", order.order_id)));
        };
        match self.refund(&payment_id).await {
            Ok((_, true)) => Ok(EventOutcome::Applied),
            Ok((payment, false)) => {
                // Refunded before: say so again, in case that event was lost.
                self.publish_outcome(&payment).await;
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
