//! Answers every request with a greeting and what it was asked: proves the
//! WASIp2 HTTP path (`wasi:http/incoming-handler@0.2.0`, a fresh instance
//! per request).
use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn hello(req: Request) -> anyhow::Result<impl IntoResponse> {
    let full_url = req.header("spin-full-url").and_then(|v| v.as_str()).unwrap_or("").to_string();
    let body = format!("Hello from WASIp2! {} {} {full_url}", req.method(), req.path_and_query().unwrap_or("/"));
    Ok(Response::builder().status(200).header("content-type", "text/plain").body(body).build())
}
