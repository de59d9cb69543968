//! The order component: `/orders/...`. Stock goes through the
//! `shop:inventory` import (the inventory component, composed in at load
//! time); events go to Redis.

use shop_spin::{Reply, SpinP3, serve};
use spin_sdk::http::Request;
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> Reply {
    serve(request, shop_wiring::services::order::<SpinP3>).await
}
