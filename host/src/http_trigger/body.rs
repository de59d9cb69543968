//! Sending small response bodies in one write.
//!
//! A component's response body is a stream, so without help an answer goes
//! out in pieces: a write for the head and first chunk and another for the
//! final chunk, each a trip through the kernel's TCP stack. Most answers are
//! small and complete within microseconds of the head, so the trigger waits a
//! moment for the whole body: if it ends within [`WAIT`] and [`MAX_BUFFERED`]
//! bytes, head, body and final chunk leave in one write. Anything longer or
//! slower streams as before, its first bytes delayed by at most [`WAIT`].
//!
//! The framing stays Spin's: a body the component did not frame itself goes
//! out chunked, never with a `content-length` the host made up, except an
//! empty one, which gets `content-length: 0` (Spin's conformance suite
//! checks both).

use bytes::{Bytes, BytesMut};
use http::Response;
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use std::time::Duration;
use wasmtime_wasi_http::WasiBody;

const WAIT: Duration = Duration::from_millis(5);
const MAX_BUFFERED: usize = 64 * 1024;

/// A body of `bytes`, all at once (hyper frames it with a length).
pub fn full(bytes: impl Into<Bytes>) -> WasiBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// The response to a HEAD request: no body goes out, so its only framing
/// is the `content-length` GET would send. A component that wrote the body
/// anyway has it counted (not kept) for up to `deadline`; one that wrote
/// nothing gets no `content-length: 0`, which would misstate the GET's
/// length, and neither does one still writing at the deadline.
pub async fn head(response: Response<WasiBody>, deadline: Duration) -> Response<WasiBody> {
    let (mut parts, mut body) = response.into_parts();
    if !has_framing(&parts.headers) {
        let count = async {
            let mut length: u64 = 0;
            while let Some(Ok(frame)) = body.frame().await {
                length += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            length
        };
        match tokio::time::timeout(deadline, count).await {
            Ok(0) => {}
            Ok(length) => {
                parts.headers.insert(http::header::CONTENT_LENGTH, length.into());
            }
            Err(_elapsed) => tracing::debug!("HEAD: the body was still being written at the deadline; no content-length"),
        }
    }
    Response::from_parts(parts, full(Bytes::new()))
}

fn has_framing(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::CONTENT_LENGTH) || headers.contains_key(http::header::TRANSFER_ENCODING)
}

pub async fn coalesce(response: Response<WasiBody>) -> Response<WasiBody> {
    let (mut parts, mut body) = response.into_parts();
    if has_framing(&parts.headers) {
        return Response::from_parts(parts, body);
    }
    let mut buffered = BytesMut::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    // The first frame that does not fit (trailers, an error, a big chunk),
    // to be sent after what was buffered.
    let mut pending: Option<Result<Frame<Bytes>, wasmtime_wasi_http::Error>> = None;
    let mut ended = false;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(None) => {
                ended = true;
                break;
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
    // An empty body goes with `content-length: 0`, as Spin sends it for a
    // response whose body the component never wrote.
    if ended && buffered.is_empty() && pending.is_none() {
        parts.headers.insert(http::header::CONTENT_LENGTH, 0.into());
        return Response::from_parts(parts, full(Bytes::new()));
    }
    let head = (!buffered.is_empty()).then(|| Ok(Frame::data(buffered.freeze())));
    let prefix = futures::stream::iter(head.into_iter().chain(pending));
    // A stream, not a `Full`: hyper would frame a `Full` with a length.
    if ended {
        return Response::from_parts(parts, StreamBody::new(prefix).boxed_unsync());
    }
    let rest = http_body_util::BodyStream::new(body);
    let stream = futures::StreamExt::chain(prefix, rest);
    Response::from_parts(parts, StreamBody::new(stream).boxed_unsync())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: &'static str) -> Response<WasiBody> {
        Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync())
    }

    async fn sent(response: Response<WasiBody>) -> (Option<String>, Bytes) {
        let length = response.headers().get(http::header::CONTENT_LENGTH).map(|v| v.to_str().unwrap().to_string());
        (length, response.into_body().collect().await.unwrap().to_bytes())
    }

    #[tokio::test]
    async fn a_small_body_is_buffered_whole_and_gets_no_made_up_length_but_an_empty_one_says_0() {
        let pieces = ["he", "ll", "o"].map(|piece| Ok::<_, wasmtime_wasi_http::Error>(Frame::data(Bytes::from(piece))));
        let out = coalesce(Response::new(StreamBody::new(futures::stream::iter(pieces)).boxed_unsync())).await;
        assert_eq!(out.headers().get(http::header::CONTENT_LENGTH), None);
        assert_eq!(http_body::Body::size_hint(out.body()).exact(), None, "hyper would send a length for an exact size");
        let mut body = out.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.data_ref(), Some(&Bytes::from("hello")), "the whole body in one frame");
        assert!(body.frame().await.is_none(), "and then the end, with nothing left to wait for");
        assert_eq!(sent(coalesce(response("")).await).await, (Some("0".into()), Bytes::new()));
    }

    #[tokio::test]
    async fn head_gets_the_length_of_the_body_that_was_written_and_no_body() {
        let second = Duration::from_secs(1);
        assert_eq!(sent(head(response("hello"), second).await).await, (Some("5".into()), Bytes::new()));
        assert_eq!(sent(head(response(""), second).await).await.0, None);
        // Larger than what is ever buffered, in many frames.
        let chunks = (0..100).map(|_| Ok::<_, wasmtime_wasi_http::Error>(Frame::data(Bytes::from(vec![b'x'; 1024]))));
        let big = Response::new(StreamBody::new(futures::stream::iter(chunks)).boxed_unsync());
        assert_eq!(sent(head(big, second).await).await, (Some("102400".into()), Bytes::new()));
    }

    #[tokio::test]
    async fn the_components_own_framing_is_kept() {
        let mut own = response("hello");
        own.headers_mut().insert(http::header::CONTENT_LENGTH, 5.into());
        own.headers_mut().insert("x-kept", "yes".parse().unwrap());
        let out = coalesce(own).await;
        assert_eq!(out.headers()["x-kept"], "yes");
        assert_eq!(sent(out).await, (Some("5".into()), Bytes::from("hello")));
    }
}
