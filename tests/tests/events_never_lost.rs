//! Issue 12, events: a payment outcome is written into the payment's outbox
//! with the payment, leaves it only when a subscriber received it (PUBLISH's
//! reply), and the reconcile asks the payment side before it cancels an
//! order for non-payment. Against the real host and a real redis-server,
//! which is stopped between charge and publish.

mod common;
use common::*;

fn pay(app: &App, key: &str, order_id: &str, amount: i64) -> Reply {
    let body = json!({"order_id": order_id, "amount": amount, "currency": "USD", "payment_token": "tok_approve"});
    app.customer(1).post_with("/payments", &[("idempotency-key", key)], &body)
}

/// Reconcile at once, and give orders without a token no time to be paid.
fn impatient(options: Options) -> Options {
    options.env("SPIN_VARIABLE_RECONCILE_AFTER_SECONDS", "0").env("SPIN_VARIABLE_PAYMENT_TIMEOUT_SECONDS", "0")
}

#[test]
fn a_payments_completed_nobody_received_is_found_by_the_reconcile_and_the_order_is_not_cancelled() {
    // No `order-events`: nobody subscribes to payments.completed (PUBLISH answers 0).
    let components = ["inventory", "order", "payment", "payment-worker", "gateway-sandbox", "ops"];
    let options = Options { component_ids: components.iter().map(|id| id.to_string()).collect(), ..Options::default() };
    let (redis, app) = App::start_with(impatient(options));
    app.put_product("p1", 300, "USD", 10);
    let order = app.place_simple("p1", 1, None);
    let id = order["id"].as_str().unwrap();
    let paid = pay(&app, "k", id, 300);
    assert_eq!(paid.status, 201, "{paid:?}");
    assert_eq!(subscribers(&redis, "payments.completed"), 0);
    assert_eq!(app.order(id)["status"], "confirmed", "the order never heard of it");

    let events = Events::subscribe(&redis);
    let report = app.reconcile();
    assert_eq!((&report["payments_found"], &report["cancelled"]), (&json!(1), &json!(0)), "{report}");
    let order = app.order(id);
    assert_eq!(
        (&order["status"], &order["payment_status"], &order["payment_id"], &order["refund_required"]),
        (&json!("paid"), &json!("completed"), &paid.json()["payment_id"], &json!(false))
    );
    // The event left in the outbox went out again, now that someone listens.
    events.barrier();
    assert_eq!(events.on("payments.completed", id).len(), 1);
    assert_eq!(app.sandbox_stats(), json!({"attempts": 1, "charges": 1, "declines": 0, "refunds": 0}));
}

#[test]
fn redis_stopped_between_charge_and_publish_loses_no_payment() {
    let (mut redis, app) = App::start_with(impatient(Options::default()));
    wait_triggers(&redis, 1, 0);
    app.put_product("p1", 300, "USD", 10);
    let retried = app.place_simple("p1", 1, None);
    let reconciled = app.place_simple("p1", 1, None);
    let (retried, reconciled) = (retried["id"].as_str().unwrap(), reconciled["id"].as_str().unwrap());

    // Charged while Redis is away: the outcome cannot be published.
    redis.stop();
    let first = pay(&app, "retried", retried, 300);
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(pay(&app, "reconciled", reconciled, 300).status, 201);
    redis.restart();
    wait_triggers(&redis, 1, 0);
    for id in [retried, reconciled] {
        assert_eq!(app.order(id)["status"], "confirmed");
    }

    // The client's retries replay the answer and send what the outbox kept
    // (the host's first Redis command after the restart fails and reconnects).
    eventually(WAIT, "a retry to get the order paid", || {
        let replay = pay(&app, "retried", retried, 300);
        assert_eq!((replay.status, &replay.body), (201, &first.body));
        std::thread::sleep(std::time::Duration::from_millis(200));
        (app.order(retried)["status"] == "paid").then_some(())
    });

    // The reconcile, past the payment timeout, asks the payment side first.
    let report = app.reconcile();
    assert_eq!(report["cancelled"], 0, "{report}");
    let order = app.wait_status(reconciled, "paid");
    assert_eq!((&order["payment_status"], &order["refund_required"]), (&json!("completed"), &json!(false)));
    assert_eq!(app.sandbox_stats(), json!({"attempts": 2, "charges": 2, "declines": 0, "refunds": 0}));
    assert_eq!(app.summary()["cancelled_orders"], 0);
}
