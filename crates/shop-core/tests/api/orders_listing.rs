//! Listing, summary and the indexes behind them.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use shop_core::events::{Event, PAYMENTS_COMPLETED};
use shop_core::http::Method;
use shop_core::orders::{CLAIM_LEASE_MS, OrderRecord, OrderStatus, order_key};
use shop_core::ports::Random;
use shop_core::testing::{MemoryKv, SeededRandom, scan_orders};

use crate::{Shop, as_admin, error_field, request, run};

async fn shop_with_orders(user_orders: &[(u64, usize)]) -> (Shop, Vec<String>) {
    let shop = Shop::empty();
    assert_eq!(shop.put_product("p1", 500, "EUR", 1_000_000).await.status, 201);
    let mut ids = Vec::new();
    for &(user_id, count) in user_orders {
        for _ in 0..count {
            shop.clock.advance_ms(1000);
            let order = shop.place_ok(json!({"user_id": user_id, "product_id": "p1", "quantity": 1})).await;
            ids.push(order["id"].as_str().unwrap().to_string());
        }
    }
    (shop, ids)
}

fn ids_of(page: &Value) -> Vec<String> {
    page["orders"].as_array().unwrap().iter().map(|order| order["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn pages_run_newest_first_with_exact_boundaries() {
    run(async {
        let (shop, ids) = shop_with_orders(&[(1, 25)]).await;
        let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
        let expectations = [
            (1, 10, 0..10, true, false),
            (2, 10, 10..20, true, true),
            (3, 10, 20..25, false, true),
            (4, 10, 25..25, false, true),
            (1, 25, 0..25, false, false),
            (1, 24, 0..24, true, false),
            (25, 1, 24..25, false, true),
        ];
        for (page, page_size, range, has_next, has_previous) in expectations {
            let body = shop.list(&format!("user_id=1&page={page}&page_size={page_size}")).await.json_body();
            assert_eq!(ids_of(&body), newest_first[range.clone()], "page {page} of {page_size}");
            assert_eq!(body["total_count"], 25);
            assert_eq!((body["page"].as_u64(), body["page_size"].as_u64()), (Some(page), Some(page_size)));
            assert_eq!((body["has_next"].as_bool(), body["has_previous"].as_bool()), (Some(has_next), Some(has_previous)));
        }
        let default = shop.list("").await.json_body();
        assert_eq!((default["page"].as_u64(), default["page_size"].as_u64()), (Some(1), Some(10)));
    });
}

#[test]
fn bad_query_parameters_are_refused_naming_them() {
    run(async {
        let (shop, _) = shop_with_orders(&[(1, 1)]).await;
        for (query, field) in [
            ("page=0", "page"),
            ("page=-1", "page"),
            ("page=two", "page"),
            ("page=", "page"),
            ("page_size=0", "page_size"),
            ("page_size=101", "page_size"),
            ("page_size=1.5", "page_size"),
            ("user_id=0", "user_id"),
            ("user_id=abc", "user_id"),
            ("status=lost", "status"),
            ("sort=asc", "sort"),
            ("page=1&page=2", "page"),
        ] {
            let response = shop.list(query).await;
            assert_eq!((response.status, error_field(&response).as_deref()), (400, Some(field)), "{query}");
        }
        assert_eq!(shop.list("page_size=100&page=1").await.status, 200);
    });
}

#[test]
fn filters_combine_user_and_status() {
    run(async {
        let (shop, ids) = shop_with_orders(&[(1, 3), (2, 3)]).await;
        assert_eq!(shop.set_status(&ids[0], "paid").await.status, 200);
        assert_eq!(shop.set_status(&ids[4], "paid").await.status, 200);
        let paid = shop.list("status=paid").await.json_body();
        assert_eq!(ids_of(&paid), vec![ids[4].clone(), ids[0].clone()]);
        let user_paid = shop.list("status=paid&user_id=2").await.json_body();
        assert_eq!((ids_of(&user_paid), user_paid["total_count"].as_u64()), (vec![ids[4].clone()], Some(1)));
        let user_confirmed = shop.list("user_id=1&status=confirmed").await.json_body();
        assert_eq!(ids_of(&user_confirmed), vec![ids[2].clone(), ids[1].clone()]);
        assert_eq!(shop.list("user_id=3").await.json_body()["total_count"], 0);
    });
}

/// Store operations one listing costs.
async fn listing_cost(shop: &Shop, query: &str) -> u64 {
    shop.kv.reset_op_count();
    assert_eq!(shop.list(query).await.status, 200);
    shop.kv.op_count()
}

#[test]
fn a_page_reads_its_list_entries_and_its_orders_in_one_batch_each() {
    run(async {
        let (shop, _ids) = shop_with_orders(&[(1, 30)]).await;
        // The live generation, the list's length, 20 entries, 20 orders.
        assert_eq!(listing_cost(&shop, "page_size=20").await, 4);
        assert_eq!(listing_cost(&shop, "user_id=1&page_size=20").await, 4);
    });
}

#[test]
fn listing_and_summary_cost_does_not_grow_with_the_number_of_orders() {
    run(async {
        let (shop, ids) = shop_with_orders(&[(1, 120), (2, 10)]).await;
        for id in ids.iter().step_by(3) {
            assert_eq!(shop.set_status(id, "paid").await.status, 200);
        }
        let queries = ["page=2", "user_id=1&page=2", "status=paid&page=2", "status=confirmed&user_id=1&page=2"];
        let small: Vec<u64> = futures::future::join_all(queries.iter().map(|query| listing_cost(&shop, query))).await;
        shop.kv.reset_op_count();
        shop.orders.handle(request(Method::Get, "/orders/summary", None)).await;
        let small_summary = shop.kv.op_count();

        // Eight times as many orders.
        for round in 0..7 {
            for index in 0..130 {
                let order = shop.place_ok(json!({"user_id": 1 + round % 2, "product_id": "p1", "quantity": 1})).await;
                if index % 3 == 0 {
                    shop.set_status(order["id"].as_str().unwrap(), "paid").await;
                }
            }
        }
        for (query, small_cost) in queries.iter().zip(small) {
            let large_cost = listing_cost(&shop, query).await;
            // Unfiltered and per-user pages cost the same; with a status the
            // index walk grows by a few reads per doubling of the list.
            assert!(large_cost <= small_cost + 12, "{query}: {small_cost} ops for 130 orders, {large_cost} for 1040");
        }
        shop.kv.reset_op_count();
        shop.orders.handle(request(Method::Get, "/orders/summary", None)).await;
        assert_eq!(shop.kv.op_count(), small_summary, "the summary reads counters only");
    });
}

#[test]
fn an_order_in_a_known_currency_writes_no_currency_list() {
    run(async {
        let shop = Shop::empty();
        assert_eq!(shop.put_product("eur", 100, "EUR", 100).await.status, 201);
        assert_eq!(shop.put_product("usd", 100, "USD", 100).await.status, 201);
        shop.place_ok(json!({"user_id": 1, "product_id": "eur", "quantity": 1})).await;
        let order_cost = || async {
            shop.kv.reset_op_count();
            shop.place_ok(json!({"user_id": 1, "product_id": "usd", "quantity": 1})).await;
            shop.kv.op_count()
        };
        let new_currency = order_cost().await;
        let known_currency = order_cost().await;
        // The list is read in the index batch; only a new currency costs its
        // compare-and-swap (a read and a swap).
        // (summary_counts_each_currency_separately checks what the list says.)
        assert_eq!(new_currency - known_currency, 2, "{new_currency} ops, then {known_currency}");
    });
}

/// The summary and every filtered listing, computed from a full scan.
fn expected_views(records: &[OrderRecord]) -> (Value, BTreeMap<String, Vec<String>>) {
    let count = |statuses: &[OrderStatus]| records.iter().filter(|r| statuses.contains(&r.order.status)).count();
    let revenue: Vec<&OrderRecord> = records.iter().filter(|r| r.order.status.counts_as_revenue()).collect();
    let total_revenue: i64 = revenue.iter().map(|r| r.order.total_amount).sum();
    let average = if revenue.is_empty() { 0 } else { total_revenue / revenue.len() as i64 };
    let summary = json!({
        "total_orders": records.len(),
        "pending_orders": count(&[OrderStatus::Pending, OrderStatus::Confirmed]),
        "completed_orders": count(&[OrderStatus::Delivered]),
        "cancelled_orders": count(&[OrderStatus::Cancelled]),
        "refunded_orders": count(&[OrderStatus::Refunded]),
        "currency": "EUR",
        "total_revenue": total_revenue,
        "average_order_value": average,
        "revenue_by_currency": [{"currency": "EUR", "total_revenue": total_revenue, "revenue_orders": revenue.len(), "average_order_value": average}],
    });
    let mut listings = BTreeMap::new();
    let newest_first = |keep: &dyn Fn(&OrderRecord) -> bool| -> Vec<String> {
        records.iter().rev().filter(|r| keep(r)).map(|r| r.order.id.clone()).collect()
    };
    listings.insert(String::new(), newest_first(&|_| true));
    for user_id in 1..=3 {
        listings.insert(format!("user_id={user_id}"), newest_first(&|r| r.order.user_id == user_id));
        for status in OrderStatus::ALL {
            let keep = |r: &OrderRecord| r.order.user_id == user_id && r.order.status == status;
            listings.insert(format!("user_id={user_id}&status={}", status.name()), newest_first(&keep));
        }
    }
    for status in OrderStatus::ALL {
        listings.insert(format!("status={}", status.name()), newest_first(&|r| r.order.status == status));
    }
    (summary, listings)
}

/// Every page of a listing, concatenated.
async fn all_pages(shop: &Shop, filter: &str) -> (Vec<String>, u64) {
    let mut ids = Vec::new();
    for page in 1.. {
        let body = shop.list(&format!("{filter}&page={page}&page_size=7")).await.json_body();
        ids.extend(ids_of(&body));
        if !body["has_next"].as_bool().unwrap() {
            return (ids, body["total_count"].as_u64().unwrap());
        }
    }
    unreachable!()
}

async fn assert_views_match_a_full_scan(shop: &Shop) {
    let records = scan_orders(&shop.kv).await;
    let (summary, listings) = expected_views(&records);
    let served = shop.orders.handle(request(Method::Get, "/orders/summary", None)).await.json_body();
    assert_eq!(served, summary);
    for (filter, expected) in listings {
        let (ids, total) = all_pages(shop, &filter).await;
        assert_eq!(ids, expected, "GET /orders?{filter}");
        assert_eq!(total, expected.len() as u64, "total_count of {filter}");
    }
}

/// Random operations on random orders: status changes (mostly allowed,
/// sometimes not), cancellations and payment events.
async fn random_operations(shop: &Shop, random: &SeededRandom, operations: usize) {
    let mut ids: Vec<String> = Vec::new();
    for step in 0..operations {
        shop.clock.advance_ms(random.next_u64() % 5000);
        let choice = random.next_u64() % 20;
        if ids.is_empty() || choice < 3 {
            let user_id = 1 + random.next_u64() % 3;
            let quantity = 1 + random.next_u64() % 4;
            let order = shop.place_ok(json!({"user_id": user_id, "product_id": "p1", "quantity": quantity})).await;
            ids.push(order["id"].as_str().unwrap().to_string());
            continue;
        }
        let id = &ids[(random.next_u64() % ids.len() as u64) as usize];
        match choice {
            3..=15 => {
                let current = OrderStatus::parse(shop.get_order(id).await["status"].as_str().unwrap()).unwrap();
                let status = match current.successors() {
                    // The table lists the step forward first.
                    [forward, ..] if choice < 12 => *forward,
                    _ => OrderStatus::ALL[(random.next_u64() % 8) as usize],
                };
                shop.set_status(id, status.name()).await;
            }
            16 | 17 => {
                shop.orders.handle(request(Method::Delete, &format!("/orders/{id}"), None)).await;
            }
            _ => {
                let total = shop.get_order(id).await["total_amount"].as_i64().unwrap();
                let data = json!({"payment_id": format!("pay_{step}"), "order_id": id, "amount": total, "currency": "EUR", "provider_ref": "r"});
                let event = Event::new(format!("evt_{step}"), PAYMENTS_COMPLETED, String::new(), "payments", &data);
                shop.orders.handle_event(&event.to_bytes()).await.unwrap();
            }
        }
    }
}

/// A shop selling `p1` after `operations` random operations.
async fn shop_after_random_operations(seed: u64, operations: usize) -> Shop {
    let shop = Shop::empty();
    assert_eq!(shop.put_product("p1", 1250, "EUR", 1_000_000).await.status, 201);
    random_operations(&shop, &SeededRandom::new(seed), operations).await;
    shop
}

#[test]
fn indexes_and_summary_equal_a_full_scan_after_random_operations() {
    run(async {
        let shop = shop_after_random_operations(99, 400).await;
        let statuses: Vec<String> = scan_orders(&shop.kv).await.iter().map(|r| r.order.status.name().to_string()).collect();
        for status in ["confirmed", "paid", "processing", "shipped", "delivered", "cancelled", "refunded"] {
            assert!(statuses.iter().any(|s| s == status), "the mix never reached {status}");
        }
        assert_views_match_a_full_scan(&shop).await;
    });
}

#[test]
fn concurrent_writers_keep_indexes_equal_to_a_full_scan() {
    run(async {
        let shop = Shop::on(MemoryKv::interleaving(3), crate::orders_config());
        assert_eq!(shop.put_product("p1", 1250, "EUR", 1_000_000).await.status, 201);
        let mut ids = Vec::new();
        for user_id in [1, 2, 3, 1, 2, 3] {
            ids.push(shop.place_ok(json!({"user_id": user_id, "product_id": "p1", "quantity": 1})).await["id"].as_str().unwrap().to_string());
        }
        // Racing admins push the same orders through the same statuses.
        let walk = |id: String| {
            let shop = &shop;
            async move {
                for status in ["paid", "processing", "shipped", "delivered", "refunded"] {
                    shop.set_status(&id, status).await;
                }
            }
        };
        let racers = ids.iter().flat_map(|id| [walk(id.clone()), walk(id.clone()), walk(id.clone())]);
        futures::future::join_all(racers).await;
        assert!(scan_orders(&shop.kv).await.iter().all(|r| r.order.status == OrderStatus::Refunded));
        assert_views_match_a_full_scan(&shop).await;
    });
}

#[test]
fn index_updates_left_by_writers_dying_after_the_order_write_are_finished_once() {
    run(async {
        let shop = shop_after_random_operations(5, 60).await;
        let victim = shop.place_ok(json!({"user_id": 1, "product_id": "p1", "quantity": 1})).await["id"].as_str().unwrap().to_string();
        // A status change, and a placement, each die right after writing the order.
        shop.kv.set_unavailable_after_swap_of(&order_key(&victim));
        assert_eq!(shop.set_status(&victim, "paid").await.status, 503);
        shop.kv.set_unavailable(false);
        shop.kv.set_unavailable_after_swap_of("order:");
        assert_eq!(shop.place(json!({"user_id": 2, "product_id": "p1", "quantity": 1})).await.status, 503);
        shop.kv.set_unavailable(false);
        let served = || async { shop.orders.handle(request(Method::Get, "/orders/summary", None)).await.json_body() };
        assert_ne!(served().await, expected_views(&scan_orders(&shop.kv).await).0, "the indexes lag behind the orders");

        // While the dead writer's claim holds, the next writer leaves the work to it.
        assert_eq!(shop.set_status(&victim, "processing").await.status, 200);
        assert_ne!(served().await, expected_views(&scan_orders(&shop.kv).await).0);
        // Once it has run out, the next writer of the order takes it over...
        shop.clock.advance_ms(CLAIM_LEASE_MS);
        assert_eq!(shop.set_status(&victim, "shipped").await.status, 200);
        // ...and the reconcile replaying the journal finishes the new order's.
        let reconcile = || shop.orders.handle(as_admin(request(Method::Post, "/orders/reconcile?limit=1000", None)));
        assert_eq!(reconcile().await.json_body()["indexes_finished"], 1);
        assert_views_match_a_full_scan(&shop).await;
        // Once finished, nothing is applied again.
        shop.clock.advance_ms(CLAIM_LEASE_MS);
        assert_eq!(reconcile().await.json_body()["indexes_finished"], 0);
        assert_eq!(shop.set_status(&victim, "delivered").await.status, 200);
        assert_views_match_a_full_scan(&shop).await;
        assert!(scan_orders(&shop.kv).await.iter().all(|r| r.index_pending.is_none()));
    });
}

#[test]
fn reindex_rebuilds_counters_and_sets_from_the_orders() {
    run(async {
        let shop = shop_after_random_operations(4, 120).await;
        // Damage the live derived data: a counter and a status set.
        for key in shop.kv.keys_with_prefix("orders:g0:count:") {
            shop_core::kv::Kv::increment(&shop.kv, &key, 5).await.unwrap();
        }
        for key in shop.kv.keys_with_prefix("orders:g0:set:all:confirmed:") {
            shop_core::kv::Kv::delete(&shop.kv, &key).await.unwrap();
        }
        // In batches of 50: the live views stay as they were until the last batch.
        let total = scan_orders(&shop.kv).await.len() as u64;
        let reindex = || shop.orders.handle(as_admin(request(Method::Post, "/orders/reindex?limit=50", None)));
        let mut indexed = 0;
        let mut calls = 0;
        loop {
            let report = reindex().await.json_body();
            assert_eq!(report["generation"], 1, "{report}");
            indexed += report["orders"].as_u64().unwrap();
            calls += 1;
            if report["done"] == true {
                break;
            }
            assert!(report["orders"].as_u64().unwrap() <= 50, "{report}");
            assert_eq!(shop_core::kv::read_counter(&shop.kv, "orders:generation").await.unwrap(), 0, "generation 0 stays live meanwhile");
        }
        assert_eq!((indexed, calls), (total, total.div_ceil(50)));
        assert_views_match_a_full_scan(&shop).await;
        // Writes after the switch go to the new generation.
        random_operations(&shop, &SeededRandom::new(5), 60).await;
        assert_views_match_a_full_scan(&shop).await;
    });
}

#[test]
fn summary_counts_each_currency_separately() {
    run(async {
        let shop = Shop::empty();
        assert_eq!(shop.put_product("eur", 1000, "EUR", 100).await.status, 201);
        assert_eq!(shop.put_product("usd", 333, "USD", 100).await.status, 201);
        let eur = shop.place_ok(json!({"user_id": 1, "product_id": "eur", "quantity": 1})).await;
        let usd_a = shop.place_ok(json!({"user_id": 1, "product_id": "usd", "quantity": 1})).await;
        let usd_b = shop.place_ok(json!({"user_id": 1, "product_id": "usd", "quantity": 2})).await;
        for order in [&eur, &usd_a, &usd_b] {
            assert_eq!(shop.set_status(order["id"].as_str().unwrap(), "paid").await.status, 200);
        }
        let summary = shop.orders.handle(as_admin(request(Method::Get, "/orders/summary", None))).await.json_body();
        assert_eq!((summary["currency"].as_str(), summary["total_revenue"].as_i64()), (Some("EUR"), Some(1000)));
        assert_eq!(summary["average_order_value"], 1000);
        assert_eq!(
            summary["revenue_by_currency"],
            json!([
                {"currency": "EUR", "total_revenue": 1000, "revenue_orders": 1, "average_order_value": 1000},
                {"currency": "USD", "total_revenue": 999, "revenue_orders": 2, "average_order_value": 499},
            ])
        );
    });
}

#[test]
fn unknown_routes_and_methods_are_404_and_405() {
    run(async {
        let shop = Shop::empty();
        let missing = shop.orders.handle(request(Method::Get, "/orders/ord_0000/items", None)).await;
        assert_eq!(missing.status, 404);
        assert_eq!(shop.orders.handle(request(Method::Get, "/orders/no such id", None)).await.status, 404);
        assert_eq!(shop.orders.handle(request(Method::Put, "/orders", None)).await.status, 405);
        assert_eq!(shop.orders.handle(request(Method::Post, "/orders/summary", None)).await.status, 405);
        let summary = shop.orders.handle(request(Method::Get, "/orders/summary", None)).await;
        assert_eq!((summary.status, summary.json_body()["total_orders"].as_i64()), (200, Some(0)));
    });
}
