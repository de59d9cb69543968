//! `/inventory...` over HTTP: the catalog (admin writes, validation, reads,
//! listing) and reservations (create, short and unknown stock, release,
//! commit, expiry, sweep), with the stock figures checked after each step.

mod common;
use common::*;

#[test]
fn products_are_written_by_admins_only_with_every_field_checked() {
    let (_redis, app) = App::start();
    let body = json!({"name": "Widget", "sku": "W-1", "price": 1250, "currency": "USD", "stock": 10});
    let path = "/inventory/products/widget";
    let unauthorized = app.send("PUT", path, &[("content-type", "application/json")], Some(&body.to_string()));
    assert_error(&unauthorized, 401, "unauthorized", "admin routes need a bearer token", None);
    let forbidden = app.send("PUT", path, &[("authorization", "Bearer nope")], Some(&body.to_string()));
    assert_error(&forbidden, 403, "forbidden", "the bearer token is not the admin token", None);
    assert_error(&app.get(path), 404, "not_found", "product not found", None);

    let created = app.admin("PUT", path, Some(&body));
    let product = json!({"product_id": "widget", "name": "Widget", "sku": "W-1", "price": 1250, "currency": "USD", "available": 10, "reserved": 0});
    assert_eq!((created.status, created.json()), (201, product.clone()));
    assert_eq!(app.product("widget"), product);
    let replaced = app.admin("PUT", path, Some(&json!({"name": "Widget 2", "price": 999, "currency": "EUR", "stock": 3})));
    let product = json!({"product_id": "widget", "name": "Widget 2", "sku": null, "price": 999, "currency": "EUR", "available": 3, "reserved": 0});
    assert_eq!((replaced.status, replaced.json()), (200, product.clone()));

    let put = |patch: Value| {
        let mut body = json!({"name": "W", "price": 1, "currency": "USD", "stock": 1});
        for (key, value) in patch.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(key);
            } else {
                body[key] = value.clone();
            }
        }
        app.admin("PUT", path, Some(&body))
    };
    assert_invalid(&put(json!({"name": null})), "name", "name is required");
    assert_invalid(&put(json!({"name": ""})), "name", "name must have 1 to 200 characters");
    assert_invalid(&put(json!({"name": "n".repeat(201)})), "name", "name must have 1 to 200 characters");
    assert_invalid(&put(json!({"sku": ""})), "sku", "sku must have 1 to 64 characters");
    assert_invalid(&put(json!({"price": -1})), "price", "price must be an integer from 0 to 9223372036854775807");
    assert_invalid(&put(json!({"price": 9.99})), "price", "price must be an integer from 0 to 9223372036854775807");
    assert_invalid(&put(json!({"currency": "usd"})), "currency", "currency must be three uppercase letters (ISO 4217)");
    assert_invalid(&put(json!({"currency": "USDT"})), "currency", "currency must have 3 to 3 characters");
    assert_invalid(&put(json!({"stock": -1})), "stock", "stock must be an integer from 0 to 1000000000");
    assert_invalid(&put(json!({"stock": 1_000_000_001})), "stock", "stock must be an integer from 0 to 1000000000");
    assert_invalid(&put(json!({"colour": "red"})), "colour", "unknown field colour");
    let bad_id = app.admin("PUT", "/inventory/products/a.b", Some(&json!({"name": "W", "price": 1, "currency": "USD", "stock": 1})));
    assert_invalid(&bad_id, "product_id", "product ids have 1 to 64 characters of [A-Za-z0-9_-]");
    let malformed = app.send("PUT", path, &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))], Some("{"));
    assert_eq!((malformed.status, malformed.json()["error"]["code"].clone()), (400, json!("invalid_json")));
    assert_error(&app.delete(path), 405, "method_not_allowed", "allowed methods: GET, PUT", None);
    assert_error(&app.get("/inventory/stock"), 404, "not_found", "no route for /inventory/stock", None);
    assert_eq!(app.product("widget"), product, "refused writes changed nothing");
}

