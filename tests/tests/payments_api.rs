//! `/payments...` over HTTP against the sandbox provider (composed into
//! `payment`, or over HTTP with `payment_provider = "http"`): idempotent charges, declines, transient failures
//! retried under one provider key, reads, and admin-only refunds that happen
//! once. The sandbox's own counters tell what the provider really saw.

mod common;
use common::*;

fn charge(app: &App, key: &str, body: &Value) -> Reply {
    app.customer(1).post_with("/payments", &[("idempotency-key", key)], body)
}

fn body(order_id: &str, amount: i64, token: &str) -> Value {
    json!({"order_id": order_id, "amount": amount, "currency": "USD", "payment_token": token})
}

/// A new order of one unit at `amount` USD, waiting for `POST /payments`.
fn order_awaiting(app: &App, amount: i64) -> String {
    let product = format!("p{amount}");
    app.put_product(&product, amount, "USD", 10);
    app.place_simple(&product, 1, None)["id"].as_str().unwrap().to_string()
}

#[test]
fn a_charge_needs_an_idempotency_key_and_a_valid_body() {
    let (_redis, app) = App::start();
    let missing = app.customer(1).post("/payments", &body("ord_1", 100, "tok_approve"));
    assert_invalid(&missing, "Idempotency-Key", "the Idempotency-Key header (1 to 255 characters) is required");
    let too_long = charge(&app, &"k".repeat(256), &body("ord_1", 100, "tok_approve"));
    assert_invalid(&too_long, "Idempotency-Key", "the Idempotency-Key header (1 to 255 characters) is required");
    let with = |patch: Value| {
        let mut b = body("ord_1", 100, "tok_approve");
        for (key, value) in patch.as_object().unwrap() {
            if value.is_null() {
                b.as_object_mut().unwrap().remove(key);
            } else {
                b[key] = value.clone();
            }
        }
        charge(&app, "k", &b)
    };
    assert_invalid(&with(json!({"amount": 0})), "amount", "amount must be an integer from 1 to 9223372036854775807");
    assert_invalid(&with(json!({"amount": "100"})), "amount", "amount must be an integer from 1 to 9223372036854775807");
    assert_invalid(&with(json!({"currency": "usd"})), "currency", "currency must be three uppercase letters (ISO 4217)");
    assert_invalid(&with(json!({"payment_token": null})), "payment_token", "payment_token is required");
    assert_invalid(&with(json!({"order_id": "a/b"})), "order_id", "order_id may only contain letters, digits, '_' and '-'");
    assert_invalid(&with(json!({"card": "4242"})), "card", "unknown field card");
    // Nothing reached the provider.
    assert_eq!(app.sandbox_stats(), json!({"attempts": 0, "charges": 0, "declines": 0, "refunds": 0}));
    assert_error(&app.get("/payments"), 405, "method_not_allowed", "allowed methods: POST", None);
}

#[test]
fn an_approved_charge_is_made_once_per_key() {
    let (_redis, app) = App::start();
    let order = order_awaiting(&app, 4200);
    let first = charge(&app, "pay-key-1", &body(&order, 4200, "tok_approve"));
    assert_eq!(first.status, 201, "{first:?}");
    let payment = first.json();
    let id = payment["payment_id"].as_str().unwrap();
    assert!(id.starts_with("pay_"), "{payment}");
    assert_eq!(
        (&payment["order_id"], &payment["amount"], &payment["currency"], &payment["status"], &payment["attempts"], &payment["failure_reason"]),
        (&json!(order), &json!(4200), &json!("USD"), &json!("completed"), &json!(1), &Value::Null)
    );
    let provider_ref = payment["provider_ref"].as_str().unwrap();
    assert!(provider_ref.starts_with("ch_"), "{payment}");

    let again = charge(&app, "pay-key-1", &body(&order, 4200, "tok_approve"));
    assert_eq!((again.status, &again.body), (201, &first.body), "the same key answers the same payment");
    let reused = charge(&app, "pay-key-1", &body(&order, 4300, "tok_approve"));
    assert_error(&reused, 422, "idempotency_key_reused", "the Idempotency-Key was used for another payment", None);
    assert_eq!(app.sandbox_stats(), json!({"attempts": 1, "charges": 1, "declines": 0, "refunds": 0}));

    // The provider saw the payment id as its idempotency key.
    let at_provider = app.get(&format!("/sandbox/charges?idempotency_key={id}")).json();
    assert_eq!(
        (&at_provider["charge_id"], &at_provider["idempotency_key"], &at_provider["amount"], &at_provider["status"], &at_provider["refunded"]),
        (&json!(provider_ref), &json!(id), &json!(4200), &json!("approved"), &json!(false))
    );
    assert_eq!(app.payment(id), payment);
    assert_error(&app.customer(1).get("/payments/pay_missing"), 404, "not_found", "payment not found", None);

    // A second key is a second payment (of another order: this one is paid).
    let other_order = order_awaiting(&app, 4201);
    let second = charge(&app, "pay-key-2", &body(&other_order, 4201, "tok_approve"));
    assert_eq!(second.status, 201);
    assert_ne!(second.json()["payment_id"], payment["payment_id"]);
    assert_eq!(app.sandbox_stats()["charges"], 2);
}

