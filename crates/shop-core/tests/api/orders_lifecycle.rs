//! Changing orders: the status state machine, cancellation, payment events
//! and the reconcile.

use std::collections::VecDeque;

use serde_json::{Value, json};
use shop_core::payments::order_charge_id;
use shop_core::events::{
    Event, EventError, EventOutcome, ORDERS_CANCELLED, ORDERS_CREATED, ORDERS_PAYMENT_REQUESTED, ORDERS_STATUS_CHANGED,
    PAYMENTS_COMPLETED, PAYMENTS_FAILED, PAYMENTS_REFUNDED,
};
use shop_core::http::Method;
use shop_core::kv::{get_json, set_json};
use shop_core::orders::{OrderRecord, OrderStatus, OrdersConfig, order_key};
use shop_core::testing::MemoryKv;

use crate::{Shop, as_admin, error_code, request, run};

async fn shop_with_stock() -> Shop {
    let shop = Shop::empty();
    assert_eq!(shop.put_product("p1", 1000, "EUR", 1_000_000).await.status, 201);
    shop
}

/// Places an order of 2 × p1 (total 2000 EUR) and returns its id.
async fn place(shop: &Shop, payment_token: Option<&str>) -> String {
    let mut body = json!({"user_id": 7, "items": [{"product_id": "p1", "quantity": 2}]});
    if let Some(token) = payment_token {
        body["payment_token"] = json!(token);
    }
    shop.place_ok(body).await["id"].as_str().unwrap().to_string()
}

/// The shortest way from `confirmed` to `target` along the transition table.
fn path_to(target: OrderStatus) -> Vec<OrderStatus> {
    let mut queue = VecDeque::from([vec![OrderStatus::Confirmed]]);
    while let Some(path) = queue.pop_front() {
        let last = *path.last().unwrap();
        if last == target {
            return path[1..].to_vec();
        }
        for next in last.successors() {
            if !path.contains(next) {
                queue.push_back([path.clone(), vec![*next]].concat());
            }
        }
    }
    panic!("{target:?} cannot be reached from confirmed")
}

/// Puts an order into `status` through admin status changes; `pending`,
/// which no request produces (orders are confirmed when placed), is written
/// into the record directly and the indexes rebuilt.
async fn order_in(shop: &Shop, status: OrderStatus) -> String {
    let id = place(shop, None).await;
    if status == OrderStatus::Pending {
        let mut record: OrderRecord = get_json(&shop.kv, &order_key(&id)).await.unwrap().unwrap();
        record.order.status = OrderStatus::Pending;
        set_json(&shop.kv, &order_key(&id), &record).await.unwrap();
        let reindex = shop.orders.handle(as_admin(request(Method::Post, "/orders/reindex", None))).await;
        assert_eq!(reindex.status, 200);
        return id;
    }
    for step in path_to(status) {
        let response = shop.set_status(&id, step.name()).await;
        assert_eq!(response.status, 200, "to {step:?}: {}", response.json_body());
    }
    id
}

#[test]
fn the_transition_table_is_the_specified_one() {
    use OrderStatus::*;
    let allowed = [
        (Pending, Confirmed),
        (Pending, Cancelled),
        (Confirmed, Paid),
        (Confirmed, Cancelled),
        (Paid, Processing),
        (Paid, Cancelled),
        (Processing, Shipped),
        (Processing, Cancelled),
        (Shipped, Delivered),
        (Delivered, Refunded),
    ];
    for from in OrderStatus::ALL {
        for to in OrderStatus::ALL {
            assert_eq!(from.can_become(to), allowed.contains(&(from, to)), "{from:?} -> {to:?}");
        }
    }
}

