//! Everything that changes an existing order: status changes by an admin,
//! cancellation, payment events and the reconcile.
//!
//! Every change is one compare-and-swap on the order record, which also
//! records the index work the change owes; only the writer whose swap changed
//! the record moves the reservation and publishes the events, and the index
//! work is done once by whoever holds it (see [`super::index`]), so a change
//! repeated (the same event twice) or raced (two replicas) has its effects once.

use serde::Serialize;

use super::index::{Indexes, finish_pending, journal_append, order_key, pending_after_change, replay_journal};
use super::model::{OrderRecord, OrderStatus, StockStep};
use crate::payments::{
    Payment, PaymentStatus, completed_payment_of, deliver_outbox, drop_token, failed_order_charge, order_charge_id,
};
use super::{Inventory, InventoryError, OrderService};
use crate::events::{
    Event, EventError, EventOutcome, ORDERS_CANCELLED, ORDERS_STATUS_CHANGED, OrderCancelledData, OrderStatusChangedData, PaymentCompletedData, PaymentFailedData,
    PaymentRefundedData,
};
use crate::auth::Caller;
use crate::http::{ApiError, ApiRequest, ApiResponse, Query};
use crate::json::{Fields, parse_body};
use crate::kv::{Change, Kv, StoreError, update_json};
use crate::ports::{Clock, Publisher, Random};

/// What a compare-and-swap on an order did.
#[allow(clippy::large_enum_variant, reason = "a short-lived return value; boxing would only add noise")]
enum Updated {
    Missing,
    Unchanged(OrderRecord),
    Changed { before: OrderRecord, after: OrderRecord },
}

/// What one reconcile did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Open orders looked at (oldest first).
    pub examined: u64,
    /// Of those, updated too recently to count as stuck.
    pub recent: u64,
    /// Events sent again after a failed publish.
    pub events_resent: u64,
    /// Orders whose reservation was committed or released to match the status.
    pub stock_settled: u64,
    /// Orders awaiting payment whose `orders.payment_requested` was published again.
    pub payment_requested: u64,
    /// Orders awaiting payment without a token, cancelled for the timeout.
    pub cancelled: u64,
    /// Orders awaiting payment whose outcome the payment side had settled
    /// (its event lost): paid, or cancelled after their own charge failed.
    pub payments_found: u64,
    /// Cancelled orders still owing a refund whose `orders.cancelled` was sent again.
    pub refunds_requested: u64,
    /// Expired idempotency records and event markers deleted (at most `limit` looked at).
    pub idempotency_swept: u64,
    /// Orders whose index update a writer left unfinished (it died after
    /// writing the order), finished from the journal and the list of orders
    /// placed (at most `limit` entries of each looked at).
    pub indexes_finished: u64,
}

/// Takes the payment side's word that `paid` paid the order, before the
/// order is cancelled, so that the cancellation owes its refund.
fn adopt_payment(record: &mut OrderRecord, paid: Option<&Payment>) {
    if let Some(payment) = paid
        && record.order.payment_status != PaymentStatus::Completed
    {
        record.order.payment_status = PaymentStatus::Completed;
        record.order.payment_id = Some(payment.payment_id.clone());
    }
}

fn invalid_transition(from: OrderStatus, to: OrderStatus) -> ApiError {
    ApiError::new(
        409,
        "invalid_transition",
        format!("an order cannot go from {} to {}", from.name(), to.name()),
    )
    .with_field("status")
}

impl<K: Kv, I: Inventory, P: Publisher, C: Clock, R: Random> OrderService<K, I, P, C, R> {
    /// Compare-and-swap on the order: `change` edits a copy and says whether
    /// to store it. A stored change carries the index work it owes, which
    /// this writer then does, unless another writer holds that work (see
    /// [`super::index`]).
    async fn update_order<E: From<StoreError>>(
        &self,
        order_id: &str,
        mut change: impl FnMut(&mut OrderRecord) -> Result<bool, E>,
    ) -> Result<Updated, E> {
        let key = order_key(order_id);
        let claim = journal_append(&self.kv, order_id).await?;
        let now = self.clock.now_ms();
        let updated = update_json(&self.kv, &key, |current: Option<OrderRecord>| -> Result<Change<_, _>, E> {
            let Some(before) = current else {
                return Ok(Change::Keep(Updated::Missing));
            };
            let mut after = before.clone();
            if change(&mut after)? {
                after.index_pending = pending_after_change(&before, &after, claim, now);
                Ok(Change::Write(after.clone(), Updated::Changed { before, after }))
            } else {
                Ok(Change::Keep(Updated::Unchanged(before)))
            }
        })
        .await?;
        if let Updated::Changed { after, .. } = &updated {
            finish_pending(&self.kv, after.clone(), claim, now).await?;
        }
        Ok(updated)
    }

