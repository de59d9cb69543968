//! The WASIp2 probe guest on real Spin 3.6.3 (the Spin of SpinKube's shim,
//! from `../shared/spin`) and on wharf: the same manifest, the same real
//! servers, the same requests; every answer (status and body, which carries
//! the interface's own `Debug` text) must be the same. Covers variables,
//! `wasi:config`, key-value, `wasi:keyvalue` atomics, SQLite (both
//! versions), outbound Redis, PostgreSQL (all three versions), MQTT, and
//! the refusals of MySQL and LLM. Left out on purpose, because wharf
//! answers differently (docs/host.md): a query returning no rows (wharf
//! names its columns, Spin returns none), `timestamptz` columns (Spin
//! fails the query), and the text of connection failures.

mod common;
use common::*;
use serde_json::json;

struct Servers {
    redis: Redis,
    pg: Postgres,
    mqtt: Mosquitto,
}

fn manifest(servers: &Servers) -> (tempfile::TempDir, std::path::PathBuf) {
    let allowed = [
        format!("redis://127.0.0.1:{}", servers.redis.port),
        format!("postgres://127.0.0.1:{}", servers.pg.port),
        format!("mqtt://127.0.0.1:{}", servers.mqtt.port),
    ];
    manifest_dir(&format!(
        r#"spin_manifest_version = 2
[application]
name = "same-as-spin"
[variables]
greeting = {{ default = "hello" }}
[[trigger.http]]
route = "/..."
component = "probe"
[component.probe]
source = {source:?}
key_value_stores = ["default"]
sqlite_databases = ["default"]
allowed_outbound_hosts = {allowed:?}
ai_models = ["llama2-chat"]
[component.probe.variables]
greeting = "{{{{ greeting }}}}, world"
redis_address = "redis://127.0.0.1:{redis}"
"#,
        source = wasm("guest-probe-p2"),
        redis = servers.redis.port,
    ))
}

/// `(method, path, body)` of every request, in order.
fn requests(servers: &Servers) -> Vec<(&'static str, String, String)> {
    let pg = servers.pg.address("pg-test-password");
    let pg_script = |statements: serde_json::Value| json!({ "address": pg, "statements": statements }).to_string();
    let mqtt = |address: String, password: &str| {
        json!({"address": address, "username": "app", "password": password, "topic": "t", "payload": "p"}).to_string()
    };
    let broker = format!("mqtt://127.0.0.1:{}?client_id=probe", servers.mqtt.port);
    vec![
        ("GET", "/variable/greeting".into(), String::new()),
        ("GET", "/config/greeting".into(), String::new()),
        ("GET", "/variable/missing".into(), String::new()),
        ("GET", "/variable/Not-A-Name".into(), String::new()),
        ("GET", "/config/missing".into(), String::new()),
        ("GET", "/config/Not-A-Name".into(), String::new()),
        ("PUT", "/kv/default/a".into(), "one".into()),
        ("GET", "/kv/default/a".into(), String::new()),
        ("GET", "/kv/default".into(), String::new()),
        ("DELETE", "/kv/default/a".into(), String::new()),
        ("GET", "/kv/default/a".into(), String::new()),
        ("GET", "/kv/forbidden/a".into(), String::new()),
        ("POST", "/kv-incr/default/n/5".into(), String::new()),
        ("POST", "/kv-incr/default/n/-2".into(), String::new()),
        ("POST", "/redis/SET/k/v".into(), String::new()),
        ("POST", "/redis/GET/k".into(), String::new()),
        ("POST", "/redis/INCRBY/c/7".into(), String::new()),
        ("POST", "/redis-publish/nobody".into(), "x".into()),
        (
            "POST",
            "/sqlite/default".into(),
            json!([
                {"sql": "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB)"},
                {"sql": "INSERT INTO t VALUES (?, ?, ?, ?)", "params": [{"integer": 1}, {"real": 2.5}, {"text": "x"}, {"blob": [0, 9]}]},
                {"sql": "SELECT * FROM t"},
            ])
            .to_string(),
        ),
        ("POST", "/sqlite3/default".into(), json!([{"sql": "INSERT INTO t (i) VALUES (2)"}, {"sql": "SELECT count(*) FROM t"}]).to_string()),
        ("POST", "/sqlite/default".into(), json!([{"sql": "SELECT * FROM missing"}]).to_string()),
        (
            "POST",
            "/pg/4".into(),
            pg_script(json!([
                {"sql": "CREATE TABLE t (i2 int2, i4 int4, i8 int8, f8 float8, s text, b bytea, d date, tm time, dt timestamp, \
                         u uuid, j jsonb, n numeric, r int4range, a int4[], sa text[], iv interval, flag bool)", "execute": true},
                {"sql": "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                 "execute": true,
                 "params": [{"int16": 2}, {"int32": 3}, {"int64": 4}, {"float64": 0.5}, {"str": "s"}, {"binary": [1]},
                            {"date": [2024, 2, 29]}, {"time": [1, 2, 3, 4000]}, {"datetime": [2000, 1, 2, 3, 4, 5, 6000]},
                            {"uuid": "12345678-1234-1234-1234-123456789abc"}, {"jsonb": {"a": 1}}, {"decimal": "1.50"},
                            {"range_int32": [[1, "exclusive"], null]}, {"array_int32": [1, null]}, {"array_str": [null, "z"]},
                            {"interval": [1, 2, 3]}, null]},
                {"sql": "SELECT * FROM t"},
                {"sql": "SELECT * FROM missing"},
            ])),
        ),
        ("POST", "/pg/3".into(), pg_script(json!([{"sql": "SELECT i4, d, u FROM t"}]))),
        ("POST", "/pg/2".into(), pg_script(json!([{"sql": "SELECT i4, d FROM t"}, {"sql": "SELECT $1::int8", "params": [{"uint32": 1}]}]))),
        ("POST", "/pg/4".into(), json!({"address": "host=127.0.0.2 port=5432 user=postgres", "statements": []}).to_string()),
        ("POST", "/mqtt/1".into(), mqtt(broker.clone(), "mqtt-test-password")),
        ("POST", "/mqtt/0".into(), mqtt("mqtt://127.0.0.1:1?client_id=probe".into(), "mqtt-test-password")),
        ("POST", "/mqtt/0".into(), mqtt(format!("mqtt://127.0.0.1:{}", servers.mqtt.port), "mqtt-test-password")),
        ("POST", "/mysql".into(), "mysql://root@db.internal/shop".into()),
        ("POST", "/llm/codellama-instruct".into(), String::new()),
    ]
}

