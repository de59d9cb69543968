//! Inventory: the catalog, reservation arithmetic, expiry and concurrency.

use serde_json::{Value, json};
use shop_core::http::{ApiResponse, Method};
use shop_core::inventory::{InventoryConfig, InventoryService};
use shop_core::orders::{Inventory as _, InventoryError, ReservationItem};
use shop_core::testing::{FixedClock, MemoryKv, SeededRandom};

use crate::{ADMIN_TOKEN, Inventory, START_MS, as_admin, error_code, error_field, request, run};

fn inventory_on(kv: MemoryKv) -> (Inventory, FixedClock) {
    let clock = FixedClock::at(START_MS);
    let service = InventoryService::new(kv, clock.clone(), SeededRandom::new(3), InventoryConfig::new(ADMIN_TOKEN));
    (service, clock)
}

async fn put(inventory: &Inventory, product_id: &str, stock: i64) -> ApiResponse {
    let body = json!({"name": "Widget", "sku": "W-1", "price": 250, "currency": "EUR", "stock": stock});
    inventory.handle(as_admin(request(Method::Put, &format!("/inventory/products/{product_id}"), Some(body)))).await
}

async fn stock(inventory: &Inventory, product_id: &str) -> (i64, i64) {
    let product = inventory.handle(request(Method::Get, &format!("/inventory/products/{product_id}"), None)).await.json_body();
    (product["available"].as_i64().unwrap(), product["reserved"].as_i64().unwrap())
}

async fn reserve(inventory: &Inventory, items: Value, ttl_seconds: Option<u64>) -> ApiResponse {
    let mut body = json!({"order_id": "ord_1", "items": items});
    if let Some(ttl) = ttl_seconds {
        body["ttl_seconds"] = json!(ttl);
    }
    inventory.handle(as_admin(request(Method::Post, "/inventory/reservations", Some(body)))).await
}

async fn end(inventory: &Inventory, method: Method, reservation_id: &str, suffix: &str) -> ApiResponse {
    let path = format!("/inventory/reservations/{reservation_id}{suffix}");
    inventory.handle(as_admin(request(method, &path, None))).await
}

fn items(list: &[(&str, i64)]) -> Value {
    Value::Array(list.iter().map(|(id, quantity)| json!({"product_id": id, "quantity": quantity})).collect())
}

#[test]
fn products_are_created_replaced_and_read_back() {
    run(async {
        let (inventory, _) = inventory_on(MemoryKv::new());
        assert_eq!(put(&inventory, "w-1", 10).await.status, 201);
        let replaced = put(&inventory, "w-1", 12).await;
        assert_eq!(replaced.status, 200);
        assert_eq!(
            replaced.json_body(),
            json!({"product_id": "w-1", "name": "Widget", "sku": "W-1", "price": 250, "currency": "EUR", "available": 12, "reserved": 0})
        );
        let missing = inventory.handle(request(Method::Get, "/inventory/products/nope", None)).await;
        assert_eq!(missing.status, 404);
        let long_id = "x".repeat(65);
        assert_eq!(put(&inventory, &long_id, 1).await.status, 400);
        assert_eq!(put(&inventory, &"x".repeat(64), 1).await.status, 201);
        assert_eq!(error_field(&put(&inventory, "bad.id", 1).await).as_deref(), Some("product_id"));
        assert_eq!(put(&inventory, "w-2", -1).await.status, 400);
    });
}

#[test]
fn product_writes_need_the_admin_token() {
    run(async {
        let (inventory, _) = inventory_on(MemoryKv::new());
        let body = json!({"name": "W", "price": 1, "currency": "EUR", "stock": 1});
        let unauthenticated = inventory.handle(request(Method::Put, "/inventory/products/w", Some(body.clone()))).await;
        assert_eq!(unauthenticated.status, 401);
        let wrong = request(Method::Put, "/inventory/products/w", Some(body)).with_header("Authorization", "Bearer guess");
        assert_eq!(inventory.handle(wrong).await.status, 403);
        assert_eq!(inventory.handle(request(Method::Get, "/inventory/products/w", None)).await.status, 404);
    });
}

