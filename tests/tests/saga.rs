//! The order saga end to end against a real redis-server: `POST /orders` →
//! `orders.payment_requested` → payment worker → `payments.completed|failed` → order
//! events → order paid or cancelled, stock committed or released. A
//! subscriber of the test's own records every event on the app's channels,
//! and the tests assert exactly which ones were published.

mod common;
use common::*;

/// The events of one order as `(channel, from→to)` pairs, sorted, where
/// status changes show their transition.
fn shape(events: &Events, order_id: &str) -> Vec<String> {
    let mut shape: Vec<String> = events
        .of_order(order_id)
        .into_iter()
        .map(|(channel, event)| match channel.as_str() {
            "orders.status_changed" => format!("{channel} {}->{}", event["data"]["from"].as_str().unwrap(), event["data"]["to"].as_str().unwrap()),
            _ => channel,
        })
        .collect();
    shape.sort();
    shape
}

/// Every event is an envelope whose type is its channel.
fn assert_envelopes(events: &Events) {
    for (channel, event) in events.all() {
        let keys: Vec<&String> = event.as_object().unwrap_or_else(|| panic!("{channel}: {event}")).keys().collect();
        assert_eq!(keys, ["data", "event_id", "event_type", "occurred_at", "source"], "{event}");
        assert_eq!(event["event_type"], channel.as_str(), "{event}");
        let source = if channel.starts_with("orders.") { "orders" } else { "payments" };
        assert_eq!(event["source"], source, "{event}");
        unix_seconds(event["occurred_at"].as_str().unwrap());
    }
}

#[test]
fn an_approved_payment_makes_the_order_paid_and_commits_the_stock() {
    approved_payment(Options::default());
}

#[test]
fn an_approved_payment_makes_the_order_paid_with_the_records_on_redis_through_outbound_redis() {
    let redis = approved_payment(Options::key_value_redis());
    let product: Option<String> = redis::cmd("GET").arg("inventory:product:p1").query(&mut redis.client()).unwrap();
    assert!(product.is_some_and(|json| json.contains("\"p1\"")), "the product's record is in Redis");
}

/// The whole saga with a single instance slot for HTTP (`--max-instances
/// 1`, two pool slots; a fresh instance per request, so that no idle one
/// keeps the slot) and the store on Redis, so that the order's synchronous
/// key-value calls wait on I/O: with one fiber stack per pool slot, the
/// `order` request held both and every `orders.created` delivery (now
/// `orders.payment_requested`) failed
/// ("maximum concurrent limit of 2 for fibers reached").
#[test]
fn an_approved_payment_makes_the_order_paid_with_one_instance_slot() {
    approved_payment(Options { strict_instances: true, ..Options::redis_kv() }.arg("--max-instances").arg("1"));
}

