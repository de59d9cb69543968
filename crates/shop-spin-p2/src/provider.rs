//! The payment provider over outbound HTTP (`wasi:http/outgoing-handler@0.2.0`).
//! Per-attempt timeouts and retries are shop-core's (`with_retries`); this
//! only makes one call.

use shop_core::payments::{GatewayOutcome, ProviderTransport, outcome_from_response};

pub struct HttpProvider {
    /// `scheme://host[:port]` of the provider.
    pub base_url: String,
}

impl ProviderTransport for HttpProvider {
    async fn post(&self, path: &str, idempotency_key: &str, body: serde_json::Value) -> GatewayOutcome {
        let request = spin_sdk::http::Request::post(format!("{}{path}", self.base_url), body.to_string())
            .header("content-type", "application/json")
            .header("idempotency-key", idempotency_key)
            .build();
        match spin_sdk::http::send::<_, spin_sdk::http::Response>(request).await {
            Ok(response) => outcome_from_response(*response.status(), response.body()),
            Err(e) => GatewayOutcome::Transient { reason: format!("provider unreachable: {e:?}") },
        }
    }
}
