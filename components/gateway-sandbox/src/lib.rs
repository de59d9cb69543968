//! A payment provider's test mode (tokens and behaviour in shop-core's
//! `sandbox` module and the README): `/sandbox/...` over HTTP, and the
//! `shop:payments/provider` export that `payment` and `payment-worker`
//! import, composed in.

use shop_spin::{Reply, SpinP3, serve};
use spin_sdk::http::Request;
use spin_sdk::http_service;

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "payment-provider",
    path: "../../wit/payments",
    generate_all,
});

use exports::shop::payments::provider as wit;

#[http_service]
async fn handle(request: Request) -> Reply {
    serve(request, shop_wiring::services::gateway_sandbox::<SpinP3>).await
}

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
