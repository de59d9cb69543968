//! The shop for one test: its own `redis-server`, the shop's manifest
//! ([`shop_manifest`]) on the release `wharf`, state in a temp dir of its own; plus short helpers
//! for the API (admin token, products, orders) and a Redis subscriber that
//! records the app's events.

#![allow(dead_code)]

pub use shop_tests::tempfile;
pub use shop_tests::*;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The admin token every test host gets (`SPIN_VARIABLE_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The HS256 secret every test host verifies customer tokens with
/// (`SPIN_VARIABLE_JWT_VERIFICATION_KEY`).
pub const JWT_SECRET: &str = "test-jwt-secret-of-thirty-two-bytes-or-more";

/// A customer token for `user_id` (HS256, audience `shop`, an hour to live).
pub fn customer_token(user_id: u64) -> String {
    token_with(json!({"sub": user_id.to_string(), "exp": unix_now() + 3600, "aud": "shop"}))
}

/// A token with these claims, signed with the test secret.
pub fn token_with(claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}
/// Upper bound for anything the saga does asynchronously.
pub const WAIT: Duration = Duration::from_secs(30);

/// The event channels of the app.
pub const CHANNELS: [&str; 7] = [
    "orders.created",
    "orders.payment_requested",
    "orders.cancelled",
    "orders.status_changed",
    "payments.completed",
    "payments.failed",
    "payments.refunded",
];
/// The channels the app's own Redis triggers subscribe to (spin.toml).
pub const TRIGGER_CHANNELS: [&str; 5] =
    ["orders.payment_requested", "orders.cancelled", "payments.completed", "payments.failed", "payments.refunded"];

/// The shop's manifest: the repo's `spin.toml` (the WASIp3 build), or the
/// one named by `SHOP_MANIFEST` relative to the repo (`spin.p2.toml`, the
/// WASIp2 build), so the same suite runs against either build.
pub fn shop_manifest() -> PathBuf {
    workspace_root().join(std::env::var("SHOP_MANIFEST").unwrap_or_else(|_| "spin.toml".to_string()))
}

/// The file a component of the shop's manifest is built to (its `source`).
pub fn shop_component_file(id: &str) -> PathBuf {
    let manifest: toml::Table = std::fs::read_to_string(shop_manifest()).unwrap().parse().unwrap();
    let source = manifest["component"][id]["source"].as_str().unwrap_or_else(|| panic!("component `{id}` has no file source"));
    workspace_root().join(source)
}

/// How the host is started.
#[derive(Clone, Default)]
pub struct Options {
    /// Key-value store `default` on the test's Redis (runtime config file)
    /// instead of the embedded store in the state dir.
    pub redis_kv: bool,
    /// A fresh instance per request: `--max-instance-reuse-count 1 --max-instance-concurrent-reuse-count 1`.
    pub strict_instances: bool,
    /// More `SPIN_VARIABLE_*` (or other) environment variables.
    pub env: Vec<(String, String)>,
    /// Another manifest than the shop's ([`shop_manifest`]).
    pub manifest: Option<PathBuf>,
    /// Run the shop from this registry reference, started as SpinKube's
    /// operator starts an executor: `-f <reference>`, the runtime config and
    /// `SPIN_VARIABLE_*`, no state dir; blobs cached in `cache_dir`.
    pub registry: Option<(String, PathBuf)>,
    /// Run only these components (`--component-id`, as the operator passes a
    /// SpinApp's `components`); all when empty.
    pub component_ids: Vec<String>,
    /// More arguments of `wharf up`.
    pub args: Vec<String>,
}

impl Options {
    pub fn redis_kv() -> Options {
        Options { redis_kv: true, ..Options::default() }
    }

    /// The shop's records on the test's Redis through outbound Redis
    /// (`key_value = "redis"`), not through a key-value store of the host.
    pub fn key_value_redis() -> Options {
        Options::default().env("SPIN_VARIABLE_KEY_VALUE", "redis")
    }

    pub fn env(mut self, key: &str, value: &str) -> Options {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Options {
        self.args.push(arg.to_string());
        self
    }
}

/// One running host of the shop.
pub struct App {
    pub host: Host,
    manifest: PathBuf,
    config: HostConfig,
    redis_url: String,
    /// False once [`App::kill`] killed the host.
    alive: bool,
    /// State dir and runtime config; kept for restarts on the same state.
    _dir: tempfile::TempDir,
}

impl App {
    /// A redis-server and the shop on the embedded store.
    pub fn start() -> (Redis, App) {
        App::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> (Redis, App) {
        let redis = Redis::start();
        let app = App::on(&redis, options);
        (redis, app)
    }

    /// The shop on an existing Redis (a second replica, for instance).
    pub fn on(redis: &Redis, options: Options) -> App {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut config = HostConfig::default()
            .env("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SPIN_VARIABLE_JWT_VERIFICATION_KEY", JWT_SECRET)
            .envs(redis.shop_variables());
        match &options.registry {
            None => config = config.arg("--state-dir").arg(state.display().to_string()),
            Some((_, cache_dir)) => config = config.env("WHARF_CACHE_DIR", cache_dir.display().to_string()),
        }
        if options.redis_kv {
            let runtime_config = dir.path().join("runtime-config.toml");
            let text = format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n", redis.url());
            std::fs::write(&runtime_config, text).unwrap();
            config = config.arg("--runtime-config-file").arg(runtime_config.display().to_string());
        }
        if options.strict_instances {
            config = config.arg("--max-instance-reuse-count").arg("1").arg("--max-instance-concurrent-reuse-count").arg("1");
        }
        for (key, value) in &options.env {
            config = config.env(key, value.clone());
        }
        for id in &options.component_ids {
            config = config.arg("--component-id").arg(id.clone());
        }
        for arg in &options.args {
            config = config.arg(arg.clone());
        }
        let manifest = match &options.registry {
            Some((reference, _)) => PathBuf::from(reference),
            None => options.manifest.clone().unwrap_or_else(shop_manifest),
        };
        // Other manifests (composition tests) and component subsets may
        // have no Redis trigger, or only some.
        let before = if options.manifest.is_none() && options.component_ids.is_empty() { trigger_subscribers(&redis.url()) } else { None };
        let host = Host::start(&manifest, config.clone());
        let app = App { host, manifest, config, redis_url: redis.url(), alive: true, _dir: dir };
        // Events published before the trigger subscribed would be lost.
        if let Some(before) = before {
            app.wait_trigger_subscribers(before.iter().map(|n| n + 1).collect());
        }
        app
    }

    /// Kills the host (SIGKILL, a crash); when Redis is up, waits until its
    /// Redis trigger's subscription is gone.
    pub fn kill(&mut self) {
        if !self.alive {
            return;
        }
        let before = trigger_subscribers(&self.redis_url);
        self.host.kill();
        self.alive = false;
        if let Some(before) = before {
            self.wait_trigger_subscribers(before.iter().map(|n| n - 1).collect());
        }
    }

    /// Kills the host if it runs and starts it again on the same state dir
    /// and configuration (on a new port); when Redis is up, waits for the new
    /// host's Redis trigger to subscribe.
    pub fn restart(&mut self) {
        self.kill();
        let before = trigger_subscribers(&self.redis_url);
        self.host = Host::start(&self.manifest, self.config.clone());
        self.alive = true;
        if let Some(before) = before {
            self.wait_trigger_subscribers(before.iter().map(|n| n + 1).collect());
        }
    }

    fn wait_trigger_subscribers(&self, expected: Vec<i64>) {
        eventually(WAIT, "the host's redis trigger to (un)subscribe", || {
            (trigger_subscribers(&self.redis_url).as_ref() == Some(&expected)).then_some(())
        });
    }

    /// How many lines of the host's log contain `text`.
    pub fn log_count(&self, text: &str) -> usize {
        self.host.logs().lines().filter(|line| line.contains(text)).count()
    }
}

/// The shop's API at one address: a host of the test's own ([`App`]) or
/// a pod of tests/tests/containers.rs ([`ShopAt`]).
pub trait Shop {
    /// `path` on this shop.
    fn url(&self, path: &str) -> String;


    /// A request with `Authorization: Bearer <admin token>`.
    fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        let text = body.map(Value::to_string);
        self.send(method, path, &[("authorization", &auth), ("content-type", "application/json")], text.as_deref())
    }

    /// Requests as the customer `user_id` (its bearer token).
    fn customer(&self, user_id: u64) -> Customer<'_, Self> {
        Customer { app: self, authorization: format!("Bearer {}", customer_token(user_id)) }
    }

    /// Creates or replaces a product (admin), asserting 200 or 201.
    fn put_product(&self, id: &str, price: i64, currency: &str, stock: i64) -> Value {
        let body = json!({"name": format!("Product {id}"), "price": price, "currency": currency, "stock": stock});
        let reply = self.admin("PUT", &format!("/inventory/products/{id}"), Some(&body));
        assert!(matches!(reply.status, 200 | 201), "PUT product {id}: {reply:?}");
        reply.json()
    }

    fn product(&self, id: &str) -> Value {
        let reply = self.get(&format!("/inventory/products/{id}"));
        assert_eq!(reply.status, 200, "GET product {id}: {reply:?}");
        reply.json()
    }

    /// `(available, reserved)` of a product.
    fn stock(&self, id: &str) -> (i64, i64) {
        let product = self.product(id);
        (product["available"].as_i64().unwrap(), product["reserved"].as_i64().unwrap())
    }

    /// Waits until a product's stock is `(available, reserved)`: an order
    /// turns cancelled (or paid) before its reservation is released (or
    /// committed), so a stock read right after the status may see it held.
    fn wait_stock(&self, id: &str, expected: (i64, i64)) {
        eventually(WAIT, &format!("the stock of {id} to be {expected:?}"), || (self.stock(id) == expected).then_some(()));
    }

    /// A stock reservation (an admin route), asserting 200.
    fn reservation(&self, id: &str) -> Value {
        let reply = self.admin("GET", &format!("/inventory/reservations/{id}"), None);
        assert_eq!(reply.status, 200, "GET reservation {id}: {reply:?}");
        reply.json()
    }

    /// Places an order as the customer its `user_id` names (1 when it names
    /// none), asserting 201; returns the order.
    fn place(&self, body: &Value) -> Value {
        let user_id = body["user_id"].as_u64().unwrap_or(1);
        let reply = self.customer(user_id).post("/orders", body);
        assert_eq!(reply.status, 201, "POST /orders {body}: {reply:?}");
        reply.json()
    }

    /// One unit-price order of `quantity` units of `product` for user 1.
    fn place_simple(&self, product: &str, quantity: i64, token: Option<&str>) -> Value {
        let mut body = json!({"user_id": 1, "product_id": product, "quantity": quantity});
        if let Some(token) = token {
            body["payment_token"] = json!(token);
        }
        self.place(&body)
    }

    /// An order, read with the admin token.
    fn order(&self, id: &str) -> Value {
        let reply = self.admin("GET", &format!("/orders/{id}"), None);
        assert_eq!(reply.status, 200, "GET order {id}: {reply:?}");
        reply.json()
    }

    /// Polls the order until `done` holds for it.
    fn wait_order(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        eventually(WAIT, &format!("order {id} {what}"), || Some(self.order(id)).filter(|order| done(order)))
    }

    fn wait_status(&self, id: &str, status: &str) -> Value {
        self.wait_order(id, &format!("to be {status}"), |order| order["status"] == status)
    }

    fn summary(&self) -> Value {
        let reply = self.admin("GET", "/orders/summary", None);
        assert_eq!(reply.status, 200, "summary: {reply:?}");
        reply.json()
    }

    fn sandbox_stats(&self) -> Value {
        let reply = self.get("/sandbox/stats");
        assert_eq!(reply.status, 200, "sandbox stats: {reply:?}");
        reply.json()
    }

    /// A payment, read with the admin token.
    fn payment(&self, id: &str) -> Value {
        let reply = self.admin("GET", &format!("/payments/{id}"), None);
        assert_eq!(reply.status, 200, "GET payment {id}: {reply:?}");
        reply.json()
    }

    /// `POST /orders/reconcile` (admin), asserting 200; returns the report.
    fn reconcile(&self) -> Value {
        let reply = self.admin("POST", "/orders/reconcile", None);
        assert_eq!(reply.status, 200, "reconcile: {reply:?}");
        reply.json()
    }
}

impl Shop for App {
    fn url(&self, path: &str) -> String {
        self.host.url(path)
    }
}

/// The shop at a base URL (`http://<pod ip>:80`).
pub struct ShopAt(pub String);

impl Shop for ShopAt {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

/// HTTP requests to the app, as whoever sends them.
pub trait Requests {
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply;

    fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], None)
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_with(path, &[], body)
    }

    fn post_with(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send("POST", path, &all, Some(&body.to_string()))
    }

    fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, &[], None)
    }
}

