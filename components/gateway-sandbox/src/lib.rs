//! A payment provider's test mode (tokens and behaviour in shop-core's
//! `sandbox` module and the README): `/sandbox/...` over HTTP. The same
//! sandbox, as the `shop:payments/provider` export that `payment` and
//! `payment-worker` are composed with, is `components/sandbox-provider`.

use shop_spin::{Reply, SpinP3, serve};
use spin_sdk::http::Request;
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> Reply {
    serve(request, shop_wiring::services::gateway_sandbox::<SpinP3>).await
}