/// An order paid by the saga; returns the test's Redis.
fn approved_payment(options: Options) -> Redis {
    let (redis, app) = App::start_with(options);
    let events = Events::subscribe(&redis);
    wait_triggers(&redis, 1, 1);
    app.put_product("p1", 1250, "USD", 10);
    let order = app.place_simple("p1", 3, Some("tok_approve"));
    let id = order["id"].as_str().unwrap();
    assert_eq!((&order["status"], &order["payment_status"]), (&json!("confirmed"), &json!("pending")));
    assert!(order.get("payment_token").is_none(), "the token is never echoed");

    events.wait_for("the order to be paid", |channel, e| channel == "orders.status_changed" && e["data"]["order_id"] == id);
    events.barrier();
    assert_eq!(shape(&events, id), ["orders.created", "orders.payment_requested", "orders.status_changed confirmed->paid", "payments.completed"]);
    assert_envelopes(&events);

    let paid = app.order(id);
    assert_eq!((&paid["status"], &paid["payment_status"]), (&json!("paid"), &json!("completed")));
    assert!(paid["paid_at"].is_string());
    let payment_id = paid["payment_id"].as_str().unwrap();
    // The payment token travels in no event (the worker reads it from the payment side's record).
    let created = &events.on("orders.created", id)[0]["data"];
    assert_eq!(
        created,
        &json!({"order_id": id, "order_number": order["order_number"], "user_id": 1, "total_amount": 3750, "currency": "USD", "has_payment_token": true})
    );
    assert_eq!(events.on("orders.payment_requested", id)[0]["data"], json!({"order_id": id, "total_amount": 3750, "currency": "USD"}));
    let completed = &events.on("payments.completed", id)[0];
    assert_eq!(completed["event_id"], format!("evt_{payment_id}_completed"));
    let payment = app.payment(payment_id);
    assert_eq!(
        completed["data"],
        json!({"payment_id": payment_id, "order_id": id, "amount": 3750, "currency": "USD", "provider_ref": payment["provider_ref"]})
    );
    assert_eq!((&payment["status"], &payment["attempts"]), (&json!("completed"), &json!(1)));

    // Stock committed: sold, nothing held; the reservation is final.
    assert_eq!(app.stock("p1"), (7, 0));
    let reservation = app.reservation(order["reservation_id"].as_str().unwrap());
    assert_eq!(reservation["status"], "committed");
    assert_eq!(app.sandbox_stats(), json!({"attempts": 1, "charges": 1, "declines": 0, "refunds": 0}));
    redis
}

#[test]
fn a_declined_payment_cancels_the_order_and_gives_the_stock_back() {
    let (redis, app) = App::start();
    let events = Events::subscribe(&redis);
    wait_triggers(&redis, 1, 1);
    app.put_product("p1", 1000, "USD", 10);
    let order = app.place_simple("p1", 4, Some("tok_decline"));
    let id = order["id"].as_str().unwrap();

    let cancelled = events.wait_for("orders.cancelled", |channel, e| channel == "orders.cancelled" && e["data"]["order_id"] == id);
    events.barrier();
    assert_eq!(
        shape(&events, id),
        ["orders.cancelled", "orders.created", "orders.payment_requested", "orders.status_changed confirmed->cancelled", "payments.failed"]
    );
    assert_envelopes(&events);
    let order_now = app.order(id);
    let payment_id = order_now["payment_id"].as_str().unwrap();
    assert_eq!(
        events.on("payments.failed", id)[0]["data"],
        json!({"payment_id": payment_id, "order_id": id, "reason": "the card was declined"})
    );
    assert_eq!(
        cancelled["data"],
        json!({"order_id": id, "reason": "payment failed: the card was declined", "refund_required": false,
               "payment_id": payment_id, "total_amount": 4000, "currency": "USD"})
    );
    assert_eq!(
        (&order_now["status"], &order_now["payment_status"], &order_now["refund_required"]),
        (&json!("cancelled"), &json!("failed"), &json!(false))
    );
    assert!(order_now["cancelled_at"].is_string());
    assert_eq!(app.stock("p1"), (10, 0), "the stock is back where it was");
    let reservation = app.reservation(order["reservation_id"].as_str().unwrap());
    assert_eq!(reservation["status"], "released");
    assert_eq!(app.payment(payment_id)["status"], "failed");
    assert_eq!(app.sandbox_stats(), json!({"attempts": 1, "charges": 0, "declines": 1, "refunds": 0}));
}