    /// [`Self::update_order`] followed by what the change entails: the
    /// reservation is committed or released and events are published.
    /// Returns the order as it ends up (None when it does not exist) and
    /// whether this call changed it.
    async fn change_order<E: From<StoreError>>(
        &self,
        order_id: &str,
        change: impl FnMut(&mut OrderRecord) -> Result<bool, E>,
    ) -> Result<Option<(OrderRecord, bool)>, E> {
        match self.update_order(order_id, change).await? {
            Updated::Missing => Ok(None),
            Updated::Unchanged(record) => Ok(Some((record, false))),
            Updated::Changed { before, after } => {
                if after.order.status == OrderStatus::Cancelled && after.has_payment_token {
                    // Nobody charges a cancelled order: its token goes.
                    drop_token(&self.kv, order_id).await?;
                }
                let mut events = self.status_events(&before, &after);
                let (record, settle_events) = self.settle_stock(after).await?;
                events.extend(settle_events);
                self.publish(order_id, events).await?;
                Ok(Some((record, true)))
            }
        }
    }

    /// `orders.status_changed` for a new status; `orders.cancelled` when the
    /// order was cancelled or, once cancelled, came to owe a refund.
    fn status_events(&self, before: &OrderRecord, after: &OrderRecord) -> Vec<Event> {
        let (from, to) = (before.order.status, after.order.status);
        let mut events = Vec::new();
        if from != to {
            let data = OrderStatusChangedData {
                order_id: after.order.id.clone(),
                from: from.name().to_string(),
                to: to.name().to_string(),
            };
            events.push(self.event(ORDERS_STATUS_CHANGED, &data));
        }
        let newly_owes_refund = after.order.refund_required && !before.order.refund_required;
        if to == OrderStatus::Cancelled && (from != to || newly_owes_refund) {
            events.push(self.cancelled_event(after));
        }
        events
    }

    /// `orders.cancelled` for a cancelled order; with `refund_required` it
    /// asks the payment worker for the refund.
    fn cancelled_event(&self, record: &OrderRecord) -> Event {
        let data = OrderCancelledData {
            order_id: record.order.id.clone(),
            reason: record.cancel_reason.clone(),
            refund_required: record.order.refund_required,
            payment_id: record.order.payment_id.clone(),
            total_amount: record.order.total_amount,
            currency: record.order.currency.clone(),
        };
        self.event(ORDERS_CANCELLED, &data)
    }

