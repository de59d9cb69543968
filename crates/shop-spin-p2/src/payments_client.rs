//! The `shop:payments/provider` import, synchronous variant
//! (`wit/p2/payments`), as the payment side's `Gateway`. At load time Spin
//! plugs the WASIp2 `sandbox-provider` component into this import.

use shop_core::payments::{Gateway, GatewayOutcome};

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "payment-client",
    path: "../../wit/p2/payments",
    generate_all,
});

use shop::payments::provider as wit;

#[derive(Default)]
pub struct ComposedProvider;

shop_wiring::payments_import_conversions!(wit);

impl Gateway for ComposedProvider {
    async fn charge(&self, idempotency_key: &str, amount: i64, currency: &str, token: &str) -> GatewayOutcome {
        outcome_from_wit(wit::charge(idempotency_key, amount, currency, token))
    }

    async fn refund(&self, idempotency_key: &str, provider_ref: &str, _amount: i64, _currency: &str) -> GatewayOutcome {
        outcome_from_wit(wit::refund(idempotency_key, provider_ref))
    }
}