#[test]
fn transient_gateway_failures_are_retried_and_the_order_is_charged_once() {
    let (redis, app) = App::start();
    let events = Events::subscribe(&redis);
    wait_triggers(&redis, 1, 1);
    app.put_product("p1", 800, "USD", 5);
    let order = app.place_simple("p1", 1, Some("tok_transient"));
    let id = order["id"].as_str().unwrap();

    events.wait_for("the order to be paid", |channel, e| channel == "orders.status_changed" && e["data"]["order_id"] == id);
    events.barrier();
    assert_eq!(shape(&events, id), ["orders.created", "orders.payment_requested", "orders.status_changed confirmed->paid", "payments.completed"]);
    let paid = app.order(id);
    assert_eq!((&paid["status"], &paid["payment_status"]), (&json!("paid"), &json!("completed")));
    let payment_id = paid["payment_id"].as_str().unwrap();
    assert_eq!(app.payment(payment_id)["attempts"], 3);
    // Three calls, all under the payment's one idempotency key, one charge.
    let stats = app.get(&format!("/sandbox/stats?idempotency_key={payment_id}")).json();
    assert_eq!((&stats["attempts"], &stats["charges"], &stats["declines"], &stats["key"]["attempts"]), (&json!(3), &json!(1), &json!(0), &json!(3)));
    let charge = app.get(&format!("/sandbox/charges?idempotency_key={payment_id}"));
    assert_eq!(charge.status, 200);
    assert_eq!((&charge.json()["amount"], &charge.json()["status"]), (&json!(800), &json!("approved")));
    assert_eq!(app.stock("p1"), (4, 0));
}

#[test]
fn cancelling_a_paid_order_refunds_it_once_and_restocks() {
    let (redis, app) = App::start();
    let events = Events::subscribe(&redis);
    wait_triggers(&redis, 1, 1);
    app.put_product("p1", 600, "USD", 10);
    let order = app.place_simple("p1", 2, Some("tok_approve"));
    let id = order["id"].as_str().unwrap();
    events.wait_for("the order to be paid", |channel, e| channel == "orders.status_changed" && e["data"]["order_id"] == id);
    assert_eq!(app.stock("p1"), (8, 0));

    let cancelled = app.customer(1).delete(&format!("/orders/{id}?reason=too%20late"));
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    let cancelled = cancelled.json();
    assert_eq!((&cancelled["status"], &cancelled["refund_required"]), (&json!("cancelled"), &json!(true)));
    let payment_id = cancelled["payment_id"].as_str().unwrap();
    let refunded = eventually(WAIT, "the refund", || Some(app.payment(payment_id)).filter(|p| p["status"] == "refunded"));
    assert_eq!(refunded["amount"], 1200);
    // The order side learns of it: the order no longer owes a refund.
    let settled = app.wait_order(id, "to record the refund", |order| order["payment_status"] == "refunded");
    assert_eq!((&settled["status"], &settled["refund_required"]), (&json!("cancelled"), &json!(false)));
    events.barrier();
    assert_eq!(
        shape(&events, id),
        [
            "orders.cancelled",
            "orders.created",
            "orders.payment_requested",
            "orders.status_changed confirmed->paid",
            "orders.status_changed paid->cancelled",
            "payments.completed",
            "payments.refunded"
        ]
    );
    assert_eq!(
        events.on("payments.refunded", id)[0],
        json!({"event_id": format!("evt_{payment_id}_refunded"), "event_type": "payments.refunded", "occurred_at": events.on("payments.refunded", id)[0]["occurred_at"],
               "source": "payments", "data": {"payment_id": payment_id, "order_id": id, "amount": 1200, "currency": "USD"}})
    );
    assert_eq!(
        events.on("orders.cancelled", id)[0]["data"],
        json!({"order_id": id, "reason": "cancelled: too late", "refund_required": true, "payment_id": payment_id, "total_amount": 1200, "currency": "USD"})
    );
    assert_envelopes(&events);
    assert_eq!(app.stock("p1"), (10, 0), "the sold units are back");
    assert_eq!(app.sandbox_stats(), json!({"attempts": 1, "charges": 1, "declines": 0, "refunds": 1}));
    assert_eq!(app.get(&format!("/sandbox/charges?idempotency_key={payment_id}")).json()["refunded"], true);
    // An admin refund afterwards changes nothing at the provider.
    assert_eq!(app.admin("POST", &format!("/payments/{payment_id}/refund"), None).status, 200);
    assert_eq!(app.sandbox_stats()["refunds"], 1);
    assert_eq!(app.order(id)["status"], "cancelled");
}

