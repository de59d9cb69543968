//! Indexes and counters of orders, kept in step with every order write.
//!
//! Primary data (written once per order, never rebuilt):
//! - `order:{id}`: the [`OrderRecord`] (compare-and-swap).
//! - `orders:seq` (counter) and `orders:at:{n}`: order id of the `n`-th
//!   order ever made, from 1; the global newest-first list.
//! - `orders:user:{user_id}:seq` and `orders:user:{user_id}:at:{n}`: the same per user.
//! - `order_number:{number}`: claims an order number so it is unique.
//! - `orders:placed_amount:{currency}` (counter): the sum of the totals of
//!   every order ever placed in the currency, cancelled ones included. An
//!   order is placed only if this sum stays within `i64::MAX`; as revenue
//!   counts some of these orders, each once, no revenue counter of any
//!   generation can overflow (see `create.rs`).
//!
//! Derived data, under a generation prefix `G = orders:g{generation}`
//! (`orders:generation`, a counter, names the live one; a reindex builds a
//! fresh generation from the orders and then switches to it):
//! - `G:count:{status}`: orders per status.
//! - `G:revenue:{currency}` and `G:revenue_orders:{currency}`: sum and
//!   number of orders that count as revenue ([`OrderStatus::counts_as_revenue`]).
//! - `G:currencies`: currencies seen, for the summary.
//! - `G:set:all:{status}`, `G:set:u{user_id}:{status}`: [`RankSet`]s of
//!   positions per status, over the global and the user's list.
//! - `G:set:all:open`: positions of open orders ([`OrderRecord::is_open`]),
//!   walked oldest first by the reconcile.
//!
//!
//! Index work to do (primary data; operation logs the reconcile replays):
//! - `orders:journal:seq` (counter) and `orders:journal:{n}`: the id of the
//!   order the `n`-th writer was about to change, written before its
//!   compare-and-swap; `n` names that writer's claim (below).
//! - An order's creator writes no journal entry: its entry in the global
//!   list (`orders:at:{n}`, written before the order) serves as one, and it
//!   holds [`CREATOR_CLAIM`], which no journal entry is.
//! - `orders:journal:replayed` and `orders:created_replayed`: how far
//!   [`replay_journal`] has walked the journal and the global list.
//!
//! An order write and its index update are made safe as one: the
//! compare-and-swap that changes what the derived data say about an order
//! ([`IndexedState`]: status, open or not) also stores in the record a
//! [`PendingIndex`]: what the derived data reflect now, and the claim of the
//! writer that brings them to the record ([`finish_pending`]). That writer
//! applies the difference with atomic increments (plus a compare-and-swap
//! the first time a currency is seen), then clears the marker with a
//! compare-and-swap; if the record changed meanwhile it applies the next
//! difference first. Increments are not idempotent, so one claim holder at a
//! time applies an order's changes, in order: a writer that finds a fresh
//! claim leaves its own change to the holder, and the rank sets can check a
//! bit before flipping it. A writer that dies leaves its claim behind; after
//! [`CLAIM_LEASE_MS`] the next writer of the order, or the reconcile
//! replaying the logs, takes it over and finishes the work exactly once
//! (unless the first writer was not dead but stalled for the whole lease:
//! then both apply it).

use serde::{Deserialize, Serialize};

use super::model::{OrderRecord, OrderStatus};
use crate::http::PageRequest;
use crate::kv::{Change, Kv, StoreError, decode, decode_counters, get_json, get_many_json, read_counter, set_json, update_json};
use crate::rank_set::RankSet;

pub const SEQUENCE_KEY: &str = "orders:seq";
/// The claim of the writer creating an order. Journal entries count from
/// 1, so no other writer holds it, and an order has one creator (its
/// record is written only if absent).
pub const CREATOR_CLAIM: u64 = 0;
/// How long a claim on an order's index work holds before another writer
/// may take it over: far longer than applying a change takes (a few dozen
/// store operations), so only a writer that died loses its claim.
pub const CLAIM_LEASE_MS: u64 = 60_000;
const GENERATION_KEY: &str = "orders:generation";
/// Hands out generation numbers, so an abandoned rebuild is never reused.
const GENERATION_ALLOC_KEY: &str = "orders:generation_alloc";

