//! The Redis trigger and outbound Redis, against a real redis-server.

mod common;
use common::*;
use std::time::Duration;

fn sink_app(redis: &Redis) -> (tempfile::TempDir, std::path::PathBuf) {
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "sink"
[application.trigger.redis]
address = "{{{{ redis_url }}}}"
[variables]
redis_url = {{ required = true }}
[[trigger.redis]]
channel = "inbox"
component = "sink"
[component.sink]
source = {:?}
key_value_stores = ["default"]
allowed_outbound_hosts = ["redis://127.0.0.1:{}"]
[component.sink.variables]
redis_address = "{{{{ redis_url }}}}"
reply_channel = "outbox"
"#,
        wasm("guest-redis-sink"),
        redis.port
    );
    manifest_dir(&text)
}

fn start(redis: &Redis, manifest: &std::path::Path, state: &std::path::Path) -> Host {
    start_with(redis, manifest, state, HostConfig::default())
}

fn start_with(redis: &Redis, manifest: &std::path::Path, state: &std::path::Path, config: HostConfig) -> Host {
    // The sink has no HTTP route; the health route still tells when it is up.
    Host::start(manifest, config.env("SPIN_VARIABLE_REDIS_URL", redis.url()).arg("--state-dir").arg(state.display().to_string()))
}

fn subscribe(redis: &Redis, channel: &str) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let url = redis.url();
    let channel = channel.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe(&channel).unwrap();
        ready_tx.send(()).unwrap();
        while let Ok(msg) = pubsub.get_message() {
            if tx.send(msg.get_payload::<String>().unwrap()).is_err() {
                break;
            }
        }
    });
    ready_rx.recv().unwrap();
    rx
}

fn publish(redis: &Redis, channel: &str, payload: &str) -> i64 {
    redis::cmd("PUBLISH").arg(channel).arg(payload).query(&mut redis.client()).unwrap()
}

/// Publishes until a subscriber (the host) is listening.
fn wait_subscribed(redis: &Redis) {
    eventually(Duration::from_secs(20), "the host to subscribe", || {
        let n: Vec<(String, i64)> = redis::cmd("PUBSUB").arg("NUMSUB").arg("inbox").query(&mut redis.client()).unwrap();
        (n[0].1 > 0).then_some(())
    });
}

#[test]
fn every_message_reaches_a_fresh_instance_and_outbound_redis_works() {
    let redis = Redis::start();
    let (dir, manifest) = sink_app(&redis);
    let host = start(&redis, &manifest, dir.path());
    wait_subscribed(&redis);
    let replies = subscribe(&redis, "outbox");
    for i in 0..50 {
        assert_eq!(publish(&redis, "inbox", &format!("m{i}")), 1);
    }
    let mut got: Vec<String> = (0..50).map(|_| replies.recv_timeout(Duration::from_secs(10)).expect("reply")).collect();
    got.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    drop(host);
}

#[test]
fn a_trapping_handler_is_logged_and_later_messages_are_handled() {
    let redis = Redis::start();
    let (dir, manifest) = sink_app(&redis);
    let host = start(&redis, &manifest, dir.path());
    wait_subscribed(&redis);
    let replies = subscribe(&redis, "outbox");
    publish(&redis, "inbox", "trap");
    publish(&redis, "inbox", "after");
    assert_eq!(replies.recv_timeout(Duration::from_secs(10)).unwrap(), "after");
    eventually(Duration::from_secs(5), "the failure in the log", || {
        let logs = host.logs();
        logs.lines().any(|l| l.contains("redis handler failed") && l.contains("channel=\"inbox\"")).then_some(())
    });
}

#[test]
fn a_handler_past_the_request_timeout_is_stopped_and_others_go_on() {
    let redis = Redis::start();
    let (dir, manifest) = sink_app(&redis);
    let host = start_with(&redis, &manifest, dir.path(), HostConfig::default().arg("--request-timeout").arg("1"));
    wait_subscribed(&redis);
    let replies = subscribe(&redis, "outbox");
    publish(&redis, "inbox", "spin");
    publish(&redis, "inbox", "beside");
    assert_eq!(replies.recv_timeout(Duration::from_secs(10)).unwrap(), "beside", "a spinning handler holds up nobody else");
    eventually(Duration::from_secs(10), "the spinning handler stopped at its deadline", || {
        host.logs().lines().any(|l| l.contains("redis handler failed") && l.contains("deadline of 1s")).then_some(())
    });
    publish(&redis, "inbox", "after");
    assert_eq!(replies.recv_timeout(Duration::from_secs(10)).unwrap(), "after");
}

#[test]
fn the_trigger_resubscribes_after_redis_restarts() {
    let mut redis = Redis::start();
    let (dir, manifest) = sink_app(&redis);
    let host = start(&redis, &manifest, dir.path());
    wait_subscribed(&redis);
    redis.restart();
    wait_subscribed(&redis);
    let replies = subscribe(&redis, "outbox");
    publish(&redis, "inbox", "back");
    assert_eq!(replies.recv_timeout(Duration::from_secs(10)).unwrap(), "back");
    assert!(host.logs().contains("reconnecting"), "{}", host.logs());
}

