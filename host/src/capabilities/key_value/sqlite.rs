//! The embedded store: SQLite (bundled) in Spin's own on-disk layout, so
//! `spin up` and `wharf up` on one state directory share their data. Spin's
//! `key-value-spin` crate (3.x and main) keeps every label of a file in one
//! table, `spin_key_value(store, key, value)`, `store` being the label, and
//! counters of `wasi:keyvalue/atomics.increment` as 8-byte little-endian
//! integers; this backend reads and writes the same.
//!
//! Spin sets no pragma of its own (rusqlite's 5 s busy timeout, rollback
//! journal). This backend turns on WAL, which the file keeps, so readers
//! never wait for a writer, and waits up to 5 s for another connection's
//! lock itself (below), since several `wharf` processes, or Spin and
//! `wharf`, may open one file. Writes that read first (increment) take the
//! write lock up front (`BEGIN IMMEDIATE`), so they wait out another process
//! instead of failing.
//!
//! One connection per label behind a mutex serialises this process's
//! statements. Statements take microseconds, so they run inline rather than
//! on a blocking-thread pool, whose hand-off would cost more than the query;
//! but a statement never waits inline. SQLite's busy timeout is 0: a
//! statement that finds the file locked by another connection or process
//! is tried again every millisecond, for up to 5 s, under `block_in_place`,
//! which first hands the runtime thread's other tasks to a thread of their
//! own (a runtime thread blocked in a poll stalls every connection task on
//! it, with no 504 at their deadlines), and without the mutex, so that no
//! other call of the label waits behind it. The guest still never suspends
//! (see `waits_on_io`).
//!
//! Files of `wharf`'s earlier layout (table `key_value(key, value)`, counters
//! as decimal text) are migrated at open, see [`migrate_wharf_layout`].

use super::{Backend, BackendError, BackendResult, KeyPage};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Spin's table, as its `key-value-spin` crate creates it.
const SPIN_TABLE: &str = "CREATE TABLE IF NOT EXISTS spin_key_value (
    store TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,

    PRIMARY KEY (store, key)
)";

/// How long a statement waits for another connection's lock (see `with`),
/// and how often it tries again meanwhile.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const BUSY_RETRY: Duration = Duration::from_millis(1);

pub struct SqliteBackend {
    conn: Mutex<Connection>,
    /// The label: the `store` column of this backend's rows.
    store: String,
    /// Whether the file holds counters migrated from `wharf`'s earlier
    /// layout (table `wharf_decimal_counters`).
    decimal_counters: bool,
}

impl SqliteBackend {
    /// The store `label` in the file at `path`.
    pub fn open(path: &Path, label: &str) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        // Opening and the migration run once, at start, on no request's
        // thread: they may wait in SQLite's busy handler.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Self::init(conn, label)
    }

    pub fn in_memory(label: &str) -> anyhow::Result<Self> {
        Self::init(Connection::open_in_memory()?, label)
    }

    fn init(mut conn: Connection, label: &str) -> anyhow::Result<Self> {
        let decimal_counters = migrate_wharf_layout(&mut conn, label)?;
        // Statements never wait inside SQLite for the file's lock, where
        // they would hold the connection's mutex and a runtime thread
        // (see `with`).
        conn.busy_timeout(Duration::ZERO)?;
        Ok(Self { conn: Mutex::new(conn), store: label.to_string(), decimal_counters })
    }

    /// Runs `f` on the connection: inline, and when another connection
    /// holds the file's lock, again every millisecond under
    /// `block_in_place` until it runs or `BUSY_TIMEOUT` has passed. No call
    /// holds the connection while it waits, so the mutex is only ever held
    /// for a statement's microseconds. A run that found the lock busy
    /// changed nothing: SQLite refuses the lock before a statement or an
    /// `IMMEDIATE` transaction writes, and a dropped transaction rolls back.
    fn with<R>(&self, f: impl Fn(&mut Connection) -> rusqlite::Result<R>) -> BackendResult<R> {
        let run = || f(&mut self.conn.lock().unwrap_or_else(PoisonError::into_inner));
        match run() {
            Err(error) if is_busy(&error) => {}
            done => return Ok(done?),
        }
        let deadline = Instant::now() + BUSY_TIMEOUT;
        Ok(wait_in_place(|| loop {
            std::thread::sleep(BUSY_RETRY);
            match run() {
                Err(error) if is_busy(&error) && Instant::now() < deadline => {}
                done => return done,
            }
        })?)
    }

    /// The integer a counter's stored bytes hold: a decimal counter the
    /// migration recorded, while the key still holds exactly that value;
    /// else Spin's 8-byte little-endian form. Spin's `increment` panics on
    /// any other length; here it is an error.
    fn counter(&self, tx: &Transaction, key: &str, value: &[u8]) -> rusqlite::Result<BackendResult<i64>> {
        if self.decimal_counters {
            let migrated: Option<i64> = tx
                .prepare_cached("SELECT counter FROM wharf_decimal_counters WHERE store = ?1 AND key = ?2 AND value = ?3")?
                .query_row(params![self.store, key, value], |r| r.get(0))
                .optional()?;
            if let Some(counter) = migrated {
                return Ok(Ok(counter));
            }
        }
        Ok(<[u8; 8]>::try_from(value).map(i64::from_le_bytes).map_err(|_| {
            BackendError(format!("value of `{key}` is not a counter (an 8-byte little-endian integer; it has {} bytes)", value.len()))
        }))
    }
}

