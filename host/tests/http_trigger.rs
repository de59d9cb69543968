//! Routing, Spin's request headers, response headers, instance policy.

mod common;
use common::*;

#[test]
fn wildcard_route_gets_spin_headers() {
    let app = probe_app(&[]);
    let host = app.start();
    let r = request("POST", &host.url("/probe/inspect/a/b?x=1&y=2"), &[("host", "shop.example:8080")], Some(b"12345"));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let h = &v["headers"];
    assert_eq!(v["method"], "POST");
    assert_eq!(v["body_len"], 5);
    assert_eq!(h["spin-full-url"], "http://shop.example:8080/probe/inspect/a/b?x=1&y=2");
    assert_eq!(h["spin-path-info"], "/inspect/a/b");
    assert_eq!(h["spin-matched-route"], "/probe/...");
    assert_eq!(h["spin-raw-component-route"], "/probe/...");
    assert_eq!(h["spin-component-route"], "/probe");
    assert_eq!(h["spin-base-path"], "/");
    let client = h["spin-client-addr"].as_str().unwrap();
    assert!(client.starts_with("127.0.0.1:"), "{client}");
    assert_eq!(v["uri"], "http://shop.example:8080/probe/inspect/a/b?x=1&y=2");
}

#[test]
fn parameter_segments_and_specificity() {
    let app = probe_app(&[]);
    let host = app.start();
    let v = get(&host.url("/items/42/parts/wheel/left")).json();
    assert_eq!(v["headers"]["spin-path-match-id"], "42");
    assert_eq!(v["headers"]["spin-path-info"], "/wheel/left");
    assert_eq!(v["headers"]["spin-component-route"], "/items/:id/parts");
    // As Spin names them: `_` in a parameter's name becomes `-`.
    assert_eq!(get(&host.url("/things/t-1")).json()["headers"]["spin-path-match-thing-id"], "t-1");
    // An exact route wins over nothing else matching; unknown paths are 404 JSON.
    let r = get(&host.url("/nowhere"));
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "not_found");
    // A client cannot forge spin-* headers.
    let r = request("GET", &host.url("/probe/inspect"), &[("spin-path-info", "/forged"), ("spin-path-match-id", "7")], None);
    assert_eq!(r.json()["headers"]["spin-path-info"], "/inspect");
    assert_eq!(r.json()["headers"]["spin-path-match-id"], serde_json::Value::Null);
}

#[test]
fn private_routes_are_not_reachable_from_outside() {
    let app = probe_app(&[]);
    let host = app.start();
    assert_eq!(get(&host.url("/hidden")).status, 404);
}

#[test]
fn health_route_and_no_extra_response_headers() {
    let app = probe_app(&[]);
    let host = app.start();
    let health = get(&host.url("/.well-known/spin/health"));
    assert_eq!((health.status, health.body.as_str()), (200, "OK"));
    let r = get(&host.url("/hello"));
    assert_eq!((r.status, r.body.as_str()), (200, "Hello, world!"));
    let mut names: Vec<String> = r.headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
    names.sort();
    // The hello component sets no headers: only framing and date remain.
    assert_eq!(names, ["date", "transfer-encoding"]);
}

#[test]
fn reused_instances_keep_globals_and_strict_isolation_does_not() {
    let app = probe_app(&[]);
    let host = app.start();
    let seen: Vec<u64> = (0..5).map(|_| get(&host.url("/probe/global")).json()["seen"].as_u64().unwrap()).collect();
    assert!(seen.iter().any(|&n| n > 1), "with reuse an instance serves several requests: {seen:?}");
    drop(host);

    let strict = Host::start(&app.manifest, app.config().arg("--max-instance-reuse-count").arg("1").arg("--max-instance-concurrent-reuse-count").arg("1"));
    let seen: Vec<u64> = (0..5).map(|_| get(&strict.url("/probe/global")).json()["seen"].as_u64().unwrap()).collect();
    assert_eq!(seen, vec![1; 5], "strict isolation: a fresh instance per request");
}

