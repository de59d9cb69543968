//! Idempotency keys: visible ASCII only, and records that expire and are
//! swept by the reconcile in bounded batches.

use serde_json::json;
use shop_core::http::Method;
use shop_core::idempotency::DEFAULT_TTL_MS;
use shop_core::kv::Kv;

use crate::{Shop, as_admin, assert_error, request, run};

fn keyed(key: &str, quantity: i64) -> shop_core::http::ApiRequest {
    request(Method::Post, "/orders", Some(json!({"user_id": 1, "product_id": "p1", "quantity": quantity}))).with_header("Idempotency-Key", key)
}

#[test]
fn a_key_outside_visible_ascii_is_400_and_makes_nothing() {
    run(async {
        let shop = Shop::empty();
        shop.put_product("p1", 100, "EUR", 10).await;
        for key in ["café", "with space", "tab\t", "\u{7f}"] {
            let refused = shop.orders.handle(keyed(key, 1)).await;
            assert_error(&refused, 400, "validation_failed", Some("Idempotency-Key"));
        }
        assert_eq!(shop.stock("p1").await, (10, 0));
        assert_eq!(shop.orders.handle(keyed("!~visible~!", 1)).await.status, 201);
    });
}

#[test]
fn records_expire_and_the_reconcile_deletes_them_a_batch_at_a_time() {
    run(async {
        let shop = Shop::empty();
        shop.put_product("p1", 100, "EUR", 100).await;
        for n in 0..5 {
            assert_eq!(shop.orders.handle(keyed(&format!("k{n}"), 1)).await.status, 201);
        }
        let reused = shop.orders.handle(keyed("k0", 2)).await;
        assert_error(&reused, 422, "idempotency_key_reused", Some("Idempotency-Key"));

        let reconcile = |limit: u64| shop.orders.handle(as_admin(request(Method::Post, &format!("/orders/reconcile?limit={limit}"), None)));
        assert_eq!(reconcile(10).await.json_body()["idempotency_swept"], 0, "nothing has expired yet");
        shop.clock.advance_ms(DEFAULT_TTL_MS);
        // Expired: a new key again, before any sweep.
        assert_eq!(shop.orders.handle(keyed("k0", 2)).await.status, 201);
        assert_eq!(reconcile(2).await.json_body()["idempotency_swept"], 1, "k0 was renewed; k1 expired; the batch ends");
        assert!(shop.kv.get("orders:idem:u1:k1").await.unwrap().is_none());
        assert!(shop.kv.get("orders:idem:u1:k2").await.unwrap().is_some(), "beyond the batch");
        assert_eq!(reconcile(10).await.json_body()["idempotency_swept"], 3);
        assert!(shop.kv.get("orders:idem:u1:k4").await.unwrap().is_none());
    });
}
