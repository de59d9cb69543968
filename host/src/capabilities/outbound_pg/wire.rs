//! How wharf reaches a PostgreSQL server: its own TCP connection under
//! tokio-postgres, so that every message the server sends has its size
//! checked before the driver buffers it.
//!
//! Why: tokio-postgres reads each message whole into memory before looking
//! at it, and one row may be a message of up to a gigabyte
//! (`SELECT repeat('x', 1000000000)` on any server). The 128 MiB result cap
//! only applies once a row is read, so a guest's query, times the sessions a
//! component may hold, could take the host's memory. Here a message longer
//! than [`MAX_MESSAGE_BYTES`] ends its session at its header instead: the
//! guest's query fails, nothing is buffered, the pool drops the session.
//!
//! TLS: the check must see the messages, not TLS records, so the raw stream
//! checks them only until the client asks for TLS (or starts a direct TLS
//! handshake) and the server agrees; from then on the TLS stream, wrapped by
//! [`LimitedTls`], checks them.

use super::MAX_RESULT_BYTES;
use deadpool_postgres::Connect;
use futures::future::{BoxFuture, FutureExt, TryFutureExt};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_postgres::config::{Host, TargetSessionAttrs};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{Client, Config};

/// The longest message accepted from a server: no row larger than a whole
/// result may be could be passed to a guest anyway.
pub const MAX_MESSAGE_BYTES: usize = MAX_RESULT_BYTES;

/// The SSLRequest message: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// The first byte of a TLS handshake record (`sslnegotiation=direct`).
const TLS_HANDSHAKE: u8 = 0x16;

/// What the stream has seen of the conversation.
enum Phase {
    /// Nothing written yet: the client's first bytes say whether TLS comes.
    Start,
    /// The client sent SSLRequest; the server's next byte answers it.
    SslAnswer,
    /// TLS records: the TLS stream above checks the messages.
    Tls,
    /// Messages: a type byte, a 4-byte length (itself included), the body.
    Messages { header: [u8; 5], have: usize, body_left: u64 },
}

impl Phase {
    fn messages() -> Self {
        Phase::Messages { header: [0; 5], have: 0, body_left: 0 }
    }
}

/// A stream to a PostgreSQL server that fails as soon as the server starts a
/// message longer than the limit.
pub struct Limited<S> {
    inner: S,
    phase: Phase,
    limit: usize,
}

impl<S> Limited<S> {
    /// Over the raw connection, TLS or not.
    fn raw(inner: S) -> Self {
        Self { inner, phase: Phase::Start, limit: MAX_MESSAGE_BYTES }
    }

    /// Over a TLS stream, which carries messages only.
    fn messages(inner: S) -> Self {
        Self { inner, phase: Phase::messages(), limit: MAX_MESSAGE_BYTES }
    }

