//! Built for wasm32-wasip1, so it is a core module: its `std` calls
//! (environment, files) go through `wasi_snapshot_preview1`, which only the
//! preview1 adapter the host adds at load can serve, and its HTTP export is
//! `wasi:http/incoming-handler@0.2.0` from wit-bindgen's component-type
//! section. Answers with the request line, `$GREETING` and the contents of
//! `/greeting.txt` (from the manifest's `files`).
use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn hello(req: Request) -> anyhow::Result<impl IntoResponse> {
    let greeting = std::env::var("GREETING").unwrap_or_default();
    let file = std::fs::read_to_string("/greeting.txt").unwrap_or_else(|e| format!("({e})"));
    let body = format!("{greeting} {} {} {}", req.method(), req.path_and_query().unwrap_or("/"), file.trim_end());
    Ok(Response::builder().status(200).header("content-type", "text/plain").body(body).build())
}
