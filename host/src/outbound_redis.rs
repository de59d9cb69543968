//! Outbound Redis, `spin:redis/redis@3.0.0`.
//!
//! Connections are multiplexed and shared per address across all instances
//! (a `ConnectionManager` reconnects by itself after Redis comes back). The
//! address must match the component's `allowed_outbound_hosts`
//! (`redis://host:port`), otherwise `open` answers `invalid-address`.

use crate::allowed_hosts::AllowedHosts;
use crate::bindings::imports::spin::redis::redis::{self as wit, Error, RedisParameter, RedisResult};
use crate::state::InstanceState;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use wasmtime::component::{Accessor, HasSelf, Resource};

/// Commands that `execute` refuses: they would change the state of a
/// connection other instances share (database, transactions, subscriptions,
/// replies, authentication).
const CONNECTION_STATE_COMMANDS: &[&str] = &[
    "SELECT", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE",
    "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "CLIENT", "AUTH", "HELLO", "RESET", "MONITOR", "QUIT",
];

/// Commands that `execute` refuses because they hold the connection: Redis
/// answers a connection's commands in order, so while one of these waits
/// (for a list to fill, for replicas, for a sleep, or for ever as a
/// replication stream) every other instance's command on the shared
/// connection waits behind it. `XREAD` and `XREADGROUP` are refused only
/// with `BLOCK`.
const BLOCKING_COMMANDS: &[&str] = &[
    "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF",
    "SYNC", "PSYNC", "REPLCONF", "REPLICAOF", "SLAVEOF", "FAILOVER", "DEBUG",
];

/// Why `execute` refuses `command` with `arguments`, if it does.
fn refusal(command: &str, arguments: &[RedisParameter]) -> Option<String> {
    let upper = command.to_ascii_uppercase();
    if CONNECTION_STATE_COMMANDS.contains(&upper.as_str()) {
        return Some(format!("{command} changes the shared connection's state and is not allowed"));
    }
    let blocks = BLOCKING_COMMANDS.contains(&upper.as_str())
        || ((upper == "XREAD" || upper == "XREADGROUP")
            && arguments.iter().any(|a| matches!(a, RedisParameter::Binary(b) if b.eq_ignore_ascii_case(b"BLOCK"))));
    blocks.then(|| format!("{command} blocks the connection, which other instances share, and is not allowed"))
}

/// How long making a connection may take before `open` fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Connections shared by every instance of the app, by address.
#[derive(Default)]
pub struct RedisPool {
    /// The lock is held only to find an address's cell; connecting happens
    /// in the cell, so one slow address holds up only its own callers.
    managers: std::sync::Mutex<HashMap<String, Arc<OnceCell<ConnectionManager>>>>,
}

impl RedisPool {
    /// A connection to `address`, made on first use and shared afterwards. A
    /// connect that fails or times out leaves nothing behind, and the next
    /// call tries again.
    pub async fn connection(&self, address: &str) -> Result<ConnectionManager, Error> {
        let cell = self.managers.lock().expect("not poisoned").entry(address.to_string()).or_default().clone();
        cell.get_or_try_init(|| connect(address)).await.cloned()
    }
}

async fn connect(address: &str) -> Result<ConnectionManager, Error> {
    let client = redis::Client::open(address).map_err(|_| Error::InvalidAddress)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(5))
        // No retries inside a (re)connect: redis-rs waits 1-2 s before the
        // first retry and up to 60-120 s before the second (backon's 1 s
        // minimum delay times its factor of 100), and every command on the
        // connection waits for that. With Redis down, `publish` and `PING`
        // then hung past the request deadline (504) instead of failing.
        // Now a command fails at once and the next one reconnects.
        .set_number_of_retries(0);
    // The connection timeout above covers the TCP connect; this one also
    // covers name resolution and the handshake.
    match tokio::time::timeout(CONNECT_TIMEOUT, ConnectionManager::new_with_config(client, config)).await {
        Ok(Ok(manager)) => Ok(manager),
        Ok(Err(e)) => Err(Error::Other(format!("cannot connect to {}: {e}", redact(address)))),
        Err(_) => Err(Error::Other(format!("cannot connect to {}: no answer within {CONNECT_TIMEOUT:?}", redact(address)))),
    }
}

