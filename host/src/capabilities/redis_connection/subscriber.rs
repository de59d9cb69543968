//! A pub/sub subscriber connection for the Redis trigger, over
//! [`ReplyLimit`]: messages are read from the socket only when the trigger
//! asks for the next one.
//!
//! Why not redis-rs's `PubSub`: its driver task reads the socket without
//! pause into an unbounded queue, so while every handler slot is taken a
//! publisher (any client of that Redis, a guest granted it included) could
//! fill the host's memory. Here a busy trigger stops reading; the backlog
//! waits in Redis, which drops a subscriber whose backlog passes its
//! `client-output-buffer-limit` for pub/sub (the trigger then subscribes
//! again). A message over the reply cap is dropped and logged.

use super::ReplyLimit;
use anyhow::{Context, Result, bail};
use redis::{ConnectionAddr, IntoConnectionInfo, Value};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long connecting and the handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SubscriberConnection {
    stream: ReplyLimit<TcpStream>,
}

impl SubscriberConnection {
    /// Checks that `address` is one a subscription can be made to.
    pub fn check_address(address: &str) -> Result<()> {
        match address.into_connection_info()?.addr {
            ConnectionAddr::Tcp(..) => Ok(()),
            _ => bail!("only redis://host:port addresses are supported"),
        }
    }

    /// Connects to `address`, authenticates if it has credentials, and
    /// subscribes to `channels`.
    pub async fn open(address: &str, channels: &[&str]) -> Result<Self> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::connect(address, channels))
            .await
            .with_context(|| format!("no connection within {CONNECT_TIMEOUT:?}"))?
    }

    async fn connect(address: &str, channels: &[&str]) -> Result<Self> {
        let info = address.into_connection_info()?;
        let ConnectionAddr::Tcp(host, port) = &info.addr else { bail!("only redis://host:port addresses are supported") };
        let tcp = TcpStream::connect((host.as_str(), *port)).await?;
        tcp.set_nodelay(true)?;
        let mut subscription = Self { stream: ReplyLimit::new(tcp) };
        if let Some(password) = &info.redis.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &info.redis.username {
                auth.arg(user);
            }
            auth.arg(password);
            subscription.send(&auth).await?;
            match subscription.reply().await? {
                Value::Okay => {}
                Value::ServerError(e) => bail!("AUTH refused: {}", e.details().unwrap_or(e.code())),
                other => bail!("AUTH answered {other:?}"),
            }
        }
        subscription.send(redis::cmd("SUBSCRIBE").arg(channels)).await?;
        Ok(subscription)
    }

    async fn send(&mut self, command: &redis::Cmd) -> Result<()> {
        self.stream.write_all(&command.get_packed_command()).await?;
        Ok(())
    }

    async fn reply(&mut self) -> Result<Value> {
        let reply = self.stream.read_reply().await?.context("the connection ended")?;
        Ok(redis::parse_redis_value(&reply)?)
    }

    /// The next message as `(channel, payload)`; None when Redis ended the
    /// connection.
    pub async fn next_message(&mut self) -> Result<Option<(String, Vec<u8>)>> {
        loop {
            let Some(reply) = self.stream.read_reply().await? else { return Ok(None) };
            match redis::parse_redis_value(&reply)? {
                Value::Array(items) | Value::Push { data: items, .. } => {
                    let mut items = items.into_iter();
                    match (items.next(), items.next(), items.next()) {
                        (Some(Value::BulkString(kind)), Some(Value::BulkString(channel)), Some(Value::BulkString(payload)))
                            if kind == b"message" =>
                        {
                            return Ok(Some((String::from_utf8_lossy(&channel).into_owned(), payload)));
                        }
                        // The confirmations of SUBSCRIBE.
                        _ => continue,
                    }
                }
                Value::ServerError(e) if e.details().is_some_and(|details| details.contains("larger than")) => {
                    tracing::warn!("redis message dropped: {}", e.details().unwrap_or_default());
                }
                Value::ServerError(e) => bail!("redis refused the subscription: {} {}", e.code(), e.details().unwrap_or_default()),
                other => bail!("unexpected reply on a subscriber connection: {other:?}"),
            }
        }
    }
}
