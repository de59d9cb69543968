//! The key-value port and the compare-and-swap helpers every service writes
//! its records with.
//!
//! The port has the shape of `wasi:keyvalue` (store + atomics): plain
//! get/set/delete, an atomic `increment`, and compare-and-swap as a read that
//! hands out a token followed by a swap that fails when the key changed in
//! between. Services never list keys: the host store may hold millions.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The store could not answer; services turn it into 503 `store_unavailable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    pub message: String,
}

impl StoreError {
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError { message: message.into() }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store unavailable: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

/// Key-value store with atomics.
///
/// Counters are touched only through [`Kv::increment`]; read one with
/// `increment(key, 0)` (see [`read_counter`]) so the services never depend on
/// how a host encodes numbers.
#[allow(async_fn_in_trait, reason = "components are single-threaded; no Send bound is wanted")]
pub trait Kv {
    /// Proof of what `cas_read` saw, consumed by `cas_swap` (a `wasi:keyvalue`
    /// `cas` resource in components).
    type CasToken;

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// The values of `keys`, in their order (None where absent). Stores with
    /// batch reads answer in one call; the default reads one by one.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(key).await?);
        }
        Ok(values)
    }
    /// Writes every entry. Not atomic, as separate writes are not: a failure
    /// may leave some written. Stores with batch writes take one call.
    async fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        for (key, value) in entries {
            self.set(key, value).await?;
        }
        Ok(())
    }
    /// Atomically adds `delta` (a missing key counts as 0) and returns the new value.
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError>;
    /// Reads the current value (None when absent) for a later `cas_swap`.
    async fn cas_read(&self, key: &str) -> Result<(Option<Vec<u8>>, Self::CasToken), StoreError>;
    /// Writes `value` only if the key is unchanged since the `cas_read` that
    /// gave `token` (absent keys included); false means someone else wrote first.
    async fn cas_swap(&self, token: Self::CasToken, value: &[u8]) -> Result<bool, StoreError>;
}

/// How many times a compare-and-swap update is tried before giving up; only
/// reached under pathological contention on one key.
pub const MAX_CAS_ATTEMPTS: usize = 100;

/// What an update closure decided for the record it was shown.
pub enum Change<T, R> {
    /// Store the new record and return `R`.
    Write(T, R),
    /// Leave the record as it is and return `R`.
    Keep(R),
}

pub async fn read_counter(kv: &impl Kv, key: &str) -> Result<i64, StoreError> {
    kv.increment(key, 0).await
}

/// A counter as a store keeps it: decimal text (Spin's Redis store, and the
/// shop's own outbound Redis store) or an 8-byte little-endian integer
/// (Spin's SQLite store, wharf's, which has the same layout, and
/// [`crate::testing::MemoryKv`]). Text of ASCII digits is read as decimal
/// first: an 8-byte integer made only of such bytes would be at least
/// 0x3030303030303030 (about 3.5 × 10^18), far beyond any counter of the
/// shop, while an 8-digit decimal counter is an ordinary one.
pub fn decode_counter(key: &str, bytes: &[u8]) -> Result<i64, StoreError> {
    let decimal = std::str::from_utf8(bytes).ok().and_then(|text| text.parse::<i64>().ok());
    let little_endian = <[u8; 8]>::try_from(bytes).ok().map(i64::from_le_bytes);
    decimal.or(little_endian).ok_or_else(|| StoreError::new(format!("counter `{key}` is not an integer")))
}

/// A batch read answered one value per key asked.
fn answered_each(keys: &[String], values: &[Option<Vec<u8>>]) -> Result<(), StoreError> {
    if values.len() != keys.len() {
        return Err(StoreError::new(format!("the store answered {} values for {} keys", values.len(), keys.len())));
    }
    Ok(())
}