#[test]
fn every_transition_is_allowed_or_refused_over_http_as_the_table_says() {
    run(async {
        let shop = shop_with_stock().await;
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                let id = order_in(&shop, from).await;
                let before = shop.get_order(&id).await;
                shop.clock.advance_ms(1000);
                let response = shop.set_status(&id, to.name()).await;
                let after = shop.get_order(&id).await;
                if from.can_become(to) {
                    assert_eq!(response.status, 200, "{from:?} -> {to:?}: {}", response.json_body());
                    assert_eq!(after["status"], to.name());
                    assert_ne!(after["updated_at"], before["updated_at"]);
                    let stamp = match to {
                        OrderStatus::Confirmed => Some("confirmed_at"),
                        OrderStatus::Paid => Some("paid_at"),
                        OrderStatus::Shipped => Some("shipped_at"),
                        OrderStatus::Delivered => Some("delivered_at"),
                        OrderStatus::Cancelled => Some("cancelled_at"),
                        _ => None,
                    };
                    if let Some(stamp) = stamp {
                        assert_eq!(after[stamp], after["updated_at"], "{from:?} -> {to:?} sets {stamp}");
                    }
                } else {
                    assert_eq!((response.status, error_code(&response).as_str()), (409, "invalid_transition"));
                    let message = response.json_body()["error"]["message"].as_str().unwrap().to_string();
                    assert!(message.contains(from.name()) && message.contains(to.name()), "{message}");
                    assert_eq!(after, before, "a refused transition changes nothing");
                }
            }
        }
    });
}

#[test]
fn status_changes_need_the_admin_token_and_a_known_status() {
    run(async {
        let shop = shop_with_stock().await;
        let id = place(&shop, None).await;
        let path = format!("/orders/{id}/status");
        let body = Some(json!({"status": "paid"}));
        let missing = shop.orders.handle(request(Method::Put, &path, body.clone())).await;
        assert_eq!(missing.status, 401);
        let wrong = shop.orders.handle(request(Method::Put, &path, body.clone()).with_header("authorization", "Bearer x")).await;
        assert_eq!(wrong.status, 403);
        let unknown = shop.orders.handle(as_admin(request(Method::Put, &path, Some(json!({"status": "lost"}))))).await;
        assert_eq!((unknown.status, crate::error_field(&unknown).as_deref()), (400, Some("status")));
        let absent = shop.orders.handle(as_admin(request(Method::Put, "/orders/ord_missing/status", body))).await;
        assert_eq!(absent.status, 404);
        assert_eq!(shop.get_order(&id).await["status"], "confirmed");
    });
}

#[test]
fn a_status_change_appends_its_note_and_publishes_the_change() {
    run(async {
        let shop = shop_with_stock().await;
        let id = place(&shop, None).await;
        let path = format!("/orders/{id}/status");
        let body = json!({"status": "paid", "notes": "paid by bank transfer"});
        let response = shop.orders.handle(as_admin(request(Method::Put, &path, Some(body)))).await;
        assert_eq!(response.json_body()["notes"], "[2024-01-02T03:04:05Z] paid by bank transfer");
        let changed = shop.publisher.events_on(ORDERS_STATUS_CHANGED);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].data, json!({"order_id": id, "from": "confirmed", "to": "paid"}));
        // Paid: the reservation is committed, the units are sold.
        assert_eq!(shop.stock("p1").await, (999_998, 0));
    });
}

#[test]
fn cancelling_releases_the_stock_and_publishes_the_cancellation() {
    run(async {
        let shop = shop_with_stock().await;
        let id = place(&shop, None).await;
        assert_eq!(shop.product("p1").await["reserved"], 2);
        let response = shop.orders.handle(request(Method::Delete, &format!("/orders/{id}?reason=changed%20my%20mind"), None)).await;
        assert_eq!(response.status, 200);
        let order = response.json_body();
        assert_eq!(order["status"], "cancelled");
        assert_eq!(order["cancelled_at"], "2024-01-02T03:04:05Z");
        assert!(order["notes"].as_str().unwrap().ends_with("cancelled: changed my mind"));
        assert_eq!(shop.stock("p1").await, (1_000_000, 0));
        let cancelled = shop.publisher.events_on(ORDERS_CANCELLED);
        assert_eq!(cancelled.len(), 1);
        assert_eq!(cancelled[0].data["refund_required"], false);
        assert_eq!(cancelled[0].data["reason"], "cancelled: changed my mind");

        let again = shop.orders.handle(request(Method::Delete, &format!("/orders/{id}"), None)).await;
        assert_eq!((again.status, error_code(&again).as_str()), (409, "invalid_transition"));
        assert_eq!(shop.product("p1").await["available"], 1_000_000, "stock returned once");
    });
}

