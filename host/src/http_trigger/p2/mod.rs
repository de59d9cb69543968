//! WASIp2 handlers (`wasi:http/incoming-handler@0.2.x`, Spin 3.x SDKs, and
//! its `0.2.0-rc-2023-10-18` release candidate, Spin 2.x SDKs): a fresh
//! instance per request, as Spin gives them, since such guests are
//! written expecting one request per instance and nothing in the 0.2 world
//! lets them serve two at once.
//!
//! An instance that serves exactly one request needs none of the queueing,
//! reuse and concurrency bookkeeping `ProxyHandler` does for WASIp3 (see
//! [`super::p3`]), so the handler is called directly: each request takes a
//! fresh store and instance (made ahead of it where it can be: [`spare`]),
//! hands `handle` the request and a response outparam,
//! and runs the call in the request's task until the response head comes
//! back through the outparam. A call still going then (a guest writing its
//! body, say) goes on in a task of its own that owns the store, until
//! `handle` returns or the request's deadline passes, and then drops the
//! store, which stops whatever still runs (a guest in a loop yields at every
//! epoch tick). A trap harms only its own request.

mod spare;

pub use spare::Spares;

use super::CallError;
use crate::app::LoadedComponent;
use crate::metrics::Metrics;
use crate::state::InstanceState;
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use wasmtime::Store;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime::component::Resource;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use crate::bindings::wasi_2023_10_18::{Http as Rc2023_10_18, HttpPre as Rc2023_10_18Pre};

pub struct Handler {
    instances: Arc<Instances>,
    request_timeout: Duration,
}

/// Makes one component's fresh instances.
struct Instances {
    component: Arc<LoadedComponent>,
    pre: WorldPre,
    /// Shared by all components: instances alive at once.
    permits: Arc<Semaphore>,
    spare: Arc<spare::Spare>,
    spares: Arc<Spares>,
    metrics: Arc<Metrics>,
}

/// The version of the handler the component exports. The two take the same
/// request and outparam resources (see `capabilities::wasi_2023_10_18`).
enum WorldPre {
    V0_2(ProxyPre<InstanceState>),
    Rc2023_10_18(Rc2023_10_18Pre<InstanceState>),
}

enum World {
    V0_2(Proxy),
    Rc2023_10_18(Rc2023_10_18),
}

impl WorldPre {
    fn of(component: &LoadedComponent) -> Option<Self> {
        if let Ok(pre) = ProxyPre::new(component.pre.clone()) {
            return Some(Self::V0_2(pre));
        }
        Rc2023_10_18Pre::new(component.pre.clone()).ok().map(Self::Rc2023_10_18)
    }

    async fn instantiate(&self, store: &mut Store<InstanceState>) -> wasmtime::Result<World> {
        Ok(match self {
            Self::V0_2(pre) => World::V0_2(pre.instantiate_async(store).await?),
            Self::Rc2023_10_18(pre) => World::Rc2023_10_18(pre.instantiate_async(store).await?),
        })
    }
}

impl World {
    async fn handle(
        &self,
        store: &mut Store<InstanceState>,
        request: Resource<HostIncomingRequest>,
        outparam: Resource<HostResponseOutparam>,
    ) -> wasmtime::Result<()> {
        match self {
            Self::V0_2(proxy) => proxy.wasi_http_incoming_handler().call_handle(store, request, outparam).await,
            Self::Rc2023_10_18(http) => http.wasi_http_incoming_handler().call_handle(store, request, outparam).await,
        }
    }
}

/// How a call to `handle` ended.
enum Ended {
    Returned,
    Deadline,
    Trapped(wasmtime::Error),
}

impl Ended {
    /// Why a call that ended this way gave no response.
    fn into_error(self) -> CallError {
        match self {
            Ended::Returned => CallError::Failed("the component returned without setting a response".into()),
            Ended::Deadline => CallError::Deadline,
            Ended::Trapped(e) => CallError::Failed(format!("{e:?}")),
        }
    }
}

