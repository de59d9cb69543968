//! `wasi:sockets` TCP from a WASIp2 guest (Rust's `std::net`): a connect
//! reaches a real echo server when `allowed_outbound_hosts` lists its address
//! and port under `tcp://` or `*://` (an IP address or a CIDR range, written
//! out or from variables), and is refused with `access-denied` before any
//! packet leaves otherwise.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A TCP server on a free loopback port answering `echo:` and what it read
/// until the peer closed its sending half; counts the connections it accepts.
fn echo_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let mut received = Vec::new();
            let _ = stream.read_to_end(&mut received);
            let _ = stream.write_all(&[b"echo:".as_slice(), &received].concat());
        }
    });
    (port, accepted)
}

/// The WASIp2 probe once per `(route, allowed_outbound_hosts)`, each on
/// `/<route>/...`.
fn app(grants: &[(&str, Vec<String>)]) -> (tempfile::TempDir, Host) {
    let mut text = String::from(
        "spin_manifest_version = 2\n[application]\nname = \"sockets\"\n[variables]\nprefix = { default = \"127.0.0.0\" }\nlength = { default = \"24\" }\n",
    );
    for (route, hosts) in grants {
        text += &format!(
            "[[trigger.http]]\nroute = \"/{route}/...\"\ncomponent = \"{route}\"\n[component.{route}]\nsource = {:?}\nallowed_outbound_hosts = {hosts:?}\n",
            wasm("guest-probe-p2")
        );
    }
    let (dir, manifest) = manifest_dir(&text);
    let host = Host::start(&manifest, HostConfig::default());
    (dir, host)
}

fn exchange(host: &Host, route: &str, port: u16) -> Reply {
    request("POST", &host.url(&format!("/{route}/tcp/127.0.0.1:{port}")), &[], Some(b"ping"))
}

#[test]
fn a_listed_address_is_reached_by_address_or_range() {
    let (port, accepted) = echo_server();
    let (_dir, host) = app(&[
        ("exact", vec![format!("tcp://127.0.0.1:{port}")]),
        ("range", vec![format!("*://127.0.0.0/24:{port}")]),
        ("ports", vec![format!("tcp://127.0.0.1/8:{port}..{}", port as u32 + 1)]),
        ("templated", vec![format!("*://{{{{ prefix }}}}/{{{{ length }}}}:{port}")]),
    ]);
    for route in ["exact", "range", "ports", "templated"] {
        let r = exchange(&host, route, port);
        assert_eq!((r.status, r.body.as_str()), (200, "echo:ping"), "{route}: {}", host.logs());
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[test]
fn an_address_not_listed_for_tcp_is_refused_before_connecting() {
    let (port, accepted) = echo_server();
    let (_dir, host) = app(&[
        ("other-ip", vec![format!("*://127.0.0.2:{port}")]),
        ("other-port", vec![format!("tcp://127.0.0.1:{}", port.wrapping_add(1))]),
        ("other-range", vec![format!("*://127.0.1.0/24:{port}")]),
        ("http-only", vec![format!("http://127.0.0.1:{port}")]),
        ("by-name", vec![format!("tcp://localhost:{port}")]),
        ("nothing", vec![]),
    ]);
    for route in ["other-ip", "other-port", "other-range", "http-only", "by-name", "nothing"] {
        let r = exchange(&host, route, port);
        assert_eq!(r.status, 500, "{route}: {}", r.body);
        assert!(r.body.contains("PermissionDenied"), "{route}: {}", r.body);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "a refused connect must not reach the server");
    assert!(host.logs().contains("socket use denied: not in allowed_outbound_hosts"), "{}", host.logs());
}

#[test]
fn an_entry_that_is_a_path_rather_than_a_range_stops_the_app() {
    for entry in ["*://127.0.0.0/33:7", "tcp://127.0.0.1/x:7", "tcp://[fd00::]/8:7"] {
        let text = format!(
            "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"c\"\n[component.c]\nsource = {:?}\nallowed_outbound_hosts = [{entry:?}]\n",
            wasm("guest-probe-p2")
        );
        let (_dir, manifest) = manifest_dir(&text);
        let mut host = Host::spawn(&manifest, HostConfig::default());
        assert_eq!(host.wait_exit(std::time::Duration::from_secs(60)), Some(1), "{entry}: {}", host.logs());
        assert!(host.logs().contains("allowed_outbound_hosts"), "{entry}: {}", host.logs());
    }
}
