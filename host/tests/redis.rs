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
