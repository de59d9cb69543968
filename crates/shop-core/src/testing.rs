//! In-memory ports for native tests (this crate's and other crates' with the
//! `testing` feature). All are cheap to clone and clones share state, so one
//! store can back several services, as the host's store does.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::{Future, pending};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::events::Event;
use crate::kv::{Kv, StoreError, decode_counter};
use crate::payments::{Gateway, GatewayOutcome, ProviderTransport};
use crate::ports::{Clock, PublishError, Publisher, Random, Sleeper};
use crate::sandbox::Sandbox;

/// Returns `Pending` once (after asking to be polled again), so that other
/// futures of a `join_all` run in between.
struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        context.waker().wake_by_ref();
        Poll::Pending
    }
}

#[derive(Default)]
struct MemoryState {
    /// Value and the version it was written at; versions never repeat, so a
    /// key deleted and written again does not look unchanged to a CAS.
    entries: HashMap<String, (u64, Vec<u8>)>,
    last_version: u64,
    operations: u64,
    /// Operations that still succeed before the store goes down (None: stays up).
    ops_until_outage: Option<u64>,
    /// The store goes down right after the next compare-and-swap that
    /// writes a key starting with this.
    outage_after_swap_of: Option<String>,
}

/// A key-value store with real compare-and-swap semantics. Counters are
/// stored as 8 little-endian bytes.
#[derive(Clone, Default)]
pub struct MemoryKv {
    state: Rc<RefCell<MemoryState>>,
    /// Present when every operation first yields a pseudo-random number of
    /// times, so that concurrent futures interleave between reads and swaps.
    interleaving: Option<SeededRandom>,
}

/// What `cas_read` saw: the key and its version (None when absent).
pub struct MemoryCasToken {
    key: String,
    version: Option<u64>,
}

impl MemoryKv {
    pub fn new() -> MemoryKv {
        MemoryKv::default()
    }

    /// A store whose operations yield 0 to 2 times first (sequence from `seed`).
    pub fn interleaving(seed: u64) -> MemoryKv {
        MemoryKv { interleaving: Some(SeededRandom::new(seed)), ..MemoryKv::default() }
    }

    /// Operations since creation or the last reset, for cost assertions.
    pub fn op_count(&self) -> u64 {
        self.state.borrow().operations
    }

    pub fn reset_op_count(&self) {
        self.state.borrow_mut().operations = 0;
    }

    /// While set, every operation fails with a `StoreError`.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state.borrow_mut().ops_until_outage = unavailable.then_some(0);
    }

    /// Lets the next `operations` succeed, then fails every operation until
    /// `set_unavailable(false)`: an outage in the middle of a request.
    pub fn set_unavailable_after(&self, operations: u64) {
        self.state.borrow_mut().ops_until_outage = Some(operations);
    }

    /// Fails every operation after the next successful compare-and-swap of a
    /// key starting with `prefix`, until `set_unavailable(false)`: a writer
    /// dying right after that write.
    pub fn set_unavailable_after_swap_of(&self, prefix: &str) {
        self.state.borrow_mut().outage_after_swap_of = Some(prefix.to_string());
    }

    /// Keys starting with `prefix`, sorted (test inspection only; services never list).
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> =
            self.state.borrow().entries.keys().filter(|key| key.starts_with(prefix)).cloned().collect();
        keys.sort();
        keys
    }

    async fn begin(&self) -> Result<(), StoreError> {
        if let Some(random) = &self.interleaving {
            for _ in 0..random.next_u64() % 3 {
                YieldNow { yielded: false }.await;
            }
        }
        let mut state = self.state.borrow_mut();
        state.operations += 1;
        match &mut state.ops_until_outage {
            Some(0) => Err(StoreError::new("memory store switched off by the test")),
            Some(remaining) => {
                *remaining -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn write(&self, key: &str, value: Vec<u8>) {
        let mut state = self.state.borrow_mut();
        state.last_version += 1;
        let version = state.last_version;
        state.entries.insert(key.to_string(), (version, value));
    }
}

impl Kv for MemoryKv {
    type CasToken = MemoryCasToken;

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.begin().await?;
        Ok(self.state.borrow().entries.get(key).map(|(_, value)| value.clone()))
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.begin().await?;
        self.write(key, value.to_vec());
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.begin().await?;
        self.state.borrow_mut().entries.remove(key);
        Ok(())
    }

    /// One operation, as a store with batch reads answers it.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.begin().await?;
        let state = self.state.borrow();
        Ok(keys.iter().map(|key| state.entries.get(key).map(|(_, value)| value.clone())).collect())
    }

    /// One operation, as a store with batch writes takes it.
    async fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        self.begin().await?;
        for (key, value) in entries {
            self.write(key, value.clone());
        }
        Ok(())
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.begin().await?;
        let current = match self.state.borrow().entries.get(key) {
            None => 0,
            Some((_, bytes)) => decode_counter(key, bytes)?,
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| StoreError::new(format!("counter {key} would overflow")))?;
        self.write(key, next.to_le_bytes().to_vec());
        Ok(next)
    }

    async fn cas_read(&self, key: &str) -> Result<(Option<Vec<u8>>, MemoryCasToken), StoreError> {
        self.begin().await?;
        let state = self.state.borrow();
        let entry = state.entries.get(key);
        let token = MemoryCasToken { key: key.to_string(), version: entry.map(|(version, _)| *version) };
        Ok((entry.map(|(_, value)| value.clone()), token))
    }

    async fn cas_swap(&self, token: MemoryCasToken, value: &[u8]) -> Result<bool, StoreError> {
        self.begin().await?;
        let current = self.state.borrow().entries.get(&token.key).map(|(version, _)| *version);
        if current != token.version {
            return Ok(false);
        }
        self.write(&token.key, value.to_vec());
        let mut state = self.state.borrow_mut();
        if state.outage_after_swap_of.as_ref().is_some_and(|prefix| token.key.starts_with(prefix.as_str())) {
            state.outage_after_swap_of = None;
            state.ops_until_outage = Some(0);
        }
        Ok(true)
    }
}