pub fn order_key(order_id: &str) -> String {
    format!("order:{order_id}")
}

pub fn position_key(position: u64) -> String {
    format!("orders:at:{position}")
}

pub fn user_sequence_key(user_id: u64) -> String {
    format!("orders:user:{user_id}:seq")
}

pub fn user_position_key(user_id: u64, position: u64) -> String {
    format!("orders:user:{user_id}:at:{position}")
}

pub fn placed_amount_key(currency: &str) -> String {
    format!("orders:placed_amount:{currency}")
}

pub fn order_number_key(order_number: &str) -> String {
    format!("order_number:{order_number}")
}

fn journal_key(entry: u64) -> String {
    format!("orders:journal:{entry}")
}

/// What the derived data say about an order; its list positions, user,
/// amount and currency never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedState {
    pub status: OrderStatus,
    pub open: bool,
}

impl IndexedState {
    pub fn of(record: &OrderRecord) -> IndexedState {
        IndexedState { status: record.order.status, open: record.is_open() }
    }
}

/// Index work an order record still owes, stored in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingIndex {
    /// What the derived data reflect now (None: nothing, a new order).
    pub indexed: Option<IndexedState>,
    /// The journal entry of the writer bringing the derived data to the
    /// record ([`CREATOR_CLAIM`] for the order's creator).
    pub claim: u64,
    pub claimed_ms: u64,
}

/// Notes in the journal that `order_id` is about to be written; the entry
/// number is the writer's claim.
pub async fn journal_append(kv: &impl Kv, order_id: &str) -> Result<u64, StoreError> {
    let entry = kv.increment(JOURNAL.sequence_key, 1).await? as u64;
    set_json(kv, &journal_key(entry), &order_id).await?;
    Ok(entry)
}

/// The index work `after` owes when a writer holding journal entry `claim`
/// changes `before` into it at `now_ms`: none when the derived data already
/// say the same, the current holder's while its claim is fresh (it applies
/// this change too), else this writer's.
pub fn pending_after_change(before: &OrderRecord, after: &OrderRecord, claim: u64, now_ms: u64) -> Option<PendingIndex> {
    let indexed = match &before.index_pending {
        None if IndexedState::of(before) == IndexedState::of(after) => return None,
        None => Some(IndexedState::of(before)),
        Some(held) if now_ms.saturating_sub(held.claimed_ms) < CLAIM_LEASE_MS => return Some(held.clone()),
        Some(abandoned) => abandoned.indexed,
    };
    Some(PendingIndex { indexed, claim, claimed_ms: now_ms })
}

/// Brings the derived data from what `record`'s pending work says they
/// reflect to `record`, and on to whatever the order becomes meanwhile, as
/// long as `claim` holds the work; then clears it.
pub async fn finish_pending(kv: &impl Kv, mut record: OrderRecord, claim: u64, now_ms: u64) -> Result<(), StoreError> {
    let key = order_key(&record.order.id);
    while let Some(pending) = record.index_pending.clone().filter(|pending| pending.claim == claim) {
        let target = IndexedState::of(&record);
        Indexes::live(kv).await?.apply(&record, pending.indexed, target).await?;
        let next = update_json(kv, &key, |current: Option<OrderRecord>| {
            let Some(mut current) = current else { return Ok::<_, StoreError>(Change::Keep(None)) };
            if current.index_pending.as_ref().is_none_or(|pending| pending.claim != claim) {
                return Ok(Change::Keep(None));
            }
            current.index_pending = (IndexedState::of(&current) != target)
                .then_some(PendingIndex { indexed: Some(target), claim, claimed_ms: now_ms });
            Ok(Change::Write(current.clone(), Some(current)))
        })
        .await?;
        let Some(next) = next else { break };
        record = next;
    }
    Ok(())
}

