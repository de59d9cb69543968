//! Outbound HTTP policy: the `WasiHttpHooks` of each instance.
//!
//! Every request a guest sends passes through [`OutboundHttp::send_request`]:
//! - `http://<component>.spin.internal/...` goes in-process to that component
//!   (local service chaining), if the caller lists it in
//!   `allowed_outbound_hosts`;
//! - `http://self/...` and relative URLs go in-process through the app's own
//!   router. They never leave the process and never consult the incoming
//!   `Host` header, so a client cannot redirect them elsewhere (the class of
//!   bug fixed in Spin as CVE-2024-32980);
//! - anything else must match `allowed_outbound_hosts` (otherwise
//!   `HttpRequestDenied`) and is sent with connect and first-byte timeouts.

use crate::allowed_hosts::AllowedHosts;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Where an in-process request goes.
pub enum LocalTarget {
    /// A component by id (`<id>.spin.internal`).
    Component(String),
    /// The app's router (`self`, relative URLs).
    App,
}

/// Dispatches in-process requests; implemented by the HTTP trigger.
pub trait LocalDispatch: Send + Sync {
    fn dispatch(
        &self,
        target: LocalTarget,
        request: http::Request<WasiBody>,
    ) -> BoxFuture<'static, Result<http::Response<WasiBody>, Error>>;
}

/// A late-bound link to the HTTP trigger: components are loaded before the
/// trigger that serves them exists, and the trigger owns them, hence `Weak`.
#[derive(Clone, Default)]
pub struct LocalServices(Arc<OnceLock<Weak<dyn LocalDispatch>>>);

impl LocalServices {
    pub fn bind(&self, dispatcher: Weak<dyn LocalDispatch>) {
        let _ = self.0.set(dispatcher);
    }

    fn get(&self) -> Option<Arc<dyn LocalDispatch>> {
        self.0.get().and_then(Weak::upgrade)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
}

/// Per-instance outbound HTTP hooks.
pub struct OutboundHttp {
    pub component: Arc<str>,
    pub allowed: Arc<AllowedHosts>,
    pub local: LocalServices,
    pub timeouts: Timeouts,
}

const INTERNAL_SUFFIX: &str = ".spin.internal";

impl OutboundHttp {
    /// Decides where a request goes, or refuses it.
    fn route(&self, uri: &http::Uri) -> Result<Option<LocalTarget>, Error> {
        let Some(host) = uri.host() else {
            return self.allowed.allows_self().then_some(Some(LocalTarget::App)).ok_or(Error::HttpRequestDenied);
        };
        let scheme = uri.scheme_str().unwrap_or("https");
        let lowercase = host.to_ascii_lowercase();
        if lowercase == "self" || lowercase == "self.alt" {
            return self.allowed.allows_self().then_some(Some(LocalTarget::App)).ok_or(Error::HttpRequestDenied);
        }
        let port = uri.port_u16().or_else(|| crate::allowed_hosts::default_port(scheme)).unwrap_or(0);
        if !self.allowed.allows(scheme, &lowercase, port) {
            return Err(Error::HttpRequestDenied);
        }
        // Component ids may contain uppercase words; keep the id as written.
        Ok(lowercase.ends_with(INTERNAL_SUFFIX).then(|| LocalTarget::Component(host[..host.len() - INTERNAL_SUFFIX.len()].to_string())))
    }
}

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<Output = wasmtime_wasi_http::Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>)>>
            + Send,
    > {
        drop(fut);
        let decision = self.route(request.uri());
        if let Err(Error::HttpRequestDenied) = &decision {
            // The authority only: a query string may carry secrets.
            let destination = request.uri().authority().map(|a| a.as_str()).unwrap_or("(relative)");
            tracing::warn!(component = %self.component, destination, "outbound request denied: not in allowed_outbound_hosts");
        }
        let local = self.local.clone();
        let timeouts = self.timeouts;
        Box::new(async move {
            let done: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async { Ok(()) });
            match decision? {
                Some(target) => {
                    let dispatcher = local.get().ok_or(Error::DestinationUnavailable)?;
                    Ok((dispatcher.dispatch(target, request).await?, done))
                }
                None => {
                    let options = RequestOptions {
                        connect_timeout: options.and_then(|o| o.connect_timeout).or(Some(timeouts.connect)),
                        first_byte_timeout: options.and_then(|o| o.first_byte_timeout).or(Some(timeouts.first_byte)),
                        between_bytes_timeout: options.and_then(|o| o.between_bytes_timeout),
                    };
                    let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
                    Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
                }
            }
        })
    }
}
