//! Events between services: the envelope `{event_id, event_type, occurred_at,
//! source, data}`, the channels, and the typed `data` of each event type.
//!
//! The event type equals the channel name it is published on. Consumers
//! accept unknown members in `data` so producers can add fields.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kv::StoreError;
use crate::ports::{Publisher, PublishError};

pub const ORDERS_CREATED: &str = "orders.created";
pub const ORDERS_CANCELLED: &str = "orders.cancelled";
pub const ORDERS_STATUS_CHANGED: &str = "orders.status_changed";
pub const ORDERS_PAYMENT_REQUESTED: &str = "orders.payment_requested";
pub const PAYMENTS_COMPLETED: &str = "payments.completed";
pub const PAYMENTS_FAILED: &str = "payments.failed";
pub const PAYMENTS_REFUNDED: &str = "payments.refunded";

/// Channels the shop's own Redis triggers subscribe to (spin.toml): an event
/// on them that reached nobody is not delivered. `orders.created` and
/// `orders.status_changed` are notices for outside listeners: the payment
/// worker gets `orders.payment_requested` only for the orders it has to
/// charge, so an order paid later through `POST /payments` wakes no worker (a
/// fresh instance of it, and of the provider composed into it, per order).
pub const CONSUMED_CHANNELS: [&str; 5] =
    [ORDERS_PAYMENT_REQUESTED, ORDERS_CANCELLED, PAYMENTS_COMPLETED, PAYMENTS_FAILED, PAYMENTS_REFUNDED];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub event_id: String,
    pub event_type: String,
    /// RFC 3339.
    pub occurred_at: String,
    /// Name of the producing service.
    pub source: String,
    pub data: Value,
}

impl Event {
    pub fn new(event_id: String, event_type: &str, occurred_at: String, source: &str, data: &impl Serialize) -> Event {
        Event {
            event_id,
            event_type: event_type.to_string(),
            occurred_at,
            source: source.to_string(),
            data: serde_json::to_value(data).expect("event data is plain data"),
        }
    }

    /// Parses a received payload; garbage becomes [`EventError::Malformed`].
    pub fn parse(payload: &[u8]) -> Result<Event, EventError> {
        serde_json::from_slice(payload).map_err(|error| EventError::Malformed(format!("not an event envelope: {error}")))
    }

    /// The `data` member as the type its event type promises.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, EventError> {
        serde_json::from_value(self.data.clone()).map_err(|error| {
            EventError::Malformed(format!("{} event {} has unexpected data: {error}", self.event_type, self.event_id))
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("events are plain data")
    }

    /// Publishes on the channel named by the event type. An event that a
    /// component of the shop consumes counts as delivered only when at least
    /// one subscriber received it (a trigger reconnecting, or Redis restarted,
    /// has none); `orders.status_changed` is a notice for outside listeners.
    pub async fn publish(&self, publisher: &impl Publisher) -> Result<(), PublishError> {
        let receivers = publisher.publish(&self.event_type, &self.to_bytes()).await?;
        if receivers == 0 && CONSUMED_CHANNELS.contains(&self.event_type.as_str()) {
            return Err(PublishError { message: format!("no subscriber received {} on {}", self.event_id, self.event_type) });
        }
        Ok(())
    }
}

/// What an event handler did with an event it understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// State changed.
    Applied,
    /// Seen before (or its effect is already in place): nothing changed.
    Duplicate,
    /// Understood but nothing to do, with the reason for the log.
    Ignored(String),
}

/// An event a handler could not process; the component logs it. Nothing was
/// changed, except that with `Unavailable` part of the work may be done and a
/// redelivery (or the order reconcile) finishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    /// Not JSON, not an envelope, or data of the wrong shape.
    Malformed(String),
    /// An event type this handler does not consume.
    UnknownType(String),
    /// The event contradicts the stored state (e.g. a payment for another amount).
    Rejected(String),
    /// The store or the payment provider did not answer.
    Unavailable(String),
}

impl From<StoreError> for EventError {
    fn from(error: StoreError) -> EventError {
        EventError::Unavailable(error.to_string())
    }
}

impl std::fmt::Display for EventError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventError::Malformed(message) => write!(f, "malformed event: {message}"),
            EventError::UnknownType(event_type) => write!(f, "unknown event type {event_type}"),
            EventError::Rejected(message) => write!(f, "event rejected: {message}"),
            EventError::Unavailable(message) => write!(f, "dependency unavailable: {message}"),
        }
    }
}

impl std::error::Error for EventError {}

/// `orders.created`: an order was placed. `has_payment_token` says it was
/// placed with a token, which `orders.payment_requested` asks the worker to
/// charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreatedData {
    pub order_id: String,
    pub order_number: String,
    pub user_id: u64,
    pub total_amount: i64,
    pub currency: String,
    #[serde(default)]
    pub has_payment_token: bool,
}

/// `orders.payment_requested`: the order side asks the payment worker to
/// charge an order placed with a payment token, the token the order left for
/// it (never in an event: see `payments::hold_token`). Sent again by the
/// reconcile while the order awaits payment; the worker charges once per order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaymentRequestedData {
    pub order_id: String,
    pub total_amount: i64,
    pub currency: String,
}

/// `orders.cancelled`: `refund_required` tells the payment worker to refund `payment_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelledData {
    pub order_id: String,
    pub reason: Option<String>,
    pub refund_required: bool,
    pub payment_id: Option<String>,
    pub total_amount: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStatusChangedData {
    pub order_id: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCompletedData {
    pub payment_id: String,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    pub provider_ref: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailedData {
    pub payment_id: String,
    pub order_id: String,
    pub reason: String,
}

/// A completed payment was refunded in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefundedData {
    pub payment_id: String,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
}