/// Takes over `order_id`'s index work if its claim has run out, and finishes
/// it; true when it did.
async fn take_over_pending(kv: &impl Kv, order_id: &str, now_ms: u64) -> Result<bool, StoreError> {
    let claim = journal_append(kv, order_id).await?;
    let taken = update_json(kv, &order_key(order_id), |current: Option<OrderRecord>| {
        let Some(mut record) = current else { return Ok::<_, StoreError>(Change::Keep(None)) };
        match &mut record.index_pending {
            Some(pending) if now_ms.saturating_sub(pending.claimed_ms) >= CLAIM_LEASE_MS => {
                pending.claim = claim;
                pending.claimed_ms = now_ms;
                Ok(Change::Write(record.clone(), Some(record)))
            }
            _ => Ok(Change::Keep(None)),
        }
    })
    .await?;
    match taken {
        Some(record) => finish_pending(kv, record, claim, now_ms).await.map(|()| true),
        None => Ok(false),
    }
}

/// What one walk through the journal did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalReplay {
    pub entries: u64,
    /// Orders whose writer had died before finishing their index update.
    pub finished: u64,
}

/// A log naming, at entry `n` (from 1), an order a writer was about to
/// write.
struct WriterLog {
    /// Counts the entries.
    sequence_key: &'static str,
    entry_key: fn(u64) -> String,
    /// How far walks have got.
    replayed_key: &'static str,
    /// Whether a walked entry is deleted: journal entries serve nothing
    /// else, list entries are the list.
    delete_walked: bool,
}

/// Every writer's but creators'.
const JOURNAL: WriterLog = WriterLog {
    sequence_key: "orders:journal:seq",
    entry_key: journal_key,
    replayed_key: "orders:journal:replayed",
    delete_walked: true,
};

/// Creators': the global list.
const CREATIONS: WriterLog =
    WriterLog { sequence_key: SEQUENCE_KEY, entry_key: position_key, replayed_key: "orders:created_replayed", delete_walked: false };

/// Walks at most `limit` entries of the journal, then of the global list
/// (creators'), from where the last walk stopped: finishes the index work
/// their writers left (once its claim has run out). Each walk stops at an
/// order whose claim is still fresh: its writer may be at work.
pub async fn replay_journal(kv: &impl Kv, limit: u64, now_ms: u64) -> Result<JournalReplay, StoreError> {
    let changes = replay_log(kv, &JOURNAL, limit, now_ms).await?;
    let creations = replay_log(kv, &CREATIONS, limit, now_ms).await?;
    Ok(JournalReplay { entries: changes.entries + creations.entries, finished: changes.finished + creations.finished })
}

async fn replay_log(kv: &impl Kv, log: &WriterLog, limit: u64, now_ms: u64) -> Result<JournalReplay, StoreError> {
    let start: u64 = get_json(kv, log.replayed_key).await?.unwrap_or(0);
    let end = list_len(kv, log.sequence_key).await?.min(start.saturating_add(limit));
    let mut replay = JournalReplay::default();
    let mut walked = start;
    while walked < end {
        let entry = walked + 1;
        if let Some(order_id) = get_json::<String>(kv, &(log.entry_key)(entry)).await? {
            let record: Option<OrderRecord> = get_json(kv, &order_key(&order_id)).await?;
            if let Some(pending) = record.and_then(|record| record.index_pending) {
                if now_ms.saturating_sub(pending.claimed_ms) < CLAIM_LEASE_MS {
                    break;
                }
                replay.finished += u64::from(take_over_pending(kv, &order_id, now_ms).await?);
            }
            if log.delete_walked {
                kv.delete(&(log.entry_key)(entry)).await?;
            }
        }
        walked = entry;
        replay.entries += 1;
    }
    // Concurrent walks only ever move the mark forward.
    update_json(kv, log.replayed_key, |current: Option<u64>| {
        Ok::<_, StoreError>(if current.unwrap_or(0) >= walked { Change::Keep(()) } else { Change::Write(walked, ()) })
    })
    .await?;
    Ok(replay)
}

