//! Small ports besides the store: message publishing, time, randomness and
//! sleeping. Clock and randomness are injected so that tests are
//! deterministic; sleeping is injected so retry delays cost nothing in tests.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishError {
    pub message: String,
}

/// Publishes event payloads on a channel (Redis pub/sub in components).
#[allow(async_fn_in_trait, reason = "components are single-threaded; no Send bound is wanted")]
pub trait Publisher {
    /// Publishes and returns how many subscribers received the message
    /// (Redis's `PUBLISH` reply): pub/sub keeps nothing for later, so 0 means
    /// nobody got it.
    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64, PublishError>;
}

pub trait Clock {
    /// Milliseconds since the unix epoch, UTC.
    fn now_ms(&self) -> u64;
}

/// Uniform random numbers (the WASI random import in components). Used for
/// identifiers, so it should not be predictable by clients.
pub trait Random {
    fn next_u64(&self) -> u64;
}

#[allow(async_fn_in_trait, reason = "components are single-threaded; no Send bound is wanted")]
pub trait Sleeper {
    async fn sleep(&self, milliseconds: u64);
}

/// `prefix` followed by 16 random lowercase hex digits, e.g. `ord_00ab...`.
pub fn random_id(random: &impl Random, prefix: &str) -> String {
    format!("{prefix}{:016x}", random.next_u64())
}

/// Runs `work` until it finishes or `deadline` does, whichever comes first;
/// None when the deadline won.
pub async fn first_or_timeout<T>(work: impl Future<Output = T>, deadline: impl Future<Output = ()>) -> Option<T> {
    let mut work = pin!(work);
    let mut deadline = pin!(deadline);
    poll_fn(|context| {
        if let Poll::Ready(value) = work.as_mut().poll(context) {
            return Poll::Ready(Some(value));
        }
        if deadline.as_mut().poll(context).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}
