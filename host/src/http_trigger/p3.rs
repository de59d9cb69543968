//! WASIp3 handlers (`wasi:http/handler@0.3.0`) and their instance policy, as
//! Spin 4.1 and `wasmtime serve` have it: one instance serves up to `max_reuse` requests in turn and
//! `max_concurrent` at once; `1`/`1` is strict isolation, a fresh instance per
//! request. Built on wasmtime-wasi-http's `ProxyHandler`, which queues
//! requests to workers (one worker = one store and instance).
//!
//! A trap drops the instance at once; any other request running on it fails
//! with 500. A request passing its deadline gets 504 and retires its instance:
//! it accepts nothing new, the requests already on it may still finish, and
//! once the youngest of them is past its own deadline the store is dropped,
//! stopping whatever still runs (a guest in a loop yields at every epoch
//! tick, so it cannot hold the host). Under strict isolation there is never
//! anyone else on the instance. A retired instance is never reused.

use super::InstancePolicy;
use crate::app::LoadedComponent;
use crate::metrics::Metrics;
use crate::state::InstanceState;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};

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
    pub policy: InstancePolicy,
    /// Shared by all components: instances alive at once.
    pub instance_permits: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
    /// Set once the trigger has stopped serving: workers dropped after that
    /// go with the runtime, not because anything failed.
    pub stopped: Arc<AtomicBool>,
}

impl HandlerState for ComponentHandler {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<InstanceState, Expiry, Worker>> {
        let permit = self.instance_permits.clone().try_acquire_owned().map_err(|_| InstanceLimitReached)?;
        let mut store = self.component.new_store().map_err(wasmtime::Error::from_anyhow)?;
        let proxy = self.proxy_pre.instantiate_async(&mut store).await?;
        Metrics::inc(&self.metrics.instances_created);
        let expired = Arc::new(AtomicBool::new(false));
        Ok(Instance {
            store,
            proxy,
            view: InstanceState::http_view,
            expiration: Expiry { policy: self.policy, expired: expired.clone(), timer: Box::pin(tokio::time::sleep(Duration::ZERO)) },
            state: Worker {
                policy: self.policy,
                component: self.component.id.clone(),
                metrics: self.metrics.clone(),
                stopped: self.stopped.clone(),
                expired,
                _permit: permit,
            },
        })
    }
}

pub struct Worker {
    policy: InstancePolicy,
    component: Arc<str>,
    metrics: Arc<Metrics>,
    stopped: Arc<AtomicBool>,
    /// Set by [`Expiry`] when it ends the worker at a deadline, so that is
    /// not counted as a trap.
    expired: Arc<AtomicBool>,
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
        Box::pin(tokio::time::sleep(self.policy.request_timeout))
    }

    fn drop(&self, store: Store<InstanceState>, result: wasmtime::Result<()>) {
        match result {
            Ok(()) => {}
            Err(_) if self.stopped.load(Ordering::SeqCst) => {
                tracing::debug!(component = %self.component, "instance dropped at shutdown");
            }
            Err(_) if self.expired.load(Ordering::SeqCst) => {
                tracing::warn!(component = %self.component, "instance dropped: its requests passed their deadline");
            }
            Err(e) => {
                Metrics::inc(&self.metrics.traps);
                tracing::warn!(component = %self.component, "instance retired after a trap: {e:?}");
            }
        }
        drop(store);
    }
}

/// Decides when a worker's instance is dropped: `request_timeout` after the
/// youngest outstanding request started (every request on it is then past
/// its deadline), or `idle_timeout` after it went idle.
pub struct Expiry {
    policy: InstancePolicy,
    expired: Arc<AtomicBool>,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiry {
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>, status: WorkerStatus, start: Instant) -> Poll<()> {
        let limit = match status {
            WorkerStatus::Idle => self.policy.idle_timeout,
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.policy.request_timeout,
        };
        // A limit too large to add is no limit.
        let Some(deadline) = start.checked_add(limit).map(tokio::time::Instant::from_std) else {
            return Poll::Pending;
        };
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        let ready = self.timer.as_mut().poll(cx);
        if ready.is_ready() && status != WorkerStatus::Idle {
            self.expired.store(true, Ordering::SeqCst);
        }
        ready
    }
}