    /// Commits or releases the reservation to match the order's status.
    /// If the reservation ended before the order was paid, its units are
    /// gone: the order is cancelled (and refunded) instead. A step the
    /// inventory cannot do now is left to the reconcile (the order stays open).
    async fn settle_stock(&self, mut record: OrderRecord) -> Result<(OrderRecord, Vec<Event>), StoreError> {
        let mut events = Vec::new();
        let order_id = record.order.id.clone();
        // Commit, then cancel, then release: at most three steps.
        for _ in 0..3 {
            let Some(target) = record.stock_to_settle() else { break };
            let outcome = match (&record.order.reservation_id, target) {
                (None, _) => Ok(()),
                (Some(reservation_id), StockStep::Committed) => self.inventory.commit(reservation_id).await,
                (Some(reservation_id), _) => self.inventory.release(reservation_id).await,
            };
            let reached = match outcome {
                Ok(()) => target,
                Err(InventoryError::Unavailable(_)) => break,
                Err(_) if target == StockStep::Committed && record.order.status.can_become(OrderStatus::Cancelled) => {
                    let now = self.clock.now_ms();
                    let cancel = |order: &mut OrderRecord| {
                        let cancellable = order.stock == StockStep::Held && order.order.status.can_become(OrderStatus::Cancelled);
                        if cancellable {
                            order.set_status(OrderStatus::Cancelled, Some("stock reservation ended before payment"), now);
                        }
                        Ok::<_, StoreError>(cancellable)
                    };
                    match self.update_order(&order_id, cancel).await? {
                        Updated::Changed { before, after } => {
                            events.extend(self.status_events(&before, &after));
                            record = after;
                        }
                        Updated::Unchanged(current) => record = current,
                        Updated::Missing => break,
                    }
                    continue;
                }
                // Nothing is held any more (or it is too late to cancel):
                // record that, so the reconcile stops trying.
                Err(_) => StockStep::Released,
            };
            let from = record.stock;
            let mark = |order: &mut OrderRecord| {
                let unchanged = order.stock == from;
                if unchanged {
                    order.stock = reached;
                }
                Ok::<_, StoreError>(unchanged)
            };
            record = match self.update_order(&order_id, mark).await? {
                Updated::Changed { after, .. } => after,
                Updated::Unchanged(current) => current,
                Updated::Missing => break,
            };
        }
        Ok((record, events))
    }

    /// Publishes events; those that fail are kept on the order for the reconcile.
    pub(super) async fn publish(&self, order_id: &str, events: Vec<Event>) -> Result<(), StoreError> {
        let mut failed = Vec::new();
        for event in events {
            if event.publish(&self.publisher).await.is_err() {
                failed.push(event);
            }
        }
        if !failed.is_empty() {
            self.update_order(order_id, |record| {
                record.undelivered.extend(failed.iter().cloned());
                Ok::<_, StoreError>(true)
            })
            .await?;
        }
        Ok(())
    }

    /// `PUT /orders/{id}/status {status, notes?}`.
    pub(super) async fn put_status(&self, order_id: &str, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
        let body = parse_body(&request.body)?;
        let fields = Fields::of_body(&body, &["status", "notes"])?;
        let to = OrderStatus::parse(fields.text("status", 1, 20)?)
            .ok_or_else(|| ApiError::validation("status", "unknown status"))?;
        let notes = fields.optional_text("notes", 0, super::create::MAX_NOTES_CHARS)?;
        let now = self.clock.now_ms();
        let changed = self
            .change_order(order_id, |record| {
                let from = record.order.status;
                if !from.can_become(to) {
                    return Err(invalid_transition(from, to));
                }
                record.set_status(to, notes, now);
                Ok(true)
            })
            .await?;
        let (record, _) = changed.ok_or_else(|| ApiError::not_found("order"))?;
        Ok(ApiResponse::json(200, &record.order))
    }

    /// `DELETE /orders/{id}?reason=`: cancels the order.
    pub(super) async fn cancel_order(&self, order_id: &str, request: &ApiRequest, caller: Caller) -> Result<ApiResponse, ApiError> {
        let query = Query::parse(request, &["reason"])?;
        let reason = query.text("reason").unwrap_or("");
        if reason.chars().count() > super::create::MAX_NOTES_CHARS {
            return Err(ApiError::validation("reason", "reason must have at most 1000 characters"));
        }
        let note = if reason.is_empty() { "cancelled".to_string() } else { format!("cancelled: {reason}") };
        let now = self.clock.now_ms();
        // A payment whose event has not arrived yet still gets refunded.
        let paid = completed_payment_of(&self.kv, order_id).await?;
        let changed = self
            .change_order(order_id, |record| {
                if !caller.may_access(record.order.user_id) {
                    return Err(ApiError::not_found("order"));
                }
                let from = record.order.status;
                if !from.can_become(OrderStatus::Cancelled) {
                    return Err(invalid_transition(from, OrderStatus::Cancelled));
                }
                adopt_payment(record, paid.as_ref());
                record.set_status(OrderStatus::Cancelled, Some(&note), now);
                Ok(true)
            })
            .await?;
        let (record, _) = changed.ok_or_else(|| ApiError::not_found("order"))?;
        Ok(ApiResponse::json(200, &record.order))
    }