/// Without credentials (unless the headers bring some).
impl<S: Shop + ?Sized> Requests for S {
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
        request(method, &self.url(path), headers, body.map(str::as_bytes))
    }
}

/// Requests of one customer: every one carries its bearer token.
pub struct Customer<'a, S: ?Sized> {
    app: &'a S,
    authorization: String,
}

impl<S: Shop + ?Sized> Requests for Customer<'_, S> {
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
        let mut all = vec![("authorization", self.authorization.as_str())];
        all.extend_from_slice(headers);
        self.app.send(method, path, &all, body)
    }
}

/// Asserts an error answer exactly: status and the whole
/// `{"error": {"code", "message", "field"?}}` body.
#[track_caller]
pub fn assert_error(reply: &Reply, status: u16, code: &str, message: &str, field: Option<&str>) {
    let mut error = json!({"code": code, "message": message});
    if let Some(field) = field {
        error["field"] = json!(field);
    }
    assert_eq!((reply.status, reply.json()), (status, json!({ "error": error })), "{reply:?}");
}

/// Asserts a 400 `validation_failed` naming `field`.
#[track_caller]
pub fn assert_invalid(reply: &Reply, field: &str, message: &str) {
    assert_error(reply, 400, "validation_failed", message, Some(field));
}

/// How many clients are subscribed to `channel` on the test's Redis.
pub fn subscribers(redis: &Redis, channel: &str) -> i64 {
    let (_, count): (String, i64) = redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query(&mut redis.client()).unwrap();
    count
}

