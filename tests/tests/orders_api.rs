//! `/orders...` over HTTP against the real app: placing orders (both body
//! forms, every validation rule, idempotency), reading and listing, status
//! changes, cancellation, the summary, reconcile and reindex, and no
//! overselling under concurrency on both stores and both instance policies.

mod common;
use common::*;

const MAX_I64: &str = "9223372036854775807";

/// Orders listed with the admin token (every user's).
fn count(app: &App, query: &str) -> u64 {
    let reply = app.admin("GET", &format!("/orders{query}"), None);
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()["total_count"].as_u64().unwrap()
}

fn ids(list: &Value) -> Vec<String> {
    list["orders"].as_array().unwrap().iter().map(|order| order["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn placing_orders_in_both_forms_prices_them_and_reserves_stock() {
    let (_redis, app) = App::start();
    app.put_product("widget", 1250, "USD", 10);
    app.put_product("gadget", 399, "USD", 5);

    let multi = app.place(&json!({
        "user_id": 7,
        "items": [{"product_id": "widget", "quantity": 2}, {"product_id": "gadget", "quantity": 3}],
        "shipping_address": "1 Main St",
        "billing_address": "2 Side St",
        "notes": "leave at the door",
    }));
    assert_eq!(multi["user_id"], 7);
    assert_eq!(
        multi["items"],
        json!([
            {"product_id": "widget", "product_name": "Product widget", "unit_price": 1250, "quantity": 2, "subtotal": 2500},
            {"product_id": "gadget", "product_name": "Product gadget", "unit_price": 399, "quantity": 3, "subtotal": 1197},
        ])
    );
    assert_eq!(multi["total_amount"], 3697);
    assert_eq!(multi["currency"], "USD");
    assert_eq!(multi["status"], "confirmed");
    assert_eq!(multi["payment_status"], "pending");
    assert_eq!(multi["payment_id"], Value::Null);
    assert_eq!(multi["refund_required"], false);
    assert_eq!(multi["shipping_address"], "1 Main St");
    assert_eq!(multi["billing_address"], "2 Side St");
    assert_eq!(multi["notes"], "leave at the door");
    assert!(multi["id"].as_str().unwrap().starts_with("ord_"), "{multi}");
    let number = multi["order_number"].as_str().unwrap();
    assert!(number.starts_with("ORD") && number.len() == 3 + 14 + 6, "{number}");
    assert!(multi["reservation_id"].as_str().unwrap().starts_with("res_"), "{multi}");
    assert_eq!(multi["confirmed_at"], multi["created_at"]);
    for stamp in ["paid_at", "shipped_at", "delivered_at", "cancelled_at"] {
        assert_eq!(multi[stamp], Value::Null, "{stamp}");
    }
    assert!(multi.get("payment_token").is_none(), "the token is never echoed");
    assert_eq!(app.stock("widget"), (8, 2));
    assert_eq!(app.stock("gadget"), (2, 3));

    let single = app.place(&json!({"user_id": 7, "product_id": "gadget", "quantity": 2}));
    assert_eq!(
        single["items"],
        json!([{"product_id": "gadget", "product_name": "Product gadget", "unit_price": 399, "quantity": 2, "subtotal": 798}])
    );
    assert_eq!(single["total_amount"], 798);
    assert_eq!(app.stock("gadget"), (0, 5));

    // What was answered is what is stored.
    assert_eq!(app.order(multi["id"].as_str().unwrap()), multi);
}

#[test]
fn every_broken_rule_of_an_order_is_a_400_naming_the_field() {
    let (_redis, app) = App::start();
    app.put_product("p1", 100, "USD", 100);
    let item = json!({"product_id": "p1", "quantity": 1});
    let with = |patch: Value| {
        let mut body = json!({"user_id": 1, "items": [item.clone()]});
        for (key, value) in patch.as_object().unwrap() {
            body[key] = value.clone();
        }
        app.customer(1).post("/orders", &body)
    };
    let user_id_rule = format!("user_id must be an integer from 1 to {MAX_I64}");
    assert_invalid(&with(json!({"user_id": 0})), "user_id", &user_id_rule);
    assert_invalid(&with(json!({"user_id": -3})), "user_id", &user_id_rule);
    assert_invalid(&with(json!({"user_id": "1"})), "user_id", &user_id_rule);
    // The admin places orders for any user, so it must name one.
    assert_invalid(&app.admin("POST", "/orders", Some(&json!({"items": [item.clone()]}))), "user_id", "user_id is required");
    assert_invalid(&with(json!({"items": []})), "items", "items must have 1 to 50 elements");
    assert_invalid(&with(json!({"items": vec![item.clone(); 51]})), "items", "items must have 1 to 50 elements");
    assert_invalid(&app.customer(1).post("/orders", &json!({"user_id": 1})), "items", "items is required");
    // Fifty lines is the limit, not over it.
    assert_eq!(with(json!({"items": vec![json!({"product_id": "p1", "quantity": 1}); 50]})).status, 201);
    let quantity_rule = "items[1].quantity must be an integer from 1 to 1000";
    for quantity in [0, 1001] {
        let items = json!([item.clone(), {"product_id": "p1", "quantity": quantity}]);
        assert_invalid(&with(json!({"items": items})), "items[1].quantity", quantity_rule);
        let single = json!({"user_id": 1, "product_id": "p1", "quantity": quantity});
        assert_invalid(&app.customer(1).post("/orders", &single), "quantity", "quantity must be an integer from 1 to 1000");
    }
    assert_invalid(&with(json!({"items": [{"product_id": "p1", "quantity": 1.5}]})), "items[0].quantity", "items[0].quantity must be an integer from 1 to 1000");
    assert_invalid(
        &with(json!({"items": [{"product_id": "a/b", "quantity": 1}]})),
        "items[0].product_id",
        "items[0].product_id may only contain letters, digits, '_' and '-'",
    );
    assert_invalid(
        &with(json!({"shipping_address": "a".repeat(501)})),
        "shipping_address",
        "shipping_address must have 0 to 500 characters",
    );
    assert_invalid(
        &with(json!({"billing_address": "é".repeat(501)})),
        "billing_address",
        "billing_address must have 0 to 500 characters",
    );
    assert_invalid(&with(json!({"notes": "n".repeat(1001)})), "notes", "notes must have 0 to 1000 characters");
    assert_invalid(&with(json!({"payment_token": ""})), "payment_token", "payment_token must have 1 to 256 characters");
    assert_invalid(&with(json!({"coupon": "FREE"})), "coupon", "unknown field coupon");
    assert_invalid(
        &with(json!({"items": [{"product_id": "p1", "quantity": 1, "price": 1}]})),
        "items[0].price",
        "unknown field items[0].price",
    );
    assert_invalid(
        &with(json!({"product_id": "p1"})),
        "product_id",
        "product_id cannot be given together with items",
    );
    assert_invalid(&app.customer(1).post("/orders", &json!([1, 2])), "body", "body must be a JSON object");
    // The limits themselves are accepted.
    let at_limits = with(json!({"shipping_address": "a".repeat(500), "notes": "n".repeat(1000)}));
    assert_eq!(at_limits.status, 201, "{at_limits:?}");

    let malformed = app.customer(1).send("POST", "/orders", &[("content-type", "application/json")], Some("{\"user_id\": 1,"));
    assert_eq!(malformed.status, 400);
    let error = &malformed.json()["error"];
    assert_eq!(error["code"], "invalid_json");
    assert!(error["message"].as_str().unwrap().starts_with("body is not valid JSON: "), "{error}");
    assert!(error.get("field").is_none(), "{error}");

    let huge = format!("{{\"user_id\": 1, \"notes\": \"{}\"}}", "x".repeat(64 * 1024));
    let too_large = app.customer(1).send("POST", "/orders", &[("content-type", "application/json")], Some(&huge));
    assert_error(&too_large, 413, "payload_too_large", "request body is larger than 65536 bytes", None);

    // Only the two orders at the limits were placed; nothing was reserved by the rest.
    assert_eq!(count(&app, ""), 2);
    assert_eq!(app.stock("p1"), (49, 51));
}

#[test]
fn unknown_products_are_422_and_short_stock_is_409_taking_nothing() {
    let (_redis, app) = App::start();
    app.put_product("p1", 100, "USD", 10);
    app.put_product("p2", 100, "USD", 1);
    app.put_product("eur", 100, "EUR", 10);

    let customer = app.customer(1);
    let unknown = customer.post("/orders", &json!({"user_id": 1, "items": [{"product_id": "p1", "quantity": 1}, {"product_id": "nope", "quantity": 1}]}));
    assert_error(&unknown, 422, "unknown_product", "product nope does not exist", Some("items[1].product_id"));
    let unknown = customer.post("/orders", &json!({"user_id": 1, "product_id": "nope", "quantity": 1}));
    assert_error(&unknown, 422, "unknown_product", "product nope does not exist", Some("product_id"));

    let short = customer.post("/orders", &json!({"user_id": 1, "items": [{"product_id": "p1", "quantity": 4}, {"product_id": "p2", "quantity": 2}]}));
    assert_error(&short, 409, "insufficient_stock", "product p2: 2 requested, 1 available", Some("items[1].product_id"));
    let short = customer.post("/orders", &json!({"user_id": 1, "product_id": "p1", "quantity": 11}));
    assert_error(&short, 409, "insufficient_stock", "product p1: 11 requested, 10 available", Some("product_id"));

    let mixed = customer.post("/orders", &json!({"user_id": 1, "items": [{"product_id": "p1", "quantity": 1}, {"product_id": "eur", "quantity": 1}]}));
    assert_error(&mixed, 422, "mixed_currency", "product eur is priced in EUR, the order in USD", Some("items[1].product_id"));

    // The first line of the short order was given back.
    assert_eq!(app.stock("p1"), (10, 0));
    assert_eq!(app.stock("p2"), (1, 0));
    assert_eq!(count(&app, ""), 0);
}

#[test]
fn an_idempotency_key_replays_the_first_answer_and_creates_nothing_new() {
    let (_redis, app) = App::start();
    app.put_product("p1", 250, "USD", 10);
    let body = json!({"user_id": 3, "product_id": "p1", "quantity": 2});
    let customer = app.customer(3);

    let first = customer.post_with("/orders", &[("idempotency-key", "key-1")], &body);
    assert_eq!(first.status, 201, "{first:?}");
    let again = customer.post_with("/orders", &[("idempotency-key", "key-1")], &body);
    assert_eq!((again.status, &again.body), (201, &first.body), "the retry is the identical first answer");
    assert_eq!(count(&app, ""), 1);
    assert_eq!(count(&app, "?user_id=3"), 1);
    assert_eq!(app.stock("p1"), (8, 2));

    let other_body = json!({"user_id": 3, "product_id": "p1", "quantity": 3});
    let reused = customer.post_with("/orders", &[("idempotency-key", "key-1")], &other_body);
    assert_error(&reused, 422, "idempotency_key_reused", "the Idempotency-Key was used for a different request", Some("Idempotency-Key"));

    // Validation errors are not remembered: the key stays free.
    let invalid = customer.post_with("/orders", &[("idempotency-key", "key-2")], &json!({"user_id": 0, "product_id": "p1", "quantity": 1}));
    assert_eq!(invalid.status, 400);
    let valid = customer.post_with("/orders", &[("idempotency-key", "key-2")], &body);
    assert_eq!(valid.status, 201, "{valid:?}");
    assert_ne!(valid.json()["id"], first.json()["id"]);

    // Every other answer is: a 409 for short stock stays the answer for its key.
    let short = json!({"user_id": 3, "product_id": "p1", "quantity": 7});
    let refused = customer.post_with("/orders", &[("idempotency-key", "key-3")], &short);
    assert_error(&refused, 409, "insufficient_stock", "product p1: 7 requested, 6 available", Some("product_id"));
    app.put_product("p1", 250, "USD", 100);
    let replayed = customer.post_with("/orders", &[("idempotency-key", "key-3")], &short);
    assert_eq!((replayed.status, &replayed.body), (409, &refused.body));

    let long_key = customer.post_with("/orders", &[("idempotency-key", &"k".repeat(256))], &body);
    assert_invalid(&long_key, "Idempotency-Key", "the Idempotency-Key header must have 1 to 255 characters");
    assert_eq!(count(&app, ""), 2);
}

#[test]
fn reading_and_listing_orders_newest_first_with_filters_and_pages() {
    let (_redis, app) = App::start();
    app.put_product("p1", 100, "USD", 100);
    let mut placed = Vec::new();
    for user in [1, 2, 1, 1, 2] {
        placed.push(app.place(&json!({"user_id": user, "product_id": "p1", "quantity": 1}))["id"].as_str().unwrap().to_string());
    }
    let cancelled = app.customer(1).delete(&format!("/orders/{}", placed[2]));
    assert_eq!(cancelled.status, 200, "{cancelled:?}");

    assert_eq!(app.order(&placed[0])["id"], placed[0].as_str());
    let admin_get = |path: &str| app.admin("GET", path, None);
    assert_error(&admin_get("/orders/ord_missing"), 404, "not_found", "order not found", None);
    assert_error(&admin_get("/orders/not..valid"), 404, "not_found", "order not found", None);

    let newest_first: Vec<String> = placed.iter().rev().cloned().collect();
    let all = admin_get("/orders").json();
    assert_eq!(ids(&all), newest_first);
    assert_eq!(
        (all["total_count"].clone(), all["page"].clone(), all["page_size"].clone(), all["has_next"].clone(), all["has_previous"].clone()),
        (json!(5), json!(1), json!(10), json!(false), json!(false))
    );
    let pages: Vec<Value> = (1..=3).map(|page| admin_get(&format!("/orders?page={page}&page_size=2")).json()).collect();
    assert_eq!(ids(&pages[0]), newest_first[0..2]);
    assert_eq!(ids(&pages[1]), newest_first[2..4]);
    assert_eq!(ids(&pages[2]), newest_first[4..5]);
    let flags: Vec<(Value, Value)> = pages.iter().map(|p| (p["has_next"].clone(), p["has_previous"].clone())).collect();
    assert_eq!(flags, [(json!(true), json!(false)), (json!(true), json!(true)), (json!(false), json!(true))]);
    let beyond = admin_get("/orders?page=9&page_size=2").json();
    assert_eq!((ids(&beyond).len(), beyond["total_count"].clone(), beyond["has_next"].clone(), beyond["has_previous"].clone()), (0, json!(5), json!(false), json!(true)));

    let user1 = admin_get("/orders?user_id=1").json();
    assert_eq!(ids(&user1), [placed[3].clone(), placed[2].clone(), placed[0].clone()]);
    assert_eq!(user1["total_count"], 3);
    let user2 = admin_get("/orders?user_id=2&page_size=1&page=2").json();
    assert_eq!(ids(&user2), [placed[1].clone()]);
    assert_eq!((user2["total_count"].clone(), user2["has_next"].clone(), user2["has_previous"].clone()), (json!(2), json!(false), json!(true)));
    let confirmed = admin_get("/orders?status=confirmed").json();
    assert_eq!(ids(&confirmed), [placed[4].clone(), placed[3].clone(), placed[1].clone(), placed[0].clone()]);
    assert_eq!(confirmed["total_count"], 4);
    let user1_cancelled = admin_get("/orders?user_id=1&status=cancelled").json();
    assert_eq!(ids(&user1_cancelled), [placed[2].clone()]);
    assert_eq!(user1_cancelled["total_count"], 1);
    assert_eq!(count(&app, "?user_id=2&status=cancelled"), 0);
    assert_eq!(count(&app, "?user_id=99"), 0);

    let page_rule = "page must be an integer from 1 to 1000000000";
    let size_rule = "page_size must be an integer from 1 to 100";
    assert_invalid(&admin_get("/orders?page=0"), "page", page_rule);
    assert_invalid(&admin_get("/orders?page=abc"), "page", page_rule);
    assert_invalid(&admin_get("/orders?page=-1"), "page", page_rule);
    assert_invalid(&admin_get("/orders?page_size=0"), "page_size", size_rule);
    assert_invalid(&admin_get("/orders?page_size=101"), "page_size", size_rule);
    assert_invalid(&admin_get("/orders?page_size=ten"), "page_size", size_rule);
    assert_invalid(&admin_get("/orders?user_id=abc"), "user_id", &format!("user_id must be an integer from 1 to {MAX_I64}"));
    assert_invalid(&admin_get("/orders?user_id=0"), "user_id", &format!("user_id must be an integer from 1 to {MAX_I64}"));
    assert_invalid(
        &admin_get("/orders?status=lost"),
        "status",
        "status must be one of pending, confirmed, paid, processing, shipped, delivered, cancelled, refunded",
    );
    assert_invalid(&admin_get("/orders?colour=red"), "colour", "unknown query parameter colour");
    assert_invalid(&admin_get("/orders?page=1&page=2"), "page", "query parameter page given twice");
    assert_eq!(admin_get("/orders?page_size=100").status, 200);
}

fn notes_lines(order: &Value) -> Vec<String> {
    order["notes"].as_str().unwrap_or("").lines().map(str::to_string).collect()
}

/// `[<rfc3339>] text`
#[track_caller]
fn assert_note(line: &str, text: &str) {
    let (stamp, rest) = line.strip_prefix('[').and_then(|l| l.split_once("] ")).unwrap_or_else(|| panic!("not a note: {line}"));
    assert_eq!(rest, text, "{line}");
    assert!(stamp.len() == 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{line}");
}

#[test]
fn status_changes_are_admin_only_follow_the_state_machine_and_stamp_the_order() {
    let (_redis, app) = App::start();
    app.put_product("p1", 500, "USD", 10);
    let order = app.place(&json!({"user_id": 1, "product_id": "p1", "quantity": 3, "notes": "gift"}));
    let id = order["id"].as_str().unwrap();
    let path = format!("/orders/{id}/status");
    let body = json!({"status": "paid", "notes": "paid by phone"}).to_string();

    let unauthorized = app.send("PUT", &path, &[("content-type", "application/json")], Some(&body));
    assert_error(&unauthorized, 401, "unauthorized", "admin routes need a bearer token", None);
    let forbidden = app.send("PUT", &path, &[("authorization", "Bearer wrong")], Some(&body));
    assert_error(&forbidden, 403, "forbidden", "the bearer token is not the admin token", None);
    let not_bearer = app.send("PUT", &path, &[("authorization", ADMIN_TOKEN)], Some(&body));
    assert_eq!(not_bearer.status, 403);
    assert_eq!(app.order(id)["status"], "confirmed", "refused requests changed nothing");

    let put = |status: &str, notes: Option<&str>| {
        let mut body = json!({"status": status});
        if let Some(notes) = notes {
            body["notes"] = json!(notes);
        }
        app.admin("PUT", &path, Some(&body))
    };
    let skipped = put("shipped", None);
    assert_error(&skipped, 409, "invalid_transition", "an order cannot go from confirmed to shipped", Some("status"));
    assert_invalid(&put("lost", None), "status", "unknown status");
    assert_invalid(&app.admin("PUT", &path, Some(&json!({"status": "paid", "by": "me"}))), "by", "unknown field by");
    assert_error(&app.admin("PUT", "/orders/ord_missing/status", Some(&json!({"status": "paid"}))), 404, "not_found", "order not found", None);

    let paid = put("paid", Some("paid by phone"));
    assert_eq!(paid.status, 200, "{paid:?}");
    let paid = paid.json();
    assert_eq!(paid["status"], "paid");
    assert!(paid["paid_at"].is_string(), "{paid}");
    let lines = notes_lines(&paid);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], "gift");
    assert_note(&lines[1], "paid by phone");
    // Paid: the reservation is committed, the units are sold.
    assert_eq!(app.stock("p1"), (7, 0));

    let processing = put("processing", None).json();
    assert_eq!(processing["status"], "processing");
    assert_eq!(notes_lines(&processing).len(), 2, "no note, nothing appended");
    let shipped = put("shipped", Some("DHL 123")).json();
    assert_eq!(shipped["status"], "shipped");
    assert!(shipped["shipped_at"].is_string());
    assert_eq!(shipped["delivered_at"], Value::Null);
    assert_eq!(put("cancelled", None).status, 409, "shipped orders are not cancelled");
    let delivered = put("delivered", None).json();
    assert_eq!(delivered["status"], "delivered");
    assert!(delivered["delivered_at"].is_string());
    assert_eq!(delivered["paid_at"], paid["paid_at"]);
    assert_eq!(delivered["shipped_at"], shipped["shipped_at"]);

    let cancel = put("cancelled", None);
    assert_error(&cancel, 409, "invalid_transition", "an order cannot go from delivered to cancelled", Some("status"));
    let deleted = app.customer(1).delete(&format!("/orders/{id}"));
    assert_error(&deleted, 409, "invalid_transition", "an order cannot go from delivered to cancelled", Some("status"));

    let refunded = put("refunded", Some("returned")).json();
    assert_eq!(refunded["status"], "refunded");
    let lines = notes_lines(&refunded);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_note(&lines[2], "DHL 123");
    assert_note(&lines[3], "returned");
    assert_error(&put("delivered", None), 409, "invalid_transition", "an order cannot go from refunded to delivered", Some("status"));
    assert_eq!(app.order(id), refunded);
    assert_eq!(app.stock("p1"), (7, 0));
}

#[test]
fn cancelling_releases_the_stock_and_is_refused_once_final() {
    let (_redis, app) = App::start();
    app.put_product("p1", 500, "USD", 10);
    app.put_product("p2", 100, "USD", 4);
    let order = app.place(&json!({"user_id": 1, "items": [{"product_id": "p1", "quantity": 3}, {"product_id": "p2", "quantity": 4}]}));
    let id = order["id"].as_str().unwrap();
    assert_eq!((app.stock("p1"), app.stock("p2")), ((7, 3), (0, 4)));

    let cancelled = app.customer(1).delete(&format!("/orders/{id}?reason=changed+my%20mind"));
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    let cancelled = cancelled.json();
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["cancelled_at"].is_string());
    assert_eq!(cancelled["refund_required"], false);
    let lines = notes_lines(&cancelled);
    assert_eq!(lines.len(), 1);
    assert_note(&lines[0], "cancelled: changed my mind");
    assert_eq!((app.stock("p1"), app.stock("p2")), ((10, 0), (4, 0)));
    let reservation = app.reservation(order["reservation_id"].as_str().unwrap());
    assert_eq!(reservation["status"], "released");

    let again = app.customer(1).delete(&format!("/orders/{id}"));
    assert_error(&again, 409, "invalid_transition", "an order cannot go from cancelled to cancelled", Some("status"));
    assert_eq!((app.stock("p1"), app.stock("p2")), ((10, 0), (4, 0)), "stock went back once");
    assert_error(&app.customer(1).delete("/orders/ord_missing"), 404, "not_found", "order not found", None);

    // Without a reason; and a paid order gives its sold units back.
    let paid = app.place(&json!({"user_id": 1, "product_id": "p1", "quantity": 2}));
    let paid_id = paid["id"].as_str().unwrap();
    assert_eq!(app.admin("PUT", &format!("/orders/{paid_id}/status"), Some(&json!({"status": "paid"}))).status, 200);
    assert_eq!(app.stock("p1"), (8, 0));
    let cancelled = app.customer(1).delete(&format!("/orders/{paid_id}")).json();
    assert_note(&notes_lines(&cancelled)[0], "cancelled");
    assert_eq!(app.stock("p1"), (10, 0));

    let long = app.customer(1).delete(&format!("/orders/{paid_id}?reason={}", "r".repeat(1001)));
    assert_invalid(&long, "reason", "reason must have at most 1000 characters");
    assert_invalid(&app.customer(1).delete(&format!("/orders/{paid_id}?why=x")), "why", "unknown query parameter why");
}