#[test]
fn the_product_list_is_sorted_and_paginated() {
    run(async {
        let (inventory, _) = inventory_on(MemoryKv::new());
        for id in ["c", "a", "b", "d", "e"] {
            put(&inventory, id, 1).await;
        }
        let page = inventory.handle(request(Method::Get, "/inventory/products?page=2&page_size=2", None)).await.json_body();
        let ids: Vec<&str> = page["products"].as_array().unwrap().iter().map(|p| p["product_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["c", "d"]);
        assert_eq!((page["total_count"].as_u64(), page["has_next"].as_bool()), (Some(5), Some(true)));
        let bad = inventory.handle(request(Method::Get, "/inventory/products?page_size=101", None)).await;
        assert_eq!(error_field(&bad).as_deref(), Some("page_size"));
    });
}

#[test]
fn reserving_committing_and_releasing_move_units_between_the_figures() {
    run(async {
        let (inventory, _) = inventory_on(MemoryKv::new());
        put(&inventory, "a", 10).await;
        put(&inventory, "b", 5).await;

        let held = reserve(&inventory, items(&[("a", 3), ("b", 5)]), None).await;
        assert_eq!(held.status, 201);
        let held = held.json_body();
        assert_eq!(held["expires_at"], "2024-01-02T03:19:05Z", "default TTL of 900 s");
        let first = held["reservation_id"].as_str().unwrap().to_string();
        assert_eq!((stock(&inventory, "a").await, stock(&inventory, "b").await), ((7, 3), (0, 5)));

        let committed = end(&inventory, Method::Post, &first, "/commit").await;
        assert_eq!(committed.json_body()["status"], "committed");
        assert_eq!((stock(&inventory, "a").await, stock(&inventory, "b").await), ((7, 0), (0, 0)));
        assert_eq!(end(&inventory, Method::Post, &first, "/commit").await.status, 200, "commit is idempotent");
        assert_eq!(stock(&inventory, "a").await, (7, 0));

        let second = reserve(&inventory, items(&[("a", 2)]), None).await.json_body()["reservation_id"].as_str().unwrap().to_string();
        assert_eq!(stock(&inventory, "a").await, (5, 2));
        for _ in 0..2 {
            let released = end(&inventory, Method::Delete, &second, "").await;
            assert_eq!((released.status, released.json_body()["status"].as_str()), (200, Some("released")));
            assert_eq!(stock(&inventory, "a").await, (7, 0), "released once");
        }
        let late_commit = end(&inventory, Method::Post, &second, "/commit").await;
        assert_eq!((late_commit.status, error_code(&late_commit).as_str()), (409, "reservation_released"));

        // A committed reservation is never released over HTTP: its units are sold.
        for _ in 0..2 {
            let refused = end(&inventory, Method::Delete, &first, "").await;
            assert_eq!((refused.status, error_code(&refused).as_str()), (409, "reservation_committed"));
            assert_eq!((stock(&inventory, "a").await, stock(&inventory, "b").await), ((7, 0), (0, 0)));
        }
        assert_eq!(end(&inventory, Method::Get, &first, "").await.json_body()["status"], "committed");
        // The order flow's release (its order was cancelled) restocks them, once.
        for _ in 0..2 {
            inventory.release(&first).await.unwrap();
            assert_eq!((stock(&inventory, "a").await, stock(&inventory, "b").await), ((10, 0), (5, 0)));
        }
        assert_eq!(end(&inventory, Method::Delete, "res_never", "").await.status, 404);
    });
}

#[test]
fn a_short_or_unknown_item_reserves_nothing() {
    run(async {
        let (inventory, _) = inventory_on(MemoryKv::new());
        put(&inventory, "a", 10).await;
        put(&inventory, "b", 1).await;
        let short = reserve(&inventory, items(&[("a", 4), ("b", 2)]), None).await;
        assert_eq!((short.status, error_code(&short).as_str()), (409, "insufficient_stock"));
        assert_eq!(error_field(&short).as_deref(), Some("items[1].product_id"));
        let unknown = reserve(&inventory, items(&[("a", 4), ("zz", 1)]), None).await;
        assert_eq!((unknown.status, error_code(&unknown).as_str()), (422, "unknown_product"));
        assert_eq!((stock(&inventory, "a").await, stock(&inventory, "b").await), ((10, 0), (1, 0)));
        let exact = reserve(&inventory, items(&[("a", 10), ("b", 1)]), None).await;
        assert_eq!(exact.status, 201);
        assert_eq!((stock(&inventory, "a").await, stock(&inventory, "b").await), ((0, 10), (0, 1)));
    });
}

#[test]
fn replacing_a_product_keeps_its_reserved_units() {
    run(async {
        let (inventory, _) = inventory_on(MemoryKv::new());
        put(&inventory, "a", 10).await;
        let id = reserve(&inventory, items(&[("a", 4)]), None).await.json_body()["reservation_id"].as_str().unwrap().to_string();
        put(&inventory, "a", 20).await;
        assert_eq!(stock(&inventory, "a").await, (20, 4));
        end(&inventory, Method::Delete, &id, "").await;
        assert_eq!(stock(&inventory, "a").await, (24, 0));
    });
}

#[test]
fn ttl_is_validated_and_expired_reservations_give_their_stock_back_when_touched() {
    run(async {
        let (inventory, clock) = inventory_on(MemoryKv::new());
        put(&inventory, "a", 5).await;
        for ttl in [0, 1801, 86_400] {
            let response = reserve(&inventory, items(&[("a", 1)]), Some(ttl)).await;
            assert_eq!(error_field(&response).as_deref(), Some("ttl_seconds"), "ttl {ttl}");
        }
        assert_eq!(stock(&inventory, "a").await, (5, 0));
        let id = reserve(&inventory, items(&[("a", 3)]), Some(60)).await.json_body()["reservation_id"].as_str().unwrap().to_string();
        clock.advance_ms(59_999);
        assert_eq!(end(&inventory, Method::Get, &id, "").await.json_body()["status"], "held");
        assert_eq!(stock(&inventory, "a").await, (2, 3));
        clock.advance_ms(1);
        assert_eq!(end(&inventory, Method::Get, &id, "").await.json_body()["status"], "expired");
        assert_eq!(stock(&inventory, "a").await, (5, 0));
        let commit = end(&inventory, Method::Post, &id, "/commit").await;
        assert_eq!((commit.status, error_code(&commit).as_str()), (409, "reservation_expired"));
        assert_eq!(end(&inventory, Method::Delete, &id, "").await.status, 200, "release of an expired one is a no-op");
        assert_eq!(stock(&inventory, "a").await, (5, 0));
    });
}

#[test]
fn reservation_routes_are_admin_only_and_the_interface_caps_the_ttl() {
    run(async {
        let (inventory, clock) = inventory_on(MemoryKv::new());
        put(&inventory, "a", 5).await;
        let body = json!({"order_id": "ord_1", "items": items(&[("a", 5)])});
        let anonymous = inventory.handle(request(Method::Post, "/inventory/reservations", Some(body.clone()))).await;
        assert_eq!((anonymous.status, error_code(&anonymous).as_str()), (401, "unauthorized"));
        let customer = request(Method::Post, "/inventory/reservations", Some(body)).with_header("authorization", "Bearer not-admin");
        assert_eq!(inventory.handle(customer).await.status, 403);
        assert_eq!(stock(&inventory, "a").await, (5, 0), "refused reservations took nothing");

        let id = reserve(&inventory, items(&[("a", 1)]), None).await.json_body()["reservation_id"].as_str().unwrap().to_string();
        for (method, suffix) in [(Method::Get, ""), (Method::Delete, ""), (Method::Post, "/commit")] {
            let path = format!("/inventory/reservations/{id}{suffix}");
            let anonymous = inventory.handle(request(method, &path, None)).await;
            assert_eq!((anonymous.status, error_code(&anonymous).as_str()), (401, "unauthorized"), "{path}");
        }
        assert_eq!(end(&inventory, Method::Get, &id, "").await.json_body()["status"], "held");

        // A day asked through the interface holds for the cap only.
        let receipt = inventory.reserve("ord_2", &[ReservationItem { product_id: "a".into(), quantity: 4 }], 86_400).await.unwrap();
        assert_eq!(receipt.expires_at, "2024-01-02T03:34:05Z", "capped at 1800 s");
        clock.advance_ms(1_800_000);
        assert_eq!(end(&inventory, Method::Get, &receipt.reservation_id, "").await.json_body()["status"], "expired");
    });
}

#[test]
fn committing_a_due_reservation_expires_it_instead() {
    run(async {
        let (inventory, clock) = inventory_on(MemoryKv::new());
        put(&inventory, "a", 5).await;
        let receipt = inventory.reserve("ord_9", &[ReservationItem { product_id: "a".into(), quantity: 2 }], 30).await.unwrap();
        clock.advance_ms(30_000);
        assert_eq!(inventory.commit(&receipt.reservation_id).await, Err(InventoryError::ReservationExpired(receipt.reservation_id.clone())));
        assert_eq!(stock(&inventory, "a").await, (5, 0));
    });
}

#[test]
fn the_sweep_expires_due_reservations_and_moves_its_cursor_past_ended_ones() {
    run(async {
        let (inventory, clock) = inventory_on(MemoryKv::new());
        put(&inventory, "a", 100).await;
        let mut ids = Vec::new();
        for ttl in [10, 10, 1000, 10] {
            ids.push(reserve(&inventory, items(&[("a", 1)]), Some(ttl)).await.json_body()["reservation_id"].as_str().unwrap().to_string());
        }
        end(&inventory, Method::Post, &ids[0], "/commit").await;
        clock.advance_ms(11_000);
        let report = inventory.sweep_expired().await.unwrap();
        assert_eq!((report.examined, report.expired, report.cursor), (4, 2, 2), "{report:?}");
        // One sold, two expired and back, one still held.
        assert_eq!(stock(&inventory, "a").await, (98, 1));
        let again = inventory.handle(as_admin(request(Method::Post, "/inventory/sweep", None))).await.json_body();
        assert_eq!(again, json!({"examined": 2, "expired": 0, "cursor": 2}));
        clock.advance_ms(1_000_000);
        assert_eq!(inventory.sweep_expired().await.unwrap().cursor, 4);
        assert_eq!(stock(&inventory, "a").await, (99, 0));
        assert_eq!(inventory.handle(request(Method::Post, "/inventory/sweep", None)).await.status, 401);
    });
}

#[test]
fn a_reservation_that_comes_up_short_first_reclaims_expired_stock() {
    run(async {
        let (inventory, clock) = inventory_on(MemoryKv::new());
        put(&inventory, "a", 3).await;
        assert_eq!(reserve(&inventory, items(&[("a", 3)]), Some(10)).await.status, 201);
        assert_eq!(reserve(&inventory, items(&[("a", 1)]), None).await.status, 409);
        clock.advance_ms(10_000);
        assert_eq!(reserve(&inventory, items(&[("a", 3)]), None).await.status, 201);
        assert_eq!(stock(&inventory, "a").await, (0, 3));
    });
}

#[test]
fn concurrent_reservations_never_oversell() {
    run(async {
        for (seed, buyers, units) in [(1, 40, 7), (2, 25, 25), (3, 30, 0), (4, 60, 13)] {
            let (inventory, _) = inventory_on(MemoryKv::interleaving(seed));
            put(&inventory, "last", units).await;
            let one = [ReservationItem { product_id: "last".into(), quantity: 1 }];
            let attempts = (0..buyers).map(|_| inventory.reserve("ord", &one, 900));
            let results = futures::future::join_all(attempts).await;
            let won = results.iter().filter(|result| result.is_ok()).count();
            assert_eq!(won as i64, units.min(buyers), "seed {seed}");
            assert!(results.iter().all(|r| matches!(r, Ok(_) | Err(InventoryError::InsufficientStock { .. }))));
            assert_eq!(stock(&inventory, "last").await, (0, units.min(buyers)), "seed {seed}");
        }
    });
}

#[test]
fn concurrent_multi_item_reservations_are_all_or_none() {
    run(async {
        let (inventory, _) = inventory_on(MemoryKv::interleaving(8));
        put(&inventory, "a", 5).await;
        put(&inventory, "b", 3).await;
        let pair = [
            ReservationItem { product_id: "a".into(), quantity: 1 },
            ReservationItem { product_id: "b".into(), quantity: 1 },
        ];
        let results = futures::future::join_all((0..12).map(|_| inventory.reserve("ord", &pair, 900))).await;
        assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 3);
        assert_eq!((stock(&inventory, "a").await, stock(&inventory, "b").await), ((2, 3), (0, 3)));
    });
}

#[test]
fn concurrent_endings_of_one_reservation_move_its_units_once() {
    run(async {
        for seed in 0..10 {
            let (inventory, clock) = inventory_on(MemoryKv::interleaving(seed));
            put(&inventory, "a", 10).await;
            let receipt = inventory.reserve("ord", &[ReservationItem { product_id: "a".into(), quantity: 4 }], 60).await.unwrap();
            let id = receipt.reservation_id.as_str();
            if seed % 2 == 1 {
                clock.advance_ms(60_000);
            }
            let (release_a, commit, release_b, sweep) = futures::join!(
                inventory.release(id),
                inventory.commit(id),
                inventory.release(id),
                inventory.sweep_expired()
            );
            assert!(release_a.is_ok() && release_b.is_ok() && sweep.is_ok());
            let reservation = end(&inventory, Method::Get, id, "").await.json_body();
            let expected = match reservation["status"].as_str().unwrap() {
                // Committed first, then restocked by a release: all back.
                "released" | "expired" => (10, 0),
                other => panic!("seed {seed}: ended as {other}"),
            };
            assert_eq!(stock(&inventory, "a").await, expected, "seed {seed}, commit {commit:?}");
        }
    });
}
