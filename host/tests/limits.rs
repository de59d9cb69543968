//! Faults stay inside their own request: deadlines, memory caps, traps, body
//! caps; and graceful shutdown.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn strict(app: &ProbeApp) -> HostConfig {
    app.config().arg("--max-instance-reuse-count").arg("1").arg("--max-instance-concurrent-reuse-count").arg("1")
}

#[test]
fn a_runaway_guest_is_stopped_at_its_deadline_while_others_are_served() {
    let app = probe_app(&[]);
    for config in [strict(&app), app.config()] {
        let host = Host::start(&app.manifest, config.arg("--request-timeout").arg("1"));
        let url = host.url("/probe/loop");
        let runaway = std::thread::spawn(move || {
            let started = Instant::now();
            (request("GET", &url, &[], None), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(200));
        let hello = get(&host.url("/hello"));
        assert_eq!(hello.status, 200, "others are served while a guest loops");
        let (r, took) = runaway.join().unwrap();
        assert_eq!(r.status, 504, "{}", r.body);
        assert_eq!(r.json()["error"]["code"], "deadline_exceeded");
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert_eq!(get(&host.url("/hello")).status, 200, "the host keeps serving");
        assert_eq!(get(&host.url("/probe/global")).status, 200, "the probe component still works");
    }
}

#[test]
fn a_memory_bomb_traps_only_its_own_request() {
    let app = probe_app(&[]);
    let host = Host::start(&app.manifest, app.config().arg("--max-instance-memory").arg((32 * 1024 * 1024).to_string()));
    let r = get(&host.url("/probe/memory"));
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "component_failed");
    assert_eq!(get(&host.url("/probe/global")).status, 200);
    assert_eq!(get(&host.url("/hello")).status, 200);
}

#[test]
fn max_instance_memory_is_read_from_the_environment() {
    let app = probe_app(&[]);
    let host = Host::start(&app.manifest, app.config().env("SPIN_MAX_INSTANCE_MEMORY", (24 * 1024 * 1024).to_string()));
    assert_eq!(get(&host.url("/probe/memory")).status, 500);
    assert_eq!(get(&host.url("/hello")).status, 200);
}

#[test]
fn a_trap_fails_its_request_and_the_next_one_succeeds() {
    let app = probe_app(&[]);
    let host = app.start();
    let r = get(&host.url("/probe/trap"));
    assert_eq!(r.status, 500);
    assert_eq!(get(&host.url("/probe/global")).status, 200);
    assert!(host.logs().contains("probe was asked to trap"), "the panic message is logged");
}

#[test]
fn oversized_bodies_get_413() {
    let app = probe_app(&[]);
    let host = Host::start(&app.manifest, app.config().arg("--max-request-body").arg("1000"));
    let r = request("POST", &host.url("/probe/inspect"), &[], Some(&vec![b'x'; 1001]));
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "payload_too_large");
    let r = request("POST", &host.url("/probe/inspect"), &[], Some(&vec![b'x'; 1000]));
    assert_eq!(r.json()["body_len"], 1000);
}

#[test]
fn a_chunked_body_over_the_cap_gets_413() {
    let app = probe_app(&[]);
    let host = Host::start(&app.manifest, app.config().arg("--max-request-body").arg("1000"));
    let chunk = "x".repeat(1001);
    let raw = format!(
        "POST /probe/inspect HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let reply = raw_http(host.addr(), raw.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("payload_too_large"), "{reply}");
    // Within the cap, chunked bodies reach the component whole.
    let raw = "POST /probe/inspect HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let reply = raw_http(host.addr(), raw.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 200") && reply.contains("\"body_len\":5"), "{reply}");
}

#[test]
fn a_full_instance_pool_answers_503() {
    let app = probe_app(&[]);
    let host = Host::start(&app.manifest, strict(&app).arg("--max-instances").arg("1"));
    let url = host.url("/probe/sleep/1500");
    let slow = std::thread::spawn(move || request("GET", &url, &[], None));
    std::thread::sleep(Duration::from_millis(400));
    let r = get(&host.url("/hello"));
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "server_busy");
    assert_eq!(slow.join().unwrap().status, 200);
    assert_eq!(get(&host.url("/hello")).status, 200);
}