#[test]
fn delivered_cancelled_and_refunded_orders_cannot_be_cancelled() {
    run(async {
        let shop = shop_with_stock().await;
        for status in [OrderStatus::Delivered, OrderStatus::Cancelled, OrderStatus::Refunded] {
            let id = order_in(&shop, status).await;
            let response = shop.orders.handle(request(Method::Delete, &format!("/orders/{id}"), None)).await;
            assert_eq!(response.status, 409, "{status:?}");
            assert_eq!(shop.get_order(&id).await["status"], status.name());
        }
    });
}

fn payment_completed(event_id: &str, order_id: &str, amount: i64) -> Vec<u8> {
    let data = json!({"payment_id": "pay_1", "order_id": order_id, "amount": amount, "currency": "EUR", "provider_ref": "ch_1"});
    Event::new(event_id.to_string(), PAYMENTS_COMPLETED, "2024-01-02T03:04:05Z".to_string(), "payments", &data).to_bytes()
}

/// `payments.failed` of the order's own charge (the worker's, for its token).
fn payment_failed(event_id: &str, order_id: &str) -> Vec<u8> {
    payment_failed_of(event_id, order_id, &order_charge_id(order_id))
}

fn payment_failed_of(event_id: &str, order_id: &str, payment_id: &str) -> Vec<u8> {
    let data = json!({"payment_id": payment_id, "order_id": order_id, "reason": "card declined"});
    Event::new(event_id.to_string(), PAYMENTS_FAILED, "2024-01-02T03:04:05Z".to_string(), "payments", &data).to_bytes()
}

#[test]
fn a_completed_payment_marks_the_order_paid_and_commits_its_stock_once() {
    run(async {
        let shop = shop_with_stock().await;
        let id = place(&shop, Some("tok_approve")).await;
        let event = payment_completed("evt_a", &id, 2000);
        assert_eq!(shop.orders.handle_event(&event).await, Ok(EventOutcome::Applied));
        let order = shop.get_order(&id).await;
        assert_eq!((order["status"].as_str(), order["payment_status"].as_str()), (Some("paid"), Some("completed")));
        assert_eq!(order["payment_id"], "pay_1");
        assert_eq!(order["paid_at"], "2024-01-02T03:04:05Z");
        assert_eq!(shop.stock("p1").await, (999_998, 0));

        // The same event again, and the same payment under another event id.
        assert_eq!(shop.orders.handle_event(&event).await, Ok(EventOutcome::Duplicate));
        let republished = payment_completed("evt_b", &id, 2000);
        assert_eq!(shop.orders.handle_event(&republished).await, Ok(EventOutcome::Duplicate));
        assert_eq!(shop.get_order(&id).await, order);
        assert_eq!(shop.stock("p1").await, (999_998, 0));
        assert_eq!(shop.publisher.events_on(ORDERS_STATUS_CHANGED).len(), 1);
    });
}

#[test]
fn the_same_event_on_two_replicas_at_once_is_applied_once() {
    run(async {
        let shop = Shop::on(MemoryKv::interleaving(5), crate::orders_config());
        assert_eq!(shop.put_product("p1", 1000, "EUR", 100).await.status, 201);
        for round in 0..10 {
            let id = place(&shop, None).await;
            let event = payment_completed(&format!("evt_{round}"), &id, 2000);
            let outcomes = futures::future::join(shop.orders.handle_event(&event), shop.orders.handle_event(&event)).await;
            let applied = [&outcomes.0, &outcomes.1].iter().filter(|outcome| ***outcome == Ok(EventOutcome::Applied)).count();
            assert_eq!(applied, 1, "round {round}: {outcomes:?}");
        }
        assert_eq!(shop.stock("p1").await, (80, 0));
        assert_eq!(shop.publisher.events_on(ORDERS_STATUS_CHANGED).len(), 10);
    });
}

