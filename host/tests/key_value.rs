//! Key-value through `spin:key-value` and `wasi:keyvalue`, on the embedded store.

mod common;
use common::*;

#[test]
fn values_survive_a_restart() {
    let app = probe_app(&[]);
    let host = app.start();
    assert_eq!(request("PUT", &host.url("/probe/kv/default/greeting"), &[], Some(b"hi there")).status, 200);
    assert_eq!(request("PUT", &host.url("/probe/kv/other/x"), &[], Some(b"1")).status, 200);
    drop(host);
    let host = app.start();
    assert_eq!(get(&host.url("/probe/kv/default/greeting")).json()["value"], "hi there");
    assert_eq!(get(&host.url("/probe/kv/other/x")).json()["value"], "1");
    assert_eq!(request("DELETE", &host.url("/probe/kv/default/greeting"), &[], None).status, 200);
    assert_eq!(get(&host.url("/probe/kv/default/greeting")).status, 404);
}

#[test]
fn unlisted_stores_are_access_denied() {
    let app = probe_app(&[]);
    let host = app.start();
    // `forbidden` exists in the runtime config, `missing` does not: both are denied alike.
    for label in ["forbidden", "missing"] {
        let r = get(&host.url(&format!("/probe/kv/{label}/k")));
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.json()["error"].as_str().unwrap().contains("AccessDenied"), "{}", r.body);
    }
    let r = request("POST", &host.url("/probe/incr/forbidden/k"), &[], None);
    assert!(r.json()["error"].as_str().unwrap().contains("AccessDenied"), "{}", r.body);
}

#[test]
fn get_keys_streams_every_key() {
    let app = probe_app(&[]);
    let host = app.start();
    // More keys than one page of the host's key stream.
    for i in 0..300 {
        request("PUT", &host.url(&format!("/probe/kv/other/key-{i:03}")), &[], Some(b"v"));
    }
    let keys = get(&host.url("/probe/kv/other")).json()["keys"].as_array().unwrap().len();
    assert_eq!(keys, 300);
}

#[test]
fn increment_and_compare_and_swap_are_atomic_across_instances() {
    let app = probe_app(&[]);
    let host = app.start();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (incr, cas) = (host.url("/probe/incr/default/hits"), host.url("/probe/cas/default/cas-hits"));
            std::thread::spawn(move || {
                for _ in 0..25 {
                    assert_eq!(request("POST", &incr, &[], None).status, 200);
                    assert_eq!(request("POST", &cas, &[], None).status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // The store keeps the counter in Spin's 8-byte form: one more increment reads it.
    assert_eq!(request("POST", &host.url("/probe/incr/default/hits"), &[], None).json()["value"], 201);
    assert_eq!(get(&host.url("/probe/kv/default/cas-hits")).json()["value"], "200");
}

#[test]
fn unknown_store_in_manifest_stops_the_start() {
    let app = probe_app(&[]);
    // Without the runtime config, `other` is not a store.
    let mut host = Host::spawn(&app.manifest, HostConfig::default().env("SPIN_VARIABLE_TOKEN", "t"));
    assert_eq!(host.wait_exit(std::time::Duration::from_secs(60)), Some(1));
    let logs = host.logs();
    assert!(logs.contains("component.probe") && logs.contains("key_value_stores lists `other`"), "{logs}");
}
