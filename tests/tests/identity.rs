//! Issue 12, identity: customer routes take a bearer JWT verified by the
//! order component (HS256 with `jwt_verification_key` here), a customer
//! places, lists, reads and cancels its own orders only, the admin token
//! still works, and the development switch `customer_auth = "none"` is
//! logged and refused outside development; payments of an order only by
//! its customer (or the admin). Real host, real redis-server.

mod common;
use common::*;

#[test]
fn a_customer_sees_and_changes_only_its_own_orders() {
    let (_redis, app) = App::start();
    app.put_product("p1", 100, "USD", 10);
    let (alice, bob) = (app.customer(7), app.customer(8));
    let placed = alice.post("/orders", &json!({"product_id": "p1", "quantity": 2, "shipping_address": "7 Alice Lane"}));
    assert_eq!(placed.status, 201, "{placed:?}");
    let order = placed.json();
    assert_eq!(order["user_id"], 7, "the user comes from the token");
    let id = order["id"].as_str().unwrap();
    let path = format!("/orders/{id}");

    // Bob: not found, not listed, not cancelled, not placed in Alice's name.
    assert_error(&bob.get(&path), 404, "not_found", "order not found", None);
    assert_error(&bob.delete(&path), 404, "not_found", "order not found", None);
    assert_eq!(app.order(id)["status"], "confirmed");
    assert_eq!(bob.get("/orders").json()["total_count"], 0);
    let snoop = bob.get("/orders?user_id=7");
    assert_error(&snoop, 403, "forbidden", "user_id must be the user of the bearer token", Some("user_id"));
    let impostor = bob.post("/orders", &json!({"user_id": 7, "product_id": "p1", "quantity": 1}));
    assert_error(&impostor, 403, "forbidden", "user_id must be the user of the bearer token", Some("user_id"));
    assert_error(&bob.get("/orders/summary"), 403, "forbidden", "the summary covers every user's orders: admins only", None);

    // Alice: her order, her list, her cancellation.
    assert_eq!(alice.get(&path).json(), order);
    let listed = alice.get("/orders").json();
    assert_eq!((&listed["total_count"], &listed["orders"][0]["shipping_address"]), (&json!(1), &json!("7 Alice Lane")));
    assert_eq!(alice.delete(&path).json()["status"], "cancelled");
    assert_eq!(app.stock("p1"), (10, 0));
    // The admin token reads everyone's.
    assert_eq!(app.admin("GET", "/orders?user_id=7", None).json()["total_count"], 1);
}

#[test]
fn customer_routes_refuse_missing_expired_forged_and_foreign_tokens() {
    let (_redis, app) = App::start();
    app.put_product("p1", 100, "USD", 10);
    let body = json!({"user_id": 1, "product_id": "p1", "quantity": 1});
    let order = app.place(&body);
    let id = order["id"].as_str().unwrap();
    for (method, path) in [("GET", "/orders".to_string()), ("POST", "/orders".to_string()), ("GET", format!("/orders/{id}")), ("DELETE", format!("/orders/{id}")), ("GET", "/orders/summary".to_string())] {
        let reply = app.send(method, &path, &[("content-type", "application/json")], Some(&body.to_string()));
        assert_error(&reply, 401, "unauthorized", "this route needs a bearer token", None);
    }
    let now = unix_now();
    let forged = {
        let key = jsonwebtoken::EncodingKey::from_secret(b"not the secret the shop was given!!").unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &json!({"sub": "1", "exp": now + 60, "aud": "shop"}), &key).unwrap()
    };
    for (label, token) in [
        ("expired", token_with(json!({"sub": "1", "exp": now - 120, "aud": "shop"}))),
        ("another audience", token_with(json!({"sub": "1", "exp": now + 60, "aud": "elsewhere"}))),
        ("no sub", token_with(json!({"exp": now + 60, "aud": "shop"}))),
        ("forged", forged),
        ("not a token", "abc".to_string()),
    ] {
        let auth = format!("Bearer {token}");
        let reply = app.send("GET", &format!("/orders/{id}"), &[("authorization", &auth)], None);
        assert_eq!((reply.status, reply.json()["error"]["code"].clone()), (401, json!("invalid_token")), "{label}: {reply:?}");
    }
    assert_eq!(app.customer(1).get(&format!("/orders/{id}")).status, 200);
    assert_eq!(app.order(id)["status"], "confirmed");
}

#[test]
fn the_development_switch_is_logged_and_refused_outside_development() {
    let (_redis, app) = App::start_with(Options::default().env("SPIN_VARIABLE_CUSTOMER_AUTH", "none"));
    app.put_product("p1", 100, "USD", 10);
    let placed = app.post("/orders", &json!({"user_id": 4, "product_id": "p1", "quantity": 1}));
    assert_eq!((placed.status, placed.json()["user_id"].clone()), (201, json!(4)), "{placed:?}");
    assert_eq!(app.get("/orders?user_id=4").json()["total_count"], 1);
    assert!(app.log_count("customer authentication is OFF") >= 2, "{}", app.host.logs());

    let (_redis, production) = App::start_with(
        Options::default().env("SPIN_VARIABLE_CUSTOMER_AUTH", "none").env("SPIN_VARIABLE_ENVIRONMENT", "production"),
    );
    let refused = production.post("/orders", &json!({"user_id": 4, "product_id": "p1", "quantity": 1}));
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.json()["error"]["message"], "customer_auth = \"none\" is refused in environment \"production\": it is for development only");
}

#[test]
fn a_customer_pays_and_reads_payments_of_its_own_orders_only() {
    let (_redis, app) = App::start();
    app.put_product("p1", 100, "USD", 10);
    let (alice, bob) = (app.customer(7), app.customer(8));
    let order = alice.post("/orders", &json!({"product_id": "p1", "quantity": 1})).json();
    let charge = json!({"order_id": order["id"], "amount": 100, "currency": "USD", "payment_token": "tok_approve"});

    let anonymous = app.post_with("/payments", &[("idempotency-key", "k")], &charge);
    assert_error(&anonymous, 401, "unauthorized", "this route needs a bearer token", None);
    let foreign = bob.post_with("/payments", &[("idempotency-key", "k")], &charge);
    let unknown = format!("order {} does not exist", order["id"].as_str().unwrap());
    assert_error(&foreign, 422, "unknown_order", &unknown, Some("order_id"));
    assert_eq!(app.sandbox_stats()["attempts"], 0, "nothing was charged");

    // Alice's own key is not Bob's: hers charges.
    let paid = alice.post_with("/payments", &[("idempotency-key", "k")], &charge);
    assert_eq!(paid.status, 201, "{paid:?}");
    let path = format!("/payments/{}", paid.json()["payment_id"].as_str().unwrap());
    assert_eq!(alice.get(&path).json(), paid.json());
    assert_error(&bob.get(&path), 404, "not_found", "payment not found", None);
    assert_eq!(app.admin("GET", &path, None).status, 200);
}
