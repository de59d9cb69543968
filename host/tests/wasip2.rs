//! WASIp2 components as Spin 2.x and 3.x SDKs build them: HTTP
//! (`wasi:http/incoming-handler@0.2.x`) beside WASIp3 ones, with the same
//! routing and `spin-*` headers and a fresh instance per request, as Spin
//! runs them; Redis subscribers (`fermyon:spin/inbound-redis`); and the
//! imports of `fermyon:spin@2.0.0` and `wasi:config` under the same grants
//! as their WASIp3 versions.

mod common;
use common::*;
use std::time::Duration;

/// The log of a host that refused to start the app of manifest `text`.
fn refused_at_start(text: &str) -> String {
    let (_dir, manifest) = manifest_dir(text);
    let mut host = Host::spawn(&manifest, HostConfig::default());
    assert_eq!(host.wait_exit(Duration::from_secs(60)), Some(1), "{}", host.logs());
    host.logs()
}

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
    // Five requests to the WASIp2 component took five instances, and one
    // more waits for the next (tests/instances_made_ahead.rs); the two to the
    // WASIp3 one shared one.
    wait_for_instances(metrics_port, 7);
}

/// WASIp2 components, the shop's WASIp2 build among them, run on the engine
/// without the component model's concurrency; a component that uses it
/// anywhere needs the other (the test above runs one of each in one app).
#[test]
fn each_component_gets_the_engine_its_features_need() {
    use wharf::engine::EngineKind;
    let kind = |path: std::path::PathBuf| EngineKind::of(&std::fs::read(&path).unwrap());
    assert_eq!(kind(wasm("guest-hello-p2")), EngineKind::P2);
    assert_eq!(kind(wasm("guest-probe-p2")), EngineKind::P2);
    assert_eq!(kind(wasm("order-p2")), EngineKind::P2);
    assert_eq!(kind(wasm_p1("guest-hello-p1")), EngineKind::P2, "a core module is componentized as WASIp2");
    assert_eq!(kind(wasm("guest-hello")), EngineKind::P3);
    assert_eq!(kind(wasm("order")), EngineKind::P3);
    // Not a valid component: compiled with every feature on, so its error
    // is the one it always got.
    let mut broken = std::fs::read(wasm("guest-hello-p2")).unwrap();
    broken.truncate(broken.len() / 2);
    assert_eq!(EngineKind::of(&broken), EngineKind::P3);
}

#[test]
fn a_component_with_no_http_export_is_refused_naming_what_it_exports() {
    let text = format!(
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"sink\"\n[component.sink]\nsource = {:?}\n",
        wasm("guest-redis-sink")
    );
    let logs = refused_at_start(&text);
    assert!(logs.contains("component `sink` exports spin:redis/inbound-redis@3.0.0"), "{logs}");
    assert!(logs.contains("wasi:http/incoming-handler@0.2.x"), "{logs}");
}

/// The WASIp2 probe on `/...` and a second instance of it on `/stranger/...`
/// with no grants; a Redis subscriber on `inbox` replying on `outbox`.
fn spin_v2_app(redis: &Redis) -> (tempfile::TempDir, std::path::PathBuf) {
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "spin-v2"
[application.trigger.redis]
address = "{{{{ redis_url }}}}"
[variables]
redis_url = {{ required = true }}
greeting = {{ default = "hello" }}
[[trigger.http]]
route = "/..."
component = "probe"
[[trigger.http]]
route = "/stranger/..."
component = "stranger"
[[trigger.redis]]
channel = "inbox"
component = "sink"
[component.probe]
source = {probe:?}
key_value_stores = ["default"]
allowed_outbound_hosts = ["redis://127.0.0.1:{port}"]
[component.probe.variables]
redis_address = "{{{{ redis_url }}}}"
greeting = "{{{{ greeting }}}}, world"
[component.stranger]
source = {probe:?}
[component.stranger.variables]
redis_address = "{{{{ redis_url }}}}"
[component.sink]
source = {sink:?}
key_value_stores = ["default"]
allowed_outbound_hosts = ["redis://127.0.0.1:{port}"]
[component.sink.variables]
redis_address = "{{{{ redis_url }}}}"
reply_channel = "outbox"
"#,
        probe = wasm("guest-probe-p2"),
        sink = wasm("guest-redis-sink-p2"),
        port = redis.port
    );
    manifest_dir(&text)
}

fn start_spin_v2(redis: &Redis) -> (tempfile::TempDir, Host) {
    let (dir, manifest) = spin_v2_app(redis);
    let host = Host::start(&manifest, HostConfig::default().env("SPIN_VARIABLE_REDIS_URL", redis.url()).arg("--state-dir").arg(dir.path().display().to_string()));
    (dir, host)
}