/// A channel and a payload.
type Message = (String, Vec<u8>);

/// Keeps every published message; can be switched to failing.
#[derive(Clone, Default)]
pub struct RecordingPublisher {
    messages: Rc<RefCell<Vec<Message>>>,
    failing: Rc<Cell<bool>>,
    /// Messages are published but nobody is subscribed (PUBLISH answers 0).
    unheard: Rc<Cell<bool>>,
}

impl RecordingPublisher {
    pub fn new() -> RecordingPublisher {
        RecordingPublisher::default()
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.set(failing);
    }

    /// Publishing works, but no subscriber hears it (a trigger reconnecting).
    pub fn set_unheard(&self, unheard: bool) {
        self.unheard.set(unheard);
    }

    /// Events published on `channel`, oldest first.
    pub fn events_on(&self, channel: &str) -> Vec<Event> {
        self.messages
            .borrow()
            .iter()
            .filter(|(published_on, _)| published_on == channel)
            .map(|(_, payload)| Event::parse(payload).expect("services publish well-formed events"))
            .collect()
    }

    pub fn clear(&self) {
        self.messages.borrow_mut().clear();
    }
}

impl Publisher for RecordingPublisher {
    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64, PublishError> {
        if self.failing.get() {
            return Err(PublishError { message: "publisher switched off by the test".to_string() });
        }
        if self.unheard.get() {
            return Ok(0);
        }
        self.messages.borrow_mut().push((channel.to_string(), payload.to_vec()));
        Ok(1)
    }
}

/// A clock that moves only when told to.
#[derive(Clone)]
pub struct FixedClock {
    now_ms: Rc<Cell<u64>>,
}

impl FixedClock {
    pub fn at(now_ms: u64) -> FixedClock {
        FixedClock { now_ms: Rc::new(Cell::new(now_ms)) }
    }

    pub fn advance_ms(&self, milliseconds: u64) {
        self.now_ms.set(self.now_ms.get() + milliseconds);
    }
}

impl Clock for FixedClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }
}

/// Deterministic pseudo-random numbers (SplitMix64).
#[derive(Clone)]
pub struct SeededRandom {
    state: Rc<Cell<u64>>,
}

impl SeededRandom {
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom { state: Rc::new(Cell::new(seed)) }
    }
}

impl Random for SeededRandom {
    fn next_u64(&self) -> u64 {
        let state = self.state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.state.set(state);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Records the delays asked for and returns at once.
#[derive(Clone, Default)]
pub struct RecordingSleeper {
    requested_ms: Rc<RefCell<Vec<u64>>>,
}

impl RecordingSleeper {
    pub fn new() -> RecordingSleeper {
        RecordingSleeper::default()
    }

    pub fn requested_ms(&self) -> Vec<u64> {
        self.requested_ms.borrow().clone()
    }
}

impl Sleeper for RecordingSleeper {
    async fn sleep(&self, milliseconds: u64) {
        self.requested_ms.borrow_mut().push(milliseconds);
    }
}

/// What a [`ScriptedGateway`] does on one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayStep {
    /// Approve with provider reference `ref_<idempotency key>`.
    Approve,
    Decline(String),
    Transient,
    /// Never answer, so the caller's timeout fires.
    Hang,
}

/// One call the gateway received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayCall {
    /// `charge` or `refund`.
    pub operation: &'static str,
    pub idempotency_key: String,
    pub amount: i64,
    pub currency: String,
}

struct GatewayScript {
    steps: VecDeque<GatewayStep>,
    when_script_ends: GatewayStep,
    calls: Vec<GatewayCall>,
}

/// A payment provider answering calls from a script, then with a fixed step.
#[derive(Clone)]
pub struct ScriptedGateway {
    script: Rc<RefCell<GatewayScript>>,
}

