//! Outbound HTTP: allowed and denied hosts, local service chaining, `self`.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A tiny HTTP server answering `upstream` to every request; records request heads.
fn upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            record.lock().unwrap().push(head);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream");
        }
    });
    (port, seen)
}

fn fetch(host: &Host, url: &str) -> Reply {
    get(&host.url(&format!("/probe/fetch?url={url}")))
}

#[test]
fn allowed_host_is_reached_and_others_are_denied() {
    let (port, seen) = upstream();
    let (other_port, other_seen) = upstream();
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
    let (evil_port, evil_seen) = upstream();
    let app = probe_app(&[]);
    let host = app.start();
    // The incoming Host names another server; the self request must not go there.
    // (spin-sdk 7 refuses relative URLs itself, so `http://self` is the form to test.)
    let r = request("GET", &host.url("/probe/fetch?url=http://self/hello"), &[("host", &format!("127.0.0.1:{evil_port}"))], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["body"], "Hello, world!");
    assert!(evil_seen.lock().unwrap().is_empty());
}