    /// Follows the server's bytes through message boundaries.
    fn inspect(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if let Phase::SslAnswer = self.phase {
            let Some((&answer, rest)) = bytes.split_first() else { return Ok(()) };
            // tokio-postgres takes anything but 'S' as a no, and goes on in
            // the clear.
            self.phase = if answer == b'S' { Phase::Tls } else { Phase::messages() };
            bytes = rest;
        }
        let Phase::Messages { header, have, body_left } = &mut self.phase else { return Ok(()) };
        while !bytes.is_empty() {
            if *body_left > 0 {
                let taken = (*body_left).min(bytes.len() as u64);
                *body_left -= taken;
                bytes = &bytes[taken as usize..];
                continue;
            }
            let taken = (header.len() - *have).min(bytes.len());
            header[*have..*have + taken].copy_from_slice(&bytes[..taken]);
            *have += taken;
            bytes = &bytes[taken..];
            if *have == header.len() {
                *have = 0;
                let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as u64;
                let body = length.checked_sub(4).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a PostgreSQL message shorter than its header"))?;
                if body > self.limit as u64 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the server started a message of {length} bytes, more than the {} wharf accepts", self.limit),
                    ));
                }
                *body_left = body;
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = out.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
        let result = this.inspect(&out.filled()[before..]);
        if let Err(e) = &result {
            tracing::warn!("PostgreSQL session ended: {e}");
        }
        Poll::Ready(result)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Phase::Start = this.phase {
            this.phase = if bytes.starts_with(&SSL_REQUEST) {
                Phase::SslAnswer
            } else if bytes.first() == Some(&TLS_HANDSHAKE) {
                Phase::Tls
            } else {
                Phase::messages()
            };
        }
        Pin::new(&mut this.inner).poll_write(cx, bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: TlsStream + Unpin> TlsStream for Limited<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

/// A host's TLS connector whose streams are [`Limited`].
pub struct LimitedTls<C>(C);

impl<S, C: TlsConnect<S>> TlsConnect<S> for LimitedTls<C>
where
    C::Stream: Unpin,
{
    type Stream = Limited<C::Stream>;
    type Error = C::Error;
    type Future = futures::future::MapOk<C::Future, fn(C::Stream) -> Limited<C::Stream>>;

    fn connect(self, stream: S) -> Self::Future {
        self.0.connect(stream).map_ok(Limited::messages as fn(C::Stream) -> Limited<C::Stream>)
    }
}

/// deadpool's connect, over [`Limited`] streams: each host of the
/// connection string in turn, as tokio-postgres tries them.
pub struct LimitedConnect<T> {
    pub tls: T,
}

impl<T> Connect for LimitedConnect<T>
where
    T: MakeTlsConnect<Limited<TcpStream>> + Clone + Send + Sync + 'static,
    T::Stream: Unpin + Send + Sync,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as TlsConnect<Limited<TcpStream>>>::Future: Send,
{
    fn connect(&self, config: &Config) -> BoxFuture<'_, Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>> {
        let config = config.clone();
        let tls = self.tls.clone();
        async move {
            let hosts = config.get_hosts();
            let addresses = config.get_hostaddrs();
            let ports = config.get_ports();
            let timeout = config.get_connect_timeout().copied().unwrap_or(super::OPEN_TIMEOUT);
            let mut last_error = None;
            // `check` has refused Unix sockets and hosts beyond the grant.
            for i in 0..hosts.len().max(addresses.len()) {
                let name = match hosts.get(i) {
                    Some(Host::Tcp(name)) => Some(name.clone()),
                    _ => None,
                };
                // tokio-postgres connects to `hostaddr` when given, and
                // verifies TLS against `host`.
                let Some(target) = addresses.get(i).map(|ip| ip.to_string()).or_else(|| name.clone()) else { continue };
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                let attempt = async {
                    let stream = match connect_tcp(&target, port, timeout).await {
                        Ok(stream) => stream,
                        Err(e) => return Err(driver_error(e).await),
                    };
                    let tls = tls.clone().make_tls_connect(name.as_deref().unwrap_or(&target)).map_err(|e| format!("TLS: {}", e.into()));
                    let tls = match tls {
                        Ok(tls) => tls,
                        Err(message) => return Err(driver_error(io::Error::new(io::ErrorKind::InvalidInput, message)).await),
                    };
                    start(&config, Limited::raw(stream), LimitedTls(tls)).await
                };
                match attempt.await {
                    Ok(session) => return Ok(session),
                    Err(e) => last_error = Some(e),
                }
            }
            match last_error {
                Some(e) => Err(e),
                None => Err(driver_error(io::Error::new(io::ErrorKind::InvalidInput, "the connection string names no host")).await),
            }
        }
        .boxed()
    }
}

async fn connect_tcp(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no connection to {host}:{port} within {timeout:?}")))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The session's start on a connected stream, with the checks
/// tokio-postgres makes when it connects by itself.
async fn start<S, C>(config: &Config, stream: S, tls: C) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: TlsConnect<S>,
    C::Stream: Send + 'static,
{
    let (client, connection) = config.connect_raw(stream, tls).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("PostgreSQL session ended: {e}");
        }
    });
    if config.get_target_session_attrs() == TargetSessionAttrs::ReadWrite {
        let read_only = client.simple_query("SHOW transaction_read_only").await?.into_iter().any(|message| {
            matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("on"))
        });
        if read_only {
            task.abort();
            return Err(driver_error(io::Error::new(io::ErrorKind::PermissionDenied, "database does not allow writes")).await);
        }
    }
    Ok((client, task))
}

