//! Orders as served and as stored, and the status state machine.

use serde::{Deserialize, Serialize};

use super::index::PendingIndex;
use crate::events::Event;
use crate::payments::PaymentStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Paid,
    Processing,
    Shipped,
    Delivered,
    Cancelled,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 8] = [
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        OrderStatus::Paid,
        OrderStatus::Processing,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Paid => "paid",
            OrderStatus::Processing => "processing",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refunded => "refunded",
        }
    }

    pub fn parse(name: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|status| status.name() == name)
    }

    /// The transition table: the statuses an order in this status may move to.
    pub fn successors(self) -> &'static [OrderStatus] {
        use OrderStatus::*;
        match self {
            Pending => &[Confirmed, Cancelled],
            Confirmed => &[Paid, Cancelled],
            Paid => &[Processing, Cancelled],
            Processing => &[Shipped, Cancelled],
            Shipped => &[Delivered],
            Delivered => &[Refunded],
            Cancelled | Refunded => &[],
        }
    }

    pub fn can_become(self, next: OrderStatus) -> bool {
        self.successors().contains(&next)
    }

    /// Waiting for payment.
    pub fn awaits_payment(self) -> bool {
        matches!(self, OrderStatus::Pending | OrderStatus::Confirmed)
    }

    /// Paid and neither cancelled nor refunded: counted in revenue.
    pub fn counts_as_revenue(self) -> bool {
        matches!(self, OrderStatus::Paid | OrderStatus::Processing | OrderStatus::Shipped | OrderStatus::Delivered)
    }

    /// Where the order's reserved stock should be in this status.
    pub fn stock_target(self) -> StockStep {
        match self {
            OrderStatus::Pending | OrderStatus::Confirmed => StockStep::Held,
            OrderStatus::Cancelled => StockStep::Released,
            _ => StockStep::Committed,
        }
    }
}

/// Where the order's inventory reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockStep {
    Held,
    Committed,
    Released,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub product_id: String,
    pub product_name: String,
    pub unit_price: i64,
    pub quantity: i64,
    pub subtotal: i64,
}

/// An order as served (`payment_token` is never echoed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub order_number: String,
    pub user_id: u64,
    pub items: Vec<OrderItem>,
    pub total_amount: i64,
    pub currency: String,
    pub status: OrderStatus,
    pub payment_status: PaymentStatus,
    pub payment_id: Option<String>,
    pub reservation_id: Option<String>,
    /// A completed payment of this cancelled order is to be refunded (the
    /// payment worker does it on `orders.cancelled`).
    pub refund_required: bool,
    pub shipping_address: Option<String>,
    pub billing_address: Option<String>,
    pub notes: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub confirmed_at: Option<String>,
    pub paid_at: Option<String>,
    pub shipped_at: Option<String>,
    pub delivered_at: Option<String>,
    pub cancelled_at: Option<String>,
}

/// An order as stored: the served order plus what only the service needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order: Order,
    /// Placed with a payment token, kept for the payment worker in
    /// `payments:token:{id}` (never here); the reconcile asks for the charge again.
    #[serde(default)]
    pub has_payment_token: bool,
    /// Place in the global list of orders (from 1).
    pub position: u64,
    /// Place in the user's list of orders (from 1).
    pub user_position: u64,
    pub stock: StockStep,
    /// Events whose publishing failed; the reconcile sends them again.
    pub undelivered: Vec<Event>,
    /// Why the order was cancelled, for `orders.cancelled`.
    pub cancel_reason: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Index work this record still owes: stored by the compare-and-swap
    /// that made the change, cleared once the derived data match (see `index`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_pending: Option<PendingIndex>,
}

impl OrderRecord {
    /// What the reservation still needs to match the status, if anything.
    pub fn stock_to_settle(&self) -> Option<StockStep> {
        match (self.stock, self.order.status.stock_target()) {
            (StockStep::Held, target @ (StockStep::Committed | StockStep::Released)) => Some(target),
            (StockStep::Committed, StockStep::Released) => Some(StockStep::Released),
            _ => None,
        }
    }

    /// Still needs the service to drive it: awaiting payment, stock not
    /// settled, events not delivered, or a refund owed and not yet recorded. Open orders are indexed for the reconcile.
    pub fn is_open(&self) -> bool {
        self.order.status.awaits_payment()
            || self.stock_to_settle().is_some()
            || !self.undelivered.is_empty()
            || self.order.refund_required
    }

    /// Sets the status with its timestamp, appending `note` (if any) to the notes.
    pub fn set_status(&mut self, status: OrderStatus, note: Option<&str>, now_ms: u64) {
        let now = crate::time::rfc3339(now_ms);
        let order = &mut self.order;
        order.status = status;
        let stamp = match status {
            OrderStatus::Confirmed => Some(&mut order.confirmed_at),
            OrderStatus::Paid => Some(&mut order.paid_at),
            OrderStatus::Shipped => Some(&mut order.shipped_at),
            OrderStatus::Delivered => Some(&mut order.delivered_at),
            OrderStatus::Cancelled => Some(&mut order.cancelled_at),
            OrderStatus::Pending | OrderStatus::Processing | OrderStatus::Refunded => None,
        };
        if let Some(stamp) = stamp {
            *stamp = Some(now.clone());
        }
        if status == OrderStatus::Cancelled {
            order.refund_required = order.payment_status == PaymentStatus::Completed;
            self.cancel_reason = note.map(str::to_string);
        }
        if let Some(note) = note {
            self.append_note(note, now_ms);
        }
        self.touch(now_ms);
    }

    /// Appends `[time] note` as a new line of the notes.
    pub fn append_note(&mut self, note: &str, now_ms: u64) {
        let line = format!("[{}] {note}", crate::time::rfc3339(now_ms));
        self.order.notes = Some(match self.order.notes.take() {
            Some(notes) if !notes.is_empty() => format!("{notes}\n{line}"),
            _ => line,
        });
    }

    pub fn touch(&mut self, now_ms: u64) {
        self.order.updated_at = crate::time::rfc3339(now_ms);
        self.updated_ms = now_ms;
    }
}