#[test]
fn a_failed_payment_cancels_the_order_and_releases_its_stock() {
    run(async {
        let shop = shop_with_stock().await;
        let id = place(&shop, Some("tok_decline")).await;
        let event = payment_failed("evt_f", &id);
        assert_eq!(shop.orders.handle_event(&event).await, Ok(EventOutcome::Applied));
        let order = shop.get_order(&id).await;
        assert_eq!((order["status"].as_str(), order["payment_status"].as_str()), (Some("cancelled"), Some("failed")));
        assert_eq!(shop.product("p1").await["reserved"], 0);
        assert_eq!(shop.orders.handle_event(&event).await, Ok(EventOutcome::Duplicate));
        assert_eq!(shop.orders.handle_event(&payment_failed("evt_g", &id)).await, Ok(EventOutcome::Duplicate));
        assert_eq!(shop.publisher.events_on(ORDERS_CANCELLED).len(), 1);
        assert_eq!(shop.product("p1").await["available"], 1_000_000);
    });
}

#[test]
fn a_failed_payment_that_is_not_the_orders_own_charge_changes_nothing() {
    run(async {
        let shop = shop_with_stock().await;
        let id = place(&shop, None).await;
        let before = shop.get_order(&id).await;
        // Someone paid the order with a declining card through POST /payments.
        let stranger = payment_failed_of("evt_s", &id, "pay_00000000deadbeef");
        assert!(matches!(shop.orders.handle_event(&stranger).await, Ok(EventOutcome::Ignored(_))));
        assert_eq!(shop.get_order(&id).await, before);
        assert!(shop.publisher.events_on(ORDERS_CANCELLED).is_empty());
        assert_eq!(shop.product("p1").await["reserved"], 2);
    });
}

#[test]
fn garbage_events_are_errors_and_change_nothing() {
    run(async {
        let shop = shop_with_stock().await;
        let id = place(&shop, None).await;
        let order = shop.get_order(&id).await;
        let wrong_shape =
            Event::new("evt_w".to_string(), PAYMENTS_COMPLETED, String::new(), "payments", &json!({"order_id": id}));
        let unknown = Event::new("evt_u".to_string(), "payments.exploded", String::new(), "payments", &json!({}));
        type Expected = fn(&EventError) -> bool;
        let cases: Vec<(Vec<u8>, Expected)> = vec![
            (b"not json".to_vec(), |error| matches!(error, EventError::Malformed(_))),
            (br#"{"event_id": "x"}"#.to_vec(), |error| matches!(error, EventError::Malformed(_))),
            (wrong_shape.to_bytes(), |error| matches!(error, EventError::Malformed(_))),
            (unknown.to_bytes(), |error| matches!(error, EventError::UnknownType(_))),
            (payment_completed("evt_m", &id, 1999), |error| matches!(error, EventError::Rejected(_))),
        ];
        for (payload, expected) in cases {
            let outcome = shop.orders.handle_event(&payload).await;
            assert!(outcome.as_ref().is_err_and(expected), "{:?}: {outcome:?}", String::from_utf8_lossy(&payload));
        }
        assert_eq!(shop.get_order(&id).await, order);
        assert!(shop.publisher.events_on(ORDERS_STATUS_CHANGED).is_empty());
        let unknown_order = payment_completed("evt_x", "ord_nobody", 2000);
        assert!(matches!(shop.orders.handle_event(&unknown_order).await, Ok(EventOutcome::Ignored(_))));
    });
}

#[test]
fn cancelling_a_paid_order_restocks_it_and_asks_for_a_refund() {
    run(async {
        let shop = shop_with_stock().await;
        let id = place(&shop, Some("tok_approve")).await;
        shop.orders.handle_event(&payment_completed("evt_p", &id, 2000)).await.unwrap();
        let response = shop.orders.handle(request(Method::Delete, &format!("/orders/{id}"), None)).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.json_body()["refund_required"], true);
        let cancelled = shop.publisher.events_on(ORDERS_CANCELLED);
        assert_eq!((cancelled[0].data["refund_required"].as_bool(), cancelled[0].data["payment_id"].as_str()), (Some(true), Some("pay_1")));
        assert_eq!(shop.stock("p1").await, (1_000_000, 0));
    });
}

