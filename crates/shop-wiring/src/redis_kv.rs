//! The `Kv` port over outbound Redis (`key_value = "redis"`), for hosts
//! whose key-value store cannot do compare-and-swap on Redis.
//!
//! Spin's Redis key-value store (3.6.3, and main when this was written)
//! ends every `wasi:keyvalue/atomics` swap with `UNWATCH <key>`, which Redis
//! refuses (UNWATCH takes no arguments), and reports the swap as failed
//! after it wrote: every update of the shop would end in "too much
//! contention" (docs/real-spin.md). Here compare-and-swap is one `EVAL` of
//! [`CAS_SCRIPT`], which Redis runs atomically: no WATCH, no connection
//! state between the read and the swap.
//!
//! Keys and encodings are those of Spin's Redis key-value store (the key
//! as it is, values as they are, counters as Redis integers in decimal
//! text), so either way of reaching the same Redis reads the other's data.

use shop_core::kv::{Kv, StoreError};

/// One Redis reply value, as both builds' outbound Redis (`fermyon:spin/redis`
/// and `spin:redis`) return them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisReply {
    Nil,
    Status(String),
    Int64(i64),
    Binary(Vec<u8>),
}

/// Expands to `fn redis_reply(result: <module>::RedisResult) -> RedisReply`
/// for an SDK's redis module (`spin_sdk::redis` of spin-sdk 5 and 7: each
/// binds `redis-result` with a type of its own but the same variants).
#[macro_export]
macro_rules! redis_reply_conversion {
    ($($module:ident)::+) => {
        fn redis_reply(result: $($module)::+::RedisResult) -> $crate::redis_kv::RedisReply {
            use $crate::redis_kv::RedisReply;
            match result {
                $($module)::+::RedisResult::Nil => RedisReply::Nil,
                $($module)::+::RedisResult::Status(status) => RedisReply::Status(status),
                $($module)::+::RedisResult::Int64(value) => RedisReply::Int64(value),
                $($module)::+::RedisResult::Binary(value) => RedisReply::Binary(value),
            }
        }
    };
}

/// A connection that runs one Redis command; each build's adapter
/// implements it over its SDK's `Connection::execute`.
#[allow(async_fn_in_trait, reason = "components are single-threaded; no Send bound is wanted")]
pub trait RedisCommands {
    async fn execute(&self, command: &str, arguments: &[&[u8]]) -> Result<Vec<RedisReply>, StoreError>;
}

/// Compare-and-swap as one script, atomic on the Redis server.
/// KEYS[1]: the key; ARGV[1]: "absent" or "present", what the read saw;
/// ARGV[2]: the value it saw (empty when absent); ARGV[3]: the new value.
/// Replies 1 when it wrote, 0 when the key no longer holds what was seen.
/// (GET answers false in Lua for a missing key.)
pub const CAS_SCRIPT: &str = r"local current = redis.call('GET', KEYS[1])
if ARGV[1] == 'absent' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1";

pub struct RedisKv<C> {
    connection: C,
}

impl<C: RedisCommands> RedisKv<C> {
    pub fn new(connection: C) -> RedisKv<C> {
        RedisKv { connection }
    }

    /// Runs `command`, whose reply must be exactly one value.
    async fn one_reply(&self, command: &str, arguments: &[&[u8]]) -> Result<RedisReply, StoreError> {
        match self.connection.execute(command, arguments).await?.as_slice() {
            [reply] => Ok(reply.clone()),
            other => Err(unexpected(command, other)),
        }
    }
}

fn unexpected(command: &str, reply: impl std::fmt::Debug) -> StoreError {
    StoreError::new(format!("redis: unexpected {command} reply {reply:?}"))
}

/// What `cas_read` saw, for the script to compare.
pub struct RedisCasToken {
    key: String,
    seen: Option<Vec<u8>>,
}

impl<C: RedisCommands> Kv for RedisKv<C> {
    type CasToken = RedisCasToken;

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.one_reply("GET", &[key.as_bytes()]).await? {
            RedisReply::Nil => Ok(None),
            RedisReply::Binary(value) => Ok(Some(value)),
            other => Err(unexpected("GET", other)),
        }
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        match self.one_reply("SET", &[key.as_bytes(), value]).await? {
            RedisReply::Status(status) if status == "OK" => Ok(()),
            other => Err(unexpected("SET", other)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.one_reply("DEL", &[key.as_bytes()]).await? {
            RedisReply::Int64(_) => Ok(()),
            other => Err(unexpected("DEL", other)),
        }
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let arguments: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes()).collect();
        let replies = self.connection.execute("MGET", &arguments).await?;
        if replies.len() != keys.len() {
            return Err(unexpected("MGET", replies));
        }
        replies
            .into_iter()
            .map(|reply| match reply {
                RedisReply::Nil => Ok(None),
                RedisReply::Binary(value) => Ok(Some(value)),
                other => Err(unexpected("MGET", other)),
            })
            .collect()
    }