/// What each request got, as `status body`.
fn answers(base: impl Fn(&str) -> String, requests: &[(&'static str, String, String)]) -> Vec<String> {
    requests
        .iter()
        .map(|(method, path, body)| {
            let reply = request(method, &base(path), &[], (!body.is_empty()).then_some(body.as_bytes()));
            format!("{method} {path} -> {} {}", reply.status, reply.body)
        })
        .collect()
}

#[test]
fn the_wasip2_probe_answers_on_wharf_as_on_spin_3_6_3() {
    let Some(spin) = real_spin("3.6.3", "the_wasip2_probe_answers_on_wharf_as_on_spin_3_6_3") else { return };
    let run = |on_spin: bool| {
        // Fresh servers and state for each host, so both start from nothing.
        let servers = Servers {
            redis: Redis::start(),
            pg: Postgres::start("pg-test-password"),
            mqtt: Mosquitto::start("app", "mqtt-test-password"),
        };
        let (dir, manifest) = manifest(&servers);
        let requests = requests(&servers);
        let got = if on_spin {
            let spin = SpinUp::up(&spin, &manifest, &dir.path().join("state"), "spin up (3.6.3)");
            answers(|path| spin.url(path), &requests)
        } else {
            let host = Host::start(&manifest, HostConfig::default().arg("--state-dir").arg(dir.path().join("state").display().to_string()));
            answers(|path| host.url(path), &requests)
        };
        // The server names its own ports in a few answers; make them equal.
        let ports = [servers.redis.port, servers.pg.port, servers.mqtt.port];
        got.into_iter().map(|line| ports.iter().fold(line, |line, port| line.replace(&port.to_string(), "<port>"))).collect::<Vec<_>>()
    };
    let on_spin = run(true);
    let on_wharf = run(false);
    let differ: Vec<String> =
        on_spin.iter().zip(&on_wharf).filter(|(s, w)| s != w).map(|(s, w)| format!("spin:  {s}\nwharf: {w}")).collect();
    assert!(differ.is_empty(), "{} of {} answers differ:\n{}", differ.len(), on_spin.len(), differ.join("\n\n"));
    // Not vacuous: the answers show the calls went through.
    assert!(on_wharf.iter().any(|line| line.contains("/mqtt/1 -> 200 published")), "{on_wharf:#?}");
    assert!(on_wharf.iter().any(|line| line.contains("Uuid(\"12345678-1234-1234-1234-123456789abc\")")), "{on_wharf:#?}");
}