/// Whether SQLite refused a lock another connection holds.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(error.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// Runs `work`, which may block, on this thread; on a multi-threaded tokio
/// runtime (wharf's) under `block_in_place`, so that the runtime moves this
/// worker's other tasks to another thread first. Elsewhere (a unit test's
/// current-thread runtime, no runtime) it just runs.
fn wait_in_place<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Creates Spin's table and moves the rows of `wharf`'s earlier layout
/// (`key_value(key, value)`, one label per file) into it as `label`'s, in
/// one transaction; returns whether the file has migrated decimal counters.
///
/// Those counters were decimal text, which no byte pattern tells apart from
/// text a guest `set`. Values stay as they were, and every migrated value
/// that is an integer in decimal is recorded in `wharf_decimal_counters`
/// (a table Spin ignores): `increment` reads such a key as that integer
/// while it still holds the recorded bytes, and writes it back as Spin's
/// 8-byte form. A row Spin wrote under the same label and key wins; the
/// earlier value is kept in `wharf_key_value_not_migrated`.
fn migrate_wharf_layout(conn: &mut Connection, label: &str) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(SPIN_TABLE)?;
    if table_exists(&tx, "key_value")? {
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS wharf_decimal_counters (
                store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, counter INTEGER NOT NULL,
                PRIMARY KEY (store, key));
             CREATE TABLE IF NOT EXISTS wharf_key_value_not_migrated (store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL)",
        )?;
        tx.execute(
            "INSERT INTO spin_key_value (store, key, value) SELECT ?1, key, value FROM key_value WHERE true ON CONFLICT DO NOTHING",
            [label],
        )?;
        let migrated: Vec<(String, Vec<u8>)> = tx
            .prepare("SELECT k.key, k.value FROM key_value k JOIN spin_key_value s ON s.store = ?1 AND s.key = k.key AND s.value = k.value")?
            .query_map([label], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (key, value) in migrated {
            // What `wharf`'s earlier increment accepted.
            if let Some(counter) = std::str::from_utf8(&value).ok().and_then(|text| text.parse::<i64>().ok()) {
                tx.execute(
                    "INSERT OR REPLACE INTO wharf_decimal_counters (store, key, value, counter) VALUES (?1, ?2, ?3, ?4)",
                    params![label, key, value, counter],
                )?;
            }
        }
        let kept = tx.execute(
            "INSERT INTO wharf_key_value_not_migrated (store, key, value)
             SELECT ?1, k.key, k.value FROM key_value k JOIN spin_key_value s ON s.store = ?1 AND s.key = k.key AND s.value != k.value",
            [label],
        )?;
        if kept > 0 {
            tracing::warn!(
                "key-value store `{label}`: {kept} keys of wharf's earlier layout were also written by Spin; Spin's values are kept, wharf's are in table wharf_key_value_not_migrated"
            );
        }
        tx.execute_batch("DROP TABLE key_value")?;
    }
    let decimal_counters = table_exists(&tx, "wharf_decimal_counters")?;
    tx.commit()?;
    Ok(decimal_counters)
}