fn post(host: &Host, path: &str, body: &[u8]) -> Reply {
    request("POST", &host.url(path), &[], Some(body))
}

#[test]
fn a_wasip2_component_reads_its_own_variables_through_fermyon_spin_and_wasi_config() {
    let redis = Redis::start();
    let (_dir, host) = start_spin_v2(&redis);
    for path in ["/variable/greeting", "/config/greeting"] {
        let r = get(&host.url(path));
        assert_eq!((r.status, r.body.as_str()), (200, "hello, world"), "{path}");
    }
    // Spin's words (host/tests/same_as_spin.rs compares them with Spin 3.6.3).
    assert_eq!(get(&host.url("/variable/nothing")).body, r#"Error::Undefined("no variable for \"probe\".\"nothing\"")"#);
    assert!(get(&host.url("/variable/Not-A-Name")).body.starts_with(r#"Error::InvalidName("\"Not-A-Name\": invalid character 'N'."#));
    assert_eq!(get(&host.url("/config/nothing")).status, 404, "an undefined key is none");
    // Another component's variables are not this one's.
    assert_eq!(get(&host.url("/stranger/variable/greeting")).body, r#"Error::Undefined("no variable for \"stranger\".\"greeting\"")"#);
}

#[test]
fn fermyon_spin_key_value_reaches_the_granted_store_only() {
    let redis = Redis::start();
    let (_dir, host) = start_spin_v2(&redis);
    assert_eq!(get(&host.url("/kv/default/a")).status, 404);
    for (key, value) in [("a", "1"), ("b", "2")] {
        assert_eq!(request("PUT", &host.url(&format!("/kv/default/{key}")), &[], Some(value.as_bytes())).body, "stored");
    }
    assert_eq!(get(&host.url("/kv/default/a")).body, "1");
    assert_eq!(get(&host.url("/kv/default")).body, "a\nb");
    assert_eq!(request("DELETE", &host.url("/kv/default/a"), &[], None).body, "deleted");
    assert_eq!(get(&host.url("/kv/default")).body, "b");
    let denied = get(&host.url("/stranger/kv/default/b"));
    assert_eq!((denied.status, denied.body.as_str()), (403, "Error::AccessDenied"), "a store not listed in key_value_stores");
    assert_eq!(get(&host.url("/kv/elsewhere/b")).body, "Error::AccessDenied", "a label that is no store is denied, not revealed");
}

#[test]
fn fermyon_spin_redis_runs_commands_under_the_same_policy() {
    let redis = Redis::start();
    let (_dir, host) = start_spin_v2(&redis);
    assert_eq!(post(&host, "/redis/INCR/n", b"").body, "[RedisResult::Int64(1)]");
    assert_eq!(post(&host, "/redis/SET/k/v", b"").body, "[RedisResult::Status(\"OK\")]");
    assert_eq!(post(&host, "/redis/GET/k", b"").body, "[RedisResult::Binary([118])]");
    let blocking = post(&host, "/redis/BLPOP/list/0", b"");
    assert!(blocking.status == 500 && blocking.body.contains("blocks the connection"), "{blocking:?}");
    let stranger = post(&host, "/stranger/redis/INCR/n", b"");
    assert_eq!((stranger.status, stranger.body.as_str()), (500, "Error::InvalidAddress"), "no allowed_outbound_hosts");
    let value: i64 = redis::cmd("GET").arg("n").query(&mut redis.client()).unwrap();
    assert_eq!(value, 1, "the refused calls reached nothing");
}

#[test]
fn a_wasip2_redis_subscriber_gets_every_message_in_a_fresh_instance() {
    let redis = Redis::start();
    let (_dir, host) = start_spin_v2(&redis);
    eventually(Duration::from_secs(20), "the trigger to subscribe", || {
        let n: Vec<(String, i64)> = redis::cmd("PUBSUB").arg("NUMSUB").arg("inbox").query(&mut redis.client()).unwrap();
        (n[0].1 > 0).then_some(())
    });
    let (replies_tx, replies) = std::sync::mpsc::channel();
    let mut subscriber = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
    std::thread::spawn(move || {
        let mut pubsub = subscriber.as_pubsub();
        pubsub.subscribe("outbox").unwrap();
        replies_tx.send(None).unwrap();
        while let Ok(message) = pubsub.get_message() {
            if replies_tx.send(Some(message.get_payload::<String>().unwrap())).is_err() {
                break;
            }
        }
    });
    assert_eq!(replies.recv_timeout(Duration::from_secs(10)).unwrap(), None, "subscribed to outbox");
    let publish = |payload: &str| -> i64 { redis::cmd("PUBLISH").arg("inbox").arg(payload).query(&mut redis.client()).unwrap() };
    assert_eq!(publish("trap"), 1);
    for i in 0..20 {
        assert_eq!(publish(&format!("m{i}")), 1);
    }
    let mut got: Vec<String> = (0..20).map(|_| replies.recv_timeout(Duration::from_secs(10)).unwrap().unwrap()).collect();
    got.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(got, want, "a trapping message harmed only itself");
    eventually(Duration::from_secs(5), "the trap in the log", || host.logs().contains("redis handler failed").then_some(()));
}

#[test]
fn a_redis_trigger_on_a_component_with_no_inbound_redis_export_is_refused_naming_its_exports() {
    let text = format!(
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.redis]]\naddress = \"redis://127.0.0.1:1\"\nchannel = \"c\"\ncomponent = \"web\"\n[component.web]\nsource = {:?}\n",
        wasm("guest-hello-p2")
    );
    let logs = refused_at_start(&text);
    assert!(logs.contains("trigger.redis[0]") && logs.contains("it exports: wasi:http/incoming-handler@0.2.0"), "{logs}");
    assert!(logs.contains("fermyon:spin/inbound-redis"), "{logs}");
}

/// The WASIp2 probe alone on `/...`.
fn probe_p2_app() -> (tempfile::TempDir, std::path::PathBuf) {
    manifest_dir(&format!(
        "spin_manifest_version = 2\n[application]\nname = \"probe\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"probe\"\n\
         [component.probe]\nsource = {:?}\n",
        wasm("guest-probe-p2")
    ))
}

#[test]
fn a_runaway_wasip2_guest_gets_504_at_its_deadline() {
    let (dir, manifest) = probe_p2_app();
    let config = HostConfig::default().arg("--state-dir").arg(dir.path().display().to_string()).arg("--request-timeout").arg("1");
    let host = Host::start(&manifest, config);
    let r = get(&host.url("/spin"));
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "deadline_exceeded");
    assert_eq!(get(&host.url("/variable/missing")).status, 500, "the next request is served");
}

#[test]
fn a_trapping_wasip2_guest_fails_only_its_own_request() {
    let (dir, manifest) = probe_p2_app();
    let metrics_port = free_port();
    let config = HostConfig::default()
        .arg("--state-dir")
        .arg(dir.path().display().to_string())
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{metrics_port}"));
    let host = Host::start(&manifest, config);
    let r = get(&host.url("/trap"));
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "component_failed");
    assert_eq!(get(&host.url("/config/missing")).status, 404, "the next request is served");
    assert!(host.logs().contains("probe-p2 was asked to trap"), "the panic message is logged");
    let metrics = get(&format!("http://127.0.0.1:{metrics_port}/metrics")).body;
    assert!(metrics.contains("wharf_traps_total 1\n"), "{metrics}");
    // One instance per request, and one made ahead.
    wait_for_instances(metrics_port, 3);
}

