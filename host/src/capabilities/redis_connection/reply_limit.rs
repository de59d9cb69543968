//! A stream between a Redis server and redis-rs that passes on whole
//! replies only, each at most [`MAX_REPLY_BYTES`]; a larger reply is read
//! and dropped as it arrives and an error reply takes its place.
//!
//! Replies on one connection come one after another, so this holds at most
//! one unfinished reply. It reads just enough of RESP (versions 2 and 3) to
//! find where a reply ends: type bytes, lines, lengths and element counts,
//! never the payloads.

use bytes::{Buf, BytesMut};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest reply passed on: what the SQL capabilities allow a query's
/// result, and no instance's memory (128 MiB by default) could take more.
pub const MAX_REPLY_BYTES: usize = 128 << 20;

/// The longest length or count line accepted (`$`, `*` and the like): a
/// 64-bit number with its sign and CRLF fits many times over.
const MAX_HEADER_LINE: usize = 64;

/// The deepest nesting accepted; redis-rs refuses more than 100 levels.
const MAX_DEPTH: usize = 128;

const READ_CHUNK: usize = 16 << 10;

pub struct ReplyLimit<S> {
    inner: S,
    limit: usize,
    /// `[..ready]` holds whole replies for the reader; the rest, the start
    /// of the reply being read (empty while it is being dropped).
    buffer: BytesMut,
    ready: usize,
    /// The lengths of the whole replies in `buffer[..ready]`, in order (what
    /// [`Self::read_reply`] hands out one at a time).
    whole: VecDeque<usize>,
    /// The reply being read is over the limit and is being dropped.
    dropping: bool,
    scanner: Scanner,
    chunk: Box<[u8]>,
}

impl<S> ReplyLimit<S> {
    pub fn new(inner: S) -> Self {
        Self::with_limit(inner, MAX_REPLY_BYTES)
    }

    fn with_limit(inner: S, limit: usize) -> Self {
        Self {
            inner,
            limit,
            buffer: BytesMut::new(),
            ready: 0,
            whole: VecDeque::new(),
            dropping: false,
            scanner: Scanner::default(),
            chunk: vec![0; READ_CHUNK].into(),
        }
    }

    /// The next whole reply (or the error reply in place of one over the
    /// limit); None at the end of the stream. Reads from the server only
    /// when no whole reply is held, so a caller that stops asking stops
    /// reading.
    pub async fn read_reply(&mut self) -> io::Result<Option<BytesMut>>
    where
        S: AsyncRead + Unpin,
    {
        loop {
            if let Some(length) = self.whole.pop_front() {
                self.ready -= length;
                return Ok(Some(self.buffer.split_to(length)));
            }
            if !self.read_more().await? {
                return Ok(None);
            }
        }
    }

    /// Reads once from the server and sorts what came; false at the end of
    /// the stream.
    async fn read_more(&mut self) -> io::Result<bool>
    where
        S: AsyncRead + Unpin,
    {
        let filled = tokio::io::AsyncReadExt::read(&mut self.inner, &mut self.chunk).await?;
        self.sort_chunk(filled)?;
        Ok(filled > 0)
    }

    /// Sorts the first `filled` bytes of the read chunk.
    fn sort_chunk(&mut self, filled: usize) -> io::Result<()> {
        let chunk = std::mem::take(&mut self.chunk);
        let taken = self.take_in(&chunk[..filled]);
        self.chunk = chunk;
        taken
    }

    /// Hands `n` bytes of whole replies to the reader of the byte stream.
    fn consume(&mut self, n: usize) {
        self.buffer.advance(n);
        self.ready -= n;
        let mut left = n;
        while left > 0 {
            let front = self.whole.front_mut().expect("ready bytes belong to whole replies");
            if *front <= left {
                left -= *front;
                self.whole.pop_front();
            } else {
                *front -= left;
                left = 0;
            }
        }
    }

