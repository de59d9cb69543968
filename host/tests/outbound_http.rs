//! Outbound HTTP: allowed and denied hosts, local service chaining, `self`.

mod common;
use common::*;

fn fetch(host: &Host, url: &str) -> Reply {
    get(&host.url(&format!("/probe/fetch?url={url}")))
}

#[test]
fn allowed_host_is_reached_and_others_are_denied() {
    let (port, seen) = http_upstream();
    let (other_port, other_seen) = http_upstream();
    let app = probe_app(&[&format!("http://127.0.0.1:{port}")]);
    let host = app.start();
    let r = fetch(&host, &format!("http://127.0.0.1:{port}/x"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["body"], "upstream");
    assert_eq!(seen.lock().unwrap().len(), 1);

    let r = fetch(&host, &format!("http://127.0.0.1:{other_port}/x"));
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.body.contains("HttpRequestDenied"), "{}", r.body);
    assert!(other_seen.lock().unwrap().is_empty(), "a denied request must not leave the host");
}

#[test]
fn local_service_chaining_reaches_private_components_in_process() {
    let app = probe_app(&[]);
    let host = app.start();
    let r = fetch(&host, "http://hello.spin.internal/anything");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["body"], "Hello, world!");
    // `hidden` has only a private route and is not in allowed_outbound_hosts.
    let r = fetch(&host, "http://hidden.spin.internal/");
    assert_eq!(r.status, 502);
    assert!(r.body.contains("HttpRequestDenied"), "{}", r.body);
}

#[test]
fn self_requests_stay_in_process_whatever_the_host_header_says() {
    let (evil_port, evil_seen) = http_upstream();
    let app = probe_app(&[]);
    let host = app.start();
    // The incoming Host names another server; the self request must not go there.
    // (spin-sdk 7 refuses relative URLs itself, so `http://self` is the form to test.)
    let r = request("GET", &host.url("/probe/fetch?url=http://self/hello"), &[("host", &format!("127.0.0.1:{evil_port}"))], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["body"], "Hello, world!");
    assert!(evil_seen.lock().unwrap().is_empty());
}
