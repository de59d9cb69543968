//! The `gateway-sandbox` component for WASIp2: `/sandbox/...` over
//! `wasi:http/incoming-handler@0.2.0`. The same work as
//! `components/gateway-sandbox`, through `shop-spin-p2`; the provider
//! export the WASIp2 `payment` and `payment-worker` are composed with is
//! `components/p2/sandbox-provider`.

use shop_spin_p2::{SpinP2, serve};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    serve(request, out, shop_wiring::services::gateway_sandbox::<SpinP2>).await
}
