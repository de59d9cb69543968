//! Outbound Redis: `spin:redis/redis@3.0.0` for WASIp3 guests ([`p3`]) and
//! `fermyon:spin/redis@2.0.0` for WASIp2 guests ([`p2`]), over one policy and
//! one pool.
//!
//! Connections are multiplexed and shared per address across all instances,
//! made again after Redis comes back, with each reply's size capped
//! ([`SharedConnection`]). The address must match the component's `allowed_outbound_hosts`
//! (`redis://host:port`), otherwise `open` answers `invalid-address`.


use crate::allowed_hosts::AllowedHosts;
use crate::capabilities::redis_connection::SharedConnection;
use std::sync::Arc;

mod p2;
mod p3;

/// An argument of `execute`, in either version of the interface.
pub enum Argument {
    Int64(i64),
    Binary(Vec<u8>),
}

/// One element of a reply, in either version of the interface.
#[derive(Debug)]
pub enum Reply {
    Nil,
    Status(String),
    Int64(i64),
    Binary(Vec<u8>),
}

/// Why a call failed; each version maps it to its own `error`.
pub enum Error {
    InvalidAddress,
    TypeError,
    Other(String),
}

/// The conversions between these types and a version's generated ones,
/// which have the same shape in every version.
macro_rules! convert_to_wit {
    ($wit:path) => {
        use $wit as wit;

        impl From<super::Error> for wit::Error {
            fn from(e: super::Error) -> Self {
                match e {
                    super::Error::InvalidAddress => wit::Error::InvalidAddress,
                    super::Error::TypeError => wit::Error::TypeError,
                    super::Error::Other(message) => wit::Error::Other(message),
                }
            }
        }

        impl From<super::Reply> for wit::RedisResult {
            fn from(reply: super::Reply) -> Self {
                match reply {
                    super::Reply::Nil => wit::RedisResult::Nil,
                    super::Reply::Status(s) => wit::RedisResult::Status(s),
                    super::Reply::Int64(n) => wit::RedisResult::Int64(n),
                    super::Reply::Binary(b) => wit::RedisResult::Binary(b),
                }
            }
        }

        impl From<wit::RedisParameter> for super::Argument {
            fn from(parameter: wit::RedisParameter) -> Self {
                match parameter {
                    wit::RedisParameter::Int64(n) => super::Argument::Int64(n),
                    wit::RedisParameter::Binary(b) => super::Argument::Binary(b),
                }
            }
        }
    };
}
use convert_to_wit;

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
fn refusal(command: &str, arguments: &[Argument]) -> Option<String> {
    let upper = command.to_ascii_uppercase();
    if CONNECTION_STATE_COMMANDS.contains(&upper.as_str()) {
        return Some(format!("{command} changes the shared connection's state and is not allowed"));
    }
    let blocks = BLOCKING_COMMANDS.contains(&upper.as_str())
        || ((upper == "XREAD" || upper == "XREADGROUP")
            && arguments.iter().any(|a| matches!(a, Argument::Binary(b) if b.eq_ignore_ascii_case(b"BLOCK"))));
    blocks.then(|| format!("{command} blocks the connection, which other instances share, and is not allowed"))
}

/// The most addresses (hosts, or one host with other credentials or
/// databases) a pool keeps connections to, as for PostgreSQL; past it the
/// least recently used is let go (its connection closes once the instances
/// using it are done), so guests cannot make the host hold connections
/// without end.
const MAX_ADDRESSES: usize = 16;

/// Connections shared by every instance of the app, by address.
#[derive(Default)]
pub struct RedisPool {
    /// Most recently used first. The lock is held only to find an
    /// address's connection; connecting happens in it, so one slow address
    /// holds up only its own callers.
    connections: std::sync::Mutex<Vec<(String, Arc<SharedConnection>)>>,
}

impl RedisPool {
    /// The shared connection to `address`; it connects on first use.
    fn connection(&self, address: &str) -> Result<Arc<SharedConnection>, Error> {
        let mut connections = self.connections.lock().expect("not poisoned");
        let entry = match connections.iter().position(|(known, _)| known == address) {
            Some(at) => connections.remove(at),
            None => (address.to_string(), Arc::new(SharedConnection::new(address).map_err(|_| Error::InvalidAddress)?)),
        };
        let connection = entry.1.clone();
        connections.insert(0, entry);
        connections.truncate(MAX_ADDRESSES);
        Ok(connection)
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
#[derive(Clone)]
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

    /// A connection to `address` if the component may reach it. It is made
    /// here if there is none yet, so that `open` fails when Redis cannot be
    /// reached.
    pub async fn open(&self, address: &str) -> Result<Connection, Error> {
        self.check(address)?;
        let shared = self.pool.connection(address)?;
        shared.ready().await.map_err(|e| Error::Other(format!("cannot connect to {}: {e}", redact(address))))?;
        Ok(Connection { shared })
    }
}

/// An open connection (the `connection` resource).
pub struct Connection {
    shared: Arc<SharedConnection>,
}

fn other(e: redis::RedisError) -> Error {
    if e.kind() == redis::ErrorKind::TypeError {
        Error::TypeError
    } else {
        Error::Other(e.to_string())
    }
}

impl Connection {
    /// Runs one command. The shared connection is cloned, so the caller
    /// need not hold the instance's state while Redis answers.
    fn query<R: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> impl Future<Output = Result<R, Error>> + use<R> {
        let shared = self.shared.clone();
        async move { shared.run(|mut connection| async move { cmd.query_async(&mut connection).await }).await.map_err(other) }
    }