#[test]
fn a_payment_arriving_after_cancellation_asks_for_a_refund() {
    run(async {
        let shop = shop_with_stock().await;
        let id = place(&shop, Some("tok_approve")).await;
        shop.orders.handle(request(Method::Delete, &format!("/orders/{id}"), None)).await;
        assert_eq!(shop.orders.handle_event(&payment_completed("evt_late", &id, 2000)).await, Ok(EventOutcome::Applied));
        let order = shop.get_order(&id).await;
        assert_eq!((order["status"].as_str(), order["refund_required"].as_bool()), (Some("cancelled"), Some(true)));
        let cancelled = shop.publisher.events_on(ORDERS_CANCELLED);
        assert_eq!(cancelled.len(), 2);
        assert_eq!(cancelled[1].data["refund_required"], true);
        assert_eq!(shop.product("p1").await["available"], 1_000_000);
    });
}

fn payment_refunded(event_id: &str, order_id: &str, payment_id: &str) -> Vec<u8> {
    let data = json!({"payment_id": payment_id, "order_id": order_id, "amount": 2000, "currency": "EUR"});
    Event::new(event_id.to_string(), PAYMENTS_REFUNDED, String::new(), "payments", &data).to_bytes()
}

#[test]
fn a_refund_settles_what_the_cancelled_order_owed() {
    run(async {
        let shop = shop_with_stock().await;
        let id = place(&shop, Some("tok_approve")).await;
        shop.orders.handle_event(&payment_completed("evt_p", &id, 2000)).await.unwrap();
        shop.orders.handle(request(Method::Delete, &format!("/orders/{id}"), None)).await;
        let wrong = shop.orders.handle_event(&payment_refunded("evt_r0", &id, "pay_other")).await;
        assert!(matches!(wrong, Err(EventError::Rejected(_))), "{wrong:?}");
        assert_eq!(shop.get_order(&id).await["refund_required"], true, "a refund of another payment changes nothing");

        assert_eq!(shop.orders.handle_event(&payment_refunded("evt_r", &id, "pay_1")).await, Ok(EventOutcome::Applied));
        let order = shop.get_order(&id).await;
        assert_eq!(
            (order["status"].as_str(), order["payment_status"].as_str(), order["refund_required"].as_bool()),
            (Some("cancelled"), Some("refunded"), Some(false))
        );
        assert_eq!(shop.orders.handle_event(&payment_refunded("evt_r", &id, "pay_1")).await, Ok(EventOutcome::Duplicate));
        assert_eq!(shop.orders.handle_event(&payment_refunded("evt_r2", &id, "pay_1")).await, Ok(EventOutcome::Duplicate));
        assert_eq!(shop.get_order(&id).await, order);
    });
}

#[test]
fn a_payment_after_the_reservation_expired_cancels_and_refunds() {
    run(async {
        let shop = shop_with_stock().await;
        let id = place(&shop, Some("tok_approve")).await;
        shop.clock.advance_ms(901_000);
        assert_eq!(shop.orders.handle_event(&payment_completed("evt_slow", &id, 2000)).await, Ok(EventOutcome::Applied));
        let order = shop.get_order(&id).await;
        assert_eq!(order["status"], "cancelled");
        assert_eq!((order["payment_status"].as_str(), order["refund_required"].as_bool()), (Some("completed"), Some(true)));
        assert_eq!(shop.stock("p1").await, (1_000_000, 0));
        let cancelled = shop.publisher.events_on(ORDERS_CANCELLED);
        assert_eq!(cancelled.last().unwrap().data["refund_required"], true);
    });
}

