//! Key-value on Redis (`type = "redis"`, for stores shared by several hosts).
//!
//! Compare-and-swap is a Lua script, so the compare and the write are one
//! atomic step on the server for every host using the store. The connection
//! is the capabilities' shared one ([`SharedConnection`]): made on first use
//! and again after it fails, so a host starts and serves its other routes
//! while Redis is down, and commands fail fast meanwhile.

use super::{Backend, BackendResult, KeyPage};
use crate::capabilities::redis_connection::SharedConnection;
use async_trait::async_trait;

const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == 'absent' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
";

pub struct RedisBackend {
    connection: SharedConnection,
    cas: redis::Script,
}

impl RedisBackend {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        Ok(Self { connection: SharedConnection::new(url)?, cas: redis::Script::new(CAS_SCRIPT) })
    }

    async fn query<R: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> BackendResult<R> {
        Ok(self.connection.run(|mut connection| async move { cmd.query_async(&mut connection).await }).await?)
    }
}

#[async_trait]
impl Backend for RedisBackend {
    async fn get(&self, key: &str) -> BackendResult<Option<Vec<u8>>> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> BackendResult<()> {
        self.query(redis::cmd("SET").arg(key).arg(value)).await
    }

    async fn get_many(&self, keys: &[String]) -> BackendResult<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.query(redis::cmd("MGET").arg(keys)).await
    }

    async fn set_many(&self, entries: &[(String, Vec<u8>)]) -> BackendResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut mset = redis::cmd("MSET");
        for (key, value) in entries {
            mset.arg(key).arg(value);
        }
        self.query(&mset).await
    }

    async fn delete(&self, key: &str) -> BackendResult<()> {
        self.query::<i64>(redis::cmd("DEL").arg(key)).await.map(drop)
    }

    async fn exists(&self, key: &str) -> BackendResult<bool> {
        self.query(redis::cmd("EXISTS").arg(key)).await
    }

    async fn keys(&self, cursor: Option<&str>, limit: usize) -> BackendResult<KeyPage> {
        // SCAN's cursor is opaque; "0" starts and ends an iteration.
        let (next, keys): (String, Vec<String>) =
            self.query(redis::cmd("SCAN").arg(cursor.unwrap_or("0")).arg("COUNT").arg(limit)).await?;
        Ok(KeyPage { keys, next: (next != "0").then_some(next) })
    }

    async fn increment(&self, key: &str, delta: i64) -> BackendResult<i64> {
        self.query(redis::cmd("INCRBY").arg(key).arg(delta)).await
    }

    async fn compare_and_swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> BackendResult<bool> {
        let mut invocation = self.cas.key(key);
        match expected {
            None => invocation.arg("absent").arg(""),
            Some(old) => invocation.arg("present").arg(old),
        };
        invocation.arg(new);
        let swapped: i64 = self.connection.run(|mut connection| async move { invocation.invoke_async(&mut connection).await }).await?;
        Ok(swapped == 1)
    }

    async fn ping(&self) -> BackendResult<()> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::{self, CounterEncoding};
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn conformance_on_a_real_redis() {
        let redis = shop_tests::Redis::start();
        conformance::check(Arc::new(RedisBackend::new(&redis.url()).unwrap()), CounterEncoding::DecimalText).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn atomic_under_contention() {
        let redis = shop_tests::Redis::start();
        conformance::check_atomic_under_contention(Arc::new(RedisBackend::new(&redis.url()).unwrap()), CounterEncoding::DecimalText)
            .await;
    }

    #[tokio::test]
    async fn fails_fast_while_redis_is_down_and_recovers_without_a_restart() {
        let mut redis = shop_tests::Redis::start();
        let backend = RedisBackend::new(&redis.url()).unwrap();
        backend.set("k", b"v").await.unwrap();
        redis.stop();
        let started = std::time::Instant::now();
        assert!(backend.get("k").await.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
        redis.restart();
        // The server keeps no data across restarts; what matters is that the store answers again.
        let mut answered = false;
        for _ in 0..50 {
            if backend.set("k", b"again").await.is_ok() {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(answered, "the store answers again after Redis comes back");
        assert_eq!(backend.get("k").await.unwrap().as_deref(), Some(&b"again"[..]));
    }
}
