//! The sandbox (the payment provider's test mode, shop-core's `sandbox`
//! module) as the `shop:payments/provider` export, and nothing else: the
//! dependency `payment` and `payment-worker` are composed with. Its HTTP
//! side (`/sandbox/...`) is the `gateway-sandbox` component. Kept apart so
//! that the composed instance, made afresh for every Redis delivery to
//! `payment-worker`, links no HTTP handler and none of the WASIp3
//! `wasi:http` imports that come with one (docs/payments.md).

use shop_spin::SpinP3;

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "payment-provider",
    path: "../../wit/payments",
    generate_all,
});

use exports::shop::payments::provider as wit;

struct Provider;
export!(Provider);

shop_wiring::payments_export_calls!(wit, SpinP3);

impl wit::Guest for Provider {
    async fn charge(idempotency_key: String, amount: i64, currency: String, token: String) -> wit::Outcome {
        charge(idempotency_key, amount, currency, token).await
    }

    async fn refund(idempotency_key: String, charge_id: String) -> wit::Outcome {
        refund(idempotency_key, charge_id).await
    }
}