async fn reconcile(shop: &Shop) -> Value {
    let response = shop.orders.handle(as_admin(request(Method::Post, "/orders/reconcile", None))).await;
    assert_eq!(response.status, 200, "{}", response.json_body());
    response.json_body()
}

#[test]
fn reconcile_asks_again_for_payment_of_stuck_orders_and_cancels_those_without_a_token() {
    run(async {
        let shop = shop_with_stock().await;
        let with_token = place(&shop, Some("tok_approve")).await;
        let without_token = place(&shop, None).await;
        let paid = place(&shop, Some("tok_approve")).await;
        shop.orders.handle_event(&payment_completed("evt_paid", &paid, 2000)).await.unwrap();
        shop.publisher.clear();

        let fresh = reconcile(&shop).await;
        assert_eq!((fresh["examined"].as_u64(), fresh["recent"].as_u64()), (Some(2), Some(2)), "{fresh}");
        assert!(shop.publisher.events_on(ORDERS_PAYMENT_REQUESTED).is_empty());

        shop.clock.advance_ms(OrdersConfig::new("").stuck_after_ms);
        let stuck = reconcile(&shop).await;
        assert_eq!(stuck["payment_requested"], 1, "{stuck}");
        let requested = shop.publisher.events_on(ORDERS_PAYMENT_REQUESTED);
        assert_eq!(requested.len(), 1);
        assert_eq!(requested[0].data, json!({"order_id": with_token, "total_amount": 2000, "currency": "EUR"}));
        // Outside listeners hear of each order's creation once.
        assert!(shop.publisher.events_on(ORDERS_CREATED).is_empty());
        assert_eq!(shop.get_order(&without_token).await["status"], "confirmed");

        shop.clock.advance_ms(OrdersConfig::new("").payment_timeout_ms);
        let late = reconcile(&shop).await;
        assert_eq!((late["cancelled"].as_u64(), late["payment_requested"].as_u64()), (Some(1), Some(1)), "{late}");
        assert_eq!(shop.get_order(&without_token).await["status"], "cancelled");
        let after = reconcile(&shop).await;
        assert_eq!(after["examined"], 1, "only the order with a token stays open: {after}");
    });
}

#[test]
fn reconcile_resends_events_whose_publishing_failed() {
    run(async {
        let shop = shop_with_stock().await;
        shop.publisher.set_failing(true);
        let id = place(&shop, None).await;
        let cancelled = shop.orders.handle(request(Method::Delete, &format!("/orders/{id}"), None)).await;
        assert_eq!(cancelled.status, 200);
        shop.publisher.set_failing(false);
        assert!(shop.publisher.events_on(ORDERS_CANCELLED).is_empty());

        shop.clock.advance_ms(OrdersConfig::new("").stuck_after_ms);
        let report = reconcile(&shop).await;
        assert_eq!(report["events_resent"], 3, "created, status_changed and cancelled: {report}");
        assert_eq!(shop.publisher.events_on(ORDERS_CREATED).len(), 1);
        assert_eq!(shop.publisher.events_on(ORDERS_CANCELLED).len(), 1);
        assert_eq!(reconcile(&shop).await["examined"], 0, "nothing is left open");
    });
}

#[test]
fn reconcile_and_reindex_are_admin_routes() {
    run(async {
        let shop = shop_with_stock().await;
        for path in ["/orders/reconcile", "/orders/reindex"] {
            assert_eq!(shop.orders.handle(request(Method::Post, path, None)).await.status, 401);
            let get = shop.orders.handle(as_admin(request(Method::Get, path, None))).await;
            assert_eq!(get.status, 405, "{path} is not an order id");
        }
    });
}
