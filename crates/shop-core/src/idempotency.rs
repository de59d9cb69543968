//! Idempotency keys: the first request with a key claims it (compare-and-swap
//! on an absent record, so of two concurrent duplicates exactly one wins),
//! does the work, and stores its answer; later requests with the key get that
//! answer back.
//!
//! A claim also fixes the id of the resource being made (order id, payment
//! id). If the owner dies or gives up half-way (store outage, gateway down),
//! its lease runs out and the next request with the key resumes the same
//! resource instead of making a second one.

use serde::{Deserialize, Serialize};

use crate::http::{ApiError, ApiResponse};
use crate::kv::{Change, Kv, StoreError, update_json};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClaimRecord {
    /// Hash of the request, to tell a retry from another request reusing the key.
    fingerprint: String,
    resource_id: String,
    state: ClaimState,
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

/// Claims `key` for a request with `fingerprint`; `new_resource_id` is used
/// only if the key is new.
pub async fn claim(
    kv: &impl Kv,
    key: &str,
    fingerprint: &str,
    new_resource_id: String,
    now_ms: u64,
    lease_ms: u64,
) -> Result<Claim, StoreError> {
    let lease_until_ms = now_ms.saturating_add(lease_ms);
    update_json(kv, key, |current: Option<ClaimRecord>| {
        let Some(record) = current else {
            let record = ClaimRecord {
                fingerprint: fingerprint.to_string(),
                resource_id: new_resource_id.clone(),
                state: ClaimState::InProgress { lease_until_ms },
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
    .await
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