/// Subscribers of each of [`TRIGGER_CHANNELS`]; None when Redis is down.
fn trigger_subscribers(redis_url: &str) -> Option<Vec<i64>> {
    let mut connection = redis::Client::open(redis_url).ok()?.get_connection().ok()?;
    TRIGGER_CHANNELS
        .iter()
        .map(|channel| {
            let (_, count): (String, i64) = redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query(&mut connection).ok()?;
            Some(count)
        })
        .collect()
}

/// Waits until `hosts` hosts' Redis triggers are subscribed on every trigger
/// channel (besides `others` subscribers of the test's own).
pub fn wait_triggers(redis: &Redis, hosts: i64, others: i64) {
    eventually(WAIT, "the redis triggers to subscribe", || {
        TRIGGER_CHANNELS.iter().all(|channel| subscribers(redis, channel) == hosts + others).then_some(())
    });
}

/// Publishes on the test's Redis; returns the number of receivers.
pub fn publish(redis: &Redis, channel: &str, payload: &[u8]) -> i64 {
    redis::cmd("PUBLISH").arg(channel).arg(payload).query(&mut redis.client()).unwrap()
}

const BARRIER: &str = "test.barrier";

/// Every message on the app's channels, recorded by a subscriber thread.
pub struct Events {
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    redis_url: String,
    barriers: std::sync::atomic::AtomicU64,
}