#[test]
fn an_order_without_a_payment_token_waits_for_post_payments() {
    let (redis, app) = App::start();
    let events = Events::subscribe(&redis);
    wait_triggers(&redis, 1, 1);
    app.put_product("p1", 450, "USD", 10);
    let order = app.place_simple("p1", 2, None);
    let id = order["id"].as_str().unwrap();
    let waiting = app.order(id);
    assert_eq!((&waiting["status"], &waiting["payment_status"], &waiting["payment_id"]), (&json!("confirmed"), &json!("pending"), &Value::Null));
    assert_eq!(app.sandbox_stats()["attempts"], 0);
    assert_eq!(app.stock("p1"), (8, 2));
    assert_eq!(events.on("orders.created", id)[0]["data"]["has_payment_token"], false);
    // No payment worker is asked (nor started) for it.
    events.barrier();
    assert_eq!(events.channels_of(id), ["orders.created"]);

    // A payment for another amount is refused before anything is charged.
    let wrong = app.customer(1).post_with("/payments", &[("idempotency-key", "wrong")], &json!({"order_id": id, "amount": 1, "currency": "USD", "payment_token": "tok_approve"}));
    assert_error(&wrong, 422, "amount_mismatch", &format!("order {id} is for 900 USD, not 1 USD"), Some("amount"));
    assert_eq!(app.sandbox_stats()["attempts"], 0);
    assert_eq!(app.order(id)["status"], "confirmed");

    let paid = app.customer(1).post_with("/payments", &[("idempotency-key", "right")], &json!({"order_id": id, "amount": 900, "currency": "USD", "payment_token": "tok_approve"}));
    assert_eq!(paid.status, 201, "{paid:?}");
    let payment_id = paid.json()["payment_id"].as_str().unwrap().to_string();
    let order_now = app.wait_status(id, "paid");
    assert_eq!((&order_now["payment_status"], &order_now["payment_id"]), (&json!("completed"), &json!(payment_id)));
    events.wait_for("the status change", |channel, e| channel == "orders.status_changed" && e["data"]["order_id"] == id);
    events.barrier();
    assert_eq!(
        shape(&events, id),
        ["orders.created", "orders.status_changed confirmed->paid", "payments.completed"]
    );
    assert_eq!(app.stock("p1"), (8, 0));
}

#[test]
fn garbage_on_every_channel_changes_nothing_and_the_host_keeps_serving() {
    let (redis, app) = App::start();
    let events = Events::subscribe(&redis);
    wait_triggers(&redis, 1, 1);
    app.put_product("p1", 300, "USD", 10);
    let paid = app.place_simple("p1", 1, Some("tok_approve"));
    let paid_id = paid["id"].as_str().unwrap();
    app.wait_status(paid_id, "paid");
    let open = app.place_simple("p1", 2, None);
    let open_id = open["id"].as_str().unwrap();
    events.wait_for("the paid order's status change", |channel, e| channel == "orders.status_changed" && e["data"]["order_id"] == paid_id);
    events.barrier();
    let snapshot = || {
        (app.summary(), app.order(paid_id), app.order(open_id), app.product("p1"), app.sandbox_stats(), app.get("/metrics").body)
    };
    let before = snapshot();
    let events_before = events.all().len();

    let envelope = |event_type: &str, data: Value| {
        json!({"event_id": "evt_garbage", "event_type": event_type, "occurred_at": "2026-01-01T00:00:00Z", "source": "test", "data": data}).to_string()
    };
    let mut garbage: Vec<(&str, String)> = Vec::new();
    for channel in CHANNELS {
        garbage.push((channel, "not json at all".to_string()));
        garbage.push((channel, "[1, 2, 3]".to_string()));
        garbage.push((channel, json!({"event_id": "evt_1", "surprise": true}).to_string()));
        garbage.push((channel, envelope("orders.exploded", json!({"order_id": open_id}))));
        garbage.push((channel, envelope(channel, json!({"order_id": 5, "amount": "lots"}))));
    }
    // Well-formed but contradicting the stored order: a payment for another amount.
    let mismatch = json!({"payment_id": "pay_x", "order_id": open_id, "amount": 1, "currency": "USD", "provider_ref": "ch_x"});
    garbage.push(("payments.completed", envelope("payments.completed", mismatch)));
    let mut delivered_to_app = 0;
    for (channel, payload) in &garbage {
        let receivers = publish(&redis, channel, payload.as_bytes());
        // Our own subscriber, plus the app's on the channels it consumes.
        let expected = if TRIGGER_CHANNELS.contains(channel) { 2 } else { 1 };
        assert_eq!(receivers, expected, "{channel}");
        delivered_to_app += receivers - 1;
    }
    assert_eq!(delivered_to_app, TRIGGER_CHANNELS.len() as i64 * 5 + 1);
    eventually(WAIT, "every garbage message to be skipped", || (app.log_count("event skipped") == delivered_to_app as usize).then_some(()));
    events.barrier();

    assert_eq!(events.all().len(), events_before + garbage.len(), "the app published nothing in answer");
    assert_eq!(snapshot(), before);
    assert_eq!(app.log_count("redis handler failed"), 0, "garbage is skipped, not a handler failure");
    // Still serving, still working.
    assert_eq!(app.get("/health").status, 200);
    let next = app.place_simple("p1", 1, Some("tok_approve"));
    app.wait_status(next["id"].as_str().unwrap(), "paid");
}