    pub fn publish(&self, channel: String, payload: Vec<u8>) -> impl Future<Output = Result<(), Error>> + use<> {
        let receivers = self.query::<i64>(redis::cmd("PUBLISH").arg(channel).arg(payload).clone());
        async move { receivers.await.map(drop) }
    }

    pub fn get(&self, key: String) -> impl Future<Output = Result<Option<Vec<u8>>, Error>> + use<> {
        self.query(redis::cmd("GET").arg(key).clone())
    }

    pub fn set(&self, key: String, value: Vec<u8>) -> impl Future<Output = Result<(), Error>> + use<> {
        self.query(redis::cmd("SET").arg(key).arg(value).clone())
    }

    pub fn incr(&self, key: String) -> impl Future<Output = Result<i64, Error>> + use<> {
        self.query(redis::cmd("INCR").arg(key).clone())
    }

    pub fn del(&self, keys: Vec<String>) -> impl Future<Output = Result<u32, Error>> + use<> {
        self.query(redis::cmd("DEL").arg(keys).clone())
    }

    pub fn sadd(&self, key: String, values: Vec<String>) -> impl Future<Output = Result<u32, Error>> + use<> {
        self.query(redis::cmd("SADD").arg(key).arg(values).clone())
    }

    pub fn smembers(&self, key: String) -> impl Future<Output = Result<Vec<String>, Error>> + use<> {
        self.query(redis::cmd("SMEMBERS").arg(key).clone())
    }

    pub fn srem(&self, key: String, values: Vec<String>) -> impl Future<Output = Result<u32, Error>> + use<> {
        self.query(redis::cmd("SREM").arg(key).arg(values).clone())
    }

    /// `execute`: any command but those that would change or hold the
    /// connection, which other instances share.
    pub fn execute(&self, command: &str, arguments: Vec<Argument>) -> impl Future<Output = Result<Vec<Reply>, Error>> + use<> {
        let refused = refusal(command, &arguments);
        let mut cmd = redis::cmd(command);
        for arg in arguments {
            match arg {
                Argument::Int64(n) => cmd.arg(n),
                Argument::Binary(b) => cmd.arg(b),
            };
        }
        let reply = self.query::<redis::Value>(cmd);
        async move {
            if let Some(why) = refused {
                return Err(Error::Other(why));
            }
            to_replies(reply.await?)
        }
    }
}

/// Flattens a reply into the WIT's list of results, as Spin does: arrays
/// become their elements, nested arrays are refused.
fn to_replies(value: redis::Value) -> Result<Vec<Reply>, Error> {
    match value {
        redis::Value::Array(items) | redis::Value::Set(items) => items.into_iter().map(to_reply).collect(),
        other => Ok(vec![to_reply(other)?]),
    }
}

fn to_reply(value: redis::Value) -> Result<Reply, Error> {
    Ok(match value {
        redis::Value::Nil => Reply::Nil,
        redis::Value::Int(n) => Reply::Int64(n),
        redis::Value::BulkString(b) => Reply::Binary(b),
        redis::Value::SimpleString(s) => Reply::Status(s),
        redis::Value::Okay => Reply::Status("OK".into()),
        redis::Value::VerbatimString { text, .. } => Reply::Binary(text.into_bytes()),
        redis::Value::Double(d) => Reply::Binary(d.to_string().into_bytes()),
        redis::Value::Boolean(b) => Reply::Int64(b as i64),
        redis::Value::ServerError(e) => return Err(Error::Other(format!("{e:?}"))),
        other => return Err(Error::Other(format!("unsupported reply type: {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Argument {
        Argument::Binary(s.as_bytes().to_vec())
    }

    #[test]
    fn blocking_and_state_changing_commands_are_refused() {
        for (command, args) in [
            ("blpop", vec![text("k"), Argument::Int64(0)]),
            ("BRPOP", vec![text("k"), Argument::Int64(0)]),
            ("XREAD", vec![text("block"), Argument::Int64(0), text("STREAMS"), text("s"), text("$")]),
            ("XREADGROUP", vec![text("GROUP"), text("g"), text("c"), text("BLOCK"), Argument::Int64(0)]),
            ("WAIT", vec![Argument::Int64(1), Argument::Int64(0)]),
            ("psync", vec![text("?"), Argument::Int64(-1)]),
            ("SYNC", vec![]),
            ("select", vec![Argument::Int64(1)]),
        ] {
            assert!(refusal(command, &args).is_some(), "{command}");
        }
        for (command, args) in [
            ("GET", vec![text("k")]),
            ("LPOP", vec![text("k")]),
            ("XREAD", vec![text("COUNT"), Argument::Int64(1), text("STREAMS"), text("s"), text("0")]),
            // A key named BLOCK is not the BLOCK option of a command that has none.
            ("SET", vec![text("BLOCK"), text("v")]),
        ] {
            assert_eq!(refusal(command, &args), None, "{command}");
        }
    }
}