    /// `payments.completed`: the order is paid (or, if it was cancelled
    /// meanwhile, owes a refund).
    pub(super) async fn on_payment_completed(&self, payment: PaymentCompletedData) -> Result<EventOutcome, EventError> {
        let now = self.clock.now_ms();
        let changed = self
            .change_order(&payment.order_id, |record| {
                let order = &mut record.order;
                if (order.total_amount, order.currency.as_str()) != (payment.amount, payment.currency.as_str()) {
                    return Err(EventError::Rejected(format!(
                        "payment {} of {} {} does not match order {} of {} {}",
                        payment.payment_id, payment.amount, payment.currency, order.id, order.total_amount, order.currency
                    )));
                }
                if order.payment_status == PaymentStatus::Completed {
                    return Ok(false);
                }
                order.payment_status = PaymentStatus::Completed;
                order.payment_id = Some(payment.payment_id.clone());
                if order.status.awaits_payment() {
                    record.set_status(OrderStatus::Paid, None, now);
                } else if order.status == OrderStatus::Cancelled {
                    order.refund_required = true;
                    record.append_note("payment completed after cancellation; refund required", now);
                    record.touch(now);
                } else {
                    record.touch(now);
                }
                Ok(true)
            })
            .await?;
        Ok(event_outcome(changed))
    }

    /// `payments.failed` of the order's own charge: an order still awaiting
    /// payment is cancelled. Other payments' failures change nothing.
    pub(super) async fn on_payment_failed(&self, payment: PaymentFailedData) -> Result<EventOutcome, EventError> {
        // Anyone may try to pay an order and fail; only the order's own
        // charge failing means the order goes unpaid.
        if payment.payment_id != order_charge_id(&payment.order_id) {
            return Ok(EventOutcome::Ignored(format!("payment {} is not the order's own charge", payment.payment_id)));
        }
        let now = self.clock.now_ms();
        let note = format!("payment failed: {}", payment.reason);
        let changed = self
            .change_order(&payment.order_id, |record| {
                let awaiting = record.order.status.awaits_payment() && record.order.payment_status == PaymentStatus::Pending;
                if awaiting {
                    record.order.payment_status = PaymentStatus::Failed;
                    record.order.payment_id = Some(payment.payment_id.clone());
                    record.set_status(OrderStatus::Cancelled, Some(&note), now);
                }
                Ok::<_, EventError>(awaiting)
            })
            .await?;
        Ok(event_outcome(changed))
    }

    /// `payments.refunded`: the order's payment is refunded and no refund is
    /// owed any more. Its status stays what it is (cancelled, typically).
    pub(super) async fn on_payment_refunded(&self, payment: PaymentRefundedData) -> Result<EventOutcome, EventError> {
        let now = self.clock.now_ms();
        let changed = self
            .change_order(&payment.order_id, |record| {
                let order = &mut record.order;
                if order.payment_id.as_deref() != Some(payment.payment_id.as_str()) {
                    return Err(EventError::Rejected(format!(
                        "refunded payment {} is not the payment of order {}",
                        payment.payment_id, order.id
                    )));
                }
                if order.payment_status == PaymentStatus::Refunded {
                    return Ok(false);
                }
                order.payment_status = PaymentStatus::Refunded;
                order.refund_required = false;
                record.append_note("payment refunded", now);
                record.touch(now);
                Ok(true)
            })
            .await?;
        Ok(event_outcome(changed))
    }

