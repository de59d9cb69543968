//! Sending small response bodies in one piece.
//!
//! A component's response body is a stream, so without help every answer
//! goes out with chunked encoding: a write for the head and first chunk and
//! another for the final chunk, each a trip through the kernel's TCP stack.
//! Most answers are small and complete within microseconds of the head, so
//! the trigger waits a moment for the whole body: if it ends within
//! [`WAIT`] and [`MAX_BUFFERED`] bytes it is sent with a `content-length`
//! (framing only: the component's own headers are untouched). Anything
//! longer or slower streams as before, its first bytes delayed by at most
//! [`WAIT`].

use bytes::{Bytes, BytesMut};
use http::Response;
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use std::time::Duration;
use wasmtime_wasi_http::WasiBody;

const WAIT: Duration = Duration::from_millis(5);
const MAX_BUFFERED: usize = 64 * 1024;

pub async fn coalesce(response: Response<WasiBody>) -> Response<WasiBody> {
    let (mut parts, mut body) = response.into_parts();
    if parts.headers.contains_key(http::header::CONTENT_LENGTH) || parts.headers.contains_key(http::header::TRANSFER_ENCODING) {
        return Response::from_parts(parts, body);
    }
    let mut buffered = BytesMut::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    // The first frame that does not fit (trailers, an error, a big chunk),
    // to be sent after what was buffered.
    let mut pending: Option<Result<Frame<Bytes>, wasmtime_wasi_http::Error>> = None;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(None) => {
                parts.headers.insert(http::header::CONTENT_LENGTH, buffered.len().into());
                let full = Full::new(buffered.freeze()).map_err(|never| match never {}).boxed_unsync();
                return Response::from_parts(parts, full);
            }
            Ok(Some(Ok(frame))) if frame.is_data() && buffered.len() + frame.data_ref().map_or(0, |d| d.len()) <= MAX_BUFFERED => {
                buffered.extend_from_slice(frame.data_ref().expect("a data frame"));
            }
            Ok(Some(other)) => {
                pending = Some(other);
                break;
            }
            Err(_elapsed) => break,
        }
    }
    let head = (!buffered.is_empty()).then(|| Ok(Frame::data(buffered.freeze())));
    let prefix = futures::stream::iter(head.into_iter().chain(pending));
    let rest = http_body_util::BodyStream::new(body);
    let stream = futures::StreamExt::chain(prefix, rest);
    Response::from_parts(parts, StreamBody::new(stream).boxed_unsync())
}
