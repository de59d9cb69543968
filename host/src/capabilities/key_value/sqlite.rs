//! The embedded store: SQLite (bundled) in the state directory, one file per
//! label. Durable across restarts; WAL mode so readers never wait for a writer.
//!
//! One connection behind a mutex serialises statements, which is what makes
//! increment and compare-and-swap atomic for every instance of this host.
//! Statements take microseconds, so they run inline rather than on a
//! blocking-thread pool, whose hand-off would cost more than the query.

use super::{Backend, BackendResult, KeyPage};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;

pub struct SqliteBackend {
    conn: Mutex<Connection>,
}

impl SqliteBackend {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Self::init(conn)
    }

    pub fn in_memory() -> anyhow::Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> anyhow::Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS key_value (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
        )?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn with<R>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<R>) -> BackendResult<R> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&mut conn)?)
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn get(&self, key: &str) -> BackendResult<Option<Vec<u8>>> {
        self.with(|c| {
            c.prepare_cached("SELECT value FROM key_value WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()
        })
    }

    async fn set(&self, key: &str, value: &[u8]) -> BackendResult<()> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO key_value (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])
            .map(drop)
        })
    }

    async fn delete(&self, key: &str) -> BackendResult<()> {
        self.with(|c| c.prepare_cached("DELETE FROM key_value WHERE key = ?1")?.execute([key]).map(drop))
    }

    async fn exists(&self, key: &str) -> BackendResult<bool> {
        self.with(|c| {
            c.prepare_cached("SELECT 1 FROM key_value WHERE key = ?1")?
                .query_row([key], |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
        })
    }

    async fn keys(&self, cursor: Option<&str>, limit: usize) -> BackendResult<KeyPage> {
        // Fetch one more than asked to learn whether another page exists.
        let mut keys: Vec<String> = self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT key FROM key_value WHERE key > ?1 ORDER BY key LIMIT ?2")?;
            stmt.query_map(params![cursor.unwrap_or(""), (limit + 1) as i64], |r| r.get(0))?
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

    async fn increment(&self, key: &str, delta: i64) -> BackendResult<i64> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction()?;
        let current: Option<Vec<u8>> = tx
            .query_row("SELECT value FROM key_value WHERE key = ?1", [key], |r| r.get(0))
            .optional()?;
        let current = match current {
            None => 0,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| super::BackendError(format!("value of `{key}` is not an integer")))?,
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| super::BackendError(format!("increment of `{key}` overflows")))?;
        tx.execute(
            "INSERT INTO key_value (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, next.to_string().into_bytes()],
        )?;
        tx.commit()?;
        Ok(next)
    }

    async fn compare_and_swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> BackendResult<bool> {
        self.with(|c| {
            let changed = match expected {
                None => c
                    .prepare_cached("INSERT INTO key_value (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING")?
                    .execute(params![key, new])?,
                Some(old) => c
                    .prepare_cached("UPDATE key_value SET value = ?3 WHERE key = ?1 AND value = ?2")?
                    .execute(params![key, old, new])?,
            };
            Ok(changed == 1)
        })
    }

    async fn ping(&self) -> BackendResult<()> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    /// Statements run inline and never suspend the guest.
    fn waits_on_io(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn conformance_in_memory() {
        super::super::conformance::check(Arc::new(SqliteBackend::in_memory().unwrap())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn atomic_under_contention() {
        let dir = tempdir();
        let backend = Arc::new(SqliteBackend::open(&dir.join("kv.db")).unwrap());
        super::super::conformance::check_atomic_under_contention(backend).await;
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempdir();
        let path = dir.join("kv.db");
        SqliteBackend::open(&path).unwrap().set("k", b"v").await.unwrap();
        let reopened = SqliteBackend::open(&path).unwrap();
        assert_eq!(reopened.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
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
