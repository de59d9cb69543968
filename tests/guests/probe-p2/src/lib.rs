//! Exercises the imports of WASIp2 Spin apps, one path each (the path under
//! the component's route, from `spin-path-info`), answering
//! what the host said (errors as their `Debug` text, so a test sees which
//! error variant the host chose):
//! - `GET /variable/<name>`: `fermyon:spin/variables@2.0.0`;
//! - `GET /config/<name>`: `wasi:config/store` (`none` is a 404);
//! - `GET|PUT|DELETE /kv/<label>/<key>` and `GET /kv/<label>` (every key,
//!   sorted, one per line): `fermyon:spin/key-value@2.0.0`;
//! - `POST /cas/<label>/<key>`: one compare-and-swap of `wasi:keyvalue/atomics`
//!   (`@0.2.0-draft2`) writing the body, answering `current: <what the cas
//!   read>; swap: <what the swap answered>`;
//! - `POST /kv-incr/<label>/<key>/<delta>`: `increment` on
//!   `wasi:keyvalue/atomics@0.2.0-draft2`, answering the new value;
//! - `POST /redis/<command>/<arg>/...`: `execute` on `fermyon:spin/redis@2.0.0`
//!   at the `redis_address` variable; `POST /redis-publish/<channel>` with the
//!   body as payload;
//! - `POST /tcp/<ip:port>`: `wasi:sockets` through Rust's `std::net`:
//!   connects, sends the body, closes its sending half and answers what the
//!   peer sent back before closing.
//! - `POST /sqlite/<label>` (`fermyon:spin/sqlite@2.0.0`) and
//!   `POST /sqlite3/<label>` (`spin:sqlite/sqlite@3.0.0`): runs the
//!   statements of the body, a JSON list of `{"sql": "...", "params": [...]}`,
//!   on one connection; parameters and values are `{"integer": 1}`,
//!   `{"real": 1.5}`, `{"text": "t"}`, `{"blob": [0, 255]}` or `null`. The
//!   answer lists each statement's `columns` and `rows` (with `changes` and
//!   `last_insert_rowid` after it on `sqlite3`); an error is a 500 naming the
//!   statement's index and the error.
//! - `POST /pg/<2|3|4>`: PostgreSQL, see [`postgres`].
//! - `POST /mqtt/<0|1|2>`: `fermyon:spin/mqtt@2.0.0`: opens the body's
//!   `{"address", "username", "password", "topic", "payload"}` (keep-alive
//!   30 s) and publishes with that QoS, answering `published`.
//! - `POST /mysql` (`fermyon:spin/mysql@2.0.0`, the body is the address) and
//!   `POST /llm/<model>` (`fermyon:spin/llm@2.0.0`): what `open` and `infer`
//!   answered.
//! - `GET /spin`: loops for ever (a request that only its deadline ends).
//! - `GET /global`: how many requests this instance has seen, this one
//!   included (1 in a fresh instance).

mod postgres;

use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;
use spin_sdk::redis::{Connection, RedisParameter};
use spin_sdk::wit::wasi::keyvalue;
use serde_json::{Value as Json, json};
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests this instance has seen.
static REQUESTS_SEEN: AtomicU64 = AtomicU64::new(0);

fn answer(status: u16, body: impl Into<String>) -> Response {
    Response::builder().status(status).header("content-type", "text/plain").body(body.into()).build()
}

fn outcome<T: std::fmt::Display, E: std::fmt::Debug>(result: Result<T, E>) -> Response {
    match result {
        Ok(value) => answer(200, value.to_string()),
        Err(e) => answer(500, format!("{e:?}")),
    }
}