    async fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let arguments: Vec<&[u8]> = entries.iter().flat_map(|(key, value)| [key.as_bytes(), value.as_slice()]).collect();
        match self.one_reply("MSET", &arguments).await? {
            RedisReply::Status(status) if status == "OK" => Ok(()),
            other => Err(unexpected("MSET", other)),
        }
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        match self.one_reply("INCRBY", &[key.as_bytes(), delta.to_string().as_bytes()]).await? {
            RedisReply::Int64(value) => Ok(value),
            other => Err(unexpected("INCRBY", other)),
        }
    }

    async fn cas_read(&self, key: &str) -> Result<(Option<Vec<u8>>, RedisCasToken), StoreError> {
        let seen = self.get(key).await?;
        Ok((seen.clone(), RedisCasToken { key: key.to_string(), seen }))
    }

    async fn cas_swap(&self, token: RedisCasToken, value: &[u8]) -> Result<bool, StoreError> {
        let (presence, seen): (&[u8], &[u8]) = match &token.seen {
            Some(seen) => (b"present", seen),
            None => (b"absent", b""),
        };
        let arguments = [CAS_SCRIPT.as_bytes(), b"1", token.key.as_bytes(), presence, seen, value];
        match self.one_reply("EVAL", &arguments).await? {
            RedisReply::Int64(1) => Ok(true),
            RedisReply::Int64(0) => Ok(false),
            other => Err(unexpected("EVAL", other)),
        }
    }
}

/// The store the `key_value` variable chose: Spin's key-value store
/// `default` (`"spin"`, the default) or Redis at `redis_url` over outbound
/// Redis (`"redis"`). A compare-and-swap token is one of the store that
/// gave it, in the same variant.
pub enum SelectedKv<S, R> {
    Spin(S),
    Redis(R),
}

impl<S: Kv, R: Kv> Kv for SelectedKv<S, R> {
    type CasToken = SelectedKv<S::CasToken, R::CasToken>;

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            SelectedKv::Spin(kv) => kv.get(key).await,
            SelectedKv::Redis(kv) => kv.get(key).await,
        }
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        match self {
            SelectedKv::Spin(kv) => kv.set(key, value).await,
            SelectedKv::Redis(kv) => kv.set(key, value).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            SelectedKv::Spin(kv) => kv.delete(key).await,
            SelectedKv::Redis(kv) => kv.delete(key).await,
        }
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        match self {
            SelectedKv::Spin(kv) => kv.get_many(keys).await,
            SelectedKv::Redis(kv) => kv.get_many(keys).await,
        }
    }

    async fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        match self {
            SelectedKv::Spin(kv) => kv.set_many(entries).await,
            SelectedKv::Redis(kv) => kv.set_many(entries).await,
        }
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        match self {
            SelectedKv::Spin(kv) => kv.increment(key, delta).await,
            SelectedKv::Redis(kv) => kv.increment(key, delta).await,
        }
    }

    async fn cas_read(&self, key: &str) -> Result<(Option<Vec<u8>>, Self::CasToken), StoreError> {
        match self {
            SelectedKv::Spin(kv) => kv.cas_read(key).await.map(|(seen, token)| (seen, SelectedKv::Spin(token))),
            SelectedKv::Redis(kv) => kv.cas_read(key).await.map(|(seen, token)| (seen, SelectedKv::Redis(token))),
        }
    }

    async fn cas_swap(&self, token: Self::CasToken, value: &[u8]) -> Result<bool, StoreError> {
        match (self, token) {
            (SelectedKv::Spin(kv), SelectedKv::Spin(token)) => kv.cas_swap(token, value).await,
            (SelectedKv::Redis(kv), SelectedKv::Redis(token)) => kv.cas_swap(token, value).await,
            _ => Err(StoreError::new("a compare-and-swap token of the other store")),
        }
    }
}

/// Which store the `key_value` variable names (None: the manifest does not
/// define it, which means Spin's).
pub fn store_choice(variable: Option<&str>) -> Result<StoreChoice, String> {
    match variable.map(str::trim) {
        None | Some("spin") => Ok(StoreChoice::Spin),
        Some("redis") => Ok(StoreChoice::Redis),
        Some(other) => Err(format!("variable `key_value`: expected \"spin\" or \"redis\", got {other:?}")),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum StoreChoice {
    Spin,
    Redis,
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use shop_core::testing::MemoryKv;

    /// A wrapper that left these to the trait's defaults would make one
    /// store call per key.
    #[test]
    fn the_selected_store_answers_batches_itself() {
        block_on(async {
            let memory = MemoryKv::new();
            let kv: SelectedKv<MemoryKv, MemoryKv> = SelectedKv::Spin(memory.clone());
            kv.set_many(&[("a".into(), b"1".to_vec()), ("n".into(), 7i64.to_le_bytes().to_vec())]).await.unwrap();
            memory.reset_op_count();
            assert_eq!(kv.get_many(&["a".into(), "n".into(), "x".into()]).await.unwrap(), vec![Some(b"1".to_vec()), Some(7i64.to_le_bytes().to_vec()), None]);
            assert_eq!(memory.op_count(), 1, "one store call per batch");
        });
    }

    #[test]
    fn the_variable_names_spin_or_redis_and_nothing_else() {
        assert_eq!(store_choice(None), Ok(StoreChoice::Spin));
        assert_eq!(store_choice(Some("spin")), Ok(StoreChoice::Spin));
        assert_eq!(store_choice(Some(" redis\n")), Ok(StoreChoice::Redis));
        assert_eq!(store_choice(Some("Redis")), Err("variable `key_value`: expected \"spin\" or \"redis\", got \"Redis\"".to_string()));
        assert_eq!(store_choice(Some("")), Err("variable `key_value`: expected \"spin\" or \"redis\", got \"\"".to_string()));
    }
}