/// The counters a batch read of `keys` answered (`values`, in key order),
/// each in either encoding ([`decode_counter`]); 0 where absent.
pub fn decode_counters(keys: &[String], values: Vec<Option<Vec<u8>>>) -> Result<Vec<i64>, StoreError> {
    answered_each(keys, &values)?;
    keys.iter().zip(values).map(|(key, value)| value.map_or(Ok(0), |bytes| decode_counter(key, &bytes))).collect()
}

/// The record `bytes` read at `key`.
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|error| StoreError::new(format!("corrupt record at {key}: {error}")))
}

fn encode(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("records are plain data")
}

pub async fn get_json<T: DeserializeOwned>(kv: &impl Kv, key: &str) -> Result<Option<T>, StoreError> {
    match kv.get(key).await? {
        Some(bytes) => decode(key, &bytes).map(Some),
        None => Ok(None),
    }
}

pub async fn set_json(kv: &impl Kv, key: &str, value: &impl Serialize) -> Result<(), StoreError> {
    kv.set(key, &encode(value)).await
}

/// The records at `keys`, in their order, read in one batch.
pub async fn get_many_json<T: DeserializeOwned>(kv: &impl Kv, keys: &[String]) -> Result<Vec<Option<T>>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let values = kv.get_many(keys).await?;
    answered_each(keys, &values)?;
    keys.iter().zip(values).map(|(key, value)| value.map(|bytes| decode(key, &bytes)).transpose()).collect()
}

/// `(key, record)` pairs encoded for [`Kv::set_many`].
pub fn json_entries(entries: impl IntoIterator<Item = (String, impl Serialize)>) -> Vec<(String, Vec<u8>)> {
    entries.into_iter().map(|(key, value)| (key, encode(&value))).collect()
}

/// Reads the record at `key`, lets `change` decide, and writes the decision
/// with compare-and-swap, starting over whenever another writer got there
/// first. `change` may therefore run several times and must not have side
/// effects; do those after this returns.
pub async fn update_json<T, R, E>(
    kv: &impl Kv,
    key: &str,
    mut change: impl FnMut(Option<T>) -> Result<Change<T, R>, E>,
) -> Result<R, E>
where
    T: Serialize + DeserializeOwned,
    E: From<StoreError>,
{
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (current, token) = kv.cas_read(key).await?;
        let current = current.map(|bytes| decode(key, &bytes)).transpose()?;
        match change(current)? {
            Change::Keep(result) => return Ok(result),
            Change::Write(record, result) => {
                if kv.cas_swap(token, &encode(&record)).await? {
                    return Ok(result);
                }
            }
        }
    }
    Err(StoreError::new(format!("too much contention on {key}")).into())
}

/// Stores `value` at `key` unless the key already holds something; true when
/// this call created it.
pub async fn create_json(kv: &impl Kv, key: &str, value: &impl Serialize) -> Result<bool, StoreError> {
    let (current, token) = kv.cas_read(key).await?;
    if current.is_some() {
        return Ok(false);
    }
    // A lost swap means a concurrent writer created the key first.
    kv.cas_swap(token, &encode(value)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_read_the_same_in_either_encoding() {
        for n in [0i64, 1, 7, 12_345_678, -3, 1 << 40, i64::MAX, i64::MIN] {
            assert_eq!(decode_counter("c", n.to_string().as_bytes()), Ok(n), "decimal {n}");
            assert_eq!(decode_counter("c", &n.to_le_bytes()), Ok(n), "little-endian {n}");
        }
        assert!(decode_counter("c", b"seven").is_err());
        assert!(decode_counter("c", &[1, 2, 3]).is_err());
    }

    #[test]
    fn a_batch_of_counters_is_zero_where_absent_and_refused_when_the_store_miscounts() {
        let keys: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let values = vec![Some(b"12".to_vec()), None, Some(5i64.to_le_bytes().to_vec())];
        assert_eq!(decode_counters(&keys, values), Ok(vec![12, 0, 5]));
        assert!(decode_counters(&keys, vec![None]).is_err());
    }
}