#[http_component]
fn probe(req: Request) -> anyhow::Result<impl IntoResponse> {
    let path = req.header("spin-path-info").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Ok(match (req.method(), parts.as_slice()) {
        (Method::Get, ["variable", name]) => outcome(spin_sdk::variables::get(name)),
        (Method::Get, ["config", name]) => match spin_sdk::wit::wasi::config::store::get(name) {
            Ok(Some(value)) => answer(200, value),
            Ok(None) => answer(404, "none"),
            Err(e) => answer(500, format!("{e:?}")),
        },
        (method, ["kv", label, rest @ ..]) => match Store::open(label) {
            Err(e) => answer(403, format!("{e:?}")),
            Ok(store) => match (method, rest) {
                (Method::Get, []) => outcome(store.get_keys().map(|mut keys| {
                    keys.sort();
                    keys.join("\n")
                })),
                (Method::Get, [key]) => match store.get(key) {
                    Ok(Some(value)) => answer(200, String::from_utf8_lossy(&value)),
                    Ok(None) => answer(404, "absent"),
                    Err(e) => answer(500, format!("{e:?}")),
                },
                (Method::Put, [key]) => outcome(store.set(key, req.body()).map(|()| "stored")),
                (Method::Delete, [key]) => outcome(store.delete(key).map(|()| "deleted")),
                _ => answer(405, "kv: GET, PUT or DELETE"),
            },
        },
        (Method::Post, ["cas", label, key]) => outcome(compare_and_swap(label, key, req.body())),
        (Method::Post, ["kv-incr", label, key, delta]) => match delta.parse::<i64>() {
            Err(e) => answer(400, format!("delta: {e}")),
            Ok(delta) => match keyvalue::store::open(label) {
                Err(e) => answer(403, format!("{e:?}")),
                Ok(bucket) => outcome(keyvalue::atomics::increment(&bucket, key, delta)),
            },
        },
        (Method::Post, ["redis-publish", channel]) => {
            outcome(redis().and_then(|conn| conn.publish(channel, &req.body().to_vec())).map(|()| "published"))
        }
        (Method::Post, ["redis", command, arguments @ ..]) => {
            let arguments: Vec<RedisParameter> = arguments.iter().map(|a| RedisParameter::Binary(a.as_bytes().to_vec())).collect();
            outcome(redis().and_then(|conn| conn.execute(command, &arguments)).map(|results| format!("{results:?}")))
        }
        (Method::Post, ["tcp", address]) => outcome(tcp_exchange(address, req.body())),
        (Method::Post, ["sqlite", label]) => sqlite_v2(label, req.body()),
        (Method::Post, ["sqlite3", label]) => sqlite_v3(label, req.body()),
        (Method::Post, ["pg", version]) => postgres::probe(version, req.body()),
        (Method::Post, ["mqtt", qos]) => mqtt_publish(qos, req.body()),
        (Method::Post, ["mysql"]) => {
            let address = String::from_utf8_lossy(req.body()).to_string();
            answer(200, format!("{:?}", spin_sdk::mysql::Connection::open(&address).map(drop)))
        }
        (Method::Post, ["llm", model]) => answer(200, format!("{:?}", spin_sdk::llm::infer(spin_sdk::llm::InferencingModel::Other(model), "hello"))),
        (Method::Get, ["trap"]) => panic!("probe-p2 was asked to trap"),
        (Method::Get, ["global"]) => answer(200, (REQUESTS_SEEN.fetch_add(1, Ordering::SeqCst) + 1).to_string()),
        (Method::Get, ["spin"]) => loop {
            std::hint::black_box(());
        },
        _ => answer(404, format!("no such probe: {path}")),
    })
}

fn compare_and_swap(label: &str, key: &str, value: &[u8]) -> Result<String, spin_sdk::wit::wasi::keyvalue::store::Error> {
    use spin_sdk::wit::wasi::keyvalue::{atomics, store};
    // Spin finds the swap's store through the bucket, which must outlive it.
    let bucket = store::open(label)?;
    let cas = atomics::Cas::new(&bucket, key)?;
    let current = cas.current()?;
    Ok(format!("current: {current:?}; swap: {:?}", atomics::swap(cas, value)))
}

/// The statements of a request body, `(sql, params)`; `Err` is a 400.
fn statements(body: &[u8]) -> Result<Vec<(String, Vec<Json>)>, Response> {
    let bad = |why: &str| answer(400, format!("body: {why}"));
    let list: Vec<Json> = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
    list.into_iter()
        .map(|statement| {
            let sql = statement["sql"].as_str().ok_or_else(|| bad("a statement without `sql`"))?.to_string();
            let params = statement.get("params").and_then(Json::as_array).cloned().unwrap_or_default();
            Ok((sql, params))
        })
        .collect()
}

