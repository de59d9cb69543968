//! WASIp2 HTTP components (`wasi:http/incoming-handler@0.2.x`, as Spin 2.x
//! and 3.x SDKs build them) beside WASIp3 ones: the same routing and
//! `spin-*` headers, and a fresh instance per request, as Spin runs them.

mod common;
use common::*;
use std::time::Duration;

fn app() -> (tempfile::TempDir, std::path::PathBuf) {
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "mixed"
[[trigger.http]]
route = "/p2/..."
component = "old"
[[trigger.http]]
route = "/p3"
component = "new"
[component.old]
source = {:?}
[component.new]
source = {:?}
"#,
        wasm("guest-hello-p2"),
        wasm("guest-hello")
    );
    manifest_dir(&text)
}

#[test]
fn a_wasip2_component_is_routed_beside_a_wasip3_one_with_a_fresh_instance_per_request() {
    let (_dir, manifest) = app();
    let metrics_port = free_port();
    let host = Host::start(&manifest, HostConfig::default().arg("--metrics-listen").arg(format!("127.0.0.1:{metrics_port}")));
    let r = request("POST", &host.url("/p2/orders/7?x=1"), &[("host", "shop.example")], Some(b"body"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "Hello from WASIp2! POST /p2/orders/7?x=1 http://shop.example/p2/orders/7?x=1");
    assert_eq!(get(&host.url("/p3")).body, "Hello, world!");
    for _ in 0..4 {
        assert_eq!(get(&host.url("/p2/again")).status, 200);
    }
    assert_eq!(get(&host.url("/p3")).body, "Hello, world!");
    // Five requests to the WASIp2 component made five instances; the two to
    // the WASIp3 one shared one.
    let text = get(&format!("http://127.0.0.1:{metrics_port}/metrics")).body;
    assert!(text.contains("\nwharf_instances_created_total 6\n"), "{text}");
}

#[test]
fn a_component_with_no_http_export_is_refused_naming_what_it_exports() {
    let text = format!(
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"sink\"\n[component.sink]\nsource = {:?}\n",
        wasm("guest-redis-sink")
    );
    let (_dir, manifest) = manifest_dir(&text);
    let mut host = Host::spawn(&manifest, HostConfig::default());
    assert_eq!(host.wait_exit(Duration::from_secs(60)), Some(1), "{}", host.logs());
    let logs = host.logs();
    assert!(logs.contains("component `sink` exports spin:redis/inbound-redis@3.0.0"), "{logs}");
    assert!(logs.contains("wasi:http/incoming-handler@0.2.x"), "{logs}");
}