/// An error of ours as the driver's own error type, which only the driver
/// can make: it is what the driver answers when a stream fails with it.
async fn driver_error(error: io::Error) -> tokio_postgres::Error {
    struct Failing(Option<io::Error>);
    impl Failing {
        fn fail<T>(&mut self) -> Poll<io::Result<T>> {
            Poll::Ready(Err(self.0.take().unwrap_or_else(|| io::ErrorKind::BrokenPipe.into())))
        }
    }
    impl AsyncRead for Failing {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            self.get_mut().fail()
        }
    }
    impl AsyncWrite for Failing {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
            self.get_mut().fail()
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().fail()
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().fail()
        }
    }
    let mut config = Config::new();
    config.user("wharf");
    match config.connect_raw(Failing(Some(error)), tokio_postgres::NoTls).await {
        Err(e) => e,
        Ok(_) => unreachable!("a stream that fails every call cannot start a session"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message: type, length (itself included), body.
    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        [&[kind][..], &(body.len() as u32 + 4).to_be_bytes(), body].concat()
    }

    /// The server's bytes through a stream with `limit`, after the client
    /// wrote `first_write`, fed in pieces of `step`.
    fn inspect(first_write: &[u8], server: &[u8], step: usize, limit: usize) -> io::Result<()> {
        let mut stream = Limited { inner: tokio::io::empty(), phase: Phase::Start, limit };
        if let Phase::Start = stream.phase {
            let waker = futures::task::noop_waker();
            let _ = Pin::new(&mut stream).poll_write(&mut Context::from_waker(&waker), first_write);
        }
        server.chunks(step).try_for_each(|piece| stream.inspect(piece))
    }

    const STARTUP: &[u8] = &[0, 0, 0, 9, 0, 3, 0, 0, 0];

    #[test]
    fn messages_up_to_the_limit_pass_however_they_are_split() {
        let server = [message(b'R', &[0, 0, 0, 0]), message(b'D', &[7; 64]), message(b'Z', b"I"), message(b'C', b"")].concat();
        for step in [1, 2, 5, 6, server.len()] {
            inspect(STARTUP, &server, step, 64).unwrap();
            // Refused TLS: the answer byte, then messages.
            inspect(&SSL_REQUEST, &[&b"N"[..], &server].concat(), step, 64).unwrap();
        }
    }

    #[test]
    fn a_message_over_the_limit_fails_at_its_header() {
        let header_only = &message(b'D', &[0; 65])[..5];
        for first_write in [STARTUP, &SSL_REQUEST[..]] {
            let answer: &[u8] = if first_write == SSL_REQUEST { b"N" } else { b"" };
            let server = [answer, &message(b'Z', b"I"), header_only].concat();
            let error = inspect(first_write, &server, 1, 64).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            assert!(error.to_string().contains("a message of 69 bytes, more than the 64"), "{error}");
        }
        // A length that does not even cover itself.
        assert!(inspect(STARTUP, &[b'Z', 0, 0, 0, 3], 1, 64).is_err());
    }

    #[test]
    fn tls_records_are_left_to_the_tls_stream() {
        // The server agreed to TLS, or the client began a direct handshake:
        // what follows is records, which would read as absurd lengths.
        let records = [0x16, 0x03, 0x03, 0xff, 0xff, 0x01, 0x02];
        inspect(&SSL_REQUEST, &[&b"S"[..], &records].concat(), 1, 64).unwrap();
        inspect(&[0x16, 0x03, 0x01, 0x00, 0x10], &records, 1, 64).unwrap();
        // The TLS stream's own check sees messages.
        let mut over_tls = Limited::messages(tokio::io::empty());
        over_tls.limit = 64;
        assert!(over_tls.inspect(&message(b'D', &[0; 65])[..5]).is_err());
    }

    #[tokio::test]
    async fn our_errors_become_the_drivers() {
        let error = driver_error(io::Error::new(io::ErrorKind::PermissionDenied, "database does not allow writes")).await;
        // What the guest reads (`open`'s error shows the causes).
        assert_eq!(super::super::error_chain(&error), "error communicating with the server: database does not allow writes");
    }
}
