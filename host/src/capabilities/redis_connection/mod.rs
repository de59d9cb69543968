//! The Redis connections wharf makes for guests (outbound Redis, key-value
//! on Redis): one multiplexed connection per address, shared by every
//! instance, made on first use and made again after it fails, with every
//! reply's size capped; and the Redis trigger's subscriber connections
//! ([`SubscriberConnection`]).
//!
//! Why not redis-rs's own connections: they buffer a reply whole, however
//! large, before anyone sees it. A guest granted a Redis can make a reply of
//! gigabytes with a command of a few bytes (`SETRANGE k 500000000 x`, then
//! `LRANGE` of a list of such values, or a Lua script), and a server it
//! reaches can stream one without end; the host's memory would go, not only
//! that guest's request. So the TCP stream under the connection goes through
//! [`ReplyLimit`], which hands the client only replies up to
//! [`reply_limit::MAX_REPLY_BYTES`] and an error reply in place of a larger one, leaving
//! the connection and the other instances' commands on it unharmed.

use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisError, RedisResult};
use std::time::Duration;
use tokio::sync::Mutex;

mod reply_limit;
mod subscriber;
use reply_limit::ReplyLimit;
pub use subscriber::SubscriberConnection;

/// How long making a connection (name resolution, TCP, handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a command may wait for its reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One shared connection to one Redis address.
pub struct SharedConnection {
    host: String,
    port: u16,
    /// Database, credentials and protocol, for the handshake.
    redis: RedisConnectionInfo,
    /// The live connection and its generation, so that a caller whose
    /// command failed forgets only the connection it used, not a newer one
    /// another caller has made since.
    slot: Mutex<(u64, Option<MultiplexedConnection>)>,
}

impl SharedConnection {
    /// Checks the address; connects on first use.
    pub fn new(address: &str) -> RedisResult<Self> {
        let info = address.into_connection_info()?;
        match info.addr {
            ConnectionAddr::Tcp(host, port) => Ok(Self { host, port, redis: info.redis, slot: Mutex::new((0, None)) }),
            _ => Err(RedisError::from((redis::ErrorKind::InvalidClientConfig, "only redis://host:port addresses are supported"))),
        }
    }

    /// Runs one command (or script invocation) on the shared connection,
    /// connecting first if there is none; a failure of the connection itself
    /// drops it, so the next command connects again and a Redis that comes
    /// back is used without a restart.
    pub async fn run<R, F>(&self, command: impl FnOnce(MultiplexedConnection) -> F) -> RedisResult<R>
    where
        F: Future<Output = RedisResult<R>>,
    {
        let (generation, connection) = self.connection().await?;
        let result = command(connection).await;
        if let Err(e) = &result {
            if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                let mut slot = self.slot.lock().await;
                if slot.0 == generation {
                    slot.1 = None;
                }
            }
        }
        result
    }

    /// Connects now if there is no connection, so a caller can tell at once
    /// whether Redis can be reached.
    pub async fn ready(&self) -> RedisResult<()> {
        self.connection().await.map(drop)
    }

    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        // The lock is held while connecting, so callers queue behind one
        // attempt instead of each opening a connection.
        let mut slot = self.slot.lock().await;
        if let Some(connection) = &slot.1 {
            return Ok((slot.0, connection.clone()));
        }
        let connection = match tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await {
            Ok(result) => result?,
            Err(_) => return Err(RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no connection within {CONNECT_TIMEOUT:?}")))),
        };
        slot.0 += 1;
        slot.1 = Some(connection.clone());
        Ok((slot.0, connection))
    }

    async fn connect(&self) -> RedisResult<MultiplexedConnection> {
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        stream.set_nodelay(true)?;
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(RESPONSE_TIMEOUT);
        let (connection, driver) = MultiplexedConnection::new_with_config(&self.redis, ReplyLimit::new(stream), config).await?;
        tokio::spawn(driver);
        Ok(connection)
    }
}


#[cfg(test)]
mod tests {
    use super::reply_limit::MAX_REPLY_BYTES;
    use super::*;

    async fn query<R: redis::FromRedisValue>(connection: &SharedConnection, words: &[&str]) -> RedisResult<R> {
        let mut cmd = redis::cmd(words[0]);
        cmd.arg(&words[1..]);
        connection.run(|mut c| async move { cmd.query_async(&mut c).await }).await
    }

    #[tokio::test]
    async fn a_reply_over_the_limit_fails_its_command_only() {
        let redis = shop_tests::Redis::start();
        let connection = SharedConnection::new(&redis.url()).unwrap();
        // A few bytes of command make a value one byte over the limit.
        let length: usize = query(&connection, &["SETRANGE", "big", &(MAX_REPLY_BYTES - 1).to_string(), "xy"]).await.unwrap();
        assert_eq!(length, MAX_REPLY_BYTES + 1);
        query::<()>(&connection, &["SET", "small", "v"]).await.unwrap();
        let generation = connection.slot.lock().await.0;

        let (big, small) = tokio::join!(query::<Vec<u8>>(&connection, &["GET", "big"]), query::<Vec<u8>>(&connection, &["GET", "small"]));
        let error = big.unwrap_err();
        assert!(error.to_string().contains(&format!("larger than {MAX_REPLY_BYTES} bytes")), "{error}");
        assert_eq!(small.unwrap(), b"v");
        // The connection stays (the error is the reply's, not the
        // connection's), and a reply just under the limit passes whole.
        let under: Vec<u8> = query(&connection, &["GETRANGE", "big", "0", &(MAX_REPLY_BYTES - 20).to_string()]).await.unwrap();
        assert_eq!(under.len(), MAX_REPLY_BYTES - 19);
        assert_eq!(connection.slot.lock().await.0, generation);
    }

    #[test]
    fn only_plain_tcp_addresses_are_accepted() {
        assert!(SharedConnection::new("redis://127.0.0.1:6379/2").is_ok());
        assert!(SharedConnection::new("redis+unix:///tmp/redis.sock").is_err());
        assert!(SharedConnection::new("not a url").is_err());
    }
}