#[test]
fn a_declined_charge_is_402_with_the_failed_payment() {
    let (_redis, app) = App::start();
    let order = order_awaiting(&app, 990);
    let declined = charge(&app, "decline-1", &body(&order, 990, "tok_decline"));
    assert_eq!(declined.status, 402, "{declined:?}");
    let reply = declined.json();
    assert_eq!(reply["error"], json!({"code": "payment_declined", "message": "the payment was declined: the card was declined"}));
    let payment = &reply["payment"];
    assert_eq!(
        (&payment["status"], &payment["failure_reason"], &payment["attempts"], &payment["provider_ref"]),
        (&json!("failed"), &json!("the card was declined"), &json!(1), &Value::Null)
    );
    let again = charge(&app, "decline-1", &body(&order, 990, "tok_decline"));
    assert_eq!((again.status, &again.body), (402, &declined.body));
    assert_eq!(app.sandbox_stats(), json!({"attempts": 1, "charges": 0, "declines": 1, "refunds": 0}));
    let id = payment["payment_id"].as_str().unwrap();
    assert_eq!(&app.payment(id), payment);
    let refund = app.admin("POST", &format!("/payments/{id}/refund"), None);
    assert_error(&refund, 409, "payment_not_refundable", "only completed payments can be refunded", None);
}

#[test]
fn transient_provider_failures_are_retried_under_one_key_and_charge_once() {
    let (_redis, app) = App::start();
    let order = order_awaiting(&app, 500);
    let reply = charge(&app, "transient-1", &body(&order, 500, "tok_transient"));
    assert_eq!(reply.status, 201, "{reply:?}");
    let payment = reply.json();
    assert_eq!((&payment["status"], &payment["attempts"]), (&json!("completed"), &json!(3)));
    let id = payment["payment_id"].as_str().unwrap();
    let stats = app.get(&format!("/sandbox/stats?idempotency_key={id}")).json();
    assert_eq!((&stats["attempts"], &stats["charges"], &stats["declines"]), (&json!(3), &json!(1), &json!(0)));
    assert_eq!((&stats["key"]["attempts"], &stats["key"]["charge"]["charge_id"]), (&json!(3), &payment["provider_ref"]));
}

#[test]
fn refunds_are_admin_only_and_happen_once() {
    let (_redis, app) = App::start();
    let order = order_awaiting(&app, 1500);
    let payment = charge(&app, "refund-me", &body(&order, 1500, "tok_approve")).json();
    let id = payment["payment_id"].as_str().unwrap();
    let path = format!("/payments/{id}/refund");
    assert_error(&app.post(&path, &json!({})), 401, "unauthorized", "admin routes need a bearer token", None);
    let forbidden = app.send("POST", &path, &[("authorization", "Bearer nope")], None);
    assert_error(&forbidden, 403, "forbidden", "the bearer token is not the admin token", None);
    assert_eq!(app.payment(id)["status"], "completed");
    assert_eq!(app.sandbox_stats()["refunds"], 0);

    let refunded = app.admin("POST", &path, None);
    assert_eq!(refunded.status, 200, "{refunded:?}");
    let refunded = refunded.json();
    assert_eq!(refunded["status"], "refunded");
    assert_eq!(refunded["amount"], 1500);
    let again = app.admin("POST", &path, None);
    assert_eq!((again.status, again.json()), (200, refunded.clone()));
    assert_eq!(app.payment(id), refunded);
    assert_eq!(app.sandbox_stats(), json!({"attempts": 1, "charges": 1, "declines": 0, "refunds": 1}));
    let at_provider = app.get(&format!("/sandbox/charges?idempotency_key={id}")).json();
    assert_eq!(at_provider["refunded"], true);
    assert_error(&app.admin("POST", "/payments/pay_missing/refund", None), 404, "not_found", "payment not found", None);
    assert_error(&app.get(&path), 405, "method_not_allowed", "allowed methods: POST", None);
}

/// `payment_provider = "http"` charges through the provider at
/// `payment_gateway_url` over outbound HTTP: the sandbox again by local
/// service chaining (the default URL), and nothing at all where nothing
/// listens, while the composed sandbox is never asked.
#[test]
fn with_payment_provider_http_charges_go_to_payment_gateway_url() {
    let (_redis, app) = App::start_with(Options::default().env("SPIN_VARIABLE_PAYMENT_PROVIDER", "http"));
    let order = order_awaiting(&app, 4200);
    let paid = charge(&app, "http-1", &body(&order, 4200, "tok_approve"));
    assert_eq!(paid.status, 201, "{paid:?}");
    assert_eq!(app.sandbox_stats(), json!({"attempts": 1, "charges": 1, "declines": 0, "refunds": 0}));

    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let (_redis, app) = App::start_with(
        Options::default().env("SPIN_VARIABLE_PAYMENT_PROVIDER", "http").env("SPIN_VARIABLE_PAYMENT_GATEWAY_URL", &nowhere),
    );
    let order = order_awaiting(&app, 4200);
    let unreachable = charge(&app, "http-2", &body(&order, 4200, "tok_approve"));
    assert_eq!((unreachable.status, &unreachable.json()["error"]["code"]), (502, &json!("gateway_unavailable")), "{unreachable:?}");
    assert_eq!(unreachable.json()["payment"]["attempts"], 3);
    assert_eq!(app.sandbox_stats(), json!({"attempts": 0, "charges": 0, "declines": 0, "refunds": 0}));
}