/// Reads the length of a list from its counter.
async fn list_len(kv: &impl Kv, sequence_key: &str) -> Result<u64, StoreError> {
    Ok(u64::try_from(read_counter(kv, sequence_key).await?).unwrap_or(0))
}

/// `GET /orders` filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListFilter {
    pub user_id: Option<u64>,
    pub status: Option<OrderStatus>,
}

/// Revenue figures of one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrencyRevenue {
    pub currency: String,
    pub total_revenue: i64,
    pub revenue_orders: i64,
    /// `total_revenue / revenue_orders`, rounded down; 0 without orders.
    pub average_order_value: i64,
}

/// Order counts per status and revenue per currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub by_status: Vec<(OrderStatus, i64)>,
    pub revenue: Vec<CurrencyRevenue>,
}

impl Totals {
    pub fn count(&self, status: OrderStatus) -> i64 {
        self.by_status.iter().find(|(each, _)| *each == status).map_or(0, |(_, count)| *count)
    }
}

/// The derived data of one generation.
pub struct Indexes<'a, K> {
    kv: &'a K,
    generation: i64,
}

impl<'a, K: Kv> Indexes<'a, K> {
    /// The live generation.
    pub async fn live(kv: &'a K) -> Result<Indexes<'a, K>, StoreError> {
        Ok(Indexes { kv, generation: read_counter(kv, GENERATION_KEY).await? })
    }

    fn key(&self, rest: &str) -> String {
        format!("orders:g{}:{rest}", self.generation)
    }

    fn set(&self, name: &str) -> RankSet<'a, K> {
        RankSet::new(self.kv, self.key(&format!("set:{name}")))
    }

    /// Sets `record` belongs to in `state`, with its position in each set's list.
    fn memberships(record: &OrderRecord, state: IndexedState) -> Vec<(String, u64)> {
        let status = state.status.name();
        let mut sets = vec![
            (format!("all:{status}"), record.position),
            (format!("u{}:{status}", record.order.user_id), record.user_position),
        ];
        if state.open {
            sets.push(("all:open".to_string(), record.position));
        }
        sets
    }

    fn revenue_of(record: &OrderRecord, state: IndexedState) -> Option<(&str, i64)> {
        let order = &record.order;
        state.status.counts_as_revenue().then_some((order.currency.as_str(), order.total_amount))
    }