    /// Drives on the oldest `limit` open orders that are stuck.
    pub(super) async fn reconcile(&self, limit: usize) -> Result<ReconcileReport, ApiError> {
        let mut report = ReconcileReport::default();
        let now = self.clock.now_ms();
        report.idempotency_swept = crate::idempotency::sweep_expired(&self.kv, limit as u64, now).await?.deleted;
        report.indexes_finished = replay_journal(&self.kv, limit as u64, now).await?.finished;
        for record in Indexes::live(&self.kv).await?.oldest_open(limit).await? {
            report.examined += 1;
            if now.saturating_sub(record.updated_ms) < self.config.stuck_after_ms {
                report.recent += 1;
                continue;
            }
            let order_id = record.order.id.clone();
            if !record.undelivered.is_empty() {
                let resend = record.undelivered.clone();
                let taken = self
                    .update_order(&order_id, |current| {
                        current.undelivered.retain(|event| !resend.contains(event));
                        Ok::<_, StoreError>(true)
                    })
                    .await?;
                if matches!(taken, Updated::Changed { .. }) {
                    report.events_resent += resend.len() as u64;
                    self.publish(&order_id, resend).await?;
                }
            }
            if record.stock_to_settle().is_some() {
                let (settled, events) = self.settle_stock(record.clone()).await?;
                self.publish(&order_id, events).await?;
                if settled.stock != record.stock {
                    report.stock_settled += 1;
                }
            }
            if record.order.refund_required {
                self.publish(&order_id, vec![self.cancelled_event(&record)]).await?;
                report.refunds_requested += 1;
            }
            if !(record.order.status.awaits_payment() && record.order.payment_status == PaymentStatus::Pending) {
                continue;
            }
            // Ask the payment side before asking for payment again or giving up.
            if self.apply_settled_payment(&order_id).await? {
                report.payments_found += 1;
                continue;
            }
            if let Some(request) = self.payment_request(&record) {
                self.publish(&order_id, vec![request]).await?;
                report.payment_requested += 1;
            } else if now.saturating_sub(record.created_ms) >= self.config.payment_timeout_ms {
                // A payment completing from here on is refunded: by its own
                // check of the order, or by the order side's event handler.
                let paid = completed_payment_of(&self.kv, &order_id).await?;
                let cancelled = self
                    .change_order(&order_id, |current| {
                        let awaiting = current.order.status.awaits_payment();
                        if awaiting {
                            adopt_payment(current, paid.as_ref());
                            current.set_status(OrderStatus::Cancelled, Some("no payment received in time"), now);
                        }
                        Ok::<_, StoreError>(awaiting)
                    })
                    .await?;
                if matches!(cancelled, Some((_, true))) {
                    report.cancelled += 1;
                }
            }
        }
        Ok(report)
    }
}

impl<K: Kv, I: Inventory, P: Publisher, C: Clock, R: Random> OrderService<K, I, P, C, R> {
    /// Applies to an order awaiting payment what the payment side settled
    /// and did not get across (its event lost or not yet delivered): a
    /// completed payment pays it, a declined own charge cancels it. The
    /// payment's outbox is sent again. True when the order changed.
    async fn apply_settled_payment(&self, order_id: &str) -> Result<bool, ApiError> {
        let outcome = if let Some(payment) = completed_payment_of(&self.kv, order_id).await? {
            deliver_outbox(&self.kv, &self.publisher, &payment.payment_id).await?;
            self.on_payment_completed(PaymentCompletedData {
                payment_id: payment.payment_id,
                order_id: payment.order_id,
                amount: payment.amount,
                currency: payment.currency,
                provider_ref: payment.provider_ref.unwrap_or_default(),
            })
            .await
        } else if let Some(payment) = failed_order_charge(&self.kv, order_id).await? {
            deliver_outbox(&self.kv, &self.publisher, &payment.payment_id).await?;
            self.on_payment_failed(PaymentFailedData {
                payment_id: payment.payment_id,
                order_id: payment.order_id,
                reason: payment.failure_reason.unwrap_or_default(),
            })
            .await
        } else {
            return Ok(false);
        };
        match outcome {
            Ok(outcome) => Ok(outcome == EventOutcome::Applied),
            Err(EventError::Unavailable(message)) => Err(ApiError::new(503, "store_unavailable", message)),
            // A payment contradicting the order does not pay it; if the order
            // is cancelled for the timeout, the payment is adopted and refunded.
            Err(_) => Ok(false),
        }
    }
}

fn event_outcome(changed: Option<(OrderRecord, bool)>) -> EventOutcome {
    match changed {
        None => EventOutcome::Ignored("no such order".to_string()),
        Some((_, true)) => EventOutcome::Applied,
        Some((_, false)) => EventOutcome::Duplicate,
    }
}
