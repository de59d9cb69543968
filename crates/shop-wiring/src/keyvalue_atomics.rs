//! `wasi:keyvalue/atomics@0.2.0-draft2` as the `Kv` port's counters and
//! compare-and-swap, for both builds: spin-sdk 7 and spin-sdk 5 each bind the
//! interface with types of their own but the same functions, so the methods
//! are written once here as a macro.
//!
//! These are what give the shop its guarantees on every host and either
//! build: `increment` for order numbers and counters, compare-and-swap for
//! stock reservations that never oversell, order updates that never lose a
//! concurrent one, and a charge claimed once so it is made exactly once.

/// A store's error as the port's.
pub fn store_error(e: impl std::fmt::Debug) -> shop_core::kv::StoreError {
    shop_core::kv::StoreError::new(format!("{e:?}"))
}

/// Expands, inside `impl Kv for ...`, to `type CasToken`, `increment`,
/// `cas_read` and `cas_swap` over the bindings module `$atomics`, on the
/// bucket in field `$bucket` of `self`.
///
/// shop-core reads a counter as `increment(key, 0)`, and so does this: each
/// host keeps counters in its own encoding (Spin's SQLite store as 8-byte
/// little-endian integers, its Redis store and `wharf` as decimal text),
/// which only `increment` reads the same everywhere. The price: the read is
/// a synchronous call, which on WASIp3 holds the instance until the store
/// answers (an async `get` would let its other requests run), and on a key
/// that does not exist yet it writes a 0.
#[macro_export]
macro_rules! keyvalue_atomics_methods {
    ($atomics:ident, $bucket:ident) => {
        type CasToken = $atomics::Cas;

        async fn increment(&self, key: &str, delta: i64) -> Result<i64, $crate::__shop_core::kv::StoreError> {
            $atomics::increment(&self.$bucket, key, delta).map_err($crate::keyvalue_atomics::store_error)
        }

        async fn cas_read(&self, key: &str) -> Result<(Option<Vec<u8>>, $atomics::Cas), $crate::__shop_core::kv::StoreError> {
            let cas = $atomics::Cas::new(&self.$bucket, key).map_err($crate::keyvalue_atomics::store_error)?;
            let current = cas.current().map_err($crate::keyvalue_atomics::store_error)?;
            Ok((current, cas))
        }

        async fn cas_swap(&self, token: $atomics::Cas, value: &[u8]) -> Result<bool, $crate::__shop_core::kv::StoreError> {
            match $atomics::swap(token, value) {
                Ok(()) => Ok(true),
                Err($atomics::CasError::CasFailed(_)) => Ok(false),
                Err($atomics::CasError::StoreError(e)) => Err($crate::keyvalue_atomics::store_error(e)),
            }
        }
    };
}
