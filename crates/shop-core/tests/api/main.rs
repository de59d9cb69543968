//! Native tests of the services through their HTTP and event entry points,
//! on the in-memory ports. One test binary, one module per concern.

mod auth;
mod idempotency;
mod inventory;
mod ops;
mod orders_create;
mod orders_lifecycle;
mod orders_listing;
mod payments;
mod sandbox;

use serde_json::Value;
use shop_core::auth::CustomerAuth;
use shop_core::http::{ApiRequest, ApiResponse, Method};
use shop_core::inventory::{InventoryConfig, InventoryService};
use shop_core::orders::{OrderService, OrdersConfig};
use shop_core::testing::{FixedClock, MemoryKv, RecordingPublisher, SeededRandom};

pub const ADMIN_TOKEN: &str = "admin-secret";
/// 2024-01-02T03:04:05Z.
pub const START_MS: u64 = 1_704_164_645_000;

pub type Inventory = InventoryService<MemoryKv, FixedClock, SeededRandom>;
pub type Orders = OrderService<MemoryKv, Inventory, RecordingPublisher, FixedClock, SeededRandom>;

pub fn run<T>(future: impl Future<Output = T>) -> T {
    futures::executor::block_on(future)
}

/// A request with an optional JSON body.
pub fn request(method: Method, path: &str, body: Option<Value>) -> ApiRequest {
    let request = ApiRequest::new(method, path);
    match body {
        Some(body) => request.with_body(body.to_string()),
        None => request,
    }
}

pub fn as_admin(request: ApiRequest) -> ApiRequest {
    request.with_header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
}

/// The error code of an error response.
pub fn error_code(response: &ApiResponse) -> String {
    response.json_body()["error"]["code"].as_str().unwrap_or("<no error code>").to_string()
}

pub fn error_field(response: &ApiResponse) -> Option<String> {
    response.json_body()["error"]["field"].as_str().map(str::to_string)
}

/// Asserts an error answer's status, code and field.
#[track_caller]
pub fn assert_error(response: &ApiResponse, status: u16, code: &str, field: Option<&str>) {
    let actual = (response.status, error_code(response), error_field(response));
    assert_eq!(actual, (status, code.to_string(), field.map(str::to_string)), "{}", response.json_body());
}

/// The order service's configuration in tests: reports in EUR, and customer
/// authentication is off (the development switch), so requests name their
/// user; `auth.rs` tests tokens.
pub fn orders_config() -> OrdersConfig {
    OrdersConfig { reporting_currency: "EUR".to_string(), customer_auth: CustomerAuth::Off, ..OrdersConfig::new(ADMIN_TOKEN) }
}

/// Orders and inventory services on one store, as deployed.
pub struct Shop {
    pub kv: MemoryKv,
    pub clock: FixedClock,
    pub publisher: RecordingPublisher,
    pub inventory: Inventory,
    pub orders: Orders,
}

impl Shop {
    pub fn empty() -> Shop {
        Shop::on(MemoryKv::new(), orders_config())
    }

    pub fn on(kv: MemoryKv, config: OrdersConfig) -> Shop {
        let clock = FixedClock::at(START_MS);
        let publisher = RecordingPublisher::new();
        let inventory =
            InventoryService::new(kv.clone(), clock.clone(), SeededRandom::new(1), InventoryConfig::new(ADMIN_TOKEN));
        let orders =
            OrderService::new(kv.clone(), inventory.clone(), publisher.clone(), clock.clone(), SeededRandom::new(2), config);
        Shop { kv, clock, publisher, inventory, orders }
    }

    pub async fn put_product(&self, product_id: &str, price: i64, currency: &str, stock: i64) -> ApiResponse {
        let body = serde_json::json!({"name": format!("Product {product_id}"), "price": price, "currency": currency, "stock": stock});
        let path = format!("/inventory/products/{product_id}");
        self.inventory.handle(as_admin(request(Method::Put, &path, Some(body)))).await
    }

    /// `(available, reserved)` of a product.
    pub async fn stock(&self, product_id: &str) -> (i64, i64) {
        let product = self.product(product_id).await;
        (product["available"].as_i64().unwrap(), product["reserved"].as_i64().unwrap())
    }

    pub async fn product(&self, product_id: &str) -> Value {
        let path = format!("/inventory/products/{product_id}");
        self.inventory.handle(request(Method::Get, &path, None)).await.json_body()
    }

    /// `POST /orders` with `body`.
    pub async fn place(&self, body: Value) -> ApiResponse {
        self.orders.handle(request(Method::Post, "/orders", Some(body))).await
    }

    /// Places an order that must succeed, returning it.
    pub async fn place_ok(&self, body: Value) -> Value {
        let response = self.place(body).await;
        assert_eq!(response.status, 201, "{}", response.json_body());
        response.json_body()
    }

    pub async fn get_order(&self, order_id: &str) -> Value {
        self.orders.handle(request(Method::Get, &format!("/orders/{order_id}"), None)).await.json_body()
    }

    /// `PUT /orders/{id}/status` as admin.
    pub async fn set_status(&self, order_id: &str, status: &str) -> ApiResponse {
        let path = format!("/orders/{order_id}/status");
        let body = serde_json::json!({"status": status});
        self.orders.handle(as_admin(request(Method::Put, &path, Some(body)))).await
    }

    pub async fn list(&self, query: &str) -> ApiResponse {
        self.orders.handle(request(Method::Get, &format!("/orders?{query}"), None)).await
    }
}