/// With the default flags, a request in flight at SIGTERM gets as long as
/// its own deadline (30 s): the grace used to be 10 s and cut it off.
#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let app = probe_app(&[]);
    let mut host = app.start();
    let url = host.url("/probe/sleep/11000");
    let in_flight = std::thread::spawn(move || request("GET", &url, &[], None));
    std::thread::sleep(Duration::from_millis(300));
    host.terminate();
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["slept_ms"], 11000);
    assert_eq!(host.wait_exit(Duration::from_secs(30)), Some(0), "{}", host.logs());
    // The idle instance left at exit goes with the runtime: not a trap.
    assert!(!host.logs().contains("after a trap"), "{}", host.logs());
}

#[test]
fn under_reuse_a_runaway_stalls_only_the_requests_on_its_own_instance() {
    let app = probe_app(&[]);
    // One instance slot: the second request can only run on the first one's instance.
    let host = Host::start(&app.manifest, app.config().arg("--request-timeout").arg("1").arg("--max-instances").arg("1"));
    let sleeper_url = host.url("/probe/sleep/600");
    let sleeper = std::thread::spawn(move || request("GET", &sleeper_url, &[], None));
    std::thread::sleep(Duration::from_millis(200));
    // The sleeper waits on a timer, so its instance takes the runaway too.
    let runaway = get(&host.url("/probe/loop"));
    assert_eq!(runaway.status, 504, "{}", runaway.body);
    // A guest spinning in a loop holds its instance's event loop (wasmtime
    // 48), so the neighbour cannot finish: it gets 504 at its own deadline.
    let neighbour = sleeper.join().unwrap();
    assert_eq!(neighbour.status, 504, "{}", neighbour.body);
    assert_eq!(neighbour.json()["error"]["code"], "deadline_exceeded");
    // The instance was retired and dropped: the next request gets a fresh one.
    let after = eventually(Duration::from_secs(5), "a fresh instance", || {
        let r = get(&host.url("/probe/global"));
        (r.status == 200).then_some(r)
    });
    assert_eq!(after.json()["seen"], 1, "a retired instance is never reused");
}

/// A log reader that stops reading (a container runtime's log pipe that
/// stalls) must not stop the server. Every request logs a line; a pipe
/// holds 64 KiB, so written in place, the log would block the runtime
/// thread that writes it, and with it the requests on that thread, long
/// before the last request here.
#[test]
fn a_stdout_nobody_reads_does_not_stop_the_server() {
    let app = probe_app(&[]);
    let host = Host::start(&app.manifest, app.config().stdout_unread());
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
    for i in 0..3000 {
        let answer = agent.get(&host.url("/hello")).call();
        assert!(matches!(&answer, Ok(r) if r.status() == 200), "request {i} with stdout unread: {answer:?}");
    }
}

/// A client that hangs up before its answer does not stop the guest half-way:
/// the WASIp2 probe, in the middle of an exchange with a TCP server when its
/// client goes, is still there to finish it.
#[test]
fn a_client_that_hangs_up_does_not_stop_its_wasip2_guest_half_way() {
    use std::io::{Read, Write};
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let text = format!(
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"probe\"\n[component.probe]\nsource = {:?}\nallowed_outbound_hosts = [\"tcp://127.0.0.1:{port}\"]\n",
        wasm("guest-probe-p2")
    );
    let (_dir, manifest) = manifest_dir(&text);
    let host = Host::start(&manifest, HostConfig::default());
    let mut client = std::net::TcpStream::connect(host.addr()).unwrap();
    let request = format!("POST /tcp/127.0.0.1:{port} HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nping");
    client.write_all(request.as_bytes()).unwrap();
    let (mut guest, _) = server.accept().unwrap();
    let mut received = Vec::new();
    guest.read_to_end(&mut received).unwrap(); // the probe sends, then closes its sending half
    assert_eq!(received, b"ping");
    client.shutdown(std::net::Shutdown::Both).unwrap();
    drop(client);
    std::thread::sleep(Duration::from_millis(500));
    // A guest stopped with its store would have closed the connection, and
    // the second write would meet its reset.
    guest.write_all(b"po").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    guest.write_all(b"ng").expect("the guest is still reading its reply");
    guest.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    assert_eq!(guest.read_to_end(&mut rest).unwrap(), 0, "the guest finished and closed");
}
