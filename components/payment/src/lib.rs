//! The payment component: `/payments/...`, charging through the provider at
//! the `payment_gateway_url` variable (the sandbox by default).

use shop_spin::{Reply, SpinP3, serve};
use spin_sdk::http::Request;
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> Reply {
    serve(request, shop_wiring::services::payment::<SpinP3>).await
}
