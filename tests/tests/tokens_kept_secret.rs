//! Issue 12, card tokens: a `payment_token` is in no event, no stored order
//! and no log line; the record the payment worker reads it from is gone once
//! the order is charged or cancelled. The whole store is on the test's own
//! redis-server, so every key and value can be searched.

mod common;
use common::*;

/// Keys of the shop (not the sandbox provider's, which is the payment
/// provider and knows its tokens) whose value contains `needle`.
fn keys_holding(redis: &Redis, needle: &str) -> Vec<String> {
    let mut connection = redis.client();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut connection).unwrap();
    keys.into_iter()
        .filter(|key| !key.starts_with("sandbox:"))
        .filter(|key| {
            let value: Option<Vec<u8>> = redis::cmd("GET").arg(key).query(&mut connection).unwrap_or(None);
            value.is_some_and(|value| String::from_utf8_lossy(&value).contains(needle))
        })
        .collect()
}

#[test]
fn a_payment_token_is_in_no_event_no_order_and_no_log_and_is_gone_once_used() {
    let (redis, app) = App::start_with(Options::redis_kv());
    let events = Events::subscribe(&redis);
    wait_triggers(&redis, 1, 1);
    app.put_product("p1", 100, "USD", 10);
    // The sandbox answers by token, so the tokens carry a secret-looking tail.
    let paid = app.place(&json!({"user_id": 1, "product_id": "p1", "quantity": 1, "payment_token": "tok_approve"}));
    let cancelled = app.place(&json!({"user_id": 1, "product_id": "p1", "quantity": 1, "payment_token": "tok_slow"}));
    let waiting = app.place(&json!({"user_id": 1, "product_id": "p1", "quantity": 1}));
    app.wait_status(paid["id"].as_str().unwrap(), "paid");
    let cancelled_id = cancelled["id"].as_str().unwrap();
    assert_eq!(app.customer(1).delete(&format!("/orders/{cancelled_id}")).status, 200);
    events.barrier();

    for token in ["tok_approve", "tok_slow"] {
        let in_events: Vec<String> = events.all().iter().filter(|(_, event)| event.to_string().contains(token)).map(|(channel, _)| channel.clone()).collect();
        assert!(in_events.is_empty(), "{token} published on {in_events:?}");
    }
    eventually(WAIT, "the tokens to be dropped", || {
        (keys_holding(&redis, "tok_approve").is_empty() && keys_holding(&redis, "tok_slow").is_empty()).then_some(())
    });
    for id in [paid["id"].as_str().unwrap(), cancelled_id, waiting["id"].as_str().unwrap()] {
        let record: Option<String> = redis::cmd("GET").arg(format!("order:{id}")).query(&mut redis.client()).unwrap();
        assert!(record.is_some_and(|record| !record.contains("\"payment_token\"")), "order {id} keeps no token field");
    }
    assert_eq!(app.log_count("tok_approve") + app.log_count("tok_slow"), 0, "{}", app.host.logs());
}