impl ScriptedGateway {
    pub fn new(steps: impl IntoIterator<Item = GatewayStep>, when_script_ends: GatewayStep) -> ScriptedGateway {
        let script = GatewayScript { steps: steps.into_iter().collect(), when_script_ends, calls: Vec::new() };
        ScriptedGateway { script: Rc::new(RefCell::new(script)) }
    }

    /// Approves every call.
    pub fn approving() -> ScriptedGateway {
        ScriptedGateway::new([], GatewayStep::Approve)
    }

    pub fn calls(&self) -> Vec<GatewayCall> {
        self.script.borrow().calls.clone()
    }

    async fn answer(&self, operation: &'static str, idempotency_key: &str, amount: i64, currency: &str) -> GatewayOutcome {
        let step = {
            let mut script = self.script.borrow_mut();
            let step = script.steps.pop_front().unwrap_or_else(|| script.when_script_ends.clone());
            let call = GatewayCall {
                operation,
                idempotency_key: idempotency_key.to_string(),
                amount,
                currency: currency.to_string(),
            };
            script.calls.push(call);
            step
        };
        match step {
            GatewayStep::Approve => GatewayOutcome::Approved { provider_ref: format!("ref_{idempotency_key}") },
            GatewayStep::Decline(reason) => GatewayOutcome::Declined { reason },
            GatewayStep::Transient => GatewayOutcome::Transient { reason: "provider answered 503".to_string() },
            GatewayStep::Hang => pending().await,
        }
    }
}

impl Gateway for ScriptedGateway {
    async fn charge(&self, idempotency_key: &str, amount: i64, currency: &str, _token: &str) -> GatewayOutcome {
        self.answer("charge", idempotency_key, amount, currency).await
    }

    async fn refund(&self, idempotency_key: &str, _provider_ref: &str, amount: i64, currency: &str) -> GatewayOutcome {
        self.answer("refund", idempotency_key, amount, currency).await
    }
}

/// The payment service's gateway talking to the sandbox in-process, the way
/// the payment component talks to it over HTTP. A planned delay never ends
/// here: the caller's timeout always wins, as it does against a slow provider.
#[derive(Clone)]
pub struct SandboxGateway<K, C, R> {
    pub sandbox: Sandbox<K, C, R>,
}

impl<K: Kv, C: Clock, R: Random> ProviderTransport for SandboxGateway<K, C, R> {
    async fn post(&self, path: &str, idempotency_key: &str, body: serde_json::Value) -> GatewayOutcome {
        let (delay_ms, outcome) = self.sandbox.call(path, idempotency_key, body).await;
        if delay_ms > 0 {
            pending::<()>().await;
        }
        outcome
    }
}

/// Every order, oldest first, read through the global list: the full scan
/// that tests compare the indexes and counters with.
pub async fn scan_orders(kv: &impl Kv) -> Vec<crate::orders::OrderRecord> {
    use crate::kv::{get_json, read_counter};
    use crate::orders::{SEQUENCE_KEY, order_key, position_key};
    let len = read_counter(kv, SEQUENCE_KEY).await.expect("store answers");
    let mut records = Vec::new();
    for position in 1..=len as u64 {
        let id: Option<String> = get_json(kv, &position_key(position)).await.expect("store answers");
        if let Some(id) = id
            && let Some(record) = get_json(kv, &order_key(&id)).await.expect("store answers")
        {
            records.push(record);
        }
    }
    records
}

/// Stores an order awaiting payment of `amount` `currency` (and nothing
/// else: no list entry, no index), for payment tests that need an order to
/// charge against.
pub async fn seed_order(kv: &impl Kv, order_id: &str, amount: i64, currency: &str) {
    use crate::orders::{Order, OrderRecord, OrderStatus, StockStep, order_key};
    use crate::payments::PaymentStatus;
    let order = Order {
        id: order_id.to_string(),
        order_number: format!("ORD-{order_id}"),
        user_id: 1,
        items: Vec::new(),
        total_amount: amount,
        currency: currency.to_string(),
        status: OrderStatus::Confirmed,
        payment_status: PaymentStatus::Pending,
        payment_id: None,
        reservation_id: None,
        refund_required: false,
        shipping_address: None,
        billing_address: None,
        notes: None,
        created_at: String::new(),
        updated_at: String::new(),
        confirmed_at: None,
        paid_at: None,
        shipped_at: None,
        delivered_at: None,
        cancelled_at: None,
    };
    let record = OrderRecord {
        order,
        has_payment_token: false,
        position: 0,
        user_position: 0,
        stock: StockStep::Held,
        undelivered: Vec::new(),
        cancel_reason: None,
        created_ms: 0,
        updated_ms: 0,
        index_pending: None,
    };
    crate::kv::set_json(kv, &order_key(order_id), &record).await.expect("store answers");
}