    /// Sorts freshly read bytes into whole replies, the unfinished one, or
    /// the one being dropped.
    fn take_in(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let (used, reply_ends) = self.scanner.advance(bytes)?;
            let (piece, rest) = bytes.split_at(used);
            if !self.dropping {
                self.buffer.extend_from_slice(piece);
                if self.buffer.len() - self.ready > self.limit {
                    self.buffer.truncate(self.ready);
                    self.dropping = true;
                }
            }
            if reply_ends {
                if self.dropping {
                    let error = format!("-ERR the reply is larger than {} bytes, the most wharf passes to a guest\r\n", self.limit);
                    self.buffer.extend_from_slice(error.as_bytes());
                    self.dropping = false;
                }
                self.whole.push_back(self.buffer.len() - self.ready);
                self.ready = self.buffer.len();
            }
            bytes = rest;
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReplyLimit<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.ready == 0 {
            let mut read = ReadBuf::new(&mut this.chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let filled = read.filled().len();
            if filled == 0 {
                // End of stream: an unfinished reply is never passed on, so
                // the client sees the connection end between replies.
                return Poll::Ready(Ok(()));
            }
            this.sort_chunk(filled)?;
        }
        let n = this.ready.min(out.remaining());
        out.put_slice(&this.buffer[..n]);
        this.consume(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReplyLimit<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, bytes)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bytes)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where in a reply the scanner is.
#[derive(Default)]
enum Position {
    /// At a value's type byte.
    #[default]
    Type,
    /// In a simple line (`+`, `-`, `:`, `_`, `,`, `#`, `(`), up to its LF.
    Line,
    /// In the length or count line of a value of this type.
    Header(u8, Vec<u8>),
    /// In a length-prefixed payload, this many bytes (CRLF included) to go.
    Payload(u64),
}

/// Finds where replies end, byte by byte, across reads.
#[derive(Default)]
struct Scanner {
    position: Position,
    /// Elements still to come in each open aggregate, outermost first.
    open: Vec<u64>,
}

fn protocol_error(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("not a Redis reply: {what}"))
}

impl Scanner {
    /// Reads into `bytes` up to the end of the current reply: how many bytes
    /// it used, and whether the reply ended there.
    fn advance(&mut self, bytes: &[u8]) -> io::Result<(usize, bool)> {
        let mut at = 0;
        while at < bytes.len() {
            let value_ends = match &mut self.position {
                Position::Type => {
                    let kind = bytes[at];
                    at += 1;
                    self.position = match kind {
                        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Position::Line,
                        b'$' | b'!' | b'=' | b'*' | b'~' | b'>' | b'%' | b'|' => Position::Header(kind, Vec::new()),
                        _ => return Err(protocol_error(&format!("type byte {kind:#04x}"))),
                    };
                    false
                }
                Position::Line => match bytes[at..].iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        at += end + 1;
                        self.position = Position::Type;
                        true
                    }
                    None => {
                        at = bytes.len();
                        false
                    }
                },
                Position::Header(kind, line) => {
                    let (taken, complete) = match bytes[at..].iter().position(|&b| b == b'\n') {
                        Some(end) => (end + 1, true),
                        None => (bytes.len() - at, false),
                    };
                    line.extend_from_slice(&bytes[at..at + taken]);
                    at += taken;
                    if line.len() > MAX_HEADER_LINE {
                        return Err(protocol_error("a length line too long"));
                    }
                    if complete {
                        let kind = *kind;
                        let number = std::str::from_utf8(line)
                            .ok()
                            .and_then(|text| text.trim().parse::<i64>().ok())
                            .ok_or_else(|| protocol_error("a length that is not a number"))?;
                        self.header(kind, number)?
                    } else {
                        false
                    }
                }
                Position::Payload(remaining) => {
                    let taken = (*remaining).min((bytes.len() - at) as u64);
                    *remaining -= taken;
                    at += taken as usize;
                    if *remaining == 0 {
                        self.position = Position::Type;
                        true
                    } else {
                        false
                    }
                }
            };
            if value_ends && self.value_ended() {
                return Ok((at, true));
            }
        }
        Ok((at, false))
    }

    /// Moves past a length or count line; whether that ended a value (a
    /// null, or an empty aggregate).
    fn header(&mut self, kind: u8, number: i64) -> io::Result<bool> {
        self.position = Position::Type;
        if number <= 0 {
            // Nulls (-1) and empty values; an empty string still has its CRLF.
            if number == 0 && matches!(kind, b'$' | b'!' | b'=') {
                self.position = Position::Payload(2);
                return Ok(false);
            }
            return Ok(true);
        }
        let number = number as u64;
        let elements = match kind {
            b'$' | b'!' | b'=' => {
                self.position = Position::Payload(number + 2);
                return Ok(false);
            }
            b'*' | b'~' | b'>' => number,
            b'%' => number * 2,
            // Attributes: the pairs, then the value they describe.
            b'|' => number * 2 + 1,
            _ => unreachable!("only length-prefixed types have a header"),
        };
        if self.open.len() == MAX_DEPTH {
            return Err(protocol_error("nested too deep"));
        }
        self.open.push(elements);
        Ok(false)
    }

    /// A value ended: counts it in its aggregate, closing those it
    /// completes; whether that ended the whole reply.
    fn value_ended(&mut self) -> bool {
        while let Some(remaining) = self.open.last_mut() {
            *remaining -= 1;
            if *remaining > 0 {
                return false;
            }
            self.open.pop();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Replies of every RESP type, nested ones and empty ones included.
    const REPLIES: &[&[u8]] = &[
        b"+OK\r\n",
        b"-ERR wrong type\r\n",
        b":-42\r\n",
        b"$5\r\nhe\r\no\r\n",
        b"$0\r\n\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n*0\r\n+x\r\n",
        b"_\r\n",
        b",3.25\r\n",
        b"#t\r\n",
        b"(12345678901234567890\r\n",
        b"!3\r\nerr\r\n",
        b"=7\r\ntxt:abc\r\n",
        b"%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n$1\r\nz\r\n",
        b"~1\r\n+m\r\n",
        b">2\r\n+message\r\n$2\r\nhi\r\n",
        b"|1\r\n+ttl\r\n:3\r\n$3\r\nval\r\n",
    ];

    /// Sends `input` through a ReplyLimit in writes of `step` bytes; what
    /// comes out.
    async fn pass(input: &[u8], step: usize, limit: usize) -> io::Result<Vec<u8>> {
        let (mut server, client) = tokio::io::duplex(64 << 10);
        let mut limited = ReplyLimit::with_limit(client, limit);
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            for piece in input.chunks(step) {
                server.write_all(piece).await.unwrap();
            }
        });
        let mut out = Vec::new();
        let result = limited.read_to_end(&mut out).await;
        writer.await.unwrap();
        result.map(|_| out)
    }

    #[tokio::test]
    async fn whole_replies_of_every_type_pass_unchanged_however_they_are_split() {
        let all = REPLIES.concat();
        for step in [1, 2, 3, 7, all.len()] {
            assert_eq!(pass(&all, step, 1 << 20).await.unwrap(), all, "in pieces of {step}");
        }
    }

    #[tokio::test]
    async fn an_unfinished_reply_is_never_passed_on() {
        assert_eq!(pass(b"+OK\r\n$10\r\nhalf", 3, 1 << 20).await.unwrap(), b"+OK\r\n");
        assert_eq!(pass(b"*2\r\n:1\r\n", 1, 1 << 20).await.unwrap(), b"");
    }

    #[tokio::test]
    async fn a_reply_over_the_limit_becomes_an_error_and_the_next_passes() {
        let big = format!("$100\r\n{}\r\n", "x".repeat(100));
        let nested = format!("*2\r\n:1\r\n*1\r\n+{}\r\n", "y".repeat(100));
        let long_line = format!("-{}\r\n", "e".repeat(100));
        let error = b"-ERR the reply is larger than 64 bytes, the most wharf passes to a guest\r\n".to_vec();
        for oversized in [big, nested, long_line] {
            let input = [b"+before\r\n".as_slice(), oversized.as_bytes(), b"$5\r\nafter\r\n"].concat();
            for step in [1, 5, input.len()] {
                let expected = [b"+before\r\n".as_slice(), &error, b"$5\r\nafter\r\n"].concat();
                assert_eq!(pass(&input, step, 64).await.unwrap(), expected, "{oversized:?} in pieces of {step}");
            }
        }
        // Exactly at the limit passes.
        let at_limit = format!("${}\r\n{}\r\n", 64 - 7, "z".repeat(64 - 7));
        assert_eq!(at_limit.len(), 64);
        assert_eq!(pass(at_limit.as_bytes(), 1, 64).await.unwrap(), at_limit.as_bytes());
    }

    #[tokio::test]
    async fn replies_come_one_at_a_time_the_oversized_one_as_an_error() {
        let (mut server, client) = tokio::io::duplex(64 << 10);
        let mut limited = ReplyLimit::with_limit(client, 64);
        let big = format!("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$100\r\n{}\r\n", "x".repeat(100));
        let input = [b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n".as_slice(), big.as_bytes(), b"+last\r\n"].concat();
        tokio::spawn(async move {
            for piece in input.chunks(7) {
                server.write_all(piece).await.unwrap();
            }
        });
        assert_eq!(&limited.read_reply().await.unwrap().unwrap()[..], b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
        assert!(limited.read_reply().await.unwrap().unwrap().starts_with(b"-ERR the reply is larger than 64 bytes"));
        assert_eq!(&limited.read_reply().await.unwrap().unwrap()[..], b"+last\r\n");
        assert_eq!(limited.read_reply().await.unwrap(), None);
    }

    #[tokio::test]
    async fn what_is_not_resp_fails_the_stream() {
        for garbage in [&b"hello\r\n"[..], b"$abc\r\n", b"*99999999999999999999999999999999999999999999999999999999999999999\r\n"] {
            let error = pass(garbage, 1, 1 << 20).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{garbage:?}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(pass(deep.as_bytes(), 4, 1 << 20).await.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
