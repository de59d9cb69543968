//! Reservations: taking stock for an order, all items or none, and the one
//! way each reservation ends (committed, released or expired).
//!
//! No overselling: a product's `available` only decreases through a
//! compare-and-swap that checks it stays non-negative. Ending a reservation
//! first changes the reservation's status by compare-and-swap and only the
//! caller whose swap made the change moves the units, so a repeated or
//! concurrent release, commit or expiry moves stock once. A crash between the
//! two steps leaves units held (sold short, never oversold).

use serde::{Deserialize, Serialize};

use super::catalog::{Movement, Product, move_units, product_key};
use crate::kv::{Change, Kv, StoreError, create_json, get_json, read_counter, set_json, update_json};
use crate::orders::{InventoryError, ReservationItem};

pub const SEQUENCE_KEY: &str = "inventory:reservation_seq";
pub const SWEEP_CURSOR_KEY: &str = "inventory:sweep_cursor";

pub fn reservation_key(reservation_id: &str) -> String {
    format!("inventory:reservation:{reservation_id}")
}

/// The reservation made `position`-th, for the expiry sweep.
pub fn position_key(position: u64) -> String {
    format!("inventory:reservation_at:{position}")
}

/// The counter of reservations that ended with `outcome`.
pub fn stat_key(outcome: &str) -> String {
    format!("inventory:stats:reservations:{outcome}")
}

/// How reservations end, each counted under [`stat_key`]. How many were
/// created is [`SEQUENCE_KEY`]: every reservation takes the next position
/// as the first step of being recorded, so a counter of its own would be one
/// more store round trip per order for the same number (a store failure
/// right after taking the position counts a reservation never written).
pub const ENDINGS: [&str; 3] = ["committed", "released", "expired"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    Held,
    Committed,
    Released,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub reservation_id: String,
    pub order_id: String,
    pub items: Vec<ReservationItem>,
    pub status: ReservationStatus,
    pub expires_at_ms: u64,
    pub expires_at: String,
    pub created_at: String,
}

impl Reservation {
    fn is_due(&self, now_ms: u64) -> bool {
        self.status == ReservationStatus::Held && now_ms >= self.expires_at_ms
    }
}

/// What a caller asks of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Commit,
    /// Give held units back. A committed reservation is never released: its
    /// units are sold (`DELETE /inventory/reservations/{id}` gets 409).
    Release,
    /// The reservation's order was cancelled: held units go back, and sold
    /// units come back to stock once. Only the order flow asks this, through
    /// the composed `shop:inventory` interface, after its own compare-and-swap
    /// cancelled the order; no HTTP route can.
    OrderCancelled,
    /// Expire it if it is held past its time; otherwise leave it.
    ExpireIfDue,
}

/// Takes `quantity` units of a product out of `available`.
async fn take(kv: &impl Kv, item: &ReservationItem) -> Result<(), InventoryError> {
    update_json(kv, &product_key(&item.product_id), |current: Option<Product>| {
        let Some(mut product) = current else {
            return Err(InventoryError::UnknownProduct(item.product_id.clone()));
        };
        if product.available < item.quantity {
            return Err(InventoryError::InsufficientStock {
                product_id: item.product_id.clone(),
                requested: item.quantity,
                available: product.available,
            });
        }
        product.available -= item.quantity;
        product.reserved += item.quantity;
        Ok(Change::Write(product, ()))
    })
    .await
}

/// Takes every item or, when one is short or unknown, gives back what was
/// taken and fails.
pub async fn take_all(kv: &impl Kv, items: &[ReservationItem]) -> Result<(), InventoryError> {
    for (taken, item) in items.iter().enumerate() {
        if let Err(error) = take(kv, item).await {
            // Best effort: if the store fails half-way the rest stays
            // reserved until an admin corrects the stock, which can only undersell.
            let _ = move_all(kv, &items[..taken], Movement::Unreserve).await;
            return Err(error);
        }
    }
    Ok(())
}

/// Moves the units of every item.
pub async fn move_all(kv: &impl Kv, items: &[ReservationItem], movement: Movement) -> Result<(), StoreError> {
    for item in items {
        move_units(kv, &item.product_id, item.quantity, movement).await?;
    }
    Ok(())
}

