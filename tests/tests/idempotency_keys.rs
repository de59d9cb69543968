//! Issue 12, idempotency: a key with a byte outside visible ASCII is 400
//! (it used to be dropped, so a retry made a second order), one customer's
//! key never answers another's, and records expire: after
//! `idempotency_ttl_seconds` the reconcile deletes them and the key is new.

mod common;
use common::*;
use std::io::{Read, Write};

/// Sends one HTTP/1.1 request with raw header bytes (HTTP clients refuse
/// non-ASCII header values) and returns the status and body.
fn raw_request(app: &App, method: &str, path: &str, headers: &[(&str, &[u8])], body: &str) -> (u16, String) {
    let address = app.url("").trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n", body.len()).into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body.as_bytes());
    stream.write_all(&request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = raw_body(&text);
    (status, body)
}

#[test]
fn a_key_that_is_not_visible_ascii_is_refused_not_ignored() {
    let (_redis, app) = App::start();
    app.put_product("p1", 100, "USD", 10);
    let auth = format!("Bearer {}", customer_token(1));
    let order = json!({"product_id": "p1", "quantity": 1}).to_string();
    for key in [&b"caf\xc3\xa9"[..], b"tab\there", b"\x80\x81"] {
        for _ in 0..2 {
            let (status, body) = raw_request(&app, "POST", "/orders", &[("authorization", auth.as_bytes()), ("idempotency-key", key)], &order);
            assert_eq!(status, 400, "{body}");
            let error: Value = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
            assert_eq!(error["error"]["field"], "Idempotency-Key", "{body}");
        }
    }
    assert_eq!(app.admin("GET", "/orders", None).json()["total_count"], 0, "no order was made");
    assert_eq!(app.stock("p1"), (10, 0));

    let placed = app.place(&json!({"user_id": 1, "product_id": "p1", "quantity": 1}));
    let payment = json!({"order_id": placed["id"], "amount": 100, "currency": "USD", "payment_token": "tok_approve"}).to_string();
    let (status, body) = raw_request(&app, "POST", "/payments", &[("authorization", auth.as_bytes()), ("idempotency-key", b"pay\xff")], &payment);
    assert_eq!(status, 400, "{body}");
    assert_eq!(app.sandbox_stats()["attempts"], 0, "nothing was charged");
}

#[test]
fn a_key_expires_and_the_reconcile_sweeps_it() {
    let options = Options::default().env("SPIN_VARIABLE_IDEMPOTENCY_TTL_SECONDS", "1").env("SPIN_VARIABLE_RECONCILE_AFTER_SECONDS", "0");
    let (_redis, app) = App::start_with(options);
    app.put_product("p1", 100, "USD", 10);
    let customer = app.customer(1);
    let key = [("idempotency-key", "k-1")];
    let first = customer.post_with("/orders", &key, &json!({"product_id": "p1", "quantity": 1}));
    assert_eq!(first.status, 201, "{first:?}");
    let other = json!({"product_id": "p1", "quantity": 2});
    let reused = customer.post_with("/orders", &key, &other);
    assert_error(&reused, 422, "idempotency_key_reused", "the Idempotency-Key was used for a different request", Some("Idempotency-Key"));

    std::thread::sleep(std::time::Duration::from_millis(2100));
    let report = app.reconcile();
    assert!(report["idempotency_swept"].as_u64().unwrap() >= 1, "{report}");
    let fresh = customer.post_with("/orders", &key, &other);
    assert_eq!(fresh.status, 201, "the expired key is a new key: {fresh:?}");
    assert_ne!(fresh.json()["id"], first.json()["id"]);

    // One customer's key is not another's.
    let stranger = app.customer(2).post_with("/orders", &key, &other);
    assert_eq!(stranger.status, 201, "{stranger:?}");
    assert_eq!(stranger.json()["user_id"], 2);
}
