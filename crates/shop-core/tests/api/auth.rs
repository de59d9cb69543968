//! Customers and tokens: who may place, list, read and cancel which orders,
//! with HS256 and EdDSA tokens minted here, expired, forged or for another
//! audience.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use shop_core::auth::CustomerAuth;
use shop_core::http::{ApiRequest, ApiResponse, Method};
use shop_core::orders::OrdersConfig;
use shop_core::testing::MemoryKv;

use crate::{START_MS, Shop, as_admin, assert_error, request, run};

pub(crate) const SECRET: &str = "0123456789abcdef0123456789abcdef-test";
/// A test key pair, made with `openssl genpkey -algorithm ed25519`.
const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIIVnrOZ1kC67MMVGJ7lMv0pzHyb1h02ePcfRYStCR2tb\n-----END PRIVATE KEY-----\n";
const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAE2BcUTE2mzKIAaG2cdJyxqKHr2NJe67m+IcVrSIN+9M=\n-----END PUBLIC KEY-----\n";

fn start_s() -> i64 {
    (START_MS / 1000) as i64
}

fn hs256(claims: Value) -> String {
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes()).unwrap()).unwrap()
}

pub(crate) fn customer(user_id: u64) -> String {
    hs256(json!({"sub": user_id.to_string(), "exp": start_s() + 3600, "aud": "shop"}))
}

async fn shop_with(auth: CustomerAuth) -> Shop {
    let shop = Shop::on(MemoryKv::new(), OrdersConfig { customer_auth: auth, ..crate::orders_config() });
    assert_eq!(shop.put_product("p1", 1000, "EUR", 100).await.status, 201);
    shop
}

async fn hs256_shop() -> Shop {
    shop_with(CustomerAuth::from_key(SECRET, "shop").unwrap()).await
}

fn with_token(request: ApiRequest, token: &str) -> ApiRequest {
    request.with_header("authorization", &format!("Bearer {token}"))
}

async fn place_as(shop: &Shop, token: &str, body: Value) -> ApiResponse {
    shop.orders.handle(with_token(request(Method::Post, "/orders", Some(body)), token)).await
}

#[test]
fn a_customer_places_lists_reads_and_cancels_only_its_own_orders() {
    run(async {
        let shop = hs256_shop().await;
        let (alice, bob) = (customer(7), customer(8));
        let placed = place_as(&shop, &alice, json!({"product_id": "p1", "quantity": 1})).await;
        assert_eq!(placed.status, 201, "{}", placed.json_body());
        let order = placed.json_body();
        assert_eq!(order["user_id"], 7, "the user comes from the token");
        let id = order["id"].as_str().unwrap().to_string();
        let named_self = place_as(&shop, &alice, json!({"user_id": 7, "product_id": "p1", "quantity": 1})).await;
        assert_eq!(named_self.status, 201);
        let for_bob = place_as(&shop, &alice, json!({"user_id": 8, "product_id": "p1", "quantity": 1})).await;
        assert_error(&for_bob, 403, "forbidden", Some("user_id"));

        let path = format!("/orders/{id}");
        assert_eq!(shop.orders.handle(with_token(request(Method::Get, &path, None), &alice)).await.json_body(), order);
        let peek = shop.orders.handle(with_token(request(Method::Get, &path, None), &bob)).await;
        assert_error(&peek, 404, "not_found", None);
        let cancel = shop.orders.handle(with_token(request(Method::Delete, &path, None), &bob)).await;
        assert_error(&cancel, 404, "not_found", None);
        let as_admin_now = shop.orders.handle(as_admin(request(Method::Get, &path, None))).await.json_body();
        assert_eq!(as_admin_now["status"], "confirmed", "bob changed nothing");

        let bobs_list = shop.orders.handle(with_token(request(Method::Get, "/orders", None), &bob)).await.json_body();
        assert_eq!(bobs_list["total_count"], 0);
        let alices_list = shop.orders.handle(with_token(request(Method::Get, "/orders", None), &alice)).await.json_body();
        assert_eq!(alices_list["total_count"], 2);
        let snoop = shop.orders.handle(with_token(request(Method::Get, "/orders?user_id=7", None), &bob)).await;
        assert_error(&snoop, 403, "forbidden", Some("user_id"));
        let summary = shop.orders.handle(with_token(request(Method::Get, "/orders/summary", None), &alice)).await;
        assert_error(&summary, 403, "forbidden", None);

        let cancelled = shop.orders.handle(with_token(request(Method::Delete, &path, None), &alice)).await;
        assert_eq!((cancelled.status, cancelled.json_body()["status"].clone()), (200, json!("cancelled")));
        // The admin token reads anyone's orders and every user's list.
        assert_eq!(shop.orders.handle(as_admin(request(Method::Get, &path, None))).await.status, 200);
        assert_eq!(shop.orders.handle(as_admin(request(Method::Get, "/orders", None))).await.json_body()["total_count"], 2);
        assert_eq!(shop.orders.handle(as_admin(request(Method::Get, "/orders/summary", None))).await.status, 200);
    });
}

