//! Idempotency keys: the first request with a key claims it (compare-and-swap
//! on an absent record, so of two concurrent duplicates exactly one wins),
//! does the work, and stores its answer; later requests with the key get that
//! answer back.
//!
//! A claim also fixes the id of the resource being made (order id, payment
//! id). If the owner dies or gives up half-way (store outage, gateway down),
//! its lease runs out and the next request with the key resumes the same
//! resource instead of making a second one.
//!
//! Records expire (24 h for clients' keys by default): an expired record
//! counts as absent, and [`sweep_expired`] deletes them in bounded batches,
//! oldest first, walking the journal `idem:journal:at:{n}` (`idem:journal:seq`
//! counts it, `idem:journal:cursor` says how far the sweep got) into which
//! every record and event marker is written when made. The store is never
//! listed.

use serde::{Deserialize, Serialize};

use crate::http::{ApiError, ApiResponse};
use crate::kv::{Change, Kv, StoreError, get_json, update_json};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClaimRecord {
    /// Hash of the request, to tell a retry from another request reusing the key.
    fingerprint: String,
    resource_id: String,
    state: ClaimState,
    /// After this the record counts as absent (0: never, records made before expiry existed).
    #[serde(default)]
    expires_at_ms: u64,
}

/// Default life of a client's idempotency record and of an event marker.
pub const DEFAULT_TTL_MS: u64 = 24 * 3600 * 1000;

const JOURNAL_SEQ_KEY: &str = "idem:journal:seq";
const JOURNAL_CURSOR_KEY: &str = "idem:journal:cursor";

fn journal_key(position: u64) -> String {
    format!("idem:journal:at:{position}")
}

/// A journal entry: a record or marker made to expire at `expires_at_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalEntry {
    key: String,
    expires_at_ms: u64,
}

/// Writes `key` into the journal the sweep walks.
async fn journal(kv: &impl Kv, key: &str, expires_at_ms: u64) -> Result<(), StoreError> {
    let position = kv.increment(JOURNAL_SEQ_KEY, 1).await?;
    let entry = JournalEntry { key: key.to_string(), expires_at_ms };
    crate::kv::set_json(kv, &journal_key(position as u64), &entry).await
}

/// A record that only says "seen until `expires_at_ms`" (processed-event markers).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    expires_at_ms: u64,
}

/// Whether `key` holds a marker that has not expired.
pub async fn is_marked(kv: &impl Kv, key: &str, now_ms: u64) -> Result<bool, StoreError> {
    // Markers written before expiry existed hold `1`: they never expire.
    Ok(match kv.get(key).await? {
        None => false,
        Some(bytes) => serde_json::from_slice::<Marker>(&bytes).map_or(true, |marker| marker.expires_at_ms > now_ms),
    })
}

/// Marks `key` as seen for `ttl_ms`.
pub async fn mark(kv: &impl Kv, key: &str, now_ms: u64, ttl_ms: u64) -> Result<(), StoreError> {
    let expires_at_ms = now_ms.saturating_add(ttl_ms);
    crate::kv::set_json(kv, key, &Marker { expires_at_ms }).await?;
    journal(kv, key, expires_at_ms).await
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Journal entries looked at.
    pub examined: u64,
    /// Expired records and markers deleted.
    pub deleted: u64,
}

/// Deletes expired records and markers among the next `limit` journal
/// entries, oldest first, and moves the cursor past them; stops at the first
/// entry not yet expired (the ones after it were made later). A record renewed
/// since its entry was written has a later entry and is left to it.
pub async fn sweep_expired(kv: &impl Kv, limit: u64, now_ms: u64) -> Result<SweepReport, StoreError> {
    let start: u64 = get_json(kv, JOURNAL_CURSOR_KEY).await?.unwrap_or(0);
    let last = u64::try_from(crate::kv::read_counter(kv, JOURNAL_SEQ_KEY).await?).unwrap_or(0).min(start.saturating_add(limit));
    let mut report = SweepReport::default();
    let mut cursor = start;
    for position in start + 1..=last {
        report.examined += 1;
        if let Some(entry) = get_json::<JournalEntry>(kv, &journal_key(position)).await? {
            if entry.expires_at_ms > now_ms {
                break;
            }
            if let Some(bytes) = kv.get(&entry.key).await?
                && expiry_of(&bytes) <= now_ms
            {
                kv.delete(&entry.key).await?;
                report.deleted += 1;
            }
        }
        kv.delete(&journal_key(position)).await?;
        cursor = position;
    }
    if cursor > start {
        crate::kv::set_json(kv, JOURNAL_CURSOR_KEY, &cursor).await?;
    }
    Ok(report)
}

