//! Placing orders: validation limits, pricing, stock, idempotency.

use serde_json::{Value, json};
use shop_core::events::{ORDERS_CREATED, ORDERS_PAYMENT_REQUESTED};
use shop_core::http::{ApiRequest, MAX_BODY_BYTES, Method};
use shop_core::kv::Kv;
use shop_core::orders::{MAX_ITEMS, MAX_QUANTITY};

use crate::{Shop, assert_error, error_code, error_field, request, run};

/// A shop with product `p1` (1999 EUR, 10 000 in stock).
async fn shop_with_p1() -> Shop {
    let shop = Shop::empty();
    assert_eq!(shop.put_product("p1", 1999, "EUR", 10_000).await.status, 201);
    shop
}

fn one_item(quantity: i64) -> Value {
    json!({"user_id": 7, "items": [{"product_id": "p1", "quantity": quantity}]})
}

#[test]
fn a_placed_order_is_priced_from_the_catalog_and_confirmed() {
    run(async {
        let shop = shop_with_p1().await;
        assert_eq!(shop.put_product("p2", 250, "EUR", 5).await.status, 201);
        let order = shop
            .place_ok(json!({
                "user_id": 7,
                "items": [{"product_id": "p1", "quantity": 3}, {"product_id": "p2", "quantity": 2}],
                "shipping_address": "1 Main St",
                "payment_token": "tok_approve",
            }))
            .await;
        assert_eq!(order["status"], "confirmed");
        assert_eq!(order["payment_status"], "pending");
        assert_eq!(order["items"][0]["unit_price"], 1999);
        assert_eq!(order["items"][0]["subtotal"], 5997);
        assert_eq!(order["items"][1]["subtotal"], 500);
        assert_eq!(order["total_amount"], 6497);
        assert_eq!(order["currency"], "EUR");
        assert_eq!(order["created_at"], "2024-01-02T03:04:05Z");
        assert_eq!(order["confirmed_at"], "2024-01-02T03:04:05Z");
        assert_eq!(order["paid_at"], Value::Null);
        assert!(order.get("payment_token").is_none(), "the token must not be echoed");
        let number = order["order_number"].as_str().unwrap();
        assert!(number.starts_with("ORD20240102030405") && number.len() == 23, "{number}");
        assert!(order["reservation_id"].as_str().unwrap().starts_with("res_"));

        assert_eq!(shop.product("p1").await["available"], 10_000 - 3);
        assert_eq!(shop.product("p1").await["reserved"], 3);
        let created = shop.publisher.events_on(ORDERS_CREATED);
        assert_eq!(created.len(), 1);
        // The token is in no event and no order: only in the record the worker reads.
        assert_eq!((created[0].data.get("payment_token"), &created[0].data["has_payment_token"]), (None, &json!(true)));
        let id = order["id"].as_str().unwrap();
        let stored = shop.kv.get(&format!("order:{id}")).await.unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&stored).contains("tok_approve"));
        assert_eq!(shop.kv.get(&format!("payments:token:{id}")).await.unwrap(), Some(b"tok_approve".to_vec()));
        assert_eq!(created[0].data["total_amount"], 6497);
        // The worker is asked to charge it, with what it needs and no token.
        let requested = shop.publisher.events_on(ORDERS_PAYMENT_REQUESTED);
        assert_eq!(requested.len(), 1);
        assert_eq!(requested[0].data, json!({"order_id": id, "total_amount": 6497, "currency": "EUR"}));
        assert_eq!(shop.get_order(order["id"].as_str().unwrap()).await, order);
    });
}

#[test]
fn the_single_item_form_is_accepted_and_its_errors_name_top_level_fields() {
    run(async {
        let shop = shop_with_p1().await;
        let order = shop.place_ok(json!({"user_id": 1, "product_id": "p1", "quantity": 2})).await;
        assert_eq!(order["items"].as_array().unwrap().len(), 1);
        assert_eq!(order["total_amount"], 3998);
        // Without a token it is paid through `POST /payments`: no worker is asked.
        assert_eq!(shop.publisher.events_on(ORDERS_CREATED).len(), 1);
        assert!(shop.publisher.events_on(ORDERS_PAYMENT_REQUESTED).is_empty());

        let unknown = shop.place(json!({"user_id": 1, "product_id": "nope", "quantity": 2})).await;
        assert_eq!((unknown.status, error_field(&unknown).as_deref()), (422, Some("product_id")));
        let both = shop.place(json!({"user_id": 1, "product_id": "p1", "quantity": 1, "items": []})).await;
        assert_eq!((both.status, error_field(&both).as_deref()), (400, Some("product_id")));
    });
}

