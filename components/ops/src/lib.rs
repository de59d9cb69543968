//! Operations: `GET /health` (key-value and Redis checks; 503 naming the one
//! that failed), `GET /metrics` (business figures from the services'
//! counters) and `GET /info`.

use shop_spin::{Reply, SpinP3, serve};
use spin_sdk::http::Request;
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> Reply {
    serve(request, shop_wiring::services::ops::<SpinP3>).await
}
