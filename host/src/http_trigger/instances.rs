//! Instance policy for WASIp3 handlers, as Spin 4.1 and `wasmtime serve`
//! have it: one instance serves up to `max_reuse` requests in turn and
//! `max_concurrent` at once; `1`/`1` is strict isolation, a fresh instance per
//! request. Built on wasmtime-wasi-http's `ProxyHandler`, which queues
//! requests to workers (one worker = one store and instance).
//!
//! A trap, or a request passing its deadline, retires the instance at once:
//! the kill switch below makes the worker drop its store on the next poll. Any
//! other request still running on that instance fails with a 500 (under strict
//! isolation there is none). The instance is never reused afterwards.

use crate::app::LoadedComponent;
use crate::metrics::Metrics;
use crate::state::InstanceState;
use futures::task::AtomicWaker;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::GuestTaskId;
use wasmtime::{Engine, Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};

#[derive(Debug, Clone, Copy)]
pub struct InstancePolicy {
    pub max_reuse: usize,
    pub max_concurrent: usize,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Returned when every instance slot is taken; the trigger answers 503.
#[derive(Debug)]
pub struct InstanceLimitReached;

impl std::fmt::Display for InstanceLimitReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("instance limit reached")
    }
}

impl std::error::Error for InstanceLimitReached {}

/// Creates instances of one component for `ProxyHandler`.
pub struct ComponentHandler {
    pub component: Arc<LoadedComponent>,
    pub proxy_pre: ProxyPre<InstanceState>,
    pub engine: Engine,
    pub policy: InstancePolicy,
    /// Shared by all components: instances alive at once.
    pub instance_permits: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
}

impl HandlerState for ComponentHandler {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<InstanceState, Expiry, Worker>> {
        let permit = self.instance_permits.clone().try_acquire_owned().map_err(|_| InstanceLimitReached)?;
        let mut store = self.component.new_store(&self.engine);
        let proxy = self.proxy_pre.instantiate_async(&mut store).await?;
        Metrics::inc(&self.metrics.instances_created);
        let kill = Arc::new(KillSwitch::default());
        Ok(Instance {
            store,
            proxy,
            view: InstanceState::http_view,
            expiration: Expiry { policy: self.policy, kill: kill.clone(), timer: Box::pin(tokio::time::sleep(Duration::ZERO)) },
            state: Worker {
                policy: self.policy,
                component: self.component.id.clone(),
                metrics: self.metrics.clone(),
                kill,
                _permit: permit,
            },
        })
    }
}

/// Set when an instance must go now (a request on it passed its deadline).
#[derive(Default)]
pub struct KillSwitch {
    fired: AtomicBool,
    waker: AtomicWaker,
}

impl KillSwitch {
    fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

pub struct Worker {
    policy: InstancePolicy,
    component: Arc<str>,
    metrics: Arc<Metrics>,
    kill: Arc<KillSwitch>,
    _permit: OwnedSemaphorePermit,
}

impl WorkerState for Worker {
    type StoreData = InstanceState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent_count: usize, total_count: usize) -> ShouldAccept {
        if total_count >= self.policy.max_reuse {
            ShouldAccept::Never
        } else if concurrent_count >= self.policy.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, InstanceState>,
        _data: (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        let kill = self.kill.clone();
        let timeout = self.policy.request_timeout;
        Box::pin(async move {
            tokio::time::sleep(timeout).await;
            kill.fire();
        })
    }

    fn drop(&self, store: Store<InstanceState>, result: wasmtime::Result<()>) {
        if let Err(e) = result {
            Metrics::inc(&self.metrics.traps);
            tracing::warn!(component = %self.component, "instance retired after a trap: {e:?}");
        }
        drop(store);
    }
}

/// Decides when a worker's instance is dropped: at once when killed, after
/// `request_timeout` with requests outstanding (a second line of defence for
/// a guest that never yields to the handler's own timer), after
/// `idle_timeout` when idle.
pub struct Expiry {
    policy: InstancePolicy,
    kill: Arc<KillSwitch>,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiry {
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>, status: WorkerStatus, start: Instant) -> Poll<()> {
        self.kill.waker.register(cx.waker());
        if self.kill.fired.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        let limit = match status {
            WorkerStatus::Idle => self.policy.idle_timeout,
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.policy.request_timeout,
        };
        let deadline = tokio::time::Instant::from_std(start + limit);
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx)
    }
}
