//! Serves the host's own metrics on a separate address, so scraping never
//! competes with (or is routed like) app traffic.

use crate::metrics::Metrics;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::net::TcpListener;

pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let response = if req.uri().path() == "/metrics" {
                        hyper::Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(bytes::Bytes::from(metrics.render())))
                    } else {
                        hyper::Response::builder().status(404).body(Full::new(bytes::Bytes::from_static(b"not found\n")))
                    };
                    Ok::<_, http::Error>(response.expect("static response"))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