impl Instances {
    /// A fresh instance in a pool slot of its own; a full pool makes room by
    /// dropping another component's spare.
    async fn fresh(&self) -> Result<spare::Fresh, CallError> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) if self.spares.give_way() => self.permits.clone().try_acquire_owned().map_err(|_| CallError::InstanceLimit)?,
            Err(_) => return Err(CallError::InstanceLimit),
        };
        self.instantiate(permit).await
    }

    async fn instantiate(&self, permit: OwnedSemaphorePermit) -> Result<spare::Fresh, CallError> {
        let mut store = self.component.new_store().map_err(|e| CallError::Failed(format!("{e:?}")))?;
        let world = self.pre.instantiate(&mut store).await.map_err(|e| {
            if e.is::<wasmtime::PoolConcurrencyLimitError>() {
                CallError::InstanceLimit
            } else {
                CallError::Failed(format!("instantiation failed: {e:?}"))
            }
        })?;
        Metrics::inc(&self.metrics.instances_created);
        Ok(spare::Fresh { store, world, permit })
    }

    /// Starts making the next spare in a task of its own, unless there is
    /// one, one is being made, or fewer than two pool slots are free.
    fn make_spare(self: &Arc<Self>) {
        // No runtime (a trigger made outside one): no spare, nothing else changes.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if self.permits.available_permits() < 2 || !self.spare.claim() {
            return;
        }
        let instances = self.clone();
        runtime.spawn(async move {
            let fresh = match instances.permits.clone().try_acquire_owned() {
                Ok(permit) => instances.instantiate(permit).await.ok(),
                Err(_) => None,
            };
            instances.spare.made(fresh);
        });
    }
}

impl Handler {
    /// `None` when the component exports no version of the WASIp2 HTTP
    /// handler. Its first spare is started at once.
    pub fn of(
        component: &Arc<LoadedComponent>,
        permits: Arc<Semaphore>,
        spares: &Arc<Spares>,
        metrics: Arc<Metrics>,
        request_timeout: Duration,
    ) -> Option<Self> {
        let pre = WorldPre::of(component)?;
        let instances =
            Arc::new(Instances { component: component.clone(), pre, permits, spare: spares.add(), spares: spares.clone(), metrics });
        instances.make_spare();
        Some(Self { instances, request_timeout })
    }

    pub async fn handle(&self, request: Request<WasiBody>) -> Result<Response<WasiBody>, CallError> {
        let spare::Fresh { mut store, world, permit } = match self.instances.spare.take() {
            Some(fresh) => fresh,
            None => self.instances.fresh().await?,
        };
        // The next request's instance is made while this one runs.
        self.instances.make_spare();
        let (response_tx, mut response_rx) = oneshot::channel();
        let mut view = store.data_mut().http_view();
        let request = view.new_incoming_request(Scheme::Http, request).map_err(|e| CallError::Failed(format!("{e:?}")))?;
        let outparam = view.new_response_outparam(response_tx).map_err(|e| CallError::Failed(format!("{e:?}")))?;
        let call = Call {
            store,
            world,
            component: self.instances.component.id.clone(),
            metrics: self.instances.metrics.clone(),
            _permit: permit,
        };
        let mut call = Detachable(Some(Box::pin(call.run(request, outparam, self.request_timeout))));
        let (answer, ended) = tokio::select! {
            biased;
            ended = call.running() => ((&mut response_rx).await, Some(ended)),
            answer = &mut response_rx => (answer, None),
        };
        match answer {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(CallError::Failed(format!("the component answered with the error {code:?}"))),
            // The outparam went with the store: the call is over without a response.
            Err(_) => Err(match ended {
                Some(ended) => ended,
                None => call.running().await,
            }
            .into_error()),
        }
    }
}

/// A call run in the request's own task until it answers: a guest that sets
/// its response and returns at once (most do) then costs no task of its own,
/// and its slot is free before the response leaves. Whatever is left of the
/// call when this is dropped (a guest still writing its body once the head
/// is out, or anything still running if the request's task is dropped
/// before the answer) goes on in a task of its own until `handle` returns or
/// the deadline passes: the connection's fate never stops a guest half-way
/// through its work.
struct Detachable(Option<Pin<Box<dyn Future<Output = Ended> + Send>>>);

impl Detachable {
    /// Polls the call; resolves when it has ended.
    async fn running(&mut self) -> Ended {
        let ended = self.0.as_mut().expect("a call is awaited until it ends, once").await;
        self.0 = None;
        ended
    }
}

impl Drop for Detachable {
    fn drop(&mut self) {
        // No runtime left only while the process ends, and the rest with it.
        if let (Some(rest), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(rest);
        }
    }
}

/// One request's instance, owned by the task that runs its call.
struct Call {
    store: Store<InstanceState>,
    world: World,
    component: Arc<str>,
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
}

impl Call {
    async fn run(
        mut self,
        request: Resource<HostIncomingRequest>,
        outparam: Resource<HostResponseOutparam>,
        deadline: Duration,
    ) -> Ended {
        let handle = self.world.handle(&mut self.store, request, outparam);
        match tokio::time::timeout(deadline, handle).await {
            Ok(Ok(())) => Ended::Returned,
            Ok(Err(e)) => {
                Metrics::inc(&self.metrics.traps);
                tracing::warn!(component = %self.component, "instance dropped after a trap: {e:?}");
                Ended::Trapped(e)
            }
            Err(_elapsed) => {
                tracing::warn!(component = %self.component, "instance dropped: its request passed its deadline");
                Ended::Deadline
            }
        }
    }
}
