//! SQLite databases as Spin 2.x/3.x apps use them (`fermyon:spin/sqlite@2.0.0`
//! and `spin:sqlite/sqlite@3.0.0`, through the WASIp2 probe): typed values,
//! errors, grants, the `default` database in the state dir and others from
//! the runtime config.

mod common;
use common::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// An app with the probe granted `grants` and a `stranger` granted nothing,
/// and the runtime config `runtime_config` beside it (none when empty).
struct App {
    dir: tempfile::TempDir,
    manifest: PathBuf,
}

impl App {
    fn new(grants: &str, runtime_config: &str) -> Self {
        let text = format!(
            r#"spin_manifest_version = 2
[application]
name = "sqlite"
[[trigger.http]]
route = "/..."
component = "probe"
[[trigger.http]]
route = "/stranger/..."
component = "stranger"
[component.probe]
source = {probe:?}
sqlite_databases = {grants}
[component.stranger]
source = {probe:?}
"#,
            probe = wasm("guest-probe-p2"),
        );
        let (dir, manifest) = manifest_dir(&text);
        if !runtime_config.is_empty() {
            std::fs::write(dir.path().join("runtime-config.toml"), runtime_config).unwrap();
        }
        Self { dir, manifest }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn config(&self) -> HostConfig {
        let mut config = HostConfig::default().arg("--state-dir").arg(self.state_dir().display().to_string());
        let runtime_config = self.dir.path().join("runtime-config.toml");
        if runtime_config.exists() {
            config = config.arg("--runtime-config-file").arg(runtime_config.display().to_string());
        }
        config
    }

    fn start(&self) -> Host {
        Host::start(&self.manifest, self.config())
    }

    /// The log of a host that refused to start the app.
    fn refused(&self) -> String {
        let mut host = Host::spawn(&self.manifest, self.config());
        assert_eq!(host.wait_exit(Duration::from_secs(60)), Some(1), "{}", host.logs());
        host.logs()
    }
}

/// Runs `statements` (`(sql, params)`) on one connection through `path`
/// (`/sqlite/<label>` or `/sqlite3/<label>`).
fn run(host: &Host, path: &str, statements: &[(&str, Value)]) -> Reply {
    let body: Vec<Value> = statements.iter().map(|(sql, params)| json!({ "sql": sql, "params": params })).collect();
    request("POST", &host.url(path), &[], Some(Value::Array(body).to_string().as_bytes()))
}

/// The rows of the last statement of a successful [`run`].
fn rows(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json().as_array().unwrap().last().unwrap()["rows"].clone()
}

#[test]
fn values_of_every_type_come_back_with_their_type_through_both_interfaces() {
    let app = App::new(r#"["default"]"#, "");
    let host = app.start();
    let values = json!([{ "integer": -9007199254740993_i64 }, { "real": 2.0 }, { "text": "naïve ' \" ;" }, { "blob": [0, 1, 255] }, null]);
    let created = run(&host, "/sqlite/default", &[("CREATE TABLE things (id INTEGER PRIMARY KEY, v)", json!([]))]);
    assert_eq!(created.status, 200, "{}", created.body);
    let mut inserts: Vec<(&str, Value)> = Vec::new();
    for value in values.as_array().unwrap() {
        inserts.push(("INSERT INTO things (v) VALUES (?)", json!([value])));
    }
    let inserted = run(&host, "/sqlite3/default", &inserts);
    assert_eq!(inserted.status, 200, "{}", inserted.body);
    let last = &inserted.json()[4];
    assert_eq!((last["changes"].as_u64(), last["last_insert_rowid"].as_i64()), (Some(1), Some(5)));
    assert_eq!(last["columns"], json!([]), "an INSERT returns no columns");

    // Written through spin:sqlite@3.0.0, read through fermyon:spin@2.0.0.
    let read = run(&host, "/sqlite/default", &[("SELECT v AS value, typeof(v) AS kind FROM things ORDER BY id", json!([]))]);
    assert_eq!(read.json()[0]["columns"], json!(["value", "kind"]));
    let expected: Vec<Value> = values
        .as_array()
        .unwrap()
        .iter()
        .zip(["integer", "real", "text", "blob", "null"])
        .map(|(value, kind)| json!([value, { "text": kind }]))
        .collect();
    assert_eq!(rows(&read), Value::Array(expected));

    // Parameters bind by number and compare as their types: the text "1" is not the integer 1.
    let found = run(&host, "/sqlite/default", &[("SELECT id FROM things WHERE v = ?1 OR v = ?2", json!([{ "text": "1" }, { "real": 2.0 }]))]);
    assert_eq!(rows(&found), json!([[{ "integer": 2 }]]));
}

#[test]
fn bad_sql_is_an_io_error_and_changes_nothing() {
    let app = App::new(r#"["default"]"#, "");
    let host = app.start();
    assert_eq!(run(&host, "/sqlite/default", &[("CREATE TABLE t (v INTEGER NOT NULL)", json!([]))]).status, 200);
    let cases: [(&str, Value, &str); 5] = [
        ("SELEC 1", json!([]), "syntax error"),
        ("SELECT * FROM missing", json!([]), "no such table: missing"),
        ("INSERT INTO t VALUES (?)", json!([null]), "NOT NULL constraint failed: t.v"),
        ("INSERT INTO t VALUES (?)", json!([{ "integer": 1 }, { "integer": 2 }]), "Wrong number of parameters"),
        ("INSERT INTO t VALUES (1); DROP TABLE t", json!([]), "Multiple statements"),
    ];
    for (sql, params, message) in cases {
        let reply = run(&host, "/sqlite/default", &[(sql, params)]);
        assert_eq!(reply.status, 500, "{sql}: {}", reply.body);
        assert!(reply.body.starts_with("statement 0: Error::Io(") && reply.body.contains(message), "{sql}: {}", reply.body);
    }
    let count = run(&host, "/sqlite3/default", &[("SELECT count(*) FROM t", json!([]))]);
    assert_eq!(rows(&count), json!([[{ "integer": 0 }]]), "no refused statement ran, the table is still there");
    // Files stay out of reach of the guest's SQL.
    let outside = app.dir.path().join("stolen.db");
    let attach = run(&host, "/sqlite/default", &[(&format!("ATTACH '{}' AS stolen", outside.display()), json!([]))]);
    assert!(attach.status == 500 && attach.body.contains("not authorized"), "{}", attach.body);
    assert!(!outside.exists());
}

#[test]
fn a_database_not_granted_is_access_denied() {
    let app = App::new(r#"["default"]"#, "[sqlite_database.other]\ntype = \"spin\"\n");
    let host = app.start();
    assert_eq!(run(&host, "/sqlite/default", &[("CREATE TABLE t (v)", json!([]))]).status, 200);
    for path in ["/stranger/sqlite/default", "/stranger/sqlite3/default", "/sqlite/other", "/sqlite3/nowhere"] {
        let reply = run(&host, path, &[("SELECT 1", json!([]))]);
        assert_eq!((reply.status, reply.body.as_str()), (403, "Error::AccessDenied"), "{path}");
    }
}

#[test]
fn the_default_database_persists_across_a_restart_in_the_state_dir() {
    let app = App::new(r#"["default"]"#, "");
    let host = app.start();
    let written = run(&host, "/sqlite/default", &[("CREATE TABLE notes (body TEXT)", json!([])), ("INSERT INTO notes VALUES (?)", json!([{ "text": "kept" }]))]);
    assert_eq!(written.status, 200, "{}", written.body);
    drop(host);
    assert!(app.state_dir().join("sqlite_db.db").is_file(), "Spin's file name in the state dir");
    let host = app.start();
    assert_eq!(rows(&run(&host, "/sqlite3/default", &[("SELECT body FROM notes", json!([]))])), json!([[{ "text": "kept" }]]));
}

#[test]
fn a_database_from_the_runtime_config_is_at_its_path_and_shared_by_instances() {
    let app = App::new(r#"["orders"]"#, "[sqlite_database.orders]\ntype = \"spin\"\npath = \"data/orders.db\"\n");
    let host = app.start();
    assert_eq!(run(&host, "/sqlite/orders", &[("CREATE TABLE orders (id INTEGER PRIMARY KEY, n)", json!([]))]).status, 200);
    // Each request is an instance of its own with its own connection: 8 at a
    // time write to the same file.
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let url = host.url("/sqlite3/orders");
            std::thread::spawn(move || {
                for j in 0..10 {
                    let body = json!([{ "sql": "INSERT INTO orders (n) VALUES (?)", "params": [{ "integer": i * 10 + j }] }]);
                    let reply = request("POST", &url, &[], Some(body.to_string().as_bytes()));
                    assert_eq!(reply.status, 200, "{}", reply.body);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    drop(host);
    // The file is where the runtime config says, relative to the config file.
    let conn = rusqlite::Connection::open(app.dir.path().join("data/orders.db")).unwrap();
    let (count, sum): (i64, i64) = conn.query_row("SELECT count(*), sum(n) FROM orders", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((count, sum), (80, (0..80).sum()));
    assert!(!app.state_dir().join("sqlite_db.db").exists(), "no default database for an app that does not use it");
}

#[test]
fn a_database_without_a_path_is_in_memory_and_shared_while_the_host_runs() {
    let app = App::new(r#"["scratch"]"#, "[sqlite_database.scratch]\ntype = \"spin\"\n");
    let host = app.start();
    let written = run(&host, "/sqlite/scratch", &[("CREATE TABLE t (v)", json!([])), ("INSERT INTO t VALUES (42)", json!([]))]);
    assert_eq!(written.status, 200, "{}", written.body);
    assert_eq!(rows(&run(&host, "/sqlite3/scratch", &[("SELECT v FROM t", json!([]))])), json!([[{ "integer": 42 }]]), "another instance sees it");
    drop(host);
    let host = app.start();
    let gone = run(&host, "/sqlite/scratch", &[("SELECT v FROM t", json!([]))]);
    assert!(gone.status == 500 && gone.body.contains("no such table"), "{}", gone.body);
}

#[test]
fn labels_and_types_no_config_defines_stop_the_start() {
    let logs = App::new(r#"["default", "ledger"]"#, "").refused();
    assert!(logs.contains("component.probe") && logs.contains("sqlite_databases lists `ledger`"), "{logs}");
    let logs = App::new(r#"["remote"]"#, "[sqlite_database.remote]\ntype = \"libsql\"\nurl = \"https://db.example\"\ntoken = \"t\"\n").refused();
    assert!(logs.contains("runtime-config.toml") && logs.contains("unknown variant `libsql`"), "{logs}");
}

#[test]
fn a_statement_past_the_request_deadline_is_stopped_and_releases_its_lock() {
    let app = App::new(r#"["default"]"#, "");
    let host = Host::start(&app.manifest, app.config().arg("--request-timeout").arg("1"));
    assert_eq!(run(&host, "/sqlite/default", &[("CREATE TABLE t (v)", json!([]))]).status, 200);
    // An endless INSERT holds the database's write lock while it runs.
    let endless = "INSERT INTO t WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n";
    let start = Instant::now();
    let stopped = run(&host, "/sqlite/default", &[(endless, json!([]))]);
    // The WASIp2 handler's instance is dropped at the deadline, which the
    // trigger answers with 504 or, when the drop wins the race, 500.
    assert!([500, 504].contains(&stopped.status), "{}", stopped.body);
    assert!(start.elapsed() < Duration::from_secs(3), "answered after {:?}", start.elapsed());
    // The task running the call drops the store at its own deadline, just
    // after the trigger's.
    eventually(Duration::from_secs(2), "the instance to be dropped", || {
        host.logs().contains("instance dropped: its request passed its deadline").then_some(())
    });
    // Were it still running, this write would wait out the 5 s busy timeout and fail.
    let start = Instant::now();
    let written = run(&host, "/sqlite3/default", &[("INSERT INTO t VALUES (-1)", json!([])), ("SELECT count(*) FROM t", json!([]))]);
    assert_eq!(rows(&written), json!([[{ "integer": 1 }]]), "the stopped INSERT was rolled back");
    assert!(start.elapsed() < Duration::from_secs(3), "waited {:?} for the lock", start.elapsed());
}

/// `spin:sqlite/sqlite@3.1.0`, what spin-sdk 7 (WASIp3) components import:
/// the rows come as a stream, from the same databases and with the same
/// answers as through the WASIp2 interfaces, under the same grants.
#[test]
fn wasip3_components_share_the_databases_through_spin_sqlite_3_1() {
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "sqlite-p3"
[[trigger.http]]
route = "/..."
component = "probe"
[[trigger.http]]
route = "/probe/..."
component = "probe3"
[component.probe]
source = {probe:?}
sqlite_databases = ["default"]
[component.probe3]
source = {probe3:?}
sqlite_databases = ["default"]
"#,
        probe = wasm("guest-probe-p2"),
        probe3 = wasm("guest-probe"),
    );
    let (dir, manifest) = manifest_dir(&text);
    let host = Host::start(&manifest, HostConfig::default().arg("--state-dir").arg(dir.path().join("state").display().to_string()));
    let values = json!([{ "integer": -7 }, { "real": 2.5 }, { "text": "naïve" }, { "blob": [0, 255] }, null]);
    let mut statements: Vec<(&str, Value)> = vec![("CREATE TABLE things (id INTEGER PRIMARY KEY, v)", json!([]))];
    for value in values.as_array().unwrap() {
        statements.push(("INSERT INTO things (v) VALUES (?)", json!([value])));
    }
    let written = run(&host, "/probe/sqlite/default", &statements);
    assert_eq!(written.status, 200, "{}", written.body);
    let last = &written.json()[5];
    assert_eq!((last["changes"].as_u64(), last["last_insert_rowid"].as_i64()), (Some(1), Some(5)));

    // Read back through spin:sqlite@3.0.0 (WASIp2) and @3.1.0 (WASIp3): the same answer.
    let select = [("SELECT v AS value FROM things WHERE id >= ?1 ORDER BY id", json!([{ "integer": 1 }]))];
    let through_p2 = run(&host, "/sqlite3/default", &select);
    let through_p3 = run(&host, "/probe/sqlite/default", &select);
    assert_eq!(rows(&through_p2), Value::Array(values.as_array().unwrap().iter().map(|v| json!([v])).collect()));
    assert_eq!(through_p3.json(), through_p2.json());

    let bad = run(&host, "/probe/sqlite/default", &[("SELECT * FROM missing", json!([]))]);
    assert!(bad.status == 500 && bad.body.contains("statement 0: Error::Io(") && bad.body.contains("no such table"), "{}", bad.body);
    let denied = run(&host, "/probe/sqlite/other", &[("SELECT 1", json!([]))]);
    assert!(denied.status == 403 && denied.body.contains("AccessDenied"), "{}", denied.body);
}
