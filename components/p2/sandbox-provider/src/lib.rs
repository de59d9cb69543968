//! The `sandbox-provider` component for WASIp2: the synchronous
//! `shop:payments/provider` export (`wit/p2/payments`) that the WASIp2
//! `payment` and `payment-worker` are composed with, and nothing else. The
//! same work as `components/sandbox-provider`, through `shop-spin-p2`.

use shop_spin_p2::SpinP2;

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "payment-provider",
    path: "../../../wit/p2/payments",
    generate_all,
});

use exports::shop::payments::provider as wit;

struct Provider;
export!(Provider);

shop_wiring::payments_export_calls!(wit, SpinP2);

/// Each call runs to completion on spin-sdk's executor: the interface is
/// synchronous on WASIp2, the sandbox async.
impl wit::Guest for Provider {
    fn charge(idempotency_key: String, amount: i64, currency: String, token: String) -> wit::Outcome {
        spin_sdk::http::run(charge(idempotency_key, amount, currency, token))
    }

    fn refund(idempotency_key: String, charge_id: String) -> wit::Outcome {
        spin_sdk::http::run(refund(idempotency_key, charge_id))
    }
}
