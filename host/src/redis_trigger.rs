//! The Redis pub/sub trigger: `[[trigger.redis]]` channels delivered to
//! components exporting `spin:redis/inbound-redis@3.0.0` (WASIp3 Spin) or
//! `fermyon:spin/inbound-redis` (WASIp2 Spin 2.x/3.x).
//!
//! One subscriber connection per address. Each message gets a fresh instance
//! of every component on its channel. Unlike Spin, which stops the trigger
//! when Redis goes away, this one logs it, reconnects with capped exponential
//! backoff and resubscribes, and never exits. Messages are handled
//! concurrently (bounded), so one slow handler does not stall a channel;
//! handlers must therefore not rely on delivery order (the app's handlers are
//! idempotent state-machine steps).
//!
//! At shutdown the trigger first stops reading (it drops its subscriptions,
//! so Redis keeps nothing queued for it), then waits for the handlers in
//! flight, each bounded by its deadline.

use crate::app::{App, LoadedComponent};
use crate::capabilities::redis_connection::SubscriberConnection;
use crate::bindings::p2::redis_trigger::RedisTriggerPre as RedisTriggerP2Pre;
use crate::bindings::redis_trigger::RedisTriggerPre as RedisTriggerP3Pre;
use crate::state::InstanceState;
use crate::metrics::Metrics;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Messages being handled at once when memory allows it (see
/// [`RedisTrigger::start`]).
pub const MAX_IN_FLIGHT: usize = 256;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

struct Subscriber {
    component: Arc<LoadedComponent>,
    handler: Handler,
}

/// The component's inbound-Redis export, by interface version.
enum Handler {
    P2(RedisTriggerP2Pre<InstanceState>),
    P3(RedisTriggerP3Pre<InstanceState>),
}

impl Handler {
    fn of(component: &LoadedComponent) -> Result<Self> {
        if let Ok(pre) = RedisTriggerP3Pre::new(component.pre.clone()) {
            return Ok(Self::P3(pre));
        }
        if let Ok(pre) = RedisTriggerP2Pre::new(component.pre.clone()) {
            return Ok(Self::P2(pre));
        }
        anyhow::bail!(
            "component `{}` exports no inbound-Redis interface that wharf runs (spin:redis/inbound-redis@3.0.0 or fermyon:spin/inbound-redis); it exports: {}",
            component.id,
            component.exports()
        )
    }
}

/// The running trigger. [`RedisTrigger::stopped`] waits for it to stop
/// after `shutdown`; dropping it stops the subscriber tasks at once.
pub struct RedisTrigger {
    tasks: Vec<JoinHandle<()>>,
    /// The message handlers in flight.
    handlers: TaskTracker,
}

impl Drop for RedisTrigger {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RedisTrigger {
    /// Subscribes every Redis trigger; each message's handler may run for
    /// `deadline` (the host's `--request-timeout`) before it is stopped, and
    /// at most `max_in_flight` run at once over all addresses
    /// ([`crate::memory_budget`] says how many fit; the rest wait in Redis,
    /// not in this process: see [`SubscriberConnection`]).
    /// When `shutdown` is cancelled the trigger stops reading messages.
    pub fn start(app: Arc<App>, metrics: Arc<Metrics>, deadline: Duration, max_in_flight: usize, shutdown: CancellationToken) -> Result<Self> {
        // address -> channel -> subscribers
        let mut by_address: BTreeMap<String, BTreeMap<String, Vec<Arc<Subscriber>>>> = BTreeMap::new();
        let default_address = app.manifest.application.trigger.redis.as_ref().map(|r| r.address.clone());
        for (i, trigger) in app.manifest.trigger.redis.iter().enumerate() {
            let Some(component) = app.components.get(&trigger.component) else { continue };
            let at = || format!("trigger.redis[{i}]");
            let address = trigger.address.clone().or_else(|| default_address.clone()).context("no address")?;
            let address = app.variables.render(&address).with_context(|| format!("{}.address", at()))?;
            SubscriberConnection::check_address(&address).with_context(|| format!("{}.address: not a Redis URL wharf can subscribe to", at()))?;
            let channel = app.variables.render(&trigger.channel).with_context(|| format!("{}.channel", at()))?;
            let handler = Handler::of(component).with_context(at)?;
            by_address
                .entry(address)
                .or_default()
                .entry(channel)
                .or_default()
                .push(Arc::new(Subscriber { component: component.clone(), handler }));
        }
        let handlers = TaskTracker::new();
        // One bound for all addresses: it is the process's memory that it
        // shares out.
        let permits = Arc::new(Semaphore::new(max_in_flight));
        let tasks = by_address
            .into_iter()
            .map(|(address, channels)| {
                let subscription = Subscription {
                    metrics: metrics.clone(),
                    address,
                    channels,
                    permits: permits.clone(),
                    handlers: handlers.clone(),
                    deadline,
                };
                tokio::spawn(subscription.run(shutdown.clone()))
            })
            .collect();
        Ok(Self { tasks, handlers })
    }

    /// Resolves once the trigger has stopped after its shutdown: no more
    /// messages are read, and every handler in flight has finished or
    /// reached its deadline.
    pub async fn stopped(mut self) {
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        self.handlers.close();
        let in_flight = self.handlers.len();
        if in_flight > 0 {
            tracing::info!("waiting for {in_flight} redis message handlers to finish");
        }
        self.handlers.wait().await;
    }
}

/// The trigger's subscription to one address.
struct Subscription {
    metrics: Arc<Metrics>,
    address: String,
    /// channel -> subscribers
    channels: BTreeMap<String, Vec<Arc<Subscriber>>>,
    permits: Arc<Semaphore>,
    handlers: TaskTracker,
    deadline: Duration,
}

impl Subscription {
    /// Subscribes, and again after each disconnection, until `shutdown`.
    async fn run(self, shutdown: CancellationToken) {
        let shown = crate::capabilities::outbound_redis::redact(&self.address);
        let mut backoff = BACKOFF_START;
        loop {
            let outcome = tokio::select! {
                outcome = self.subscribe_once(&mut backoff) => outcome,
                () = shutdown.cancelled() => break,
            };
            match outcome {
                Ok(()) => tracing::warn!(address = %shown, "redis subscription ended; reconnecting in {backoff:?}"),
                Err(e) => tracing::warn!(address = %shown, "redis trigger disconnected: {e:#}; reconnecting in {backoff:?}"),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => break,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        tracing::info!(address = %shown, "redis trigger stopped reading messages");
    }

    async fn subscribe_once(&self, backoff: &mut Duration) -> Result<()> {
        let Self { metrics, address, channels, permits, handlers, deadline } = self;
        let deadline = *deadline;
        let names: Vec<&str> = channels.keys().map(String::as_str).collect();
        let mut subscription = SubscriberConnection::open(address, &names).await?;
        tracing::info!(address = %crate::capabilities::outbound_redis::redact(address), channels = ?names, "redis trigger subscribed");
        *backoff = BACKOFF_START;
        // The next message is read only once a handler slot is free for each
        // of its subscribers, so a busy trigger leaves the backlog in Redis.
        while let Some((channel, payload)) = subscription.next_message().await? {
            let Some(subscribers) = channels.get(&channel) else { continue };
            for subscriber in subscribers {
                let permit = permits.clone().acquire_owned().await?;
                let (metrics, subscriber, channel, payload) = (metrics.clone(), subscriber.clone(), channel.clone(), payload.clone());
                handlers.spawn(async move {
                    let outcome = deliver(&subscriber, payload, deadline).await;
                    Metrics::inc(&metrics.redis_messages);
                    if let Err(e) = outcome {
                        Metrics::inc(&metrics.redis_handler_errors);
                        // One line for the log; the wasm backtrace only at debug level.
                        tracing::warn!(component = %subscriber.component.id, channel, error = %e.root_cause(), "redis handler failed");
                        tracing::debug!(component = %subscriber.component.id, "redis handler failure in full: {e:?}");
                    }
                    drop(permit);
                });
            }
        }
        Ok(())
    }
}

/// Runs one message through a fresh instance.
async fn deliver(subscriber: &Subscriber, payload: Vec<u8>, deadline: Duration) -> Result<()> {
    let mut store = subscriber.component.new_store()?;
    let run = async {
        match &subscriber.handler {
            Handler::P3(pre) => {
                let instance = pre.instantiate_async(&mut store).await?;
                let outcome = store
                    .run_concurrent(async |accessor| instance.spin_redis_inbound_redis().call_handle_message(accessor, payload).await)
                    .await??;
                outcome.map_err(|e| anyhow::anyhow!("handler returned {e:?}"))
            }
            Handler::P2(pre) => {
                let instance = pre.instantiate_async(&mut store).await?;
                let outcome = instance.fermyon_spin_inbound_redis().call_handle_message(&mut store, &payload).await?;
                outcome.map_err(|e| anyhow::anyhow!("handler returned {e:?}"))
            }
        }
    };
    tokio::time::timeout(deadline, run).await.map_err(|_| anyhow::anyhow!("handler passed its deadline of {deadline:?}"))?
}
