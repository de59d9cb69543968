//! Answers every request with a fixed greeting: proves the WASIp3 HTTP path
//! and is the "hello" row of the benchmarks.
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

#[http_service]
async fn hello(_req: Request) -> impl IntoResponse {
    "Hello, world!"
}
