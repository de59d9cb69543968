//! The `gateway-sandbox` component for WASIp2: `/sandbox/...` over
//! `wasi:http/incoming-handler@0.2.0`, and the synchronous
//! `shop:payments/provider` export (`wit/p2/payments`) that the WASIp2
//! `payment` and `payment-worker` import. The same work as
//! `components/gateway-sandbox`, through `shop-spin-p2`.

use shop_spin_p2::{SpinP2, serve};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "payment-provider",
    path: "../../../wit/p2/payments",
    generate_all,
});

use exports::shop::payments::provider as wit;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    serve(request, out, shop_wiring::services::gateway_sandbox::<SpinP2>).await
}

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