#[test]
fn two_replicas_on_one_redis_charge_each_order_exactly_once() {
    let redis = Redis::start();
    let events = Events::subscribe(&redis);
    let a = App::on(&redis, Options::redis_kv());
    let b = App::on(&redis, Options::redis_kv());
    wait_triggers(&redis, 2, 1);
    a.put_product("p1", 100, "USD", 25);
    assert_eq!(b.product("p1")["available"], 25, "both replicas share one store");

    let ids: Vec<String> = (0..10)
        .map(|n| {
            let replica = if n % 2 == 0 { &a } else { &b };
            replica.place(&json!({"user_id": n + 1, "product_id": "p1", "quantity": 1, "payment_token": "tok_approve"}))["id"].as_str().unwrap().to_string()
        })
        .collect();
    for (n, id) in ids.iter().enumerate() {
        let reader = if n % 2 == 0 { &b } else { &a };
        reader.wait_status(id, "paid");
        events.wait_for("the status change", |channel, e| channel == "orders.status_changed" && e["data"]["order_id"] == id.as_str());
    }
    events.barrier();

    assert_eq!(a.sandbox_stats(), json!({"attempts": 10, "charges": 10, "declines": 0, "refunds": 0}));
    let summary = b.summary();
    assert_eq!((&summary["total_orders"], &summary["pending_orders"], &summary["total_revenue"]), (&json!(10), &json!(0), &json!(1000)));
    assert_eq!(summary["revenue_by_currency"], json!([{"currency": "USD", "total_revenue": 1000, "revenue_orders": 10, "average_order_value": 100}]));
    assert_eq!(a.stock("p1"), (15, 0));
    let mut payments = std::collections::BTreeSet::new();
    for id in &ids {
        let order = a.order(id);
        assert_eq!((&order["status"], &order["payment_status"]), (&json!("paid"), &json!("completed")), "{order}");
        let payment = b.payment(order["payment_id"].as_str().unwrap());
        assert_eq!((&payment["status"], &payment["attempts"]), (&json!("completed"), &json!(1)));
        payments.insert(payment["payment_id"].as_str().unwrap().to_string());
        // One transition per order, although both replicas got every event.
        assert_eq!(events.on("orders.status_changed", id).len(), 1, "{id}");
        assert_eq!(events.on("orders.created", id).len(), 1, "{id}");
        assert_eq!(events.on("orders.payment_requested", id).len(), 1, "{id}");
        let completed: std::collections::BTreeSet<String> =
            events.on("payments.completed", id).iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
        assert_eq!(completed.len(), 1, "{id}: one payment outcome (repeats share its id)");
        assert!(events.on("payments.failed", id).is_empty() && events.on("orders.cancelled", id).is_empty());
    }
    assert_eq!(payments.len(), 10);
}