/// Drops credentials from an address before it goes into a message.
pub fn redact(address: &str) -> String {
    match url::Url::parse(address) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => address.to_string(),
    }
}

/// Per-instance Redis access: the component's policy and the shared pool.
pub struct RedisAccess {
    pub allowed: Arc<AllowedHosts>,
    pub pool: Arc<RedisPool>,
}

impl RedisAccess {
    fn check(&self, address: &str) -> Result<(), Error> {
        let url = url::Url::parse(address).map_err(|_| Error::InvalidAddress)?;
        let scheme = url.scheme();
        if scheme != "redis" && scheme != "rediss" {
            return Err(Error::InvalidAddress);
        }
        let host = url.host_str().ok_or(Error::InvalidAddress)?;
        let port = url.port().unwrap_or(6379);
        if self.allowed.allows(scheme, host, port) {
            Ok(())
        } else {
            Err(Error::InvalidAddress)
        }
    }
}

/// An open connection (the `connection` resource).
pub struct Connection {
    manager: ConnectionManager,
}

fn other(e: redis::RedisError) -> Error {
    if e.kind() == redis::ErrorKind::TypeError {
        Error::TypeError
    } else {
        Error::Other(e.to_string())
    }
}

type Acc<T> = Accessor<T, HasSelf<InstanceState>>;

fn manager<T>(accessor: &Acc<T>, conn: &Resource<Connection>) -> wasmtime::Result<ConnectionManager> {
    accessor.with(|mut a| Ok(a.get().table.get(conn)?.manager.clone()))
}

/// Runs one command on the connection behind `conn`.
async fn run<T, R: redis::FromRedisValue>(
    accessor: &Acc<T>,
    conn: &Resource<Connection>,
    cmd: redis::Cmd,
) -> wasmtime::Result<Result<R, Error>> {
    let mut m = manager(accessor, conn)?;
    Ok(cmd.query_async(&mut m).await.map_err(other))
}

impl<T: Send> wit::HostConnectionWithStore<T> for HasSelf<InstanceState> {
    async fn open(accessor: &Accessor<T, Self>, address: String) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        let (checked, pool) = accessor.with(|mut a| {
            let redis = &a.get().redis;
            (redis.check(&address), redis.pool.clone())
        });
        if let Err(e) = checked {
            return Ok(Err(e));
        }
        let manager = match pool.connection(&address).await {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        accessor.with(|mut a| Ok(Ok(a.get().table.push(Connection { manager })?)))
    }

    async fn publish(accessor: &Accessor<T, Self>, self_: Resource<Connection>, channel: String, payload: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        run::<T, i64>(accessor, &self_, redis::cmd("PUBLISH").arg(channel).arg(payload).clone()).await.map(|r| r.map(drop))
    }

    async fn get(accessor: &Accessor<T, Self>, self_: Resource<Connection>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        run(accessor, &self_, redis::cmd("GET").arg(key).clone()).await
    }

    async fn set(accessor: &Accessor<T, Self>, self_: Resource<Connection>, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        run::<T, ()>(accessor, &self_, redis::cmd("SET").arg(key).arg(value).clone()).await
    }

    async fn incr(accessor: &Accessor<T, Self>, self_: Resource<Connection>, key: String) -> wasmtime::Result<Result<i64, Error>> {
        run(accessor, &self_, redis::cmd("INCR").arg(key).clone()).await
    }

    async fn del(accessor: &Accessor<T, Self>, self_: Resource<Connection>, keys: Vec<String>) -> wasmtime::Result<Result<u32, Error>> {
        run(accessor, &self_, redis::cmd("DEL").arg(keys).clone()).await
    }

    async fn sadd(accessor: &Accessor<T, Self>, self_: Resource<Connection>, key: String, values: Vec<String>) -> wasmtime::Result<Result<u32, Error>> {
        run(accessor, &self_, redis::cmd("SADD").arg(key).arg(values).clone()).await
    }

    async fn smembers(accessor: &Accessor<T, Self>, self_: Resource<Connection>, key: String) -> wasmtime::Result<Result<Vec<String>, Error>> {
        run(accessor, &self_, redis::cmd("SMEMBERS").arg(key).clone()).await
    }

