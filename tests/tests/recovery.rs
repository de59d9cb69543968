//! Nothing lost: Redis stopped in the middle of the saga, or the host killed
//! with work outstanding, then brought back; `POST /orders/reconcile` (with
//! `reconcile_after_seconds = 0`) drives every order to a final state, nobody
//! is charged twice and no stock leaks. Also what the app answers while Redis
//! is down, and that it recovers without a restart.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// Open orders count as stuck at once, so one reconcile drives them all.
fn reconciling() -> Options {
    Options::default().env("SPIN_VARIABLE_RECONCILE_AFTER_SECONDS", "0")
}

/// Whether an order has reached the end its payment token leads to, with its
/// stock settled to match (the reservation committed or released).
fn is_final(app: &App, order: &Value, token: &str) -> bool {
    let (status, payment, reservation) = match token {
        "tok_approve" => ("paid", "completed", "committed"),
        _ => ("cancelled", "failed", "released"),
    };
    let reservation_id = order["reservation_id"].as_str().unwrap();
    order["status"] == status
        && order["payment_status"] == payment
        && app.reservation(reservation_id)["status"] == reservation
}

/// Calls the reconcile (as the cron job would) until every order is final
/// and none is left open (undelivered events included).
fn reconcile_until_final(app: &App, orders: &[(String, &str)]) -> Vec<Value> {
    let all_final = || {
        let now: Vec<Value> = orders.iter().map(|(id, _)| app.order(id)).collect();
        now.iter().zip(orders).all(|(order, (_, token))| is_final(app, order, token)).then_some(now)
    };
    for _ in 0..10 {
        let report = app.reconcile();
        assert_eq!(report["cancelled"], 0, "no order was given up on: {report}");
        if report["examined"] == 0
            && let Some(now) = all_final()
        {
            return now;
        }
        // What the reconcile set going (charges, events) runs in the background.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && all_final().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let now: Vec<Value> = orders.iter().map(|(id, _)| app.order(id)).collect();
    panic!("orders still open after reconciling: {now:#?}\n{}", app.host.logs());
}

/// Places `count` orders of `quantity` units, alternating approving and declining tokens.
fn place_orders(app: &App, product: &str, count: usize, quantity: i64, orders: &mut Vec<(String, &'static str)>) {
    for n in 0..count {
        let token = if n % 3 == 2 { "tok_decline" } else { "tok_approve" };
        let order = app.place_simple(product, quantity, Some(token));
        orders.push((order["id"].as_str().unwrap().to_string(), token));
    }
}

/// After everything settled: one provider call per order, one charge per
/// approved order, stock back to the initial figure less what was sold.
fn assert_nothing_lost(app: &App, orders: &[(String, &str)], initial_stock: i64, quantity: i64) {
    let approved = orders.iter().filter(|(_, token)| *token == "tok_approve").count() as i64;
    let declined = orders.len() as i64 - approved;
    assert_eq!(
        app.sandbox_stats(),
        json!({"attempts": orders.len(), "charges": approved, "declines": declined, "refunds": 0}),
        "nobody was charged twice"
    );
    for (id, _) in orders {
        let order = app.order(id);
        let payment = app.payment(order["payment_id"].as_str().unwrap());
        assert_eq!((&payment["order_id"], &payment["attempts"]), (&json!(id), &json!(1)), "{payment}");
    }
    assert_eq!(app.stock("p1"), (initial_stock - approved * quantity, 0), "no stock leaked");
    let summary = app.summary();
    assert_eq!(
        (&summary["total_orders"], &summary["pending_orders"], &summary["cancelled_orders"], &summary["total_revenue"]),
        (&json!(orders.len()), &json!(0), &json!(declined), &json!(approved * quantity * 100))
    );
    let report = app.reconcile();
    assert_eq!(report["examined"], 0, "no order is left open: {report}");
}

#[test]
fn redis_stopped_mid_saga_loses_nothing() {
    let (mut redis, app) = App::start_with(reconciling());
    app.put_product("p1", 100, "USD", 100);
    let mut orders = Vec::new();
    // Orders in flight when Redis goes away ...
    place_orders(&app, "p1", 6, 2, &mut orders);
    redis.stop();
    // ... and orders placed while it is away: accepted, their events kept.
    let started = Instant::now();
    place_orders(&app, "p1", 6, 2, &mut orders);
    assert!(started.elapsed() < Duration::from_secs(20), "placing orders without Redis took {:?}", started.elapsed());
    for (id, _) in &orders[6..] {
        let order = app.order(id);
        assert_eq!((&order["status"], &order["payment_status"]), (&json!("confirmed"), &json!("pending")));
    }

    redis.restart();
    // The Redis trigger comes back by itself: no host restart.
    wait_triggers(&redis, 1, 0);
    let settled = reconcile_until_final(&app, &orders);
    assert_eq!(settled.len(), 12);
    assert_nothing_lost(&app, &orders, 100, 2);
}

#[test]
fn a_host_killed_with_work_outstanding_loses_nothing() {
    let (mut redis, mut app) = App::start_with(reconciling());
    app.put_product("p1", 100, "USD", 50);
    let mut orders = Vec::new();
    place_orders(&app, "p1", 3, 1, &mut orders);
    for (id, token) in &orders {
        app.wait_order(id, "to be final", |order| is_final(&app, order, token));
    }
    // Orders whose events could not be published, then a crash.
    redis.stop();
    place_orders(&app, "p1", 3, 1, &mut orders);
    app.kill();
    redis.restart();
    app.restart();

    let settled = reconcile_until_final(&app, &orders);
    assert_eq!(settled.len(), 6);
    assert_nothing_lost(&app, &orders, 50, 1);
}

#[test]
fn without_redis_health_says_so_and_the_embedded_store_keeps_serving() {
    let (mut redis, app) = App::start();
    app.put_product("p1", 100, "USD", 10);
    let existing = app.place_simple("p1", 1, None);
    let existing_id = existing["id"].as_str().unwrap();
    redis.stop();

    let health = app.get("/health");
    assert_eq!(health.status, 503, "{health:?}");
    let health = health.json();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["checks"][0], json!({"name": "key_value", "ok": true, "detail": null}));
    assert_eq!((&health["checks"][1]["name"], &health["checks"][1]["ok"]), (&json!("redis"), &json!(false)));
    assert!(!health["checks"][1]["detail"].as_str().unwrap().is_empty(), "{health}");

    // Routes on the embedded store answer as usual.
    assert_eq!(app.stock("p1"), (9, 1));
    assert_eq!(app.order(existing_id)["status"], "confirmed");
    assert_eq!(app.summary()["total_orders"], 1);
    assert_eq!(app.get("/metrics").status, 200);
    // Placing an order needs Redis only for its event, which is kept for later.
    let placed = app.place_simple("p1", 1, Some("tok_approve"));
    assert_eq!(placed["status"], "confirmed");

    // Back without a restart: health, the trigger, the saga.
    redis.restart();
    eventually(WAIT, "health to recover", || (app.get("/health").status == 200).then_some(()));
    wait_triggers(&redis, 1, 0);
    let next = app.place_simple("p1", 1, Some("tok_approve"));
    app.wait_status(next["id"].as_str().unwrap(), "paid");
}

#[test]
fn with_the_store_on_redis_an_outage_is_503_and_recovery_needs_no_restart() {
    let (mut redis, app) = App::start_with(Options::redis_kv());
    app.put_product("p1", 100, "USD", 10);
    let existing = app.place_simple("p1", 1, None);
    let existing_id = existing["id"].as_str().unwrap();
    redis.stop();

    for (method, path, body) in [
        ("GET", format!("/orders/{existing_id}"), None),
        ("GET", "/inventory/products/p1".to_string(), None),
        ("GET", "/orders/summary".to_string(), None),
        ("POST", "/orders".to_string(), Some(json!({"user_id": 1, "product_id": "p1", "quantity": 1}).to_string())),
    ] {
        let started = Instant::now();
        let admin = format!("Bearer {ADMIN_TOKEN}");
        let reply = app.send(method, &path, &[("content-type", "application/json"), ("authorization", &admin)], body.as_deref());
        assert_eq!(reply.status, 503, "{method} {path}: {reply:?}");
        let error = &reply.json()["error"];
        assert_eq!(error["code"], "store_unavailable", "{method} {path}: {error}");
        assert!(!error["message"].as_str().unwrap().is_empty());
        assert!(started.elapsed() < Duration::from_secs(10), "{method} {path} took {:?}", started.elapsed());
    }
    let health = app.get("/health");
    assert_eq!(health.status, 503);
    let checks: Vec<(Value, Value)> = health.json()["checks"].as_array().unwrap().iter().map(|c| (c["name"].clone(), c["ok"].clone())).collect();
    assert_eq!(checks, [(json!("key_value"), json!(false)), (json!("redis"), json!(false))]);

    // This Redis keeps nothing on disk: it comes back empty. The host
    // reconnects by itself and the saga runs again.
    redis.restart();
    eventually(WAIT, "health to recover", || (app.get("/health").status == 200).then_some(()));
    wait_triggers(&redis, 1, 0);
    assert_error(&app.admin("GET", &format!("/orders/{existing_id}"), None), 404, "not_found", "order not found", None);
    app.put_product("p1", 100, "USD", 10);
    let order = app.place_simple("p1", 2, Some("tok_approve"));
    app.wait_status(order["id"].as_str().unwrap(), "paid");
    eventually(WAIT, "the stock to be committed", || (app.stock("p1") == (8, 0)).then_some(()));
}
