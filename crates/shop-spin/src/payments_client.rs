//! The `shop:payments/provider` import as the payment side's `Gateway`. At
//! load time the host (or Spin) plugs the `sandbox-provider` component into
//! this import.

use shop_core::payments::{Gateway, GatewayOutcome};

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "payment-client",
    path: "../../wit/payments",
    generate_all,
});

use shop::payments::provider as wit;

#[derive(Default)]
pub struct ComposedProvider;

shop_wiring::payments_import_conversions!(wit);

impl Gateway for ComposedProvider {
    async fn charge(&self, idempotency_key: &str, amount: i64, currency: &str, token: &str) -> GatewayOutcome {
        outcome_from_wit(wit::charge(idempotency_key.to_string(), amount, currency.to_string(), token.to_string()).await)
    }

    async fn refund(&self, idempotency_key: &str, provider_ref: &str, _amount: i64, _currency: &str) -> GatewayOutcome {
        outcome_from_wit(wit::refund(idempotency_key.to_string(), provider_ref.to_string()).await)
    }
}