/// MySQL and LLM have no backend in wharf: apps importing them start, and
/// each call answers Spin's own error, grants checked first.
#[test]
fn mysql_and_llm_link_and_answer_spins_errors() {
    let (dir, manifest) = manifest_dir(&format!(
        "spin_manifest_version = 2\n[application]\nname = \"no-backend\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"probe\"\n\
         [component.probe]\nsource = {:?}\nallowed_outbound_hosts = [\"mysql://db.internal\"]\nai_models = [\"llama2-chat\"]\n",
        wasm("guest-probe-p2")
    ));
    let host = Host::start(&manifest, HostConfig::default().arg("--state-dir").arg(dir.path().display().to_string()));
    let r = post(&host, "/mysql", b"mysql://root:pw@db.internal/shop");
    assert_eq!(r.body, "Err(Error::ConnectionFailed(\"MySQL is not supported by this host (wharf)\"))");
    let r = post(&host, "/mysql", b"mysql://root:pw@elsewhere:3306/shop");
    assert_eq!(r.body, "Err(Error::ConnectionFailed(\"address mysql://root:pw@elsewhere:3306/shop is not permitted\"))");
    let r = post(&host, "/llm/llama2-chat", b"");
    assert_eq!(r.body, "Err(Error::RuntimeError(\"Local LLM operations are not supported in this version of Spin.\"))");
    let r = post(&host, "/llm/codellama-instruct", b"");
    assert!(r.body.starts_with("Err(Error::InvalidInput(\"The component does not have access to use 'codellama-instruct'."), "{}", r.body);
}