#[test]
fn quantities_are_validated_at_and_just_past_each_bound() {
    run(async {
        let shop = shop_with_p1().await;
        for (quantity, accepted) in [(0, false), (1, true), (MAX_QUANTITY, true), (MAX_QUANTITY + 1, false)] {
            let response = shop.place(one_item(quantity)).await;
            assert_eq!(response.status == 201, accepted, "quantity {quantity}: {}", response.json_body());
            if !accepted {
                assert_eq!(error_code(&response), "validation_failed");
                assert_eq!(error_field(&response).as_deref(), Some("items[0].quantity"));
            }
        }
    });
}

#[test]
fn item_counts_are_validated_at_and_just_past_each_bound() {
    run(async {
        let shop = shop_with_p1().await;
        for (count, accepted) in [(0, false), (1, true), (MAX_ITEMS, true), (MAX_ITEMS + 1, false)] {
            let items: Vec<Value> = (0..count).map(|_| json!({"product_id": "p1", "quantity": 1})).collect();
            let response = shop.place(json!({"user_id": 7, "items": items})).await;
            assert_eq!(response.status == 201, accepted, "{count} items: {}", response.json_body());
            if !accepted {
                assert_eq!(error_field(&response).as_deref(), Some("items"));
            }
        }
    });
}

#[test]
fn text_fields_are_validated_at_and_just_past_their_limits() {
    run(async {
        let shop = shop_with_p1().await;
        for (field, limit) in [("shipping_address", 500), ("billing_address", 500), ("notes", 1000)] {
            let mut at_limit = one_item(1);
            at_limit[field] = json!("é".repeat(limit));
            assert_eq!(shop.place(at_limit).await.status, 201, "{field} at {limit}");
            let mut past = one_item(1);
            past[field] = json!("é".repeat(limit + 1));
            let response = shop.place(past).await;
            assert_eq!((response.status, error_field(&response)), (400, Some(field.to_string())));
        }
    });
}

#[test]
fn user_ids_must_be_positive_integers() {
    run(async {
        let shop = shop_with_p1().await;
        for user_id in [json!(0), json!(-1), json!(1.5), json!("7"), Value::Null] {
            let mut body = one_item(1);
            body["user_id"] = user_id.clone();
            let response = shop.place(body).await;
            assert_eq!((response.status, error_field(&response).as_deref()), (400, Some("user_id")), "{user_id}");
        }
        let mut body = one_item(1);
        body["user_id"] = json!(1);
        assert_eq!(shop.place(body).await.status, 201);
    });
}

#[test]
fn unknown_fields_and_malformed_bodies_are_refused() {
    run(async {
        let shop = shop_with_p1().await;
        let mut body = one_item(1);
        body["price"] = json!(1);
        let response = shop.place(body).await;
        assert_eq!((response.status, error_field(&response).as_deref()), (400, Some("price")));

        let nested = shop.place(json!({"user_id": 7, "items": [{"product_id": "p1", "quantity": 1, "unit_price": 1}]})).await;
        assert_eq!(error_field(&nested).as_deref(), Some("items[0].unit_price"));

        let garbage = shop.orders.handle(ApiRequest::new(Method::Post, "/orders").with_body("{not json")).await;
        assert_eq!((garbage.status, error_code(&garbage).as_str()), (400, "invalid_json"));
        let array = shop.orders.handle(ApiRequest::new(Method::Post, "/orders").with_body("[1]")).await;
        assert_eq!((array.status, error_code(&array).as_str()), (400, "validation_failed"));
    });
}

#[test]
fn bodies_over_64_kib_are_refused_with_413() {
    run(async {
        let shop = shop_with_p1().await;
        let padding = " ".repeat(MAX_BODY_BYTES - one_item(1).to_string().len());
        let at_limit = format!("{}{padding}", one_item(1));
        assert_eq!(at_limit.len(), MAX_BODY_BYTES);
        let response = shop.orders.handle(ApiRequest::new(Method::Post, "/orders").with_body(at_limit.clone())).await;
        assert_eq!(response.status, 201);
        let past = format!("{at_limit} ");
        let response = shop.orders.handle(ApiRequest::new(Method::Post, "/orders").with_body(past)).await;
        assert_eq!((response.status, error_code(&response).as_str()), (413, "payload_too_large"));
    });
}

