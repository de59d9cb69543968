//! The key-value store over outbound Redis (`shop_wiring::redis_kv`), its
//! compare-and-swap script included, against a real `redis-server` started
//! by the test. The commands go through the `redis` crate, whose replies are
//! turned into `RedisReply` as Spin's and wharf's outbound Redis turn them
//! into `redis-result`s.

use futures::executor::block_on;
use shop_core::kv::{Change, Kv, StoreError, update_json};
use shop_tests::Redis;
use shop_wiring::redis_kv::{RedisCommands, RedisKv, RedisReply};
use std::cell::RefCell;

struct NativeRedis(RefCell<redis::Connection>);

impl RedisCommands for NativeRedis {
    async fn execute(&self, command: &str, arguments: &[&[u8]]) -> Result<Vec<RedisReply>, StoreError> {
        let mut cmd = redis::cmd(command);
        for argument in arguments {
            cmd.arg(*argument);
        }
        let value: redis::Value = cmd.query(&mut *self.0.borrow_mut()).map_err(|e| StoreError::new(e.to_string()))?;
        let reply = match value {
            redis::Value::Nil => RedisReply::Nil,
            redis::Value::Okay => RedisReply::Status("OK".into()),
            redis::Value::SimpleString(status) => RedisReply::Status(status),
            redis::Value::Int(value) => RedisReply::Int64(value),
            redis::Value::BulkString(value) => RedisReply::Binary(value),
            other => panic!("the store sends no command answering {other:?}"),
        };
        Ok(vec![reply])
    }
}

fn store(redis: &Redis) -> RedisKv<NativeRedis> {
    RedisKv::new(NativeRedis(RefCell::new(redis.client())))
}

fn raw_get(redis: &Redis, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query(&mut redis.client()).unwrap()
}

#[test]
fn a_swap_writes_only_when_the_key_holds_what_the_read_saw() {
    let redis = Redis::start();
    let kv = store(&redis);
    block_on(async {
        // A fresh key: the swap creates it, and says so.
        let (seen, token) = kv.cas_read("k").await.unwrap();
        assert_eq!(seen, None);
        assert!(kv.cas_swap(token, b"one").await.unwrap());
        assert_eq!(raw_get(&redis, "k"), Some(b"one".to_vec()));

        // Two writers read the same value: the first swap wins, the second
        // finds the key changed and writes nothing.
        let (_, first) = kv.cas_read("k").await.unwrap();
        let (_, second) = kv.cas_read("k").await.unwrap();
        assert!(kv.cas_swap(first, b"two").await.unwrap());
        assert!(!kv.cas_swap(second, b"three").await.unwrap());
        assert_eq!(kv.get("k").await.unwrap(), Some(b"two".to_vec()));

        // Seen absent, created meanwhile: refused.
        let (_, token) = kv.cas_read("new").await.unwrap();
        kv.set("new", b"other").await.unwrap();
        assert!(!kv.cas_swap(token, b"mine").await.unwrap());
        assert_eq!(raw_get(&redis, "new"), Some(b"other".to_vec()));

        // Seen present, deleted meanwhile: refused, the key stays absent.
        let (_, token) = kv.cas_read("new").await.unwrap();
        kv.delete("new").await.unwrap();
        assert!(!kv.cas_swap(token, b"mine").await.unwrap());
        assert_eq!(raw_get(&redis, "new"), None);

        // Seen as the empty value, which is present: a deleted key does not
        // pass for it.
        kv.set("empty", b"").await.unwrap();
        let (seen, token) = kv.cas_read("empty").await.unwrap();
        assert_eq!(seen, Some(vec![]));
        kv.delete("empty").await.unwrap();
        assert!(!kv.cas_swap(token, b"x").await.unwrap());
        assert_eq!(raw_get(&redis, "empty"), None);
    });
}

#[test]
fn values_are_bytes_compared_exactly_whatever_they_hold() {
    let redis = Redis::start();
    let kv = store(&redis);
    // Bytes that are not UTF-8, a NUL, Lua and RESP syntax; the other value
    // differs from it in the last byte only.
    let stored: Vec<u8> = b"\x00\xff') return 1 --\r\n*1\r\n$4\r\nPING\r\n".to_vec();
    let mut almost = stored.clone();
    *almost.last_mut().unwrap() ^= 1;
    block_on(async {
        kv.set("bytes", &stored).await.unwrap();
        let (seen, token) = kv.cas_read("bytes").await.unwrap();
        assert_eq!(seen.as_deref(), Some(stored.as_slice()));
        redis::cmd("SET").arg("bytes").arg(&almost).exec(&mut redis.client()).unwrap();
        assert!(!kv.cas_swap(token, b"lost").await.unwrap());
        assert_eq!(raw_get(&redis, "bytes"), Some(almost.clone()));

        let (_, token) = kv.cas_read("bytes").await.unwrap();
        assert!(kv.cas_swap(token, &stored).await.unwrap());
        assert_eq!(raw_get(&redis, "bytes"), Some(stored.clone()));
    });
}

#[test]
fn counters_are_redis_integers_and_a_key_of_another_kind_is_an_error() {
    let redis = Redis::start();
    let kv = store(&redis);
    block_on(async {
        assert_eq!(kv.increment("n", 0).await, Ok(0));
        assert_eq!(kv.increment("n", 5).await, Ok(5));
        assert_eq!(kv.increment("n", -7).await, Ok(-2));
        // Decimal text, as Spin's Redis key-value store keeps counters.
        assert_eq!(raw_get(&redis, "n"), Some(b"-2".to_vec()));

        kv.set("text", b"not a number").await.unwrap();
        assert!(kv.increment("text", 1).await.is_err());
        redis::cmd("HSET").arg("hash").arg("f").arg("v").exec(&mut redis.client()).unwrap();
        assert!(kv.get("hash").await.is_err());
        let (_, token) = kv.cas_read("text").await.unwrap();
        redis::cmd("DEL").arg("text").exec(&mut redis.client()).unwrap();
        redis::cmd("HSET").arg("text").arg("f").arg("v").exec(&mut redis.client()).unwrap();
        let error = kv.cas_swap(token, b"x").await.unwrap_err();
        assert!(error.message.contains("WRONGTYPE"), "{error}");
    });
}

#[test]
fn concurrent_updates_through_the_script_lose_none() {
    let redis = Redis::start();
    // Eight threads, each on a connection of its own, add 1 to one JSON
    // number 25 times each by compare-and-swap: every addition is kept.
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                let kv = store(&redis);
                for _ in 0..25 {
                    let updated: Result<(), StoreError> =
                        block_on(update_json(&kv, "total", |total: Option<u64>| Ok(Change::Write(total.unwrap_or(0) + 1, ()))));
                    updated.unwrap();
                }
            });
        }
    });
    assert_eq!(raw_get(&redis, "total"), Some(b"200".to_vec()));
}
