//! Fills a store with orders for bench/orders-at-scale.sh, natively: the
//! same shop-core services the components run, over the same key-value
//! backends the host uses, so the data is exactly what the app would have
//! written, at native speed instead of HTTP speed.
//!
//!   seed-orders sqlite <db file> <orders>
//!   seed-orders redis <url> <orders>
//!
//! Orders go to 100 users, one product; every third order is moved to
//! `paid`. Prints the id of a user with orders.

use shop_core::http::{ApiRequest, Method};
use shop_core::inventory::{InventoryConfig, InventoryService};
use shop_core::kv::{Kv, StoreError};
use shop_core::orders::{OrderService, OrdersConfig};
use shop_core::ports::{Clock, PublishError, Publisher, Random};
use std::cell::Cell;
use std::sync::Arc;
use wharf::key_value::Backend;

const TOKEN: &str = "seed";

/// shop-core's `Kv` port over a host backend.
struct HostKv(Arc<dyn Backend>);

fn error(e: wharf::key_value::BackendError) -> StoreError {
    StoreError::new(e.0)
}

impl Kv for HostKv {
    type CasToken = (String, Option<Vec<u8>>);

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key).await.map_err(error)
    }
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.0.set(key, value).await.map_err(error)
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).await.map_err(error)
    }
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.0.increment(key, delta).await.map_err(error)
    }
    async fn cas_read(&self, key: &str) -> Result<(Option<Vec<u8>>, Self::CasToken), StoreError> {
        let current = self.get(key).await?;
        Ok((current.clone(), (key.to_string(), current)))
    }
    async fn cas_swap(&self, (key, expected): Self::CasToken, value: &[u8]) -> Result<bool, StoreError> {
        self.0.compare_and_swap(&key, expected.as_deref(), value).await.map_err(error)
    }
}

/// Events go nowhere: nothing subscribes while seeding. They count as
/// delivered (one receiver) so that seeded orders keep no outbox.
struct Discard;
impl Publisher for Discard {
    async fn publish(&self, _: &str, _: &[u8]) -> Result<u64, PublishError> {
        Ok(1)
    }
}

/// Time moves a millisecond per order, so orders have distinct times.
struct Ticking(Cell<u64>);
impl Clock for Ticking {
    fn now_ms(&self) -> u64 {
        self.0.set(self.0.get() + 1);
        self.0.get()
    }
}

struct Counter(Cell<u64>);
impl Random for Counter {
    fn next_u64(&self) -> u64 {
        self.0.set(self.0.get().wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
        self.0.get()
    }
}

fn request(method: Method, path: &str, body: serde_json::Value) -> ApiRequest {
    ApiRequest::new(method, path).with_body(body.to_string()).with_header("authorization", &format!("Bearer {TOKEN}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, kind, target, count] = args.as_slice() else {
        anyhow::bail!("usage: seed-orders sqlite|redis <db file|url> <orders>");
    };
    let count: u64 = count.parse()?;
    let backend: Arc<dyn Backend> = match kind.as_str() {
        "sqlite" => Arc::new(wharf::key_value::sqlite::SqliteBackend::open(std::path::Path::new(target))?),
        "redis" => Arc::new(wharf::key_value::redis::RedisBackend::new(target)?),
        other => anyhow::bail!("unknown store kind {other}"),
    };
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64 - count;
    let clock = || Ticking(Cell::new(start));
    let inventory = InventoryService::new(HostKv(backend.clone()), clock(), Counter(Cell::new(1)), InventoryConfig::new(TOKEN));
    let orders = OrderService::new(HostKv(backend.clone()), inventory, Discard, clock(), Counter(Cell::new(2)), OrdersConfig::new(TOKEN));
    let seed_inventory = InventoryService::new(HostKv(backend), clock(), Counter(Cell::new(3)), InventoryConfig::new(TOKEN));
    let put = seed_inventory
        .handle(request(Method::Put, "/inventory/products/scale-widget", serde_json::json!({"name": "Widget", "price": 100, "currency": "USD", "stock": count + 1})))
        .await;
    anyhow::ensure!(put.status < 300, "product: {}", String::from_utf8_lossy(&put.body));
    for n in 0..count {
        let body = serde_json::json!({"user_id": n % 100 + 1, "product_id": "scale-widget", "quantity": 1});
        let created = orders.handle(request(Method::Post, "/orders", body)).await;
        anyhow::ensure!(created.status == 201, "order {n}: {}", String::from_utf8_lossy(&created.body));
        if n % 3 == 0 {
            let id = serde_json::from_slice::<serde_json::Value>(&created.body)?["id"].as_str().unwrap_or_default().to_string();
            let paid = orders.handle(request(Method::Put, &format!("/orders/{id}/status"), serde_json::json!({"status": "paid"}))).await;
            anyhow::ensure!(paid.status == 200, "paying {id}: {}", String::from_utf8_lossy(&paid.body));
        }
    }
    println!("1");
    Ok(())
}