#[test]
fn the_catalog_lists_products_by_id_in_pages() {
    let (_redis, app) = App::start();
    for (id, stock) in [("c", 3), ("a", 1), ("b", 2)] {
        app.put_product(id, 100, "USD", stock);
    }
    let all = app.get("/inventory/products").json();
    let listed: Vec<(Value, Value)> = all["products"].as_array().unwrap().iter().map(|p| (p["product_id"].clone(), p["available"].clone())).collect();
    assert_eq!(listed, [(json!("a"), json!(1)), (json!("b"), json!(2)), (json!("c"), json!(3))]);
    assert_eq!((all["total_count"].clone(), all["has_next"].clone(), all["has_previous"].clone()), (json!(3), json!(false), json!(false)));
    let second = app.get("/inventory/products?page=2&page_size=2").json();
    assert_eq!(second["products"].as_array().unwrap().len(), 1);
    assert_eq!(second["products"][0], app.product("c"));
    assert_eq!((second["has_next"].clone(), second["has_previous"].clone()), (json!(false), json!(true)));
    assert_invalid(&app.get("/inventory/products?page_size=101"), "page_size", "page_size must be an integer from 1 to 100");
    assert_invalid(&app.get("/inventory/products?page=0"), "page", "page must be an integer from 1 to 1000000000");
    assert_invalid(&app.get("/inventory/products?sort=name"), "sort", "unknown query parameter sort");
}