#[test]
fn unknown_products_mixed_currencies_and_short_stock_reserve_nothing() {
    run(async {
        let shop = shop_with_p1().await;
        assert_eq!(shop.put_product("usd", 100, "USD", 5).await.status, 201);
        assert_eq!(shop.put_product("few", 100, "EUR", 2).await.status, 201);

        for (second_item, status, code) in [
            (json!({"product_id": "ghost", "quantity": 1}), 422, "unknown_product"),
            (json!({"product_id": "usd", "quantity": 1}), 422, "mixed_currency"),
            (json!({"product_id": "few", "quantity": 3}), 409, "insufficient_stock"),
        ] {
            let items = json!([{"product_id": "p1", "quantity": 4}, second_item]);
            let response = shop.place(json!({"user_id": 7, "items": items})).await;
            assert_error(&response, status, code, Some("items[1].product_id"));
        }

        // All or none: the first item's units came back.
        assert_eq!(shop.stock("p1").await, (10_000, 0));
        assert_eq!(shop.stock("few").await, (2, 0));
        assert!(shop.publisher.events_on(ORDERS_CREATED).is_empty());
    });
}

#[test]
fn totals_that_overflow_are_refused() {
    run(async {
        let shop = Shop::empty();
        assert_eq!(shop.put_product("dear", i64::MAX / 1000 + 1, "EUR", 10_000).await.status, 201);
        assert_eq!(shop.put_product("half", i64::MAX / 2 + 1, "EUR", 10).await.status, 201);
        let line = shop.place(json!({"user_id": 1, "items": [{"product_id": "dear", "quantity": 1000}]})).await;
        assert_error(&line, 422, "amount_overflow", Some("items[0].quantity"));
        let items = json!([{"product_id": "half", "quantity": 1}, {"product_id": "half", "quantity": 1}]);
        let sum = shop.place(json!({"user_id": 1, "items": items})).await;
        assert_error(&sum, 422, "amount_overflow", Some("items"));
        assert_eq!(shop.product("half").await["available"], 10, "nothing reserved");

        let fits = shop.place(json!({"user_id": 1, "items": [{"product_id": "dear", "quantity": 999}]})).await;
        assert_eq!(fits.status, 201);
    });
}

#[test]
fn orders_are_refused_before_their_currency_could_overflow_a_revenue_counter() {
    run(async {
        let shop = Shop::empty();
        let bound = i64::MAX;
        assert_eq!(shop.put_product("most", bound - 10, "EUR", 10).await.status, 201);
        assert_eq!(shop.put_product("rest", 10, "EUR", 10).await.status, 201);
        assert_eq!(shop.put_product("cent", 1, "EUR", 10).await.status, 201);
        assert_eq!(shop.put_product("usd", 1, "USD", 10).await.status, 201);
        let one = |product_id: &str| json!({"user_id": 1, "product_id": product_id, "quantity": 1});
        let most = shop.place_ok(one("most")).await;
        // The EUR orders add up to the bound exactly: still placed.
        let rest = shop.place_ok(one("rest")).await;
        let past = shop.place(one("cent")).await;
        assert_error(&past, 422, "amount_overflow", Some("items"));
        assert_eq!(shop.stock("cent").await, (10, 0), "nothing reserved");
        assert_eq!(shop.publisher.events_on(ORDERS_CREATED).len(), 2);
        assert_eq!(shop.list("").await.json_body()["total_count"], 2, "nothing written");
        // Other currencies count on their own.
        shop.place_ok(one("usd")).await;

        for order in [&most, &rest] {
            assert_eq!(shop.set_status(order["id"].as_str().unwrap(), "paid").await.status, 200);
        }
        let summary = || async { shop.orders.handle(request(Method::Get, "/orders/summary", None)).await.json_body() };
        assert_eq!(summary().await["total_revenue"], bound);
        let cancel = request(Method::Delete, &format!("/orders/{}", rest["id"].as_str().unwrap()), None);
        assert_eq!(shop.orders.handle(cancel).await.status, 200);
        let after_cancel = summary().await;
        assert_eq!((&after_cancel["total_revenue"], &after_cancel["average_order_value"]), (&json!(bound - 10), &json!(bound - 10)));
        // A cancelled order keeps its share of the bound.
        assert_error(&shop.place(one("cent")).await, 422, "amount_overflow", Some("items"));
    });
}