#[test]
fn the_summary_counts_a_known_mix_exactly_and_is_never_an_order_id() {
    let (_redis, app) = App::start();
    app.put_product("usd", 333, "USD", 100);
    app.put_product("eur", 700, "EUR", 100);
    let empty = app.summary();
    assert_eq!(
        empty,
        json!({"total_orders": 0, "pending_orders": 0, "completed_orders": 0, "cancelled_orders": 0, "refunded_orders": 0,
               "currency": "USD", "total_revenue": 0, "average_order_value": 0, "revenue_by_currency": []})
    );

    let place = |product: &str, quantity: i64| app.place_simple(product, quantity, None)["id"].as_str().unwrap().to_string();
    let set = |id: &str, statuses: &[&str]| {
        for status in statuses {
            let reply = app.admin("PUT", &format!("/orders/{id}/status"), Some(&json!({"status": status})));
            assert_eq!(reply.status, 200, "{status}: {reply:?}");
        }
    };
    let paid = place("usd", 1); // 333
    set(&paid, &["paid"]);
    let delivered = place("usd", 2); // 666
    set(&delivered, &["paid", "processing", "shipped", "delivered"]);
    let _pending = place("usd", 3);
    let eur = place("eur", 1);
    set(&eur, &["paid", "processing"]);
    let cancelled = place("usd", 1);
    assert_eq!(app.customer(1).delete(&format!("/orders/{cancelled}")).status, 200);
    let refunded = place("usd", 4);
    set(&refunded, &["paid", "processing", "shipped", "delivered", "refunded"]);
    let shipped = place("eur", 2); // 1400
    set(&shipped, &["paid", "processing", "shipped"]);

    let expected = json!({
        "total_orders": 7,
        "pending_orders": 1,
        "completed_orders": 1,
        "cancelled_orders": 1,
        "refunded_orders": 1,
        "currency": "USD",
        "total_revenue": 999,
        "average_order_value": 499,
        "revenue_by_currency": [
            {"currency": "EUR", "total_revenue": 2100, "revenue_orders": 2, "average_order_value": 1050},
            {"currency": "USD", "total_revenue": 999, "revenue_orders": 2, "average_order_value": 499},
        ],
    });
    assert_eq!(app.summary(), expected);

    // "summary" (and the other route words) are never taken for order ids.
    assert_error(&app.delete("/orders/summary"), 405, "method_not_allowed", "allowed methods: GET", None);
    assert_error(&app.get("/orders/reconcile"), 405, "method_not_allowed", "allowed methods: POST", None);
    assert_error(&app.get("/orders/reindex"), 405, "method_not_allowed", "allowed methods: POST", None);
    assert_error(&app.get("/orders/summary/extra"), 404, "not_found", "no route for /orders/summary/extra", None);
    assert_error(&app.send("PATCH", "/orders", &[], Some("{}")), 405, "method_not_allowed", "allowed methods: GET, POST", None);

    // A reindex rebuilds the same figures and listings from the orders.
    let reindex = app.admin("POST", "/orders/reindex", None);
    assert_eq!((reindex.status, reindex.json()), (200, json!({"orders": 7, "generation": 1, "cursor": 7, "done": true})));
    assert_eq!(app.summary(), expected);
    assert_eq!(count(&app, "?status=delivered"), 1);
    assert_eq!(count(&app, "?status=paid"), 1);
    assert_eq!(count(&app, "?user_id=1&status=shipped"), 1);
    // In batches: the new generation goes live with the call that reaches the end.
    let batches: Vec<Value> = (0..3).map(|_| app.admin("POST", "/orders/reindex?limit=3", None).json()).collect();
    assert_eq!(
        batches,
        [
            json!({"orders": 3, "generation": 2, "cursor": 3, "done": false}),
            json!({"orders": 3, "generation": 2, "cursor": 6, "done": false}),
            json!({"orders": 1, "generation": 2, "cursor": 7, "done": true}),
        ]
    );
    assert_eq!(app.summary(), expected);
    assert_invalid(&app.admin("POST", "/orders/reindex?limit=0", None), "limit", "limit must be an integer from 1 to 10000");
}