/// Stores a new reservation and lists it for the expiry sweep.
pub async fn record(kv: &impl Kv, reservation: &Reservation) -> Result<(), StoreError> {
    let position = kv.increment(SEQUENCE_KEY, 1).await?;
    set_json(kv, &position_key(position as u64), &reservation.reservation_id).await?;
    if !create_json(kv, &reservation_key(&reservation.reservation_id), reservation).await? {
        return Err(StoreError::new("reservation id collision"));
    }
    Ok(())
}

/// Applies `ending` to a reservation at `now_ms`, moving its units when this
/// call changed its status. Returns the reservation as it now is.
pub async fn end(kv: &impl Kv, reservation_id: &str, ending: Ending, now_ms: u64) -> Result<Reservation, InventoryError> {
    let (reservation, movement) = update_json(kv, &reservation_key(reservation_id), |current: Option<Reservation>| {
        let Some(mut reservation) = current else {
            return Err(InventoryError::ReservationNotFound(reservation_id.to_string()));
        };
        let (status, movement) = match (reservation.status, ending) {
            _ if reservation.is_due(now_ms) => (ReservationStatus::Expired, Movement::Unreserve),
            (ReservationStatus::Held, Ending::Commit) => (ReservationStatus::Committed, Movement::Consume),
            (ReservationStatus::Held, Ending::Release | Ending::OrderCancelled) => (ReservationStatus::Released, Movement::Unreserve),
            (ReservationStatus::Committed, Ending::OrderCancelled) => (ReservationStatus::Released, Movement::Restock),
            _ => return Ok(Change::Keep((reservation, None))),
        };
        reservation.status = status;
        Ok(Change::Write(reservation.clone(), (reservation, Some(movement))))
    })
    .await?;
    if let Some(movement) = movement {
        move_all(kv, &reservation.items, movement).await?;
        let outcome = match reservation.status {
            ReservationStatus::Committed => "committed",
            ReservationStatus::Released => "released",
            _ => "expired",
        };
        kv.increment(&stat_key(outcome), 1).await?;
    }
    match (ending, reservation.status) {
        (Ending::Commit, ReservationStatus::Expired) => Err(InventoryError::ReservationExpired(reservation_id.to_string())),
        (Ending::Commit, ReservationStatus::Released) => Err(InventoryError::ReservationReleased(reservation_id.to_string())),
        (Ending::Release, ReservationStatus::Committed) => Err(InventoryError::ReservationCommitted(reservation_id.to_string())),
        _ => Ok(reservation),
    }
}

/// What one sweep did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub examined: u64,
    pub expired: u64,
    /// Reservations up to this position are all ended.
    pub cursor: u64,
}

/// Expires due reservations among the next `limit` after the sweep cursor
/// (oldest first) and moves the cursor past those that have ended.
pub async fn sweep(kv: &impl Kv, limit: u64, now_ms: u64) -> Result<SweepReport, InventoryError> {
    let start: u64 = get_json(kv, SWEEP_CURSOR_KEY).await?.unwrap_or(0);
    let last = u64::try_from(read_counter(kv, SEQUENCE_KEY).await?).unwrap_or(0).min(start.saturating_add(limit));
    let mut report = SweepReport { examined: 0, expired: 0, cursor: start };
    let mut all_ended_so_far = true;
    for position in start + 1..=last {
        report.examined += 1;
        // A missing entry is a reservation being recorded right now (or one
        // whose recording failed); it expires lazily when touched.
        let Some(reservation_id) = get_json::<String>(kv, &position_key(position)).await? else {
            continue;
        };
        let still_held = match get_json::<Reservation>(kv, &reservation_key(&reservation_id)).await? {
            Some(reservation) if reservation.is_due(now_ms) => {
                end(kv, &reservation_id, Ending::ExpireIfDue, now_ms).await?;
                report.expired += 1;
                false
            }
            Some(reservation) => reservation.status == ReservationStatus::Held,
            None => false,
        };
        all_ended_so_far &= !still_held;
        if all_ended_so_far {
            report.cursor = position;
        }
    }
    if report.cursor > start {
        let cursor = report.cursor;
        update_json(kv, SWEEP_CURSOR_KEY, |current: Option<u64>| match current {
            Some(existing) if existing >= cursor => Ok::<_, InventoryError>(Change::Keep(())),
            _ => Ok(Change::Write(cursor, ())),
        })
        .await?;
    }
    Ok(report)
}