/// When a stored record or marker expires; `u64::MAX` for records that never do.
fn expiry_of(bytes: &[u8]) -> u64 {
    #[derive(Deserialize)]
    struct Expiring {
        #[serde(default)]
        expires_at_ms: u64,
    }
    match serde_json::from_slice::<Expiring>(bytes) {
        Ok(Expiring { expires_at_ms: 0 }) | Err(_) => u64::MAX,
        Ok(Expiring { expires_at_ms }) => expires_at_ms,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum ClaimState {
    /// Someone works on it until `lease_until_ms`.
    InProgress { lease_until_ms: u64 },
    /// The final answer.
    Done { status: u16, body: String },
}

/// The result of claiming a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller owns the work; `resumed` when an earlier owner gave up.
    Owned { resource_id: String, resumed: bool },
    /// Already answered: send this again.
    Replay { resource_id: String, response: ApiResponse },
    /// Another caller holds a live lease on the key right now.
    InProgress,
    /// The key was first used for a different request.
    Mismatch,
}

/// How long a claim holds its key from others, and how long its record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    pub lease_ms: u64,
    pub ttl_ms: u64,
}

/// Claims `key` for a request with `fingerprint`; `new_resource_id` is used
/// only if the key is new (or its record expired).
pub async fn claim(
    kv: &impl Kv,
    key: &str,
    fingerprint: &str,
    new_resource_id: String,
    now_ms: u64,
    terms: Terms,
) -> Result<Claim, StoreError> {
    let lease_until_ms = now_ms.saturating_add(terms.lease_ms);
    let expires_at_ms = now_ms.saturating_add(terms.ttl_ms);
    let claim = update_json(kv, key, |current: Option<ClaimRecord>| {
        let current = current.filter(|record| record.expires_at_ms == 0 || record.expires_at_ms > now_ms);
        let Some(record) = current else {
            let record = ClaimRecord {
                fingerprint: fingerprint.to_string(),
                resource_id: new_resource_id.clone(),
                state: ClaimState::InProgress { lease_until_ms },
                expires_at_ms,
            };
            let claim = Claim::Owned { resource_id: new_resource_id.clone(), resumed: false };
            return Ok(Change::Write(record, claim));
        };
        if record.fingerprint != fingerprint {
            return Ok(Change::Keep(Claim::Mismatch));
        }
        match record.state {
            ClaimState::Done { status, body } => {
                let mut response = ApiResponse::json(status, &());
                response.body = body.into_bytes();
                Ok(Change::Keep(Claim::Replay { resource_id: record.resource_id, response }))
            }
            ClaimState::InProgress { lease_until_ms: held_until } if held_until > now_ms => {
                Ok(Change::Keep(Claim::InProgress))
            }
            ClaimState::InProgress { .. } => {
                let claim = Claim::Owned { resource_id: record.resource_id.clone(), resumed: true };
                let renewed = ClaimRecord { state: ClaimState::InProgress { lease_until_ms }, ..record };
                Ok(Change::Write(renewed, claim))
            }
        }
    })
    .await?;
    if matches!(claim, Claim::Owned { resumed: false, .. }) {
        // A crash before this leaves a record the sweep never reaches; it
        // still counts as absent once expired.
        journal(kv, key, expires_at_ms).await?;
    }
    Ok(claim)
}

/// Stores the final answer for the key.
pub async fn complete(kv: &impl Kv, key: &str, response: &ApiResponse) -> Result<(), StoreError> {
    let body = String::from_utf8_lossy(&response.body).into_owned();
    set_state(kv, key, ClaimState::Done { status: response.status, body }).await
}

/// Gives the key up without an answer (the work may be retried), keeping the
/// resource id so that the retry continues the same resource.
pub async fn abandon(kv: &impl Kv, key: &str) -> Result<(), StoreError> {
    set_state(kv, key, ClaimState::InProgress { lease_until_ms: 0 }).await
}

async fn set_state(kv: &impl Kv, key: &str, state: ClaimState) -> Result<(), StoreError> {
    update_json(kv, key, |current: Option<ClaimRecord>| match current {
        Some(record) => Ok(Change::Write(ClaimRecord { state: state.clone(), ..record }, ())),
        None => Err(StoreError::new(format!("idempotency record {key} vanished"))),
    })
    .await
}

/// Refuses a client's `Idempotency-Key` with a byte outside visible ASCII
/// (`!` to `~`): such a key must be an error, never silently ignored.
pub fn check_client_key(key: &str) -> Result<(), ApiError> {
    if key.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Ok(());
    }
    Err(ApiError::validation("Idempotency-Key", "the Idempotency-Key header may only contain visible ASCII characters"))
}

/// A stable hash of a request (FNV-1a, 64 bit, over its JSON form). Not
/// cryptographic: it only has to tell a client's retry from a changed request
/// under the same client-chosen key.
pub fn fingerprint(request: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(request).expect("requests are plain data");
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}
