//! Issue 12, money: `POST /payments` charges only what its order can take,
//! a charge that ends up paying nothing is refunded at once, and a failed
//! payment that is not the order's own charge changes nothing. Against the
//! real host, a real redis-server and the sandbox provider.

mod common;
use common::*;

fn pay(app: &App, key: &str, order_id: &str, amount: i64, currency: &str, token: &str) -> Reply {
    let body = json!({"order_id": order_id, "amount": amount, "currency": currency, "payment_token": token});
    app.customer(1).post_with("/payments", &[("idempotency-key", key)], &body)
}

/// Every component but `order-events`: payment outcomes reach no order, so
/// the order waits for payment whatever is charged.
fn without_order_events() -> Options {
    let components = ["inventory", "order", "payment", "payment-worker", "gateway-sandbox", "ops"];
    Options { component_ids: components.iter().map(|id| id.to_string()).collect(), ..Options::default() }
}

#[test]
fn a_payment_its_order_cannot_take_is_refused_before_anything_is_charged() {
    let (redis, app) = App::start();
    wait_triggers(&redis, 1, 0);
    app.put_product("p1", 450, "USD", 10);
    let order = app.place_simple("p1", 2, None);
    let id = order["id"].as_str().unwrap();

    assert_error(&pay(&app, "k1", "ord_00000000000000ff", 900, "USD", "tok_approve"), 422, "unknown_order", "order ord_00000000000000ff does not exist", Some("order_id"));
    let wrong_amount = pay(&app, "k2", id, 1, "USD", "tok_approve");
    assert_error(&wrong_amount, 422, "amount_mismatch", &format!("order {id} is for 900 USD, not 1 USD"), Some("amount"));
    let wrong_currency = pay(&app, "k3", id, 900, "EUR", "tok_approve");
    assert_error(&wrong_currency, 422, "amount_mismatch", &format!("order {id} is for 900 USD, not 900 EUR"), Some("currency"));
    assert_eq!(app.sandbox_stats(), json!({"attempts": 0, "charges": 0, "declines": 0, "refunds": 0}), "nothing reached the provider");
    assert_eq!(app.order(id)["status"], "confirmed");

    let paid = pay(&app, "k4", id, 900, "USD", "tok_approve");
    assert_eq!(paid.status, 201, "{paid:?}");
    app.wait_status(id, "paid");
    let again = pay(&app, "k5", id, 900, "USD", "tok_approve");
    assert_error(&again, 409, "order_not_awaiting_payment", &format!("order {id} is paid with payment completed: it takes no payment"), Some("order_id"));
    assert_eq!(app.sandbox_stats(), json!({"attempts": 1, "charges": 1, "declines": 0, "refunds": 0}));
}

#[test]
fn a_second_charge_of_an_order_is_refunded_automatically_and_recorded() {
    let (_redis, app) = App::start_with(without_order_events());
    app.put_product("p1", 450, "USD", 10);
    let order = app.place_simple("p1", 2, None);
    let id = order["id"].as_str().unwrap();
    // The order side hears of neither payment, so both pass the check.
    let first = pay(&app, "first", id, 900, "USD", "tok_approve");
    assert_eq!(first.status, 201, "{first:?}");
    let first_id = first.json()["payment_id"].as_str().unwrap().to_string();
    let second = pay(&app, "second", id, 900, "USD", "tok_approve");
    let body = second.json();
    assert_eq!(
        (second.status, &body["error"]),
        (409, &json!({"code": "payment_refunded", "message": format!("the charge was refunded: order {id} was already paid by {first_id}"), "field": "order_id"}))
    );
    let refunded = &body["payment"];
    assert_eq!((&refunded["status"], &refunded["refund_reason"]), (&json!("refunded"), &json!(format!("order {id} was already paid by {first_id}"))));
    assert_eq!(&app.payment(refunded["payment_id"].as_str().unwrap()), refunded, "the refund is on record");
    assert_eq!(app.payment(&first_id)["status"], "completed");
    assert_eq!(app.sandbox_stats(), json!({"attempts": 2, "charges": 2, "declines": 0, "refunds": 1}), "one charge kept");
    let replay = pay(&app, "second", id, 900, "USD", "tok_approve");
    assert_eq!((replay.status, replay.json()), (409, body));
    assert_eq!(app.sandbox_stats()["refunds"], 1);
}

#[test]
fn a_strangers_declined_payment_does_not_cancel_the_order() {
    let (redis, app) = App::start();
    wait_triggers(&redis, 1, 0);
    app.put_product("p1", 450, "USD", 10);
    let order = app.place_simple("p1", 2, None);
    let id = order["id"].as_str().unwrap();
    let declined = pay(&app, "stranger", id, 900, "USD", "tok_decline");
    assert_eq!(declined.status, 402, "{declined:?}");
    let payment_id = declined.json()["payment"]["payment_id"].as_str().unwrap().to_string();
    let ignored = format!("event ignored: payment {payment_id} is not the order's own charge");
    eventually(WAIT, "the order side to ignore the failure", || (app.log_count(&ignored) == 1).then_some(()));
    let waiting = app.order(id);
    assert_eq!((&waiting["status"], &waiting["payment_status"], &waiting["payment_id"]), (&json!("confirmed"), &json!("pending"), &Value::Null));
    assert_eq!(app.stock("p1"), (8, 2), "the stock stays held");
    // The owner pays it.
    assert_eq!(pay(&app, "owner", id, 900, "USD", "tok_approve").status, 201);
    app.wait_status(id, "paid");
}