impl Events {
    /// Subscribes to [`CHANNELS`] (and a barrier channel of the test's own)
    /// and returns once the subscription is in place.
    pub fn subscribe(redis: &Redis) -> Events {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let url = redis.url();
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut connection = redis::Client::open(url).unwrap().get_connection().unwrap();
            let mut pubsub = connection.as_pubsub();
            for channel in CHANNELS.iter().chain([&BARRIER]) {
                pubsub.subscribe(*channel).unwrap();
            }
            ready_tx.send(()).unwrap();
            // Ends when Redis goes away or the test ends (the process exits).
            while let Ok(message) = pubsub.get_message() {
                let payload: Vec<u8> = message.get_payload_bytes().to_vec();
                let value = serde_json::from_slice(&payload)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&payload).into_owned()));
                sink.lock().unwrap().push((message.get_channel_name().to_string(), value));
            }
        });
        ready_rx.recv().unwrap();
        Events { seen, redis_url: redis.url(), barriers: Default::default() }
    }

    /// Everything seen so far (barrier messages left out).
    pub fn all(&self) -> Vec<(String, Value)> {
        self.seen.lock().unwrap().iter().filter(|(channel, _)| channel != BARRIER).cloned().collect()
    }

    /// Events about one order, as `(channel, event)`.
    pub fn of_order(&self, order_id: &str) -> Vec<(String, Value)> {
        self.all().into_iter().filter(|(_, event)| event["data"]["order_id"] == order_id).collect()
    }

    /// Channels of the events about one order, sorted.
    pub fn channels_of(&self, order_id: &str) -> Vec<String> {
        let mut channels: Vec<String> = self.of_order(order_id).into_iter().map(|(channel, _)| channel).collect();
        channels.sort();
        channels
    }

    /// The events of one order on one channel.
    pub fn on(&self, channel: &str, order_id: &str) -> Vec<Value> {
        self.of_order(order_id).into_iter().filter(|(c, _)| c == channel).map(|(_, event)| event).collect()
    }

    /// Waits until everything published before this call has reached the
    /// subscriber: Redis delivers one connection's messages in publish order.
    pub fn barrier(&self) {
        let n = self.barriers.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let token = format!("barrier-{n}");
        let mut connection = redis::Client::open(self.redis_url.as_str()).unwrap().get_connection().unwrap();
        let _: i64 = redis::cmd("PUBLISH").arg(BARRIER).arg(&token).query(&mut connection).unwrap();
        eventually(WAIT, "the barrier message", || {
            self.seen.lock().unwrap().iter().any(|(channel, value)| channel == BARRIER && *value == json!(token)).then_some(())
        });
    }

    /// Waits until an event matching `check` was seen.
    pub fn wait_for(&self, what: &str, check: impl Fn(&str, &Value) -> bool) -> Value {
        eventually(WAIT, what, || self.all().into_iter().find(|(channel, event)| check(channel, event)).map(|(_, e)| e))
    }
}

/// Seconds since the epoch of an RFC 3339 UTC time as the app writes it
/// (`2026-01-02T03:04:05Z`).
pub fn unix_seconds(text: &str) -> i64 {
    let number = |range: std::ops::Range<usize>| -> i64 { text[range].parse().unwrap_or_else(|_| panic!("not a time: {text}")) };
    assert!(text.len() == 20 && text.ends_with('Z'), "not a time: {text}");
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    // Days from civil (H. Hinnant).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    days * 86_400 + number(11..13) * 3600 + number(14..16) * 60 + number(17..19)
}

