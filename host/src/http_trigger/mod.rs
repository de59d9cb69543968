//! The HTTP trigger: routes requests to components, as Spin does.
//!
//! Besides the components' routes it answers `/.well-known/spin/health`. It
//! adds Spin's `spin-*` request headers, adds no response headers beyond
//! what the component set plus framing (`date`, `content-length` /
//! `transfer-encoding`), caps request bodies (413), and answers host-side
//! failures with a JSON error: 404 no route, 503 no instance slot, 504
//! deadline, 500 trap.

mod body;
mod p2;
mod p3;
pub mod routing;

use crate::app::App;
use crate::manifest::HttpAnswer;
use crate::metrics::Metrics;
use crate::capabilities::outbound_http::{LocalDispatch, LocalTarget};
use anyhow::{Context, Result, bail};
use futures::future::BoxFuture;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use p3::{ComponentHandler, InstanceLimitReached};
use routing::{RoutePattern, Router};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::handler::{ExpirationError, InstantiationError, ProxyHandler, ProxyPre};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// How instances of a WASIp3 component serve requests (WASIp2 components
/// always get a fresh instance per request, see [`p2`]).
#[derive(Debug, Clone, Copy)]
pub struct InstancePolicy {
    pub max_reuse: usize,
    pub max_concurrent: usize,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
}

pub const HEALTH_ROUTE: &str = "/.well-known/spin/health";
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub policy: InstancePolicy,
    pub max_request_body: u64,
    pub max_instances: usize,
    pub shutdown_grace: Duration,
}

struct RouteTarget {
    answer: RouteAnswer,
    /// The route as the log and metrics name it.
    route: String,
    headers: RouteHeaders,
}

/// Who answers a route.
enum RouteAnswer {
    Component(String),
    /// `static_response`: the host answers, no component runs.
    Static(StaticAnswer),
}

/// A `static_response`, made into its response head and body at load.
struct StaticAnswer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: bytes::Bytes,
}

impl StaticAnswer {
    fn of(response: &crate::manifest::StaticResponse) -> Result<Self> {
        let (status, headers) = response.head()?;
        Ok(Self { status, headers, body: response.body.clone().unwrap_or_default().into() })
    }