#[test]
fn orders_past_what_revenue_can_count_are_refused_and_cancels_leave_revenue_exact() {
    let (_redis, app) = App::start();
    app.put_product("most", i64::MAX - 10, "USD", 5);
    app.put_product("rest", 10, "USD", 5);
    app.put_product("more", 100, "USD", 5);
    let id = |order: Value| order["id"].as_str().unwrap().to_string();
    let pay = |id: &str| {
        let reply = app.admin("PUT", &format!("/orders/{id}/status"), Some(&json!({"status": "paid"})));
        assert_eq!(reply.status, 200, "{reply:?}");
    };
    let most = id(app.place_simple("most", 1, None));
    pay(&most);
    // Past the bound: refused before anything is written.
    let more = app.customer(1).post("/orders", &json!({"user_id": 1, "product_id": "more", "quantity": 1}));
    let message = "orders in USD would together pass the largest amount the shop can count";
    assert_error(&more, 422, "amount_overflow", message, Some("items"));
    assert_eq!(app.stock("more"), (5, 0));
    // At the bound exactly: placed and counted.
    let rest = id(app.place_simple("rest", 1, None));
    pay(&rest);
    assert_eq!(app.summary()["total_revenue"], json!(i64::MAX));
    for order in [&most, &rest] {
        assert_eq!(app.customer(1).delete(&format!("/orders/{order}")).status, 200);
    }
    let summary = app.summary();
    assert_eq!(
        (&summary["total_revenue"], &summary["cancelled_orders"], &summary["revenue_by_currency"]),
        (&json!(0), &json!(2), &json!([{"currency": "USD", "total_revenue": 0, "revenue_orders": 0, "average_order_value": 0}]))
    );
}

