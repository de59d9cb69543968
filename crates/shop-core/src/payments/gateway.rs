//! The payment provider port and the retry policy around it.

use serde_json::Value;

use crate::ports::{Sleeper, first_or_timeout};

/// What the provider said to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayOutcome {
    Approved { provider_ref: String },
    /// A definite no (card declined, 4xx): never retried.
    Declined { reason: String },
    /// 5xx, unreachable: not done, worth retrying with the same idempotency key.
    Transient { reason: String },
    /// The provider took the call but gave no answer in time (a transport
    /// with its own timeout says so): it may or may not have taken effect;
    /// retried like an attempt that passed the caller's own timeout.
    NoAnswer { reason: String },
}

/// The payment provider. Calls with the same idempotency key must have the
/// effect of one call, so that retries never charge or refund twice.
#[allow(async_fn_in_trait, reason = "components are single-threaded; no Send bound is wanted")]
pub trait Gateway {
    async fn charge(&self, idempotency_key: &str, amount: i64, currency: &str, token: &str) -> GatewayOutcome;
    /// Refunds the charge the provider knows as `provider_ref`, in full.
    async fn refund(&self, idempotency_key: &str, provider_ref: &str, amount: i64, currency: &str) -> GatewayOutcome;
}

/// How a provider is reached: one idempotent POST of a JSON body. The
/// payment component sends it over HTTP; tests hand it to the sandbox in
/// memory. [`ProviderGateway`] writes the provider's API on top of it once.
#[allow(async_fn_in_trait, reason = "components are single-threaded; no Send bound is wanted")]
pub trait ProviderTransport {
    async fn post(&self, path: &str, idempotency_key: &str, body: Value) -> GatewayOutcome;
}

/// The provider's API (the sandbox's shape): `POST /sandbox/charges
/// {amount, currency, token}` and `POST /sandbox/refunds {charge_id}`.
pub struct ProviderGateway<T>(pub T);

impl<T: ProviderTransport> Gateway for ProviderGateway<T> {
    async fn charge(&self, idempotency_key: &str, amount: i64, currency: &str, token: &str) -> GatewayOutcome {
        let body = serde_json::json!({"amount": amount, "currency": currency, "token": token});
        self.0.post("/sandbox/charges", idempotency_key, body).await
    }

    async fn refund(&self, idempotency_key: &str, provider_ref: &str, _amount: i64, _currency: &str) -> GatewayOutcome {
        self.0.post("/sandbox/refunds", idempotency_key, serde_json::json!({"charge_id": provider_ref})).await
    }
}

/// Retries of transient failures with exponential backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt; each later wait is `backoff_factor` times longer.
    pub first_backoff_ms: u64,
    pub backoff_factor: u64,
    /// An attempt without an answer by then counts as transient.
    pub attempt_timeout_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy { max_attempts: 3, first_backoff_ms: 200, backoff_factor: 2, attempt_timeout_ms: 5_000 }
    }
}

impl RetryPolicy {
    /// The wait before attempt number `attempt` (2 or more).
    pub fn backoff_before(&self, attempt: u32) -> u64 {
        let doublings = attempt.saturating_sub(2);
        self.first_backoff_ms.saturating_mul(self.backoff_factor.saturating_pow(doublings))
    }
}

/// How a call ended after retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Approved { provider_ref: String },
    Declined { reason: String },
    /// Every attempt was transient; `timed_out` when the last one got no answer.
    Unavailable { reason: String, timed_out: bool },
}

/// Calls `attempt` until it is approved or declined, at most
/// `policy.max_attempts` times; returns the result and the attempts made.
pub async fn with_retries<F>(
    policy: &RetryPolicy,
    sleeper: &impl Sleeper,
    mut attempt: impl FnMut() -> F,
) -> (Settled, u32)
where
    F: Future<Output = GatewayOutcome>,
{
    let mut last = Settled::Unavailable { reason: "no attempt was made".to_string(), timed_out: false };
    for number in 1..=policy.max_attempts {
        if number > 1 {
            sleeper.sleep(policy.backoff_before(number)).await;
        }
        match first_or_timeout(attempt(), sleeper.sleep(policy.attempt_timeout_ms)).await {
            Some(GatewayOutcome::Approved { provider_ref }) => return (Settled::Approved { provider_ref }, number),
            Some(GatewayOutcome::Declined { reason }) => return (Settled::Declined { reason }, number),
            Some(GatewayOutcome::Transient { reason }) => last = Settled::Unavailable { reason, timed_out: false },
            Some(GatewayOutcome::NoAnswer { reason }) => last = Settled::Unavailable { reason, timed_out: true },
            None => {
                let reason = format!("no answer within {} ms", policy.attempt_timeout_ms);
                last = Settled::Unavailable { reason, timed_out: true };
            }
        }
    }
    (last, policy.max_attempts)
}

/// Reads a provider's HTTP answer (the sandbox's shape): 2xx approves with
/// the `refund_id` or `charge_id` of the body, 4xx declines with the error
/// message, anything else is transient. Components' gateways call this.
pub fn outcome_from_response(status: u16, body: &[u8]) -> GatewayOutcome {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match status {
        200..=299 => match body.get("refund_id").or_else(|| body.get("charge_id")).and_then(Value::as_str) {
            Some(reference) => GatewayOutcome::Approved { provider_ref: reference.to_string() },
            None => GatewayOutcome::Transient { reason: format!("provider answered {status} without a reference") },
        },
        400..=499 => {
            let message = body.pointer("/error/message").and_then(Value::as_str);
            GatewayOutcome::Declined { reason: message.map_or_else(|| format!("provider answered {status}"), str::to_string) }
        }
        _ => GatewayOutcome::Transient { reason: format!("provider answered {status}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_wait() {
        let policy = RetryPolicy { first_backoff_ms: 100, ..RetryPolicy::default() };
        assert_eq!([2, 3, 4].map(|attempt| policy.backoff_before(attempt)), [100, 200, 400]);
    }

    #[test]
    fn provider_answers_map_to_outcomes() {
        assert_eq!(
            outcome_from_response(201, br#"{"charge_id":"ch_1"}"#),
            GatewayOutcome::Approved { provider_ref: "ch_1".to_string() }
        );
        assert_eq!(
            outcome_from_response(402, br#"{"error":{"code":"card_declined","message":"insufficient funds"}}"#),
            GatewayOutcome::Declined { reason: "insufficient funds".to_string() }
        );
        assert!(matches!(outcome_from_response(503, b"busy"), GatewayOutcome::Transient { .. }));
        assert!(matches!(outcome_from_response(200, b"{}"), GatewayOutcome::Transient { .. }));
    }
}
