//! WASIp2 instances made ahead of their requests (`http_trigger::p2::spare`):
//! each request still gets a fresh instance, one spare per component waits
//! for the next request, and a spare never turns a request away.

mod common;
use common::*;
use std::time::Duration;

/// Two WASIp2 probe components, `a` on `/a/...` and `b` on `/b/...`.
fn two_probes() -> (tempfile::TempDir, std::path::PathBuf) {
    let probe = wasm("guest-probe-p2");
    manifest_dir(&format!(
        "spin_manifest_version = 2\n[application]\nname = \"probes\"\n\
         [[trigger.http]]\nroute = \"/a/...\"\ncomponent = \"a\"\n\
         [[trigger.http]]\nroute = \"/b/...\"\ncomponent = \"b\"\n\
         [component.a]\nsource = {probe:?}\n[component.b]\nsource = {probe:?}\n"
    ))
}

fn start(manifest: &std::path::Path, dir: &tempfile::TempDir, metrics_port: u16, args: &[&str]) -> Host {
    let mut config = HostConfig::default()
        .arg("--state-dir")
        .arg(dir.path().display().to_string())
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{metrics_port}"));
    for arg in args {
        config = config.arg(*arg);
    }
    Host::start(manifest, config)
}

#[test]
fn every_request_gets_a_fresh_instance_and_the_next_one_is_made_ahead() {
    let (dir, manifest) = two_probes();
    let metrics_port = free_port();
    let host = start(&manifest, &dir, metrics_port, &[]);
    // Before any request, each component has its instance waiting.
    wait_for_instances(metrics_port, 2);
    let seen: Vec<String> = (0..5).map(|_| get(&host.url("/a/global")).body).collect();
    assert_eq!(seen, vec!["1"; 5], "a fresh instance per request, made ahead or not");
    // Five used, and one more waiting, for `a`; `b`'s still waits.
    wait_for_instances(metrics_port, 7);
}

#[test]
fn a_full_pool_drops_a_spare_rather_than_turn_a_request_away() {
    let (dir, manifest) = two_probes();
    let metrics_port = free_port();
    let host = start(&manifest, &dir, metrics_port, &["--max-instances", "2", "--request-timeout", "3"]);
    // `a` made its spare at start (two slots were free), perhaps `b` too.
    eventually(Duration::from_secs(10), "a's spare", || {
        let text = get(&format!("http://127.0.0.1:{metrics_port}/metrics")).body;
        (!text.contains("\nwharf_instances_created_total 0\n")).then_some(())
    });
    // A request of `b` that only its deadline ends: with `a`'s spare, the
    // pool is full while it runs.
    let spinning = host.url("/b/spin");
    let runaway = std::thread::spawn(move || get(&spinning).status);
    std::thread::sleep(Duration::from_millis(500));
    let r = get(&host.url("/b/config/missing"));
    assert_eq!(r.status, 404, "served in the slot of a's spare: {}", r.body);
    let r = get(&host.url("/a/global"));
    assert_eq!((r.status, r.body.as_str()), (200, "1"), "a makes its instance on arrival now");
    assert_eq!(runaway.join().unwrap(), 504);
}