#[test]
fn component_output_is_logged_with_its_id() {
    let app = probe_app(&[]);
    let host = app.start();
    assert_eq!(get(&host.url("/probe/log")).status, 200);
    let logs = eventually(std::time::Duration::from_secs(5), "guest output in the log", || {
        let logs = host.logs();
        logs.contains("probe says hello on stderr").then_some(logs)
    });
    let line = logs.lines().find(|l| l.contains("probe says hello on stdout")).expect("stdout line");
    assert!(line.contains("component=probe") && line.contains("stream=\"stdout\""), "{line}");
}

#[test]
fn environment_from_manifest_and_flag() {
    let app = probe_app(&[]);
    let host = Host::start(&app.manifest, app.config().arg("--env").arg("FROM_FLAG=1"));
    assert_eq!(get(&host.url("/probe/env/FROM_MANIFEST")).json()["value"], "yes");
    assert_eq!(get(&host.url("/probe/env/FROM_FLAG")).json()["value"], "1");
    drop(host);
    // As in Spin, `--env` overrides the manifest's value.
    let host = Host::start(&app.manifest, app.config().arg("--env").arg("FROM_MANIFEST=flag"));
    assert_eq!(get(&host.url("/probe/env/FROM_MANIFEST")).json()["value"], "flag");
}

#[test]
fn host_metrics_count_requests_by_component() {
    let app = probe_app(&[]);
    let metrics_port = free_port();
    let host = Host::start(&app.manifest, app.config().arg("--metrics-listen").arg(format!("127.0.0.1:{metrics_port}")));
    for _ in 0..3 {
        get(&host.url("/hello"));
    }
    let text = get(&format!("http://127.0.0.1:{metrics_port}/metrics")).body;
    assert!(text.contains("wharf_http_requests_total{component=\"hello\",status=\"200\"} 3"), "{text}");
    assert!(text.contains("wharf_instances_created_total"), "{text}");
}

#[test]
fn bodies_the_component_did_not_frame_stream_chunked_whatever_their_size() {
    let app = probe_app(&[]);
    let host = app.start();
    // As Spin frames them: no length the component did not set.
    let small = get(&host.url("/probe/big/100"));
    assert_eq!(small.header("transfer-encoding"), Some("chunked"));
    assert_eq!(small.header("content-length"), None);
    assert_eq!(small.body, "x".repeat(100));
    let big = get(&host.url("/probe/big/300000"));
    assert_eq!(big.header("transfer-encoding"), Some("chunked"));
    assert_eq!(big.header("content-length"), None);
    assert_eq!(big.body, "x".repeat(300_000));
}

#[test]
fn a_host_header_that_is_not_an_authority_is_refused() {
    let app = probe_app(&[]);
    let host = app.start();
    for bad in ["shop.example/admin", "shop.example?x=1", "user@shop.example"] {
        let r = request("GET", &host.url("/probe/inspect"), &[("host", bad)], None);
        assert_eq!(r.status, 400, "Host: {bad}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "invalid_host");
    }
}

#[test]
fn two_host_headers_are_refused() {
    let app = probe_app(&[]);
    let host = app.start();
    let reply = raw_http(host.addr(), b"GET /probe/inspect HTTP/1.1\r\nhost: shop.example\r\nhost: evil.example\r\nconnection: close\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("more than one Host header"), "{reply}");
}

#[test]
fn an_absolute_form_target_gives_the_full_url_its_authority() {
    let app = probe_app(&[]);
    let host = app.start();
    let reply = raw_http(
        host.addr(),
        b"GET http://shop.example:8080/probe/inspect?q=1 HTTP/1.1\r\nhost: other.example\r\nconnection: close\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let body: serde_json::Value = serde_json::from_str(&raw_body(&reply)).unwrap();
    assert_eq!(body["headers"]["spin-full-url"], "http://shop.example:8080/probe/inspect?q=1");
}

#[test]
fn head_of_a_big_body_says_its_length_and_sends_no_body() {
    let app = probe_app(&[]);
    let host = app.start();
    // Bigger than the host ever buffers, so the GET streams it chunked.
    let reply = raw_http(host.addr(), b"HEAD /probe/big/300000 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(head.to_ascii_lowercase().contains("content-length: 300000"), "{head}");
    assert_eq!(body, "", "a HEAD response carries no body");
}