#[test]
fn reservations_hold_release_and_commit_stock_exactly_once() {
    let (_redis, app) = App::start();
    app.put_product("p1", 100, "USD", 10);
    app.put_product("p2", 100, "USD", 2);

    let reply = app.admin("POST", "/inventory/reservations", Some(&json!({"order_id": "ord_a", "items": [{"product_id": "p1", "quantity": 4}, {"product_id": "p2", "quantity": 2}]})));
    assert_eq!(reply.status, 201, "{reply:?}");
    let held = reply.json();
    let id = held["reservation_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("res_"), "{held}");
    assert_eq!(held["order_id"], "ord_a");
    assert_eq!(held["status"], "held");
    assert_eq!(held["items"], json!([{"product_id": "p1", "quantity": 4}, {"product_id": "p2", "quantity": 2}]));
    assert_eq!(unix_seconds(held["expires_at"].as_str().unwrap()) - unix_seconds(held["created_at"].as_str().unwrap()), 900);
    assert_eq!(held.as_object().unwrap().len(), 6, "{held}");
    assert_eq!((app.stock("p1"), app.stock("p2")), ((6, 4), (0, 2)));
    assert_eq!(app.admin("GET", &format!("/inventory/reservations/{id}"), None).json(), held);

    let short = app.admin("POST", "/inventory/reservations", Some(&json!({"order_id": "ord_b", "items": [{"product_id": "p1", "quantity": 1}, {"product_id": "p2", "quantity": 1}]})));
    assert_error(&short, 409, "insufficient_stock", "product p2: 1 requested, 0 available", Some("items[1].product_id"));
    let unknown = app.admin("POST", "/inventory/reservations", Some(&json!({"order_id": "ord_b", "items": [{"product_id": "p1", "quantity": 1}, {"product_id": "zz", "quantity": 1}]})));
    assert_error(&unknown, 422, "unknown_product", "product zz does not exist", Some("items[1].product_id"));
    assert_eq!((app.stock("p1"), app.stock("p2")), ((6, 4), (0, 2)), "refused reservations took nothing");
    assert_invalid(&app.admin("POST", "/inventory/reservations", Some(&json!({"items": [{"product_id": "p1", "quantity": 1}]}))), "order_id", "order_id is required");
    assert_invalid(
        &app.admin("POST", "/inventory/reservations", Some(&json!({"order_id": "o", "items": [{"product_id": "p1", "quantity": 1}], "ttl_seconds": 0}))),
        "ttl_seconds",
        "ttl_seconds must be an integer from 1 to 1800",
    );
    assert_invalid(&app.admin("POST", "/inventory/reservations", Some(&json!({"order_id": "o", "items": []}))), "items", "items must have 1 to 50 elements");

    // A PUT while units are held sets only what is free.
    assert_eq!(app.put_product("p1", 100, "USD", 20)["reserved"], 4);

    let released = app.admin("DELETE", &format!("/inventory/reservations/{id}"), None);
    assert_eq!(released.status, 200, "{released:?}");
    assert_eq!(released.json()["status"], "released");
    assert_eq!((app.stock("p1"), app.stock("p2")), ((24, 0), (2, 0)));
    let twice = app.admin("DELETE", &format!("/inventory/reservations/{id}"), None);
    assert_eq!((twice.status, twice.json()), (200, released.json()));
    assert_eq!((app.stock("p1"), app.stock("p2")), ((24, 0), (2, 0)), "a second release is harmless");
    let commit_released = app.admin("POST", &format!("/inventory/reservations/{id}/commit"), None);
    assert_error(&commit_released, 409, "reservation_released", &format!("reservation {id} was released"), None);

    let with_ttl = app.admin("POST", "/inventory/reservations", Some(&json!({"order_id": "ord_c", "items": [{"product_id": "p1", "quantity": 5}], "ttl_seconds": 60}))).json();
    assert_eq!(unix_seconds(with_ttl["expires_at"].as_str().unwrap()) - unix_seconds(with_ttl["created_at"].as_str().unwrap()), 60);
    let id = with_ttl["reservation_id"].as_str().unwrap();
    assert_eq!(app.stock("p1"), (19, 5));
    let committed = app.admin("POST", &format!("/inventory/reservations/{id}/commit"), None);
    assert_eq!((committed.status, committed.json()["status"].clone()), (200, json!("committed")));
    assert_eq!(app.stock("p1"), (19, 0), "committed units are sold");
    let again = app.admin("POST", &format!("/inventory/reservations/{id}/commit"), None);
    assert_eq!((again.status, again.json()), (200, committed.json()));
    assert_eq!(app.stock("p1"), (19, 0));
    // A committed reservation is never released: its units are sold.
    for _ in 0..2 {
        let refused = app.admin("DELETE", &format!("/inventory/reservations/{id}"), None);
        assert_error(&refused, 409, "reservation_committed", &format!("reservation {id} is committed: its units are sold and cannot be released"), None);
    }
    assert_eq!(app.reservation(id)["status"], "committed");
    assert_eq!(app.stock("p1"), (19, 0));

    for path in ["/inventory/reservations/res_missing", "/inventory/reservations/res_missing/commit", "/inventory/reservations/a.b"] {
        let method = if path.ends_with("commit") { "POST" } else { "DELETE" };
        assert_error(&app.admin(method, path, None), 404, "not_found", "reservation not found", None);
    }
    assert_error(&app.get("/inventory/reservations"), 405, "method_not_allowed", "allowed methods: POST", None);
}

#[test]
fn expired_reservations_give_their_stock_back_and_cannot_be_committed() {
    let (_redis, app) = App::start();
    app.put_product("p1", 100, "USD", 10);
    // `second` is made first, so it is due whenever `first` is.
    let second = app.admin("POST", "/inventory/reservations", Some(&json!({"order_id": "o2", "items": [{"product_id": "p1", "quantity": 2}], "ttl_seconds": 1}))).json();
    let first = app.admin("POST", "/inventory/reservations", Some(&json!({"order_id": "o1", "items": [{"product_id": "p1", "quantity": 3}], "ttl_seconds": 1}))).json();
    assert_eq!(app.stock("p1"), (5, 5));

    assert_error(&app.post("/inventory/sweep", &json!({})), 401, "unauthorized", "admin routes need a bearer token", None);
    let forbidden = app.send("POST", "/inventory/sweep", &[("authorization", "Bearer x")], None);
    assert_error(&forbidden, 403, "forbidden", "the bearer token is not the admin token", None);
    // Touching `first` expires it once its time is up.
    let id = first["reservation_id"].as_str().unwrap();
    let expired = eventually(WAIT, "the reservation to expire", || {
        Some(app.admin("GET", &format!("/inventory/reservations/{id}"), None).json()).filter(|r| r["status"] == "expired")
    });
    assert_eq!(expired["order_id"], "o1");
    assert_eq!(app.stock("p1"), (8, 2));
    let commit = app.admin("POST", &format!("/inventory/reservations/{id}/commit"), None);
    assert_error(&commit, 409, "reservation_expired", &format!("reservation {id} expired"), None);
    assert_eq!(app.stock("p1"), (8, 2));

    // The sweep finds the other one.
    let sweep = app.admin("POST", "/inventory/sweep", None);
    assert_eq!((sweep.status, sweep.json()), (200, json!({"examined": 2, "expired": 1, "cursor": 2})));
    assert_eq!(app.stock("p1"), (10, 0));
    let second_id = second["reservation_id"].as_str().unwrap();
    assert_eq!(app.admin("GET", &format!("/inventory/reservations/{second_id}"), None).json()["status"], "expired");
    let nothing_left = app.admin("POST", "/inventory/sweep", None).json();
    assert_eq!(nothing_left, json!({"examined": 0, "expired": 0, "cursor": 2}));
    // Releasing an expired reservation changes nothing.
    assert_eq!(app.admin("DELETE", &format!("/inventory/reservations/{second_id}"), None).json()["status"], "expired");
    assert_eq!(app.stock("p1"), (10, 0));
}

/// Issue 12: the reservation id of a paid order is public in `GET /orders/{id}`;
/// releasing it without credentials sold its units a second time, and anyone
/// could hold the whole stock for a day.
#[test]
fn nobody_but_an_admin_touches_reservations_and_sold_units_are_never_released() {
    let (redis, app) = App::start();
    wait_triggers(&redis, 1, 0);
    app.put_product("p1", 100, "USD", 3);
    let order = app.place_simple("p1", 3, Some("tok_approve"));
    let id = order["id"].as_str().unwrap();
    app.wait_status(id, "paid");
    let reservation_id = order["reservation_id"].as_str().unwrap();
    eventually(WAIT, "the stock to be committed", || (app.reservation(reservation_id)["status"] == "committed").then_some(()));
    assert_eq!(app.stock("p1"), (0, 0));

    let path = format!("/inventory/reservations/{reservation_id}");
    for (method, path) in [("DELETE", path.clone()), ("GET", path.clone()), ("POST", format!("{path}/commit"))] {
        assert_error(&app.send(method, &path, &[], None), 401, "unauthorized", "admin routes need a bearer token", None);
        let forbidden = app.send(method, &path, &[("authorization", "Bearer guess")], None);
        assert_error(&forbidden, 403, "forbidden", "the bearer token is not the admin token", None);
    }
    let refused = app.admin("DELETE", &path, None);
    let message = format!("reservation {reservation_id} is committed: its units are sold and cannot be released");
    assert_error(&refused, 409, "reservation_committed", &message, None);
    assert_eq!(app.stock("p1"), (0, 0), "the sold units stay sold");
    assert_eq!(app.order(id)["status"], "paid");

    // Holding the stock hostage: refused without the admin token, and capped with it.
    app.put_product("p1", 100, "USD", 5);
    let hostage = json!({"order_id": "o", "items": [{"product_id": "p1", "quantity": 5}], "ttl_seconds": 86400});
    assert_error(&app.post("/inventory/reservations", &hostage), 401, "unauthorized", "admin routes need a bearer token", None);
    let capped = app.admin("POST", "/inventory/reservations", Some(&hostage));
    assert_invalid(&capped, "ttl_seconds", "ttl_seconds must be an integer from 1 to 1800");
    assert_eq!(app.stock("p1"), (5, 0));
    let next = app.place_simple("p1", 5, None);
    assert_eq!(next["status"], "confirmed");
}
