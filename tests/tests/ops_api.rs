//! `/health`, `/metrics` and `/info` of the running app. The metrics are
//! compared, whole, with the figures of a known sequence of orders and
//! payments. (`/health` with Redis down is in recovery.rs.)

mod common;
use common::*;

#[test]
fn health_reports_both_checks() {
    let (_redis, app) = App::start();
    let health = app.get("/health");
    let checks = json!([{"name": "key_value", "ok": true, "detail": null}, {"name": "redis", "ok": true, "detail": null}]);
    assert_eq!((health.status, health.json()), (200, json!({"status": "ok", "checks": checks})));
    assert_eq!(health.header("content-type"), Some("application/json"));
    assert_error(&app.post("/health", &json!({})), 405, "method_not_allowed", "allowed methods: GET", None);
}

#[test]
fn info_names_the_app_its_version_and_environment() {
    let (_redis, app) = App::start_with(Options::default().env("SPIN_VARIABLE_ENVIRONMENT", "test"));
    let info = app.get("/info");
    assert_eq!((info.status, info.json()), (200, json!({"name": "shop", "version": "0.1.0", "environment": "test"})));
    let (_redis, default) = App::start();
    assert_eq!(default.get("/info").json()["environment"], "development");
}

fn metrics_text(orders: [i64; 8], revenue_usd: i64, reservations: [i64; 4], payments: [i64; 3], attempts: i64) -> String {
    let statuses = ["pending", "confirmed", "paid", "processing", "shipped", "delivered", "cancelled", "refunded"];
    let mut text = String::from("# HELP shop_orders Orders by status.\n# TYPE shop_orders gauge\n");
    for (status, n) in statuses.iter().zip(orders) {
        text.push_str(&format!("shop_orders{{status=\"{status}\"}} {n}\n"));
    }
    text.push_str("# HELP shop_revenue_minor_units Revenue of paid, not cancelled or refunded orders, in minor units.\n");
    text.push_str("# TYPE shop_revenue_minor_units gauge\n");
    text.push_str(&format!("shop_revenue_minor_units{{currency=\"USD\"}} {revenue_usd}\n"));
    text.push_str("# HELP shop_reservations_total Reservations created and ended, by event.\n# TYPE shop_reservations_total counter\n");
    for (event, n) in ["created", "committed", "released", "expired"].iter().zip(reservations) {
        text.push_str(&format!("shop_reservations_total{{event=\"{event}\"}} {n}\n"));
    }
    text.push_str("# HELP shop_payments_total Payments settled, by outcome.\n# TYPE shop_payments_total counter\n");
    for (outcome, n) in ["completed", "failed", "refunded"].iter().zip(payments) {
        text.push_str(&format!("shop_payments_total{{outcome=\"{outcome}\"}} {n}\n"));
    }
    text.push_str("# HELP shop_payment_provider_attempts_total Calls made to the payment provider for charges.\n");
    text.push_str(&format!("# TYPE shop_payment_provider_attempts_total counter\nshop_payment_provider_attempts_total {attempts}\n"));
    text
}

/// Polls /metrics until it reads `expected` (the saga runs in the background).
#[track_caller]
fn assert_metrics(app: &App, expected: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let reply = app.get("/metrics");
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.header("content-type"), Some("text/plain; version=0.0.4"));
        if reply.body == expected {
            return;
        }
        if std::time::Instant::now() > deadline {
            assert_eq!(reply.body, expected);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn metrics_are_prometheus_text_with_the_real_figures() {
    let (_redis, app) = App::start();
    app.put_product("p1", 1250, "USD", 10);
    // Before anything: one product, no orders; the only currency line comes with the first order.
    let empty = metrics_text([0; 8], 0, [0; 4], [0; 3], 0).replace("shop_revenue_minor_units{currency=\"USD\"} 0\n", "");
    assert_metrics(&app, &empty);

    let paid = app.place_simple("p1", 2, Some("tok_approve"));
    app.wait_order(paid["id"].as_str().unwrap(), "paid, stock committed", |o| o["status"] == "paid");
    let declined = app.place_simple("p1", 1, Some("tok_decline"));
    app.wait_status(declined["id"].as_str().unwrap(), "cancelled");
    let unpaid = app.place_simple("p1", 3, None);
    assert_eq!(app.customer(1).delete(&format!("/orders/{}", unpaid["id"].as_str().unwrap())).status, 200);
    let open = app.place_simple("p1", 1, None);
    assert_eq!(open["status"], "confirmed");
    // Paid directly, through two transient provider failures.
    let direct = app.place_simple("p1", 1, None);
    let direct_id = direct["id"].as_str().unwrap();
    let transient = app.customer(1).post_with("/payments", &[("idempotency-key", "t1")], &json!({"order_id": direct_id, "amount": 1250, "currency": "USD", "payment_token": "tok_transient"}));
    assert_eq!(transient.status, 201);
    app.wait_order(direct_id, "paid, stock committed", |o| o["status"] == "paid");
    let paid = app.wait_order(paid["id"].as_str().unwrap(), "to carry its payment", |o| o["payment_id"].is_string());
    let refunded = app.admin("POST", &format!("/payments/{}/refund", paid["payment_id"].as_str().unwrap()), None);
    assert_eq!(refunded.status, 200);

    // Orders: 1 confirmed, 2 paid, 2 cancelled. Revenue: the paid orders (2 × 1250 + 1250).
    // Reservations: 5 made, 2 committed (paid), 2 released (declined, cancelled).
    // Payments: 2 completed (order, transient), 1 failed, 1 refunded; provider calls 1 + 1 + 3.
    let expected = metrics_text([0, 1, 2, 0, 0, 0, 2, 0], 3750, [5, 2, 2, 0], [2, 1, 1], 5);
    assert_metrics(&app, &expected);
    assert_eq!(app.stock("p1"), (10 - 2 - 1 - 1, 1));
    assert_error(&app.send("DELETE", "/metrics", &[], None), 405, "method_not_allowed", "allowed methods: GET", None);
}