    fn response(&self) -> Response<WasiBody> {
        let mut response = Response::new(body::full(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        response
    }
}

/// The `spin-*` header values that depend only on the route, made once at
/// load: per request they are cheap clones instead of formatting and parsing.
struct RouteHeaders {
    matched_route: HeaderValue,
    raw_route: HeaderValue,
    component_route: HeaderValue,
    /// `spin-path-match-<name>` for each `:name` segment, in the route's order.
    param_names: Vec<HeaderName>,
}

impl RouteHeaders {
    fn new(pattern: &RoutePattern, raw_route: &str) -> Result<Self> {
        let value = |text: String| HeaderValue::try_from(text).with_context(|| format!("route `{raw_route}` is not a valid header value"));
        // Spin names the header of `:path_segment` `spin-path-match-path-segment`
        // (the conformance suite's request-shape test checks it).
        let param_names = pattern
            .param_names()
            .map(|name| HeaderName::try_from(format!("spin-path-match-{}", name.to_ascii_lowercase().replace('_', "-"))))
            .collect::<Result<_, _>>()
            .with_context(|| format!("route `{raw_route}`: a parameter name is not a valid header name"))?;
        Ok(Self {
            matched_route: value(pattern.to_string())?,
            raw_route: value(raw_route.to_string())?,
            component_route: value(pattern.prefix())?,
            param_names,
        })
    }

    /// What a request to `http://<component>.spin.internal/` sees: the
    /// wildcard route, the whole path as path info.
    fn whole_component() -> Self {
        Self {
            matched_route: HeaderValue::from_static("/..."),
            raw_route: HeaderValue::from_static("/..."),
            component_route: HeaderValue::from_static(""),
            param_names: Vec::new(),
        }
    }
}

/// Why a component could not answer.
#[derive(Debug)]
enum CallError {
    NoSuchComponent(String),
    InstanceLimit,
    Deadline,
    Failed(String),
}

pub struct HttpTrigger {
    app: Arc<App>,
    router: Router<RouteTarget>,
    handlers: HashMap<String, Handler>,
    options: HttpOptions,
    metrics: Arc<Metrics>,
    /// The authority of requests without a `Host` header: the listen address.
    listen_authority: Authority,
    /// Itself, so in-process requests can outlive the borrow they start from.
    me: Weak<HttpTrigger>,
    /// Set when [`HttpTrigger::serve`] returns (see [`ComponentHandler::stopped`]).
    stopped: Arc<AtomicBool>,
}

impl HttpTrigger {
    pub fn new(app: Arc<App>, options: HttpOptions, metrics: Arc<Metrics>, listen: SocketAddr) -> Result<Arc<Self>> {
        let permits = Arc::new(Semaphore::new(options.max_instances));
        // WASIp2 components' instances made ahead of their requests.
        let spares = Arc::new(p2::Spares::default());
        let stopped = Arc::new(AtomicBool::new(false));
        let mut router = Router::new();
        let mut handlers = HashMap::new();
        for (i, trigger) in app.manifest.trigger.http.iter().enumerate() {
            let (answer, component) = match trigger.answer().with_context(|| format!("trigger.http[{i}]"))? {
                HttpAnswer::Component(id) => match app.components.get(id) {
                    Some(component) => (RouteAnswer::Component(id.to_string()), Some(component)),
                    None => continue, // not selected with --component-id
                },
                HttpAnswer::Static(response) => {
                    (RouteAnswer::Static(StaticAnswer::of(response).with_context(|| format!("trigger.http[{i}].static_response"))?), None)
                }
            };
            if let crate::manifest::HttpRoute::Route(route) = &trigger.route {
                let pattern = RoutePattern::parse(route)?;
                let target = RouteTarget {
                    answer,
                    route: pattern.to_string(),
                    headers: RouteHeaders::new(&pattern, route).with_context(|| format!("trigger.http[{i}].route"))?,
                };
                router.add(pattern, target).with_context(|| format!("trigger.http[{i}].route"))?;
            }
            let Some(component) = component else { continue };
            if handlers.contains_key(component.id.as_ref()) {
                continue;
            }
            let handler = Handler::of(component, &options.policy, &permits, &spares, &metrics, &stopped)
                .with_context(|| format!("trigger.http[{i}]"))?;
            handlers.insert(component.id.to_string(), handler);
        }
        if handlers.is_empty() && router.is_empty() && !app.manifest.trigger.http.is_empty() {
            bail!("no HTTP trigger's component is loaded");
        }
        let listen_authority = Authority::try_from(listen.to_string()).context("the listen address is not a valid authority")?;
        let trigger = Arc::new_cyclic(|me| Self { app, router, handlers, options, metrics, listen_authority, me: me.clone(), stopped });
        let weak: Weak<dyn LocalDispatch> = Arc::downgrade(&(trigger.clone() as Arc<dyn LocalDispatch>));
        trigger.app.local.bind(weak);
        Ok(trigger)
    }

    pub fn has_routes(&self) -> bool {
        !self.router.is_empty()
    }

    /// Serves until `shutdown` resolves, then stops accepting and gives
    /// in-flight requests `shutdown_grace` to finish.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, client) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            // Out of file descriptors, typically: back off
                            // instead of spinning on the error.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let this = self.clone();
                    // `spin-client-addr`, made once per connection.
                    let client = HeaderValue::try_from(client.to_string()).expect("a socket address is a valid header value");
                    let service = hyper::service::service_fn(move |req| {
                        let this = this.clone();
                        let client = client.clone();
                        async move { Ok::<_, std::convert::Infallible>(this.handle(req, client).await) }
                    });
                    // hyper enforces its header-read timeout only with a timer:
                    // without one a client trickling headers holds a connection forever.
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!("connection error: {e}");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        tracing::info!("shutting down: waiting up to {:?} for in-flight requests", self.options.shutdown_grace);
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("all connections closed"),
            () = tokio::time::sleep(self.options.shutdown_grace) => tracing::warn!("grace period over; dropping remaining connections"),
        }
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    async fn handle(&self, req: Request<Incoming>, client: HeaderValue) -> Response<WasiBody> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path_and_query().cloned();
        let (response, route, component) = self.route_and_call(req, client).await;
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        if let Some(component) = component {
            self.metrics.observe_request(component, status, elapsed);
        }
        tracing::info!(
            target: "wharf::request",
            method = %method,
            path = path.as_ref().map_or("/", |p| p.path()),
            route = route.unwrap_or("-"),
            component = component.unwrap_or("-"),
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
        );
        response
    }