#[test]
fn reconcile_and_reindex_are_admin_routes() {
    let (_redis, app) = App::start();
    app.put_product("p1", 100, "USD", 10);
    app.place_simple("p1", 1, None);
    for path in ["/orders/reconcile", "/orders/reindex"] {
        assert_error(&app.post(path, &json!({})), 401, "unauthorized", "admin routes need a bearer token", None);
        let wrong = app.send("POST", path, &[("authorization", "Bearer nope")], None);
        assert_error(&wrong, 403, "forbidden", "the bearer token is not the admin token", None);
    }
    // The open order was just placed: looked at, too recent to be stuck (300 s by default).
    let report = app.reconcile();
    assert_eq!(
        report,
        json!({"examined": 1, "recent": 1, "events_resent": 0, "stock_settled": 0, "payment_requested": 0, "cancelled": 0,
               "payments_found": 0, "refunds_requested": 0, "idempotency_swept": 0, "indexes_finished": 0})
    );
    assert_invalid(&app.admin("POST", "/orders/reconcile?limit=0", None), "limit", "limit must be an integer from 1 to 1000");
    assert_eq!(app.admin("POST", "/orders/reconcile?limit=1000", None).status, 200);
    let reindex = app.admin("POST", "/orders/reindex", None);
    assert_eq!((reindex.status, reindex.json()), (200, json!({"orders": 1, "generation": 1, "cursor": 1, "done": true})));
}