/// Runs the statements of `body` on a connection to `label` through one
/// version of the interface (both have the same shape), values as tagged
/// JSON; `$after` adds to each statement's answer.
macro_rules! sqlite_probe {
    ($sqlite:path, $label:expr, $body:expr, |$conn:ident, $answer:ident| $after:block) => {{
        use $sqlite as sqlite;
        fn parameter(json: &Json) -> Result<sqlite::Value, Response> {
            let bad = || answer(400, format!("parameter {json}"));
            let Some((kind, value)) = json.as_object().and_then(|o| o.iter().next()) else {
                return if json.is_null() { Ok(sqlite::Value::Null) } else { Err(bad()) };
            };
            Ok(match kind.as_str() {
                "integer" => sqlite::Value::Integer(value.as_i64().ok_or_else(bad)?),
                "real" => sqlite::Value::Real(value.as_f64().ok_or_else(bad)?),
                "text" => sqlite::Value::Text(value.as_str().ok_or_else(bad)?.to_string()),
                "blob" => sqlite::Value::Blob(serde_json::from_value(value.clone()).map_err(|_| bad())?),
                _ => return Err(bad()),
            })
        }
        fn value(value: &sqlite::Value) -> Json {
            match value {
                sqlite::Value::Integer(i) => json!({ "integer": i }),
                sqlite::Value::Real(r) => json!({ "real": r }),
                sqlite::Value::Text(t) => json!({ "text": t }),
                sqlite::Value::Blob(b) => json!({ "blob": b }),
                sqlite::Value::Null => Json::Null,
            }
        }
        let run = || -> Result<Vec<Json>, Response> {
            let statements = statements($body)?;
            let $conn = sqlite::Connection::open($label).map_err(|e| answer(403, format!("{e:?}")))?;
            let mut answers = Vec::new();
            for (i, (sql, params)) in statements.iter().enumerate() {
                let params = params.iter().map(parameter).collect::<Result<Vec<_>, _>>()?;
                let result = $conn.execute(sql, &params).map_err(|e| answer(500, format!("statement {i}: {e:?}")))?;
                let rows: Vec<Vec<Json>> = result.rows.iter().map(|row| row.values.iter().map(value).collect()).collect();
                let mut $answer = json!({ "columns": result.columns, "rows": rows });
                $after
                answers.push($answer);
            }
            Ok(answers)
        };
        match run() {
            Ok(answers) => answer(200, Json::Array(answers).to_string()),
            Err(response) => response,
        }
    }};
}

fn sqlite_v2(label: &str, body: &[u8]) -> Response {
    sqlite_probe!(spin_sdk::sqlite, label, body, |_conn, _reply| {})
}

fn sqlite_v3(label: &str, body: &[u8]) -> Response {
    sqlite_probe!(spin_sdk::sqlite3, label, body, |conn, reply| {
        reply["changes"] = json!(conn.changes());
        reply["last_insert_rowid"] = json!(conn.last_insert_rowid());
    })
}

fn mqtt_publish(qos: &str, body: &[u8]) -> Response {
    use spin_sdk::mqtt::{Connection, Qos};
    let Ok(message) = serde_json::from_slice::<Json>(body) else { return answer(400, "body: not JSON") };
    let text = |field: &str| message[field].as_str().unwrap_or_default().to_string();
    let qos = match qos {
        "0" => Qos::AtMostOnce,
        "1" => Qos::AtLeastOnce,
        "2" => Qos::ExactlyOnce,
        _ => return answer(404, format!("no QoS {qos}")),
    };
    let published = Connection::open(&text("address"), &text("username"), &text("password"), 30)
        .and_then(|connection| connection.publish(&text("topic"), &text("payload").into_bytes(), qos));
    outcome(published.map(|()| "published"))
}

fn redis() -> Result<Connection, spin_sdk::redis::Error> {
    let address = spin_sdk::variables::get("redis_address").map_err(|e| spin_sdk::redis::Error::Other(format!("{e:?}")))?;
    Connection::open(&address)
}

fn tcp_exchange(address: &str, message: &[u8]) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let address: std::net::SocketAddr = address.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.write_all(message)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}
