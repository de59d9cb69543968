//! Key-value capability over one set of labelled stores, so a component may
//! mix interfaces on the same data: `spin:key-value/key-value@3.0.0` for
//! WASIp3 guests ([`p3`]), `fermyon:spin/key-value@2.0.0` for WASIp2 guests
//! ([`p2`]), and `wasi:keyvalue@0.2.0-draft2` (store, atomics, batch) for
//! both ([`wasi_keyvalue`]).
//!
//! Backends sit behind [`Backend`]: the embedded SQLite store (`type = "spin"`,
//! and the `default` label) and Redis (`type = "redis"`). A component opens
//! only the labels listed in its `key_value_stores`; anything else answers
//! `access-denied`, whether or not the label exists.

mod p2;
mod p3;
pub mod redis;
pub mod sqlite;
mod wasi_keyvalue;

use anyhow::Result;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// An error from a backend, passed to the guest as `other(message)`.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendError(pub String);

impl<E: std::fmt::Display> From<E> for BackendError {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

pub type BackendResult<T> = std::result::Result<T, BackendError>;

/// One page of keys, in key order, and the cursor for the next page.
pub struct KeyPage {
    pub keys: Vec<String>,
    pub next: Option<String>,
}

/// A key-value backend. Increment and compare-and-swap must be atomic across
/// every instance (and, for shared backends, every host) using the store.
#[async_trait]
pub trait Backend: Send + Sync {
    async fn get(&self, key: &str) -> BackendResult<Option<Vec<u8>>>;
    async fn set(&self, key: &str, value: &[u8]) -> BackendResult<()>;
    async fn delete(&self, key: &str) -> BackendResult<()>;
    /// The values of `keys`, in their order; one round trip where the
    /// backend can (`wasi:keyvalue/batch`).
    async fn get_many(&self, keys: &[String]) -> BackendResult<Vec<Option<Vec<u8>>>> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(key).await?);
        }
        Ok(values)
    }
    /// Writes every entry; one round trip where the backend can.
    async fn set_many(&self, entries: &[(String, Vec<u8>)]) -> BackendResult<()> {
        for (key, value) in entries {
            self.set(key, value).await?;
        }
        Ok(())
    }
    async fn exists(&self, key: &str) -> BackendResult<bool>;
    /// One page of keys: `cursor` is `None` to start, else the `next` of the
    /// previous page; `limit` is a hint for the page size.
    async fn keys(&self, cursor: Option<&str>, limit: usize) -> BackendResult<KeyPage>;
    /// Adds `delta` to the counter under `key`, starting from 0, and returns
    /// the new value. Each backend keeps counters as Spin's store of its type
    /// does (SQLite: 8-byte little-endian; Redis: decimal text), so `get`
    /// returns that encoding.
    async fn increment(&self, key: &str, delta: i64) -> BackendResult<i64>;
    /// Writes `new` only if the current value is still `expected` (`None`: absent).
    async fn compare_and_swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> BackendResult<bool>;
    /// Whether the backend answers at all.
    async fn ping(&self) -> BackendResult<()>;
    /// Whether calls may wait on I/O (and so suspend the calling guest).
    fn waits_on_io(&self) -> bool {
        true
    }
}

/// The stores of the app, by label.
#[derive(Clone, Default)]
pub struct Stores {
    by_label: Arc<BTreeMap<String, Arc<dyn Backend>>>,
}

impl Stores {
    pub fn new(by_label: BTreeMap<String, Arc<dyn Backend>>) -> Self {
        Self { by_label: Arc::new(by_label) }
    }

    pub fn get(&self, label: &str) -> Option<Arc<dyn Backend>> {
        self.by_label.get(label).cloned()
    }

    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.by_label.keys().map(String::as_str)
    }
}

/// Per-instance key-value state: the stores this component may open.
pub struct KeyValueAccess {
    stores: Stores,
    allowed: Arc<HashSet<String>>,
}

/// Keys fetched from the backend per page when a guest lists keys.
const KEYS_PAGE: usize = 256;

/// Why a label could not be opened.
pub enum OpenError {
    AccessDenied,
    NoSuchStore,
}

impl KeyValueAccess {
    pub fn new(stores: Stores, allowed: Arc<HashSet<String>>) -> Self {
        Self { stores, allowed }
    }

    /// Labels not granted to the component are `access-denied` even when they
    /// exist, so a component cannot probe for other components' stores.
    pub fn open(&self, label: &str) -> std::result::Result<OpenStore, OpenError> {
        if !self.allowed.contains(label) {
            return Err(OpenError::AccessDenied);
        }
        let backend = self.stores.get(label).ok_or(OpenError::NoSuchStore)?;
        Ok(OpenStore { backend })
    }

    /// [`Self::open`] with the errors of the guest's interface.
    fn open_as<E>(&self, label: &str, denied: E, missing: E) -> std::result::Result<OpenStore, E> {
        self.open(label).map_err(|e| match e {
            OpenError::AccessDenied => denied,
            OpenError::NoSuchStore => missing,
        })
    }
}