/// 20 concurrent orders for the last 5 units: exactly 5 placed, 15 refused.
fn no_overselling(options: Options) {
    let (_redis, app) = App::start_with(options);
    app.put_product("last", 100, "USD", 5);
    let start = std::sync::Barrier::new(20);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..20)
            .map(|user| {
                let (app, start) = (&app, &start);
                scope.spawn(move || {
                    let customer = app.customer(user + 1);
                    start.wait();
                    customer.post("/orders", &json!({"user_id": user + 1, "product_id": "last", "quantity": 1})).status
                })
            })
            .collect();
        workers.into_iter().map(|worker| worker.join().unwrap()).collect()
    });
    let created = statuses.iter().filter(|status| **status == 201).count();
    let refused = statuses.iter().filter(|status| **status == 409).count();
    assert_eq!((created, refused), (5, 15), "{statuses:?}");
    assert_eq!(app.stock("last"), (0, 5));
    assert_eq!(count(&app, ""), 5);
    assert_eq!(app.summary()["pending_orders"], 5);
}

#[test]
fn no_overselling_on_the_embedded_store() {
    no_overselling(Options::default());
}

#[test]
fn no_overselling_on_the_embedded_store_with_an_instance_per_request() {
    no_overselling(Options { strict_instances: true, ..Options::default() });
}

#[test]
fn no_overselling_on_redis() {
    no_overselling(Options::redis_kv());
}

#[test]
fn no_overselling_on_redis_through_outbound_redis() {
    no_overselling(Options::key_value_redis());
}

#[test]
fn no_overselling_on_redis_with_an_instance_per_request() {
    no_overselling(Options { strict_instances: true, ..Options::redis_kv() });
}