/// While every handler slot is taken, the trigger reads no more messages:
/// a flood published meanwhile waits in Redis (which drops a subscriber
/// whose backlog passes its pub/sub output limit), not in the host's memory;
/// the trigger subscribes again and later messages are handled.
#[test]
fn a_flood_while_every_handler_is_busy_stays_out_of_the_hosts_memory() {
    let redis = Redis::start();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("client-output-buffer-limit").arg("pubsub 16mb 8mb 10").query(&mut redis.client()).unwrap();
    let (dir, manifest) = sink_app(&redis);
    let host = start(&redis, &manifest, dir.path());
    wait_subscribed(&redis);
    let replies = subscribe(&redis, "outbox");
    // More sleepers than the trigger runs at once (256): every slot taken.
    for _ in 0..300 {
        publish(&redis, "inbox", "sleep:8000");
    }
    std::thread::sleep(Duration::from_secs(2));
    let before = host.peak_memory_bytes();
    // 150 MB of messages, 1 KiB each, pipelined.
    let filler = "f".repeat(1024);
    let mut connection = redis.client();
    for _ in 0..150 {
        let mut pipe = redis::pipe();
        for _ in 0..1000 {
            pipe.cmd("PUBLISH").arg("inbox").arg(&filler).ignore();
        }
        let _: () = pipe.query(&mut connection).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    let grown = host.peak_memory_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "the host's peak memory grew by {} MiB during the flood", grown >> 20);
    // Once the sleepers are done, the trigger reads (or subscribes) again.
    eventually(Duration::from_secs(30), "a message after the flood to be handled", || {
        publish(&redis, "inbox", "after");
        std::iter::from_fn(|| replies.recv_timeout(Duration::from_millis(200)).ok()).any(|reply| reply == "after").then_some(())
    });
    drop(host);
}

#[test]
fn sigterm_stops_reading_then_lets_a_handler_in_flight_finish() {
    let redis = Redis::start();
    let (dir, manifest) = sink_app(&redis);
    let mut host = start(&redis, &manifest, dir.path());
    wait_subscribed(&redis);
    let replies = subscribe(&redis, "outbox");
    publish(&redis, "inbox", "sleep:1500");
    std::thread::sleep(Duration::from_millis(300));
    host.terminate();
    // The trigger lets go of its subscription first, so Redis routes nothing
    // more to a host on its way out...
    eventually(Duration::from_secs(5), "the host to unsubscribe", || {
        let n: Vec<(String, i64)> = redis::cmd("PUBSUB").arg("NUMSUB").arg("inbox").query(&mut redis.client()).unwrap();
        (n[0].1 == 0).then_some(())
    });
    // ...while the handler it already started runs to its end.
    assert_eq!(replies.recv_timeout(Duration::from_secs(10)).unwrap(), "sleep:1500");
    assert_eq!(host.wait_exit(Duration::from_secs(15)), Some(0), "{}", host.logs());
    assert!(!host.logs().contains("redis handler failed"), "{}", host.logs());
}

/// Outbound Redis shares one connection per address among all instances,
/// and Redis answers a connection's commands in order.
#[test]
fn blocking_commands_are_refused_so_one_guest_cannot_stall_the_shared_connection() {
    let redis = Redis::start();
    let app = probe_app(&[&redis.url()]);
    let host = app.start();
    let execute = |command: &str| get(&host.url(&format!("/probe/redis/{command}?address={}", redis.url())));
    for blocking in ["BLPOP/jobs/0", "BRPOP/jobs/0", "XREAD/BLOCK/0/STREAMS/events/$", "WAIT/1/0", "PSYNC/some-replication-id/-1"] {
        let r = execute(blocking);
        assert_eq!(r.status, 500, "{blocking}: {}", r.body);
        assert!(r.json()["error"].as_str().unwrap().contains("blocks the connection"), "{blocking}: {}", r.body);
    }
    // Had BLPOP been sent, the shared connection would be held for ever:
    // the next command from any instance would get no answer.
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(3)).build();
    let url = host.url(&format!("/probe/redis/RPUSH/jobs/a?address={}", redis.url()));
    let pushed: serde_json::Value = agent.get(&url).call().expect("answered while a blocking command was refused").into_json().unwrap();
    assert_eq!(pushed["results"], serde_json::json!([1]));
    let r = execute("XREAD/COUNT/1/STREAMS/events/0");
    assert_eq!(r.status, 200, "XREAD without BLOCK is allowed: {}", r.body);
    let r = execute("LPOP/jobs");
    assert_eq!(r.json()["results"], serde_json::json!(["a"]));
}

/// `allowed_outbound_hosts = ["{{ redis_url }}"]` with a password in the URL,
/// as a deployment's Secret gives it: the credentials are not part of the host.
#[test]
fn an_allowed_redis_url_with_a_password_reaches_its_server() {
    let redis = Redis::start();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("s3cret").query(&mut redis.client()).unwrap();
    let url = format!("redis://:s3cret@127.0.0.1:{}", redis.port);
    let app = probe_app(&[&url]);
    let host = app.start();
    let r = get(&host.url(&format!("/probe/redis/SET/k/v?address={url}")));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(&host.url(&format!("/probe/redis/GET/k?address={url}")));
    assert_eq!(r.json()["results"], serde_json::json!(["v"]));
    // Without the password the server refuses, so the password was used.
    let r = get(&host.url(&format!("/probe/redis/GET/k?address=redis://127.0.0.1:{}", redis.port)));
    assert_ne!(r.status, 200, "{}", r.body);
}
