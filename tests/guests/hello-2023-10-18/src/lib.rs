//! What a Spin 2.x app does over the 2023-10-18 release candidate of WASI
//! HTTP: reads the request (method, path, a header, the body) and answers
//! with a header and a body (`/echo`), and sends a request of its own through
//! `wasi:http/outgoing-handler` (`/fetch`, the URL in the body), answering
//! with what came back or the error.
use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;

#[http_component]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let path = req.header("spin-path-info").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    Ok(match path.as_str() {
        "/echo" => {
            let probe = req.header("x-probe").and_then(|v| v.as_str()).unwrap_or("-");
            let body = format!("{:?} {} x-probe={probe} body={}", req.method(), req.uri(), String::from_utf8_lossy(req.body()));
            Response::builder().status(200).header("x-answered-by", "spin-sdk-2").body(body).build()
        }
        "/fetch" => {
            let url = String::from_utf8_lossy(req.body()).to_string();
            let outbound = Request::builder().method(Method::Get).uri(url).header("x-from", "rc-guest").build();
            match spin_sdk::http::send::<_, Response>(outbound).await {
                Ok(response) => Response::new(200, format!("{} {}", response.status(), String::from_utf8_lossy(response.body()))),
                Err(e) => Response::new(502, format!("{e}")),
            }
        }
        _ => Response::new(404, format!("no such path: {path}")),
    })
}