fn table_exists(tx: &Transaction, name: &str) -> rusqlite::Result<bool> {
    tx.query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
}

/// Spin's upsert.
const SET: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3) ON CONFLICT(store, key) DO UPDATE SET value = excluded.value";

#[async_trait]
impl Backend for SqliteBackend {
    async fn get(&self, key: &str) -> BackendResult<Option<Vec<u8>>> {
        self.with(|c| {
            c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row([&self.store, key], |r| r.get(0))
                .optional()
        })
    }

    async fn set(&self, key: &str, value: &[u8]) -> BackendResult<()> {
        self.with(|c| c.prepare_cached(SET)?.execute(params![self.store, key, value]).map(drop))
    }

    /// Under one lock and one read transaction, so the values are of one
    /// moment, as `MGET`'s are.
    async fn get_many(&self, keys: &[String]) -> BackendResult<Vec<Option<Vec<u8>>>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let values = {
                let mut select = tx.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?;
                keys.iter().map(|key| select.query_row([&self.store, key], |r| r.get(0)).optional()).collect::<rusqlite::Result<_>>()?
            };
            tx.commit()?;
            Ok(values)
        })
    }

    /// In one transaction: one commit instead of one per entry, and all or
    /// nothing.
    async fn set_many(&self, entries: &[(String, Vec<u8>)]) -> BackendResult<()> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut set = tx.prepare_cached(SET)?;
                for (key, value) in entries {
                    set.execute(params![self.store, key, value])?;
                }
            }
            tx.commit()
        })
    }

    async fn delete(&self, key: &str) -> BackendResult<()> {
        self.with(|c| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .execute([&self.store, key])
                .map(drop)
        })
    }

    async fn exists(&self, key: &str) -> BackendResult<bool> {
        self.with(|c| {
            c.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row([&self.store, key], |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
        })
    }

    async fn keys(&self, cursor: Option<&str>, limit: usize) -> BackendResult<KeyPage> {
        // Fetch one more than asked to learn whether another page exists.
        let mut keys: Vec<String> = self.with(|c| {
            let mut stmt =
                c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1 AND key > ?2 ORDER BY key LIMIT ?3")?;
            stmt.query_map(params![self.store, cursor.unwrap_or(""), (limit + 1) as i64], |r| r.get(0))?
                .collect()
        })?;
        let next = if keys.len() > limit {
            keys.truncate(limit);
            keys.last().cloned()
        } else {
            None
        };
        Ok(KeyPage { keys, next })
    }

    /// A value that is no counter, or a sum that would overflow, changes
    /// nothing: the outer result is SQLite's, the inner the counter's.
    async fn increment(&self, key: &str, delta: i64) -> BackendResult<i64> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<Vec<u8>> = tx
                .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row([&self.store, key], |r| r.get(0))
                .optional()?;
            let current = match current {
                None => 0,
                Some(bytes) => match self.counter(&tx, key, &bytes)? {
                    Ok(counter) => counter,
                    Err(error) => return Ok(Err(error)),
                },
            };
            // Spin adds without a check (and wraps in a release build).
            let Some(next) = current.checked_add(delta) else {
                return Ok(Err(BackendError(format!("increment of `{key}` overflows"))));
            };
            tx.prepare_cached(SET)?.execute(params![self.store, key, next.to_le_bytes()])?;
            if self.decimal_counters {
                tx.prepare_cached("DELETE FROM wharf_decimal_counters WHERE store = ?1 AND key = ?2")?.execute([&self.store, key])?;
            }
            tx.commit()?;
            Ok(Ok(next))
        })?
    }

    /// Unlike Spin 3.6.3, whose swap after an absent `current` is an upsert
    /// that overwrites a value written meanwhile, a swap from absent fails
    /// when the key has appeared.
    async fn compare_and_swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> BackendResult<bool> {
        self.with(|c| {
            let changed = match expected {
                None => c
                    .prepare_cached(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3) ON CONFLICT(store, key) DO NOTHING",
                    )?
                    .execute(params![self.store, key, new])?,
                Some(old) => c
                    .prepare_cached("UPDATE spin_key_value SET value = ?4 WHERE store = ?1 AND key = ?2 AND value = ?3")?
                    .execute(params![self.store, key, old, new])?,
            };
            Ok(changed == 1)
        })
    }

    async fn ping(&self) -> BackendResult<()> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    /// Statements run in place (see `with`) and never suspend the guest.
    fn waits_on_io(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::{self, CounterEncoding};
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn conformance_in_memory() {
        conformance::check(Arc::new(SqliteBackend::in_memory("default").unwrap()), CounterEncoding::LittleEndian).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn atomic_under_contention() {
        let dir = tempdir();
        let backend = Arc::new(SqliteBackend::open(&dir.join("kv.db"), "default").unwrap());
        conformance::check_atomic_under_contention(backend, CounterEncoding::LittleEndian).await;
    }

    /// While another connection holds the file's write lock, a call waits
    /// for it (up to the busy timeout) and the runtime's other tasks go on.
    /// Waiting inline, the call held the one worker thread and nothing else
    /// ran until the lock was free or the timeout passed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_call_waiting_for_the_lock_stalls_no_other_task() {
        let dir = tempdir();
        let path = dir.join("kv.db");
        let backend = Arc::new(SqliteBackend::open(&path, "default").unwrap());
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        let waiting = tokio::spawn({
            let backend = backend.clone();
            async move { backend.set("k", b"v").await }
        });
        // Blocking calls on the test's own thread, which is not the worker,
        // and whose clock does not depend on the worker.
        std::thread::sleep(Duration::from_millis(200));
        let (ran, other_ran) = std::sync::mpsc::channel();
        tokio::spawn(async move { ran.send(()).unwrap() });
        let other = other_ran.recv_timeout(Duration::from_secs(2));
        writer.execute_batch("COMMIT").unwrap();
        assert!(other.is_ok(), "no other task ran while a call waited for the lock");
        waiting.await.unwrap().unwrap();
        assert_eq!(backend.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempdir();
        let path = dir.join("kv.db");
        SqliteBackend::open(&path, "default").unwrap().set("k", b"v").await.unwrap();
        let reopened = SqliteBackend::open(&path, "default").unwrap();
        assert_eq!(reopened.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[tokio::test]
    async fn labels_share_a_file_in_spins_table() {
        let dir = tempdir();
        let path = dir.join("kv.db");
        let (a, b) = (SqliteBackend::open(&path, "a").unwrap(), SqliteBackend::open(&path, "b").unwrap());
        a.set("k", b"from a").await.unwrap();
        b.set("k", b"from b").await.unwrap();
        b.set("only-b", b"1").await.unwrap();
        assert_eq!(a.get("k").await.unwrap().as_deref(), Some(&b"from a"[..]));
        assert!(!a.exists("only-b").await.unwrap());
        assert_eq!(a.keys(None, 10).await.unwrap().keys, ["k"]);

        let file = Connection::open(&path).unwrap();
        let columns: Vec<(String, String, bool, i64)> = file
            .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info('spin_key_value') ORDER BY cid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let expected = [("store", "TEXT", true, 1), ("key", "TEXT", true, 2), ("value", "BLOB", true, 0)]
            .map(|(name, ty, not_null, pk)| (name.to_string(), ty.to_string(), not_null, pk));
        assert_eq!(columns, expected);
        assert_eq!(rows(&file, "spin_key_value"), [row("a", "k", b"from a"), row("b", "k", b"from b"), row("b", "only-b", b"1")]);
    }

    #[tokio::test]
    async fn counters_are_spins_8_byte_little_endian() {
        let backend = SqliteBackend::in_memory("default").unwrap();
        assert_eq!(backend.increment("n", -3).await.unwrap(), -3);
        assert_eq!(backend.get("n").await.unwrap(), Some((-3i64).to_le_bytes().to_vec()));
        // Any 8 bytes are a counter to Spin, even ones that spell digits.
        backend.set("digits", b"12345678").await.unwrap();
        let as_spin_reads_it = i64::from_le_bytes(*b"12345678");
        assert_eq!(backend.increment("digits", 1).await.unwrap(), as_spin_reads_it + 1);
        // Decimal text a guest sets is no counter, as on Spin (where
        // increment panics).
        backend.set("text", b"5").await.unwrap();
        let error = backend.increment("text", 1).await.unwrap_err();
        assert!(error.0.contains("is not a counter"), "{error:?}");
        assert_eq!(backend.get("text").await.unwrap().as_deref(), Some(&b"5"[..]));
        backend.set("max", &i64::MAX.to_le_bytes()).await.unwrap();
        assert!(backend.increment("max", 1).await.is_err());
    }

    #[tokio::test]
    async fn migrates_wharfs_earlier_layout_in_place() {
        let dir = tempdir();
        let path = dir.join("sqlite_key_value.db");
        {
            let file = Connection::open(&path).unwrap();
            file.execute_batch(
                "CREATE TABLE key_value (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
                 CREATE TABLE spin_key_value (store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (store, key));",
            )
            .unwrap();
            let old = [
                ("greeting", &b"hello"[..]),
                ("visits", b"41"),
                ("eight-digits", b"12345678"),
                ("replaced", b"5"),
                ("both", b"wharf's"),
                ("same", b"equal"),
            ];
            for (key, value) in old {
                file.execute("INSERT INTO key_value (key, value) VALUES (?1, ?2)", params![key, value]).unwrap();
            }
            // What Spin wrote to the same file while wharf used its own table.
            for (store, key, value) in [("default", "both", &b"spin's"[..]), ("default", "same", b"equal"), ("other", "visits", &9i64.to_le_bytes())] {
                file.execute("INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)", params![store, key, value]).unwrap();
            }
        }

        let store = SqliteBackend::open(&path, "default").unwrap();
        assert_eq!(store.get("greeting").await.unwrap().as_deref(), Some(&b"hello"[..]));
        // Counters keep their decimal text until the next increment.
        assert_eq!(store.get("visits").await.unwrap().as_deref(), Some(&b"41"[..]));
        assert_eq!(store.increment("visits", 1).await.unwrap(), 42);
        assert_eq!(store.get("visits").await.unwrap(), Some(42i64.to_le_bytes().to_vec()));
        assert_eq!(store.increment("visits", 1).await.unwrap(), 43);
        // Eight digits are the earlier counter, not Spin's 8-byte form.
        assert_eq!(store.increment("eight-digits", 0).await.unwrap(), 12_345_678);
        // A guest's `set` after the migration replaces the earlier counter.
        store.set("replaced", b"6").await.unwrap();
        assert!(store.increment("replaced", 1).await.is_err());
        assert_eq!(store.get("both").await.unwrap().as_deref(), Some(&b"spin's"[..]));
        assert_eq!(store.get("same").await.unwrap().as_deref(), Some(&b"equal"[..]));
        let mut keys = store.keys(None, 10).await.unwrap().keys;
        keys.sort();
        assert_eq!(keys, ["both", "eight-digits", "greeting", "replaced", "same", "visits"]);
        drop(store);

        let file = Connection::open(&path).unwrap();
        let tables: Vec<String> = file
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(tables, ["spin_key_value", "wharf_decimal_counters", "wharf_key_value_not_migrated"]);
        assert_eq!(rows(&file, "wharf_key_value_not_migrated"), [row("default", "both", b"wharf's")]);

        // Reopened, nothing migrates twice; the other label is Spin's as it was.
        let store = SqliteBackend::open(&path, "default").unwrap();
        assert_eq!(store.increment("visits", 1).await.unwrap(), 44);
        assert_eq!(store.increment("eight-digits", 1).await.unwrap(), 12_345_679);
        let other = SqliteBackend::open(&path, "other").unwrap();
        assert_eq!(other.increment("visits", 1).await.unwrap(), 10);
        assert!(!other.exists("greeting").await.unwrap());
    }

    fn row(store: &str, key: &str, value: &[u8]) -> (String, String, Vec<u8>) {
        (store.to_string(), key.to_string(), value.to_vec())
    }

    fn rows(file: &Connection, table: &str) -> Vec<(String, String, Vec<u8>)> {
        file.prepare(&format!("SELECT store, key, value FROM {table} ORDER BY store, key"))
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("wharf-kv-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn rand_suffix() -> u128 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    }
}