    /// The response, and the route and component that made it (for the log).
    async fn route_and_call(&self, req: Request<Incoming>, client: HeaderValue) -> (Response<WasiBody>, Option<&str>, Option<&str>) {
        let path = req.uri().path();
        if path == HEALTH_ROUTE {
            return (text_response(StatusCode::OK, "OK"), Some(HEALTH_ROUTE), None);
        }
        let Some((_, target, matched)) = self.router.route(path) else {
            return (error_response(StatusCode::NOT_FOUND, "not_found", &format!("no route matches {path}")), None, None);
        };
        let route = Some(target.route.as_str());
        let component = match &target.answer {
            RouteAnswer::Component(component) => component,
            RouteAnswer::Static(answer) => {
                let response = answer.response();
                let response = if req.method() == http::Method::HEAD { body::head(response, self.options.policy.request_timeout).await } else { response };
                return (response, route, None);
            }
        };
        if let Some(len) = req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) {
            if len > self.options.max_request_body {
                return (body_too_large(self.options.max_request_body, Some(len)), route, Some(component));
            }
        }
        let (full_url, full_url_header) = match self.full_url(&req) {
            Ok(url) => url,
            Err(message) => return (error_response(StatusCode::BAD_REQUEST, "invalid_host", message), route, Some(component)),
        };
        let head = req.method() == http::Method::HEAD;
        let limit = self.options.max_request_body as usize;
        // Set when a chunked body runs past the cap (a declared length was
        // checked above, and hyper holds a body to it): the component only
        // sees a read error, and whatever it answers, the client gets 413.
        let over_cap = req.headers().contains_key(http::header::TRANSFER_ENCODING).then(|| Arc::new(AtomicBool::new(false)));
        let mut req = req.map(|body| {
            let over_cap = over_cap.clone();
            Limited::new(body, limit)
                .map_err(move |e| match e.downcast::<hyper::Error>() {
                    Ok(e) => HttpError::from(*e),
                    Err(_) => {
                        if let Some(flag) = &over_cap {
                            flag.store(true, Ordering::Relaxed);
                        }
                        HttpError::HttpRequestBodySize(Some(limit as u64))
                    }
                })
                .boxed_unsync()
        });
        *req.uri_mut() = full_url;
        SpinHeaders { route: &target.headers, path_info: &matched.path_info, params: &matched.params, full_url: Some(full_url_header), client_addr: Some(client) }
            .apply(req.headers_mut());
        let response = match self.call(component, req).await {
            _ if over_cap.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed)) => body_too_large(self.options.max_request_body, None),
            Ok(response) if head => body::head(response, self.options.policy.request_timeout).await,
            Ok(response) => body::coalesce(response).await,
            Err(e) => self.error_for(component, e),
        };
        (response, route, Some(component))
    }

    /// The absolute URL the component sees, as a URI and as the
    /// `spin-full-url` value: the authority of an absolute-form request
    /// target, else the one `Host` header (else the listen address), and the
    /// request's own path. Two `Host` headers, or one that is not a plain
    /// authority (a path, a query, credentials), are refused, so neither can
    /// change the path the component sees from the one that was routed.
    fn full_url(&self, req: &Request<Incoming>) -> Result<(http::Uri, HeaderValue), &'static str> {
        const INVALID: &str = "the Host header is not a valid authority";
        let mut hosts = req.headers().get_all(http::header::HOST).iter();
        let host = hosts.next();
        if hosts.next().is_some() {
            return Err("more than one Host header");
        }
        // RFC 9112 3.2.2: with an absolute-form target, the target's
        // authority is the one that counts and Host is ignored.
        let authority = match (req.uri().authority(), host) {
            (Some(authority), _) => authority.clone(),
            (None, Some(host)) => Authority::try_from(host.as_bytes()).map_err(|_| INVALID)?,
            (None, None) => self.listen_authority.clone(),
        };
        if authority.as_str().contains('@') {
            return Err(INVALID);
        }
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        let header = HeaderValue::try_from(format!("http://{}{}", authority.as_str(), path.as_str())).map_err(|_| INVALID)?;
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(authority);
        parts.path_and_query = Some(path);
        Ok((http::Uri::from_parts(parts).map_err(|_| INVALID)?, header))
    }

    fn error_for(&self, component: &str, error: CallError) -> Response<WasiBody> {
        match error {
            CallError::NoSuchComponent(id) => error_response(StatusCode::NOT_FOUND, "not_found", &format!("no component `{id}`")),
            CallError::InstanceLimit => {
                error_response(StatusCode::SERVICE_UNAVAILABLE, "server_busy", "all instance slots are in use; retry shortly")
            }
            CallError::Deadline => {
                Metrics::inc(&self.metrics.deadline_kills);
                tracing::warn!(component, "request stopped at its deadline of {:?}", self.options.policy.request_timeout);
                error_response(StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded", "the component did not answer within the request deadline")
            }
            CallError::Failed(message) => {
                tracing::warn!(component, "request failed: {message}");
                error_response(StatusCode::INTERNAL_SERVER_ERROR, "component_failed", "the component failed while handling the request")
            }
        }
    }

    /// Hands a request to a component's handler, bounded by the request deadline.
    async fn call(&self, component: &str, req: Request<WasiBody>) -> Result<Response<WasiBody>, CallError> {
        let handler = self.handlers.get(component).ok_or_else(|| CallError::NoSuchComponent(component.to_string()))?;
        let handled = async {
            match handler {
                Handler::P3(handler) => handler.handle((), req).await.map_err(classify),
                Handler::P2(handler) => handler.handle(req).await,
            }
        };
        tokio::time::timeout(self.options.policy.request_timeout, handled).await.unwrap_or(Err(CallError::Deadline))
    }
}