#[test]
fn missing_forged_expired_and_foreign_tokens_are_401() {
    run(async {
        let shop = hs256_shop().await;
        let body = json!({"product_id": "p1", "quantity": 1});
        let anonymous = shop.orders.handle(request(Method::Post, "/orders", Some(body.clone()))).await;
        assert_error(&anonymous, 401, "unauthorized", None);
        let forged = encode(&Header::new(Algorithm::HS256), &json!({"sub": "7", "exp": start_s() + 60, "aud": "shop"}), &EncodingKey::from_secret(b"another secret of thirty-two bytes!!").unwrap()).unwrap();
        let stale = hs256(json!({"sub": "7", "exp": start_s() - 31, "aud": "shop"}));
        let lenient = hs256(json!({"sub": "7", "exp": start_s() - 29, "aud": "shop"}));
        let other_audience = hs256(json!({"sub": "7", "exp": start_s() + 60, "aud": "another-shop"}));
        let no_audience = hs256(json!({"sub": "7", "exp": start_s() + 60}));
        let no_expiry = hs256(json!({"sub": "7", "aud": "shop"}));
        let not_a_user = hs256(json!({"sub": "alice", "exp": start_s() + 60, "aud": "shop"}));
        let other_algorithm = encode(&Header::new(Algorithm::HS384), &json!({"sub": "7", "exp": start_s() + 60, "aud": "shop"}), &EncodingKey::from_secret(SECRET.as_bytes()).unwrap()).unwrap();
        for (label, token) in [("forged", &forged), ("expired", &stale), ("other audience", &other_audience), ("no audience", &no_audience),
            ("no expiry", &no_expiry), ("sub not a user id", &not_a_user), ("HS384", &other_algorithm), ("garbage", &"not.a.jwt".to_string())]
        {
            let refused = place_as(&shop, token, body.clone()).await;
            assert_eq!((refused.status, crate::error_code(&refused)), (401, "invalid_token".to_string()), "{label}: {}", refused.json_body());
        }
        assert_eq!(place_as(&shop, &lenient, body.clone()).await.status, 201, "30 s of leeway");
        assert_eq!(shop.list("").await.status, 401);
        assert_eq!(shop.product("p1").await["reserved"], 1, "only the lenient order took stock");
    });
}

#[test]
fn eddsa_tokens_verify_with_a_public_key_and_no_key_refuses_everyone() {
    run(async {
        let shop = shop_with(CustomerAuth::from_key(ED_PUBLIC, "shop").unwrap()).await;
        let claims = json!({"sub": "5", "exp": start_s() + 60, "aud": "shop"});
        let token = encode(&Header::new(Algorithm::EdDSA), &claims, &EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap()).unwrap();
        let placed = place_as(&shop, &token, json!({"product_id": "p1", "quantity": 1})).await;
        assert_eq!((placed.status, placed.json_body()["user_id"].clone()), (201, json!(5)));
        // An HS256 token signed with the public key's text is not accepted in its place.
        let confused = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(ED_PUBLIC.as_bytes()).unwrap()).unwrap();
        assert_eq!(place_as(&shop, &confused, json!({"product_id": "p1", "quantity": 1})).await.status, 401);

        let unconfigured = shop_with(CustomerAuth::Unconfigured).await;
        assert_eq!(place_as(&unconfigured, &customer(7), json!({"product_id": "p1", "quantity": 1})).await.status, 401);
        let admin = unconfigured.orders.handle(as_admin(request(Method::Post, "/orders", Some(json!({"user_id": 3, "product_id": "p1", "quantity": 1}))))).await;
        assert_eq!(admin.status, 201, "the admin places orders for any user");
        assert!(CustomerAuth::from_key("short", "shop").is_err(), "HS256 secrets have 32 bytes or more");
        assert!(format!("{:?}", CustomerAuth::from_key(SECRET, "shop").unwrap()).find(SECRET).is_none(), "Debug never shows the key");
    });
}

#[test]
fn one_customers_idempotency_key_never_answers_anothers_request() {
    run(async {
        let shop = hs256_shop().await;
        let body = json!({"product_id": "p1", "quantity": 1});
        let keyed = |token: &str| with_token(request(Method::Post, "/orders", Some(body.clone())), token).with_header("Idempotency-Key", "same-key");
        let alice = shop.orders.handle(keyed(&customer(7))).await.json_body();
        let bob = shop.orders.handle(keyed(&customer(8))).await;
        assert_eq!(bob.status, 201);
        assert_ne!(bob.json_body()["id"], alice["id"]);
        assert_eq!(bob.json_body()["user_id"], 8);
    });
}