    /// Moves `record` from state `from` (None: not indexed, a new order) to `to`.
    ///
    /// Revenue counters cannot overflow: they sum orders placed within
    /// `orders:placed_amount:{currency}` (see the module header). A store
    /// error half-way leaves the work pending for whoever finishes it.
    pub async fn apply(&self, record: &OrderRecord, from: Option<IndexedState>, to: IndexedState) -> Result<(), StoreError> {
        let old_sets = from.map(|state| Self::memberships(record, state)).unwrap_or_default();
        let new_sets = Self::memberships(record, to);
        // Removals first, then insertions. No two touch one bitmask (sets
        // differ by name), so the masks are read up front in one batch.
        let changes: Vec<(RankSet<'a, K>, u64, bool)> = old_sets
            .iter()
            .filter(|set| !new_sets.contains(set))
            .map(|(name, position)| (self.set(name), *position, false))
            .chain(new_sets.iter().filter(|set| !old_sets.contains(set)).map(|(name, position)| (self.set(name), *position, true)))
            .collect();
        let mask_keys: Vec<String> = changes.iter().map(|(set, position, _)| set.mask_key_of(*position)).collect();
        // A new order's currency is nearly always known already: the
        // generation's currency list (which only grows) is read in the same
        // batch, and written only when the currency is new.
        let currencies_key = self.key("currencies");
        let read_keys: Vec<String> = mask_keys.iter().cloned().chain(from.is_none().then(|| currencies_key.clone())).collect();
        let mut values = self.kv.get_many(&read_keys).await?;
        let currencies = if from.is_none() { values.pop().flatten() } else { None };
        let masks = decode_counters(&mask_keys, values)?;
        for ((set, position, member), mask) in changes.iter().zip(masks) {
            set.change_from(*position, *member, mask).await?;
        }

        let old_status = from.map(|state| state.status);
        if old_status != Some(to.status) {
            if let Some(status) = old_status {
                self.kv.increment(&self.key(&format!("count:{}", status.name())), -1).await?;
            }
            self.kv.increment(&self.key(&format!("count:{}", to.status.name())), 1).await?;
        }

        let old_revenue = from.and_then(|state| Self::revenue_of(record, state));
        let new_revenue = Self::revenue_of(record, to);
        if old_revenue != new_revenue {
            for ((currency, amount), sign) in old_revenue.into_iter().map(|r| (r, -1)).chain(new_revenue.map(|r| (r, 1))) {
                self.kv.increment(&self.key(&format!("revenue:{currency}")), sign * amount).await?;
                self.kv.increment(&self.key(&format!("revenue_orders:{currency}")), sign).await?;
            }
        }
        if from.is_none() {
            let known: Vec<String> = currencies.map(|bytes| decode(&currencies_key, &bytes)).transpose()?.unwrap_or_default();
            if !known.contains(&record.order.currency) {
                self.note_currency(&currencies_key, &record.order.currency).await?;
            }
        }
        Ok(())
    }

    /// Adds `currency` to the list at `currencies_key` (this generation's).
    async fn note_currency(&self, currencies_key: &str, currency: &str) -> Result<(), StoreError> {
        update_json(self.kv, currencies_key, |current: Option<Vec<String>>| {
            let mut currencies = current.unwrap_or_default();
            if currencies.iter().any(|known| known == currency) {
                return Ok::<_, StoreError>(Change::Keep(()));
            }
            currencies.push(currency.to_string());
            currencies.sort();
            Ok(Change::Write(currencies, ()))
        })
        .await
    }

    /// The orders of one page, newest first, and how many orders match.
    /// Costs O(page_size) store reads (O(page_size · log n) with a status filter).
    pub async fn page(&self, filter: ListFilter, page: PageRequest) -> Result<(Vec<OrderRecord>, u64), StoreError> {
        let (sequence_key, set_scope) = match filter.user_id {
            Some(user_id) => (user_sequence_key(user_id), format!("u{user_id}")),
            None => (SEQUENCE_KEY.to_string(), "all".to_string()),
        };
        let len = list_len(self.kv, &sequence_key).await?;
        let take = page.page_size as usize;
        let (positions, total) = match filter.status {
            Some(status) => {
                let set = self.set(&format!("{set_scope}:{}", status.name()));
                (set.newest_first(len, page.skip(), take).await?, set.len(len).await?)
            }
            None => {
                let newest = len.saturating_sub(page.skip());
                let oldest = newest.saturating_sub(page.page_size) + 1;
                ((oldest..=newest).rev().collect(), len)
            }
        };
        let entry_keys: Vec<String> = positions
            .iter()
            .map(|&position| match filter.user_id {
                Some(user_id) => user_position_key(user_id, position),
                None => position_key(position),
            })
            .collect();
        let record_position: fn(&OrderRecord) -> u64 =
            if filter.user_id.is_some() { |record| record.user_position } else { |record| record.position };
        let records = self
            .records_at(&entry_keys)
            .await?
            .into_iter()
            .zip(positions)
            .filter_map(|(record, position)| {
                // Skipped: an entry left by a creation that failed half-way and
                // was redone at another position, and an order whose status
                // changed since the index was read.
                record.filter(|record| {
                    record_position(record) == position && filter.status.is_none_or(|status| status == record.order.status)
                })
            })
            .collect();
        Ok((records, total))
    }

    /// The orders the list entries at `entry_keys` point to, where both
    /// exist: two batch reads, the entries then the records.
    async fn records_at(&self, entry_keys: &[String]) -> Result<Vec<Option<OrderRecord>>, StoreError> {
        let order_ids: Vec<Option<String>> = get_many_json(self.kv, entry_keys).await?;
        let record_keys: Vec<String> = order_ids.iter().flatten().map(|order_id| order_key(order_id)).collect();
        let mut records = get_many_json::<OrderRecord>(self.kv, &record_keys).await?.into_iter();
        Ok(order_ids.into_iter().map(|order_id| order_id.and_then(|_| records.next().flatten())).collect())
    }

    /// The oldest `take` open orders.
    pub async fn oldest_open(&self, take: usize) -> Result<Vec<OrderRecord>, StoreError> {
        let len = list_len(self.kv, SEQUENCE_KEY).await?;
        let positions = self.set("all:open").oldest_first(len, 0, take).await?;
        let entry_keys: Vec<String> = positions.into_iter().map(position_key).collect();
        Ok(self.records_at(&entry_keys).await?.into_iter().flatten().collect())
    }

    /// Counts and revenue: 9 reads plus 2 per currency, whatever the number of orders.
    pub async fn totals(&self) -> Result<Totals, StoreError> {
        let mut by_status = Vec::new();
        for status in OrderStatus::ALL {
            by_status.push((status, read_counter(self.kv, &self.key(&format!("count:{}", status.name()))).await?));
        }
        let currencies: Vec<String> = get_json(self.kv, &self.key("currencies")).await?.unwrap_or_default();
        let mut revenue = Vec::new();
        for currency in currencies {
            let total_revenue = read_counter(self.kv, &self.key(&format!("revenue:{currency}"))).await?;
            let revenue_orders = read_counter(self.kv, &self.key(&format!("revenue_orders:{currency}"))).await?;
            let average_order_value = if revenue_orders > 0 { total_revenue / revenue_orders } else { 0 };
            revenue.push(CurrencyRevenue { currency, total_revenue, revenue_orders, average_order_value });
        }
        Ok(Totals { by_status, revenue })
    }
}

/// What one reindex call did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReindexReport {
    /// Orders this call added to the generation being built.
    pub orders: u64,
    pub generation: i64,
    /// Last list position the rebuild has reached.
    pub cursor: u64,
    /// The rebuild reached the end of the list and its generation is live.
    pub done: bool,
}