/// A component's HTTP handler, by the world it exports.
enum Handler {
    P3(ProxyHandler<ComponentHandler>),
    P2(p2::Handler),
}

impl Handler {
    /// The handler of the HTTP world `component` exports: WASIp3 handlers
    /// are reused as `policy` says, WASIp2 ones get a fresh instance per
    /// request (see [`p2`]).
    fn of(
        component: &Arc<crate::app::LoadedComponent>,
        policy: &InstancePolicy,
        instance_permits: &Arc<Semaphore>,
        spares: &Arc<p2::Spares>,
        metrics: &Arc<Metrics>,
        stopped: &Arc<AtomicBool>,
    ) -> Result<Self> {
        if let Ok(pre) = ServicePre::new(component.pre.clone()) {
            let mut policy = *policy;
            // wasmtime 48 hangs an instance whose concurrent requests make
            // synchronous imported calls that wait on I/O (wasi:keyvalue on
            // Redis, seen under load). Such components take one request at a
            // time per instance; reuse in turn stays as configured.
            if component.sync_calls_wait && policy.max_concurrent > 1 {
                tracing::info!(component = %component.id, "synchronous wasi:keyvalue calls on a store that waits: one request at a time per instance");
                policy.max_concurrent = 1;
            }
            return Ok(Self::P3(ProxyHandler::new(ComponentHandler {
                component: component.clone(),
                proxy_pre: ProxyPre::P3(pre),
                policy,
                instance_permits: instance_permits.clone(),
                metrics: metrics.clone(),
                stopped: stopped.clone(),
            })));
        }
        if let Some(handler) = p2::Handler::of(component, instance_permits.clone(), spares, metrics.clone(), policy.request_timeout) {
            return Ok(Self::P2(handler));
        }
        bail!(
            "component `{}` exports {}; an HTTP trigger needs wasi:http/handler@0.3.0 (spin-sdk 7), wasi:http/incoming-handler@0.2.x (Spin 3.x SDKs) or its 0.2.0-rc-2023-10-18 release candidate (Spin 2.x SDKs)",
            component.id,
            component.exports()
        )
    }
}

