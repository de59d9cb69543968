//! The `{ component = "<id>" }` dependency form with the app's real
//! components: `ord` (order.wasm) gets `shop:inventory/inventory` from the
//! grant-less component `inv` (inventory.wasm), composed at load time, and
//! reserves stock through it in `ord`'s own key-value store, which the
//! `inventory` HTTP component shares.

mod common;
use common::*;

/// The manifest, with `dependency_key` naming the import `inv` provides.
fn manifest(redis: &Redis, dependency_key: &str, dependency_component: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let inventory = wasm("inventory");
    let order = wasm("order");
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "composed-shop"

[variables]
admin_token = {{ required = true, secret = true }}
redis_host = {{ required = true }}
jwt_verification_key = {{ default = "", secret = true }}

[[trigger.http]]
route = "/orders/..."
component = "ord"

[[trigger.http]]
route = "/inventory/..."
component = "inventory"

# Only a source of code: no trigger, no grants.
[component.inv]
source = {inventory:?}

[component.ord]
source = {order:?}
key_value_stores = ["default"]
allowed_outbound_hosts = ["redis://127.0.0.1:{port}"]
dependencies_inherit_configuration = true
[component.ord.dependencies]
"{dependency_key}" = {{ component = "{dependency_component}" }}
[component.ord.variables]
admin_token = "{{{{ admin_token }}}}"
redis_url = "redis://{{{{ redis_host }}}}"
jwt_verification_key = "{{{{ jwt_verification_key }}}}"

[component.inventory]
source = {inventory:?}
key_value_stores = ["default"]
[component.inventory.variables]
admin_token = "{{{{ admin_token }}}}"
"#,
        port = redis.port
    );
    manifest_dir(&text)
}

#[test]
fn orders_reserve_stock_through_a_dependency_given_by_component_id() {
    let redis = Redis::start();
    let (_dir, path) = manifest(&redis, "shop:inventory/inventory", "inv");
    let app = App::on(&redis, Options { manifest: Some(path), ..Options::default() });
    app.put_product("p1", 700, "USD", 10);

    let order = app.place(&json!({"user_id": 1, "items": [{"product_id": "p1", "quantity": 3}]}));
    // Priced through get-product, stock taken through reserve: both imports of `ord`.
    assert_eq!(order["items"][0], json!({"product_id": "p1", "product_name": "Product p1", "unit_price": 700, "quantity": 3, "subtotal": 2100}));
    assert_eq!(app.stock("p1"), (7, 3), "the composed inventory wrote ord's store, which inventory reads");
    let reservation = app.reservation(order["reservation_id"].as_str().unwrap());
    assert_eq!((&reservation["order_id"], &reservation["status"]), (&order["id"], &json!("held")));
    let short = app.customer(1).post("/orders", &json!({"user_id": 1, "product_id": "p1", "quantity": 8}));
    assert_error(&short, 409, "insufficient_stock", "product p1: 8 requested, 7 available", Some("product_id"));
    let unknown = app.customer(1).post("/orders", &json!({"user_id": 1, "product_id": "p9", "quantity": 1}));
    assert_error(&unknown, 422, "unknown_product", "product p9 does not exist", Some("product_id"));

    // Release goes through the import too.
    assert_eq!(app.customer(1).delete(&format!("/orders/{}", order["id"].as_str().unwrap())).status, 200);
    assert_eq!(app.stock("p1"), (10, 0));
    assert_eq!(reservation_status(&app, &order), "released");
    // `inv` has no route of its own.
    assert_eq!(app.get("/inv").status, 404);
}

fn reservation_status(app: &App, order: &Value) -> String {
    let reservation = app.reservation(order["reservation_id"].as_str().unwrap());
    reservation["status"].as_str().unwrap().to_string()
}

/// Starts the host on a manifest that must not load; returns its log.
fn refused(path: &std::path::Path, redis: &Redis) -> String {
    let config = HostConfig::default()
        .env("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN_TOKEN)
        .envs(redis.shop_variables());
    let mut host = Host::spawn(path, config);
    assert_eq!(host.wait_exit(std::time::Duration::from_secs(60)), Some(1), "{}", host.logs());
    host.logs()
}

#[test]
fn a_dependency_key_that_matches_no_import_fails_the_start_naming_it() {
    let redis = Redis::start();
    let (_dir, path) = manifest(&redis, "shop:payments/gateway", "inv");
    let logs = refused(&path, &redis);
    assert!(logs.contains("component.ord"), "{logs}");
    assert!(logs.contains(r#"dependencies."shop:payments/gateway": the component imports nothing that matches"#), "{logs}");
    assert!(logs.contains("shop:inventory/inventory@0.1.0"), "the message lists what it does import: {logs}");
}

#[test]
fn a_dependency_on_a_missing_component_fails_the_start_naming_it() {
    let redis = Redis::start();
    let (_dir, path) = manifest(&redis, "shop:inventory/inventory", "invntory");
    let logs = refused(&path, &redis);
    assert!(logs.contains(r#"dependencies."shop:inventory/inventory".component"#), "{logs}");
    assert!(logs.contains("no component named `invntory`"), "{logs}");
}
