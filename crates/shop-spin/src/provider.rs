//! The payment provider over outbound HTTP. Per-attempt timeouts and retries
//! are shop-core's (`with_retries`); this only makes one call.

use shop_core::payments::{GatewayOutcome, ProviderTransport, outcome_from_response};
use spin_sdk::http::body::IncomingBodyExt;

pub struct HttpProvider {
    /// `scheme://host[:port]` of the provider, e.g. `http://gateway-sandbox.spin.internal`.
    pub base_url: String,
}

impl ProviderTransport for HttpProvider {
    async fn post(&self, path: &str, idempotency_key: &str, body: serde_json::Value) -> GatewayOutcome {
        let request = spin_sdk::http::Request::post(format!("{}{path}", self.base_url))
            .header("content-type", "application/json")
            .header("idempotency-key", idempotency_key)
            .body(spin_sdk::http::FullBody::new(bytes_of(body)));
        let request = match request {
            Ok(r) => r,
            Err(e) => return GatewayOutcome::Declined { reason: format!("cannot build the provider request: {e}") },
        };
        match spin_sdk::http::send(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.into_body().bytes().await {
                    Ok(body) => outcome_from_response(status, &body),
                    Err(e) => GatewayOutcome::Transient { reason: format!("provider body: {e:?}") },
                }
            }
            Err(e) => GatewayOutcome::Transient { reason: format!("provider unreachable: {e:?}") },
        }
    }
}

fn bytes_of(body: serde_json::Value) -> bytes::Bytes {
    body.to_string().into()
}