/// A store opened by a guest (the `store` / `bucket` resource).
pub struct OpenStore {
    pub backend: Arc<dyn Backend>,
}

impl crate::state::InstanceState {
    /// The backend of a store the guest opened, for the synchronous
    /// interfaces whose host side has the whole state at hand.
    fn backend_of(&self, store: &wasmtime::component::Resource<OpenStore>) -> wasmtime::Result<Arc<dyn Backend>> {
        Ok(self.table.get(store)?.backend.clone())
    }
}

/// A `wasi:keyvalue/atomics.cas` handle: the value seen when it was created.
pub struct Cas {
    pub backend: Arc<dyn Backend>,
    pub key: String,
    pub current: Option<Vec<u8>>,
}

/// Checks that every label a component lists exists, at load time.
pub fn check_labels(component: &str, labels: &[String], stores: &Stores) -> Result<()> {
    for label in labels {
        if stores.get(label).is_none() {
            anyhow::bail!(
                "component `{component}`: key_value_stores lists `{label}`, which is not a store (known: {}); define it in runtime-config.toml as [key_value_store.{label}]",
                stores.labels().collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod conformance {
    //! The semantics every backend must share, run against each of them.
    use super::*;

    /// How a backend keeps a counter, as `get` returns it after `increment`.
    pub enum CounterEncoding {
        /// Spin's SQLite store: an 8-byte little-endian integer.
        LittleEndian,
        /// Redis's INCRBY (and so Spin's Redis store): decimal text.
        DecimalText,
    }

    impl CounterEncoding {
        fn bytes(&self, n: i64) -> Vec<u8> {
            match self {
                Self::LittleEndian => n.to_le_bytes().to_vec(),
                Self::DecimalText => n.to_string().into_bytes(),
            }
        }
    }

    pub async fn check(backend: Arc<dyn Backend>, counters: CounterEncoding) {
        assert_eq!(backend.get("missing").await.unwrap(), None);
        backend.set("a", b"1").await.unwrap();
        assert_eq!(backend.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
        assert!(backend.exists("a").await.unwrap());
        backend.delete("a").await.unwrap();
        assert!(!backend.exists("a").await.unwrap());
        backend.delete("a").await.unwrap();

        assert_eq!(backend.increment("n", 5).await.unwrap(), 5);
        assert_eq!(backend.increment("n", -2).await.unwrap(), 3);
        assert_eq!(backend.get("n").await.unwrap(), Some(counters.bytes(3)));
        backend.set("text", b"not a number").await.unwrap();
        assert!(backend.increment("text", 1).await.is_err());

        assert!(backend.compare_and_swap("c", None, b"x").await.unwrap());
        assert!(!backend.compare_and_swap("c", None, b"y").await.unwrap());
        assert!(!backend.compare_and_swap("c", Some(b"y"), b"z").await.unwrap());
        assert!(backend.compare_and_swap("c", Some(b"x"), b"z").await.unwrap());
        assert_eq!(backend.get("c").await.unwrap().as_deref(), Some(&b"z"[..]));

        // Batches: values in the order asked, absent keys as None.
        backend.set_many(&[("b1".into(), b"one".to_vec()), ("b2".into(), b"two".to_vec())]).await.unwrap();
        let asked = ["b2", "missing", "b1", "b2"].map(String::from);
        assert_eq!(backend.get_many(&asked).await.unwrap(), vec![Some(b"two".to_vec()), None, Some(b"one".to_vec()), Some(b"two".to_vec())]);
        assert_eq!(backend.get_many(&[]).await.unwrap(), Vec::<Option<Vec<u8>>>::new());
        backend.delete("b1").await.unwrap();
        backend.delete("b2").await.unwrap();

        for i in 0..25 {
            backend.set(&format!("k{i:02}"), b"v").await.unwrap();
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = backend.keys(cursor.as_deref(), 10).await.unwrap();
            seen.extend(page.keys);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut expected: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
        expected.extend(["c", "n", "text"].map(String::from));
        expected.sort();
        seen.sort();
        assert_eq!(seen, expected);
        backend.ping().await.unwrap();
    }

    /// Many concurrent increments and CAS loops lose no update.
    pub async fn check_atomic_under_contention(backend: Arc<dyn Backend>, counters: CounterEncoding) {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let b = backend.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    b.increment("counter", 1).await.unwrap();
                    loop {
                        let current = b.get("cas-counter").await.unwrap();
                        let n: i64 = current
                            .as_deref()
                            .map(|v| std::str::from_utf8(v).unwrap().parse().unwrap())
                            .unwrap_or(0);
                        if b.compare_and_swap("cas-counter", current.as_deref(), (n + 1).to_string().as_bytes())
                            .await
                            .unwrap()
                        {
                            break;
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(backend.get("counter").await.unwrap(), Some(counters.bytes(400)));
        assert_eq!(backend.get("cas-counter").await.unwrap().as_deref(), Some(&b"400"[..]));
    }
}