fn with_key(body: &Value, key: &str) -> ApiRequest {
    request(Method::Post, "/orders", Some(body.clone())).with_header("Idempotency-Key", key)
}

#[test]
fn a_retry_with_the_same_idempotency_key_gets_the_first_answer_and_creates_nothing() {
    run(async {
        let shop = shop_with_p1().await;
        let body = one_item(2);
        let first = shop.orders.handle(with_key(&body, "k-1")).await;
        assert_eq!(first.status, 201);
        shop.clock.advance_ms(5_000);
        let second = shop.orders.handle(with_key(&body, "k-1")).await;
        assert_eq!((second.status, &second.body), (first.status, &first.body));
        assert_eq!(shop.product("p1").await["reserved"], 2);
        assert_eq!(shop.publisher.events_on(ORDERS_CREATED).len(), 1);
        assert_eq!(shop.list("").await.json_body()["total_count"], 1);

        // Refusals are remembered too: the answer does not change with the stock.
        let short = one_item(MAX_QUANTITY);
        assert_eq!(shop.put_product("p1", 1999, "EUR", 5).await.status, 200);
        let refused = shop.orders.handle(with_key(&short, "k-2")).await;
        assert_eq!(refused.status, 409);
        assert_eq!(shop.put_product("p1", 1999, "EUR", 10_000).await.status, 200);
        let replayed = shop.orders.handle(with_key(&short, "k-2")).await;
        assert_eq!((replayed.status, &replayed.body), (409, &refused.body));
    });
}

#[test]
fn the_same_idempotency_key_with_another_body_is_refused() {
    run(async {
        let shop = shop_with_p1().await;
        assert_eq!(shop.orders.handle(with_key(&one_item(1), "k")).await.status, 201);
        let reused = shop.orders.handle(with_key(&one_item(2), "k")).await;
        assert_eq!((reused.status, error_code(&reused).as_str()), (422, "idempotency_key_reused"));
        assert_eq!(shop.product("p1").await["reserved"], 1);
    });
}

#[test]
fn concurrent_duplicates_create_one_order() {
    run(async {
        let shop = Shop::on(shop_core::testing::MemoryKv::interleaving(11), crate::orders_config());
        assert_eq!(shop.put_product("p1", 1999, "EUR", 10_000).await.status, 201);
        let body = one_item(1);
        let responses = futures::future::join_all((0..8).map(|_| shop.orders.handle(with_key(&body, "dup")))).await;
        let created: Vec<_> = responses.iter().filter(|response| response.status == 201).collect();
        let in_progress = responses.iter().filter(|response| error_code(response) == "idempotency_key_in_progress").count();
        assert_eq!(created.len(), 1, "{:?}", responses.iter().map(|r| r.status).collect::<Vec<_>>());
        assert_eq!(in_progress, 7);
        assert_eq!(shop.product("p1").await["reserved"], 1);
        assert_eq!(shop.list("").await.json_body()["total_count"], 1);
        let retry = shop.orders.handle(with_key(&body, "dup")).await;
        assert_eq!(retry.body, created[0].body);
    });
}

#[test]
fn an_outage_at_any_point_answers_503_and_a_later_retry_places_exactly_one_order() {
    run(async {
        for healthy_ops in 0..40 {
            let shop = shop_with_p1().await;
            shop.kv.set_unavailable_after(healthy_ops);
            let first = shop.orders.handle(with_key(&one_item(1), "k")).await;
            shop.kv.set_unavailable(false);
            if first.status == 201 {
                assert!(healthy_ops > 20, "an order needs more than {healthy_ops} store operations");
                continue;
            }
            assert_eq!((first.status, error_code(&first).as_str()), (503, "store_unavailable"), "after {healthy_ops} ops");

            // Once the first attempt's lease has run out, a retry finishes the job.
            shop.clock.advance_ms(31_000);
            let retried = shop.orders.handle(with_key(&one_item(1), "k")).await;
            assert_eq!(retried.status, 201, "after {healthy_ops} ops: {}", retried.json_body());
            let listed = shop.list("user_id=7").await.json_body();
            assert_eq!(listed["orders"].as_array().unwrap().len(), 1, "after {healthy_ops} ops: {listed}");
            assert_eq!(listed["orders"][0], retried.json_body());
            let again = shop.orders.handle(with_key(&one_item(1), "k")).await;
            assert_eq!(again.body, retried.body);
        }
    });
}
