//! `wasi:keyvalue/atomics@0.2.0-draft2` as the `Kv` port's counters and
//! compare-and-swap, for both builds: spin-sdk 7 and spin-sdk 5 each bind the
//! interface with types of their own but the same functions, so the methods
//! are written once here as a macro.
//!
//! These are what give the shop its guarantees on every host and either
//! build: `increment` for order numbers and counters, compare-and-swap for
//! stock reservations that never oversell, order updates that never lose a
//! concurrent one, and a charge claimed once so it is made exactly once.

use shop_core::kv::StoreError;
use shop_core::ports::Sleeper;

/// A store's error as the port's.
pub fn store_error(e: impl std::fmt::Debug) -> StoreError {
    StoreError::new(format!("{e:?}"))
}

/// Pauses before each retry of a call that found the database locked: about
/// 1.3 s in all, well within a request's deadline.
pub const LOCKED_PAUSES_MS: [u64; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// Whether the store refused a call because another process held its
/// database: Spin's SQLite store answers so when its HTTP and Redis trigger
/// processes (Spin runs each trigger type in a process of its own) write at
/// the same moment, since Spin 3.x sets no busy timeout on it. SQLite then
/// has written nothing, so the call can simply be made again. Spin reports
/// it only as text.
pub fn is_locked(e: &StoreError) -> bool {
    e.message.contains("database is locked")
}

/// Runs `call`, and again after a pause while it finds the database locked;
/// any other outcome, or the last locked one, is returned as it is.
pub async fn while_locked<T>(sleeper: &impl Sleeper, mut call: impl AsyncFnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    for pause in LOCKED_PAUSES_MS {
        match call().await {
            Err(e) if is_locked(&e) => sleeper.sleep(pause).await,
            outcome => return outcome,
        }
    }
    call().await
}

/// A compare-and-swap handle with the key and the value it saw. A swap that
/// finds the database locked consumes its handle having written nothing; it
/// is retried on a fresh handle if the value is still the one seen, which is
/// what the first swap would have compared.
pub struct CasToken<C> {
    pub cas: C,
    pub key: String,
    pub seen: Option<Vec<u8>>,
}


/// Expands, inside `impl Kv for ...`, to `type CasToken`, `increment`,
/// `cas_read` and `cas_swap` over the bindings module `$atomics`, on the
/// bucket in field `$bucket` of `self`, pausing with `$sleeper` while the
/// database is locked ([`while_locked`]).
///
/// shop-core reads a counter as `increment(key, 0)`. This answers that with
/// an async `get` decoded by [`shop_core::kv::decode_counter`], not with `increment`: on
/// Spin's and wharf's SQLite stores an increment is a write transaction
/// (about eight times the instructions of a read, measured in
/// bench/orders-before-after.sh), and on WASIp3 the synchronous call would
/// hold the instance while the store answers.
#[macro_export]
macro_rules! keyvalue_atomics_methods {
    ($atomics:ident, $bucket:ident, $sleeper:expr) => {
        type CasToken = $crate::keyvalue_atomics::CasToken<$atomics::Cas>;

        async fn increment(&self, key: &str, delta: i64) -> Result<i64, $crate::__shop_core::kv::StoreError> {
            if delta == 0 {
                return match self.get(key).await? {
                    None => Ok(0),
                    Some(bytes) => $crate::__shop_core::kv::decode_counter(key, &bytes),
                };
            }
            $crate::keyvalue_atomics::while_locked(&$sleeper, async || {
                $atomics::increment(&self.$bucket, key, delta).map_err($crate::keyvalue_atomics::store_error)
            })
            .await
        }

        async fn cas_read(&self, key: &str) -> Result<(Option<Vec<u8>>, Self::CasToken), $crate::__shop_core::kv::StoreError> {
            $crate::keyvalue_atomics::while_locked(&$sleeper, async || {
                let cas = $atomics::Cas::new(&self.$bucket, key).map_err($crate::keyvalue_atomics::store_error)?;
                let seen = cas.current().map_err($crate::keyvalue_atomics::store_error)?;
                Ok((seen.clone(), $crate::keyvalue_atomics::CasToken { cas, key: key.to_string(), seen }))
            })
            .await
        }

        async fn cas_swap(&self, token: Self::CasToken, value: &[u8]) -> Result<bool, $crate::__shop_core::kv::StoreError> {
            let $crate::keyvalue_atomics::CasToken { mut cas, key, seen } = token;
            let mut pauses = $crate::keyvalue_atomics::LOCKED_PAUSES_MS.into_iter();
            loop {
                let e = match $atomics::swap(cas, value) {
                    Ok(()) => return Ok(true),
                    Err($atomics::CasError::CasFailed(_)) => return Ok(false),
                    Err($atomics::CasError::StoreError(e)) => $crate::keyvalue_atomics::store_error(e),
                };
                let Some(pause) = pauses.next().filter(|_| $crate::keyvalue_atomics::is_locked(&e)) else { return Err(e) };
                $crate::__shop_core::ports::Sleeper::sleep(&$sleeper, pause).await;
                let (current, fresh) = self.cas_read(&key).await?;
                if current != seen {
                    return Ok(false);
                }
                cas = fresh.cas;
            }
        }
    };
}

/// What a batch read answered, `(key, value)` pairs in any order and
/// missing keys perhaps left out (Spin's SQLite store answers only the keys
/// it holds), as the values of `keys` in their order.
pub fn in_key_order(keys: &[String], answered: Vec<(String, Option<Vec<u8>>)>) -> Vec<Option<Vec<u8>>> {
    let answered: std::collections::HashMap<String, Option<Vec<u8>>> = answered.into_iter().collect();
    keys.iter().map(|key| answered.get(key).cloned().flatten()).collect()
}

/// Expands, inside `impl Kv for ...`, to `get_many` and
/// `set_many` over `wasi:keyvalue/batch` (bindings module `$batch`) on the
/// bucket in field `$bucket`, pausing with `$sleeper` while the database is
/// locked ([`while_locked`]): one call where shop-core would make one per key.
#[macro_export]
macro_rules! keyvalue_batch_methods {
    ($batch:ident, $bucket:ident, $sleeper:expr) => {
        async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, $crate::__shop_core::kv::StoreError> {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let answered = $crate::keyvalue_atomics::while_locked(&$sleeper, async || {
                $batch::get_many(&self.$bucket, keys).map_err($crate::keyvalue_atomics::store_error)
            })
            .await?;
            Ok($crate::keyvalue_atomics::in_key_order(keys, answered))
        }

        async fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), $crate::__shop_core::kv::StoreError> {
            if entries.is_empty() {
                return Ok(());
            }
            $crate::keyvalue_atomics::while_locked(&$sleeper, async || {
                $batch::set_many(&self.$bucket, entries).map_err($crate::keyvalue_atomics::store_error)
            })
            .await
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use shop_core::testing::RecordingSleeper;

    fn locked() -> StoreError {
        StoreError::new("Other(\"SqliteFailure(Error { code: DatabaseBusy, extended_code: 5 }, Some(\\\"database is locked\\\"))\")")
    }

    #[test]
    fn a_batch_answer_is_put_in_the_order_of_the_keys_asked() {
        let keys: Vec<String> = ["a", "b", "c", "a"].map(String::from).to_vec();
        // Out of order, one key left out, one answered as absent.
        let answered = vec![("c".to_string(), Some(b"3".to_vec())), ("a".to_string(), Some(b"1".to_vec())), ("b".to_string(), None)];
        assert_eq!(in_key_order(&keys, answered), vec![Some(b"1".to_vec()), None, Some(b"3".to_vec()), Some(b"1".to_vec())]);
        assert_eq!(in_key_order(&keys[..1], Vec::new()), vec![None]);
    }

    #[test]
    fn a_locked_call_is_made_again_after_a_pause_and_other_errors_are_not() {
        let sleeper = RecordingSleeper::new();
        let mut calls = 0;
        let outcome = block_on(while_locked(&sleeper, async || {
            calls += 1;
            if calls < 3 { Err(locked()) } else { Ok(calls) }
        }));
        assert_eq!((outcome, sleeper.requested_ms()), (Ok(3), vec![1, 2]));

        let sleeper = RecordingSleeper::new();
        let outcome: Result<(), StoreError> = block_on(while_locked(&sleeper, async || Err(StoreError::new("no such store"))));
        assert_eq!((outcome, sleeper.requested_ms()), (Err(StoreError::new("no such store")), vec![]));
    }

    #[test]
    fn a_lock_that_outlasts_every_pause_is_reported() {
        let sleeper = RecordingSleeper::new();
        let mut calls = 0;
        let outcome: Result<(), StoreError> = block_on(while_locked(&sleeper, async || {
            calls += 1;
            Err(locked())
        }));
        assert_eq!(outcome, Err(locked()));
        assert_eq!((calls, sleeper.requested_ms()), (LOCKED_PAUSES_MS.len() + 1, LOCKED_PAUSES_MS.to_vec()));
    }
}