/// A rebuild in progress, between calls: `orders:reindex`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Rebuild {
    generation: i64,
    cursor: u64,
}

const REBUILD_KEY: &str = "orders:reindex";

/// Rebuilds the derived keys from the order records (reached through the
/// global list) into a fresh generation, `batch` positions per call: each
/// call goes on from where the last one stopped, and the call that reaches
/// the end of the list makes the generation live. An admin repair, best run
/// while no orders are written (changes to orders already passed are not in
/// the new generation), by one caller at a time.
pub async fn reindex(kv: &impl Kv, batch: u64) -> Result<ReindexReport, StoreError> {
    let rebuild = match get_json::<Rebuild>(kv, REBUILD_KEY).await? {
        Some(rebuild) => rebuild,
        None => Rebuild { generation: kv.increment(GENERATION_ALLOC_KEY, 1).await?, cursor: 0 },
    };
    let fresh = Indexes { kv, generation: rebuild.generation };
    let len = list_len(kv, SEQUENCE_KEY).await?;
    let last = len.min(rebuild.cursor.saturating_add(batch));
    let mut orders = 0;
    let positions = rebuild.cursor + 1..=last;
    let entry_keys: Vec<String> = positions.clone().map(position_key).collect();
    for (record, position) in fresh.records_at(&entry_keys).await?.into_iter().zip(positions) {
        if let Some(record) = record
            && record.position == position
        {
            fresh.apply(&record, None, IndexedState::of(&record)).await?;
            orders += 1;
        }
    }
    let done = last >= len;
    if done {
        let live = read_counter(kv, GENERATION_KEY).await?;
        kv.increment(GENERATION_KEY, rebuild.generation - live).await?;
        kv.delete(REBUILD_KEY).await?;
    } else {
        set_json(kv, REBUILD_KEY, &Rebuild { cursor: last, ..rebuild.clone() }).await?;
    }
    Ok(ReindexReport { orders, generation: rebuild.generation, cursor: last, done })
}