    async fn srem(accessor: &Accessor<T, Self>, self_: Resource<Connection>, key: String, values: Vec<String>) -> wasmtime::Result<Result<u32, Error>> {
        run(accessor, &self_, redis::cmd("SREM").arg(key).arg(values).clone()).await
    }

    async fn execute(
        accessor: &Accessor<T, Self>,
        self_: Resource<Connection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<RedisResult>, Error>> {
        // The connection is shared by every instance using this address, so
        // commands that change its state or hold it would reach theirs.
        if let Some(why) = refusal(&command, &arguments) {
            return Ok(Err(Error::Other(why)));
        }
        let mut cmd = redis::cmd(&command);
        for arg in arguments {
            match arg {
                RedisParameter::Int64(n) => cmd.arg(n),
                RedisParameter::Binary(b) => cmd.arg(b),
            };
        }
        let value: Result<redis::Value, Error> = run(accessor, &self_, cmd).await?;
        Ok(value.and_then(to_results))
    }

    async fn drop(accessor: &Accessor<T, Self>, rep: Resource<Connection>) -> wasmtime::Result<()> {
        accessor.with(|mut a| a.get().table.delete(rep).map(drop).map_err(Into::into))
    }
}

/// Flattens a reply into the WIT's list of results, as Spin does: arrays
/// become their elements, nested arrays are refused.
fn to_results(value: redis::Value) -> Result<Vec<RedisResult>, Error> {
    match value {
        redis::Value::Array(items) | redis::Value::Set(items) => items.into_iter().map(to_result).collect(),
        other => Ok(vec![to_result(other)?]),
    }
}

fn to_result(value: redis::Value) -> Result<RedisResult, Error> {
    Ok(match value {
        redis::Value::Nil => RedisResult::Nil,
        redis::Value::Int(n) => RedisResult::Int64(n),
        redis::Value::BulkString(b) => RedisResult::Binary(b),
        redis::Value::SimpleString(s) => RedisResult::Status(s),
        redis::Value::Okay => RedisResult::Status("OK".into()),
        redis::Value::VerbatimString { text, .. } => RedisResult::Binary(text.into_bytes()),
        redis::Value::Double(d) => RedisResult::Binary(d.to_string().into_bytes()),
        redis::Value::Boolean(b) => RedisResult::Int64(b as i64),
        redis::Value::ServerError(e) => return Err(Error::Other(format!("{e:?}"))),
        other => return Err(Error::Other(format!("unsupported reply type: {other:?}"))),
    })
}

impl wit::HostConnection for InstanceState {}

impl wit::Host for InstanceState {}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> RedisParameter {
        RedisParameter::Binary(s.as_bytes().to_vec())
    }

    #[test]
    fn blocking_and_state_changing_commands_are_refused() {
        for (command, args) in [
            ("blpop", vec![text("k"), RedisParameter::Int64(0)]),
            ("BRPOP", vec![text("k"), RedisParameter::Int64(0)]),
            ("XREAD", vec![text("block"), RedisParameter::Int64(0), text("STREAMS"), text("s"), text("$")]),
            ("XREADGROUP", vec![text("GROUP"), text("g"), text("c"), text("BLOCK"), RedisParameter::Int64(0)]),
            ("WAIT", vec![RedisParameter::Int64(1), RedisParameter::Int64(0)]),
            ("psync", vec![text("?"), RedisParameter::Int64(-1)]),
            ("SYNC", vec![]),
            ("select", vec![RedisParameter::Int64(1)]),
        ] {
            assert!(refusal(command, &args).is_some(), "{command}");
        }
        for (command, args) in [
            ("GET", vec![text("k")]),
            ("LPOP", vec![text("k")]),
            ("XREAD", vec![text("COUNT"), RedisParameter::Int64(1), text("STREAMS"), text("s"), text("0")]),
            // A key named BLOCK is not the BLOCK option of a command that has none.
            ("SET", vec![text("BLOCK"), text("v")]),
        ] {
            assert_eq!(refusal(command, &args), None, "{command}");
        }
    }
}