fn classify(e: wasmtime::Error) -> CallError {
    if e.is::<ExpirationError>() {
        return CallError::Deadline;
    }
    if let Some(inst) = e.downcast_ref::<InstantiationError<()>>() {
        if inst.error.is::<InstanceLimitReached>() || inst.error.is::<wasmtime::PoolConcurrencyLimitError>() {
            return CallError::InstanceLimit;
        }
        return CallError::Failed(format!("instantiation failed: {:?}", inst.error));
    }
    CallError::Failed(format!("{e:?}"))
}

impl LocalDispatch for HttpTrigger {
    /// In-process requests from components: `<id>.spin.internal` reaches that
    /// component (as Spin does, it sees the route `/...` and the whole path as
    /// path info); `self` and relative URLs go through the router.
    fn dispatch(&self, target: LocalTarget, mut request: Request<WasiBody>) -> BoxFuture<'static, Result<Response<WasiBody>, HttpError>> {
        let Some(this) = self.me.upgrade() else {
            return Box::pin(async { Err(HttpError::DestinationUnavailable) });
        };
        Box::pin(async move {
            let path = request.uri().path().to_string();
            let whole_component = RouteHeaders::whole_component();
            let (component, headers, path_info, params) = match target {
                LocalTarget::Component(id) => (id, &whole_component, path, Vec::new()),
                LocalTarget::App => {
                    let (_, target, matched) = this.router.route(&path).ok_or(HttpError::DestinationNotFound)?;
                    match &target.answer {
                        RouteAnswer::Component(component) => (component.clone(), &target.headers, matched.path_info, matched.params),
                        RouteAnswer::Static(answer) => return Ok(answer.response()),
                    }
                }
            };
            request.headers_mut().remove(http::header::HOST);
            SpinHeaders { route: headers, path_info: &path_info, params: &params, full_url: None, client_addr: None }.apply(request.headers_mut());
            let started = Instant::now();
            let result = this.call(&component, request).await;
            let response = match result {
                Ok(response) => response,
                Err(CallError::NoSuchComponent(_)) => return Err(HttpError::DestinationNotFound),
                Err(e) => this.error_for(&component, e),
            };
            this.metrics.observe_request(&component, response.status().as_u16(), started.elapsed());
            Ok(response)
        })
    }
}

/// The `spin-*` request headers. Applying them first removes every `spin-*`
/// header already present: neither a client nor a component forwarding its
/// own request headers can assert what the host asserts.
struct SpinHeaders<'a> {
    route: &'a RouteHeaders,
    path_info: &'a str,
    /// The `:name` values, in the route's order.
    params: &'a [String],
    /// Set for requests from outside; in-process requests have neither.
    full_url: Option<HeaderValue>,
    client_addr: Option<HeaderValue>,
}

impl SpinHeaders<'_> {
    fn apply(self, headers: &mut http::HeaderMap) {
        let present: Vec<HeaderName> = headers.keys().filter(|n| n.as_str().starts_with("spin-")).cloned().collect();
        for name in present {
            headers.remove(name);
        }
        headers.reserve(7 + self.params.len());
        let name = HeaderName::from_static;
        if let Ok(path_info) = HeaderValue::try_from(self.path_info) {
            headers.insert(name("spin-path-info"), path_info);
        }
        headers.insert(name("spin-matched-route"), self.route.matched_route.clone());
        headers.insert(name("spin-base-path"), HeaderValue::from_static("/"));
        headers.insert(name("spin-raw-component-route"), self.route.raw_route.clone());
        headers.insert(name("spin-component-route"), self.route.component_route.clone());
        for (param, value) in self.route.param_names.iter().zip(self.params) {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.insert(param.clone(), value);
            }
        }
        if let Some(url) = self.full_url {
            headers.insert(name("spin-full-url"), url);
        }
        if let Some(client) = self.client_addr {
            headers.insert(name("spin-client-addr"), client);
        }
    }
}

/// 413, for a body declared (`length`) or found larger than `limit`.
fn body_too_large(limit: u64, length: Option<u64>) -> Response<WasiBody> {
    let message = match length {
        Some(length) => format!("request body of {length} bytes exceeds the limit of {limit} bytes"),
        None => format!("request body exceeds the limit of {limit} bytes"),
    };
    error_response(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", &message)
}

fn text_response(status: StatusCode, text: &'static str) -> Response<WasiBody> {
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// A host-side error, in the app's error shape.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response<WasiBody> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    let mut r = Response::new(body::full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
