//! Routes under `/probe/<action>/...`, each exercising one host capability
//! or fault, for the host's integration tests (host/tests/*.rs).

use spin_sdk::experimental::wasi::keyvalue::{atomics, store as wasi_kv};
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{IntoResponse, Request, Response, StatusCode};
use spin_sdk::http_service;
use spin_sdk::key_value::Store;
use std::sync::atomic::{AtomicU64, Ordering};

/// Guest state that survives between requests only when an instance is reused.
static REQUESTS_SEEN: AtomicU64 = AtomicU64::new(0);

fn json(status: u16, value: serde_json::Value) -> Response<String> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(value.to_string())
        .unwrap()
}

#[http_service]
async fn probe(req: Request) -> impl IntoResponse {
    let path = req.uri().path().to_string();
    let segments: Vec<String> = path.trim_start_matches('/').split('/').map(str::to_string).collect();
    let args: Vec<&str> = segments.iter().skip(2).map(String::as_str).collect();
    if segments[0] != "probe" {
        // Any other route this component is mounted on just reports the request.
        return inspect(req).await;
    }
    match segments.get(1).map(String::as_str).unwrap_or("") {
        "inspect" => inspect(req).await,
        "kv" => kv(req, &args).await,
        "incr" => incr(&args),
        "cas" => cas_increment(&args),
        "var" => match spin_sdk::variables::get(args[0]).await {
            Ok(value) => json(200, serde_json::json!({ "value": value })),
            Err(e) => json(404, serde_json::json!({ "error": format!("{e:?}") })),
        },
        "env" => json(200, serde_json::json!({ "value": std::env::var(args[0]).ok() })),
        // Reads /<rest of the path> from the component's `files`.
        "file" => match std::fs::read_to_string(format!("/{}", args.join("/"))) {
            Ok(text) => json(200, serde_json::json!({ "text": text })),
            Err(e) => json(404, serde_json::json!({ "error": e.to_string() })),
        },
        "fetch" => fetch(&req).await,
        "redis" => redis_execute(&req, &args).await,
        "sqlite" => sqlite(req, args[0]).await,
        "pg" => postgres(req).await,
        "big" => {
            let n: usize = args[0].parse().unwrap();
            Response::builder().status(200).body("x".repeat(n)).unwrap()
        }
        "global" => json(200, serde_json::json!({ "seen": REQUESTS_SEEN.fetch_add(1, Ordering::SeqCst) + 1 })),
        "sleep" => {
            let ms: u64 = args[0].parse().unwrap();
            spin_sdk::wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
            json(200, serde_json::json!({ "slept_ms": ms }))
        }
        "log" => {
            println!("probe says hello on stdout");
            eprintln!("probe says hello on stderr");
            json(200, serde_json::json!({}))
        }
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "trap" => panic!("probe was asked to trap"),
        _ => json(404, serde_json::json!({ "error": "unknown probe" })),
    }
}

async fn inspect(req: Request) -> Response<String> {
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(v.to_str().unwrap_or("<binary>"))))
        .collect();
    let body = req.into_body().bytes().await;
    let body_len = body.as_ref().map(|b| b.len()).ok();
    json(200, serde_json::json!({ "method": method, "uri": uri, "headers": headers, "body_len": body_len, "body_error": body.err().map(|e| format!("{e:?}")) }))
}

async fn kv(req: Request, args: &[&str]) -> Response<String> {
    let store = match Store::open(args[0]).await {
        Ok(store) => store,
        Err(e) => return json(403, serde_json::json!({ "error": format!("{e:?}") })),
    };
    let Some(key) = args.get(1) else {
        return match store.get_keys().await.collect().await {
            Ok(mut keys) => {
                keys.sort();
                json(200, serde_json::json!({ "keys": keys }))
            }
            Err(e) => json(500, serde_json::json!({ "error": format!("{e:?}") })),
        };
    };
    let method = req.method().clone();
    let result = match method.as_str() {
        "GET" => store.get(key).await.map(|v| match v {
            Some(v) => json(200, serde_json::json!({ "value": String::from_utf8_lossy(&v) })),
            None => json(404, serde_json::json!({ "error": "no such key" })),
        }),
        "PUT" => {
            let body = req.into_body().bytes().await.unwrap();
            store.set(key, &body).await.map(|()| json(200, serde_json::json!({})))
        }
        "DELETE" => store.delete(key).await.map(|()| json(200, serde_json::json!({}))),
        _ => return json(405, serde_json::json!({ "error": "method" })),
    };
    result.unwrap_or_else(|e| json(500, serde_json::json!({ "error": format!("{e:?}") })))
}

fn open_bucket(label: &str) -> Result<wasi_kv::Bucket, Response<String>> {
    wasi_kv::open(label).map_err(|e| json(403, serde_json::json!({ "error": format!("{e:?}") })))
}

fn incr(args: &[&str]) -> Response<String> {
    let bucket = match open_bucket(args[0]) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match atomics::increment(&bucket, args[1], 1) {
        Ok(n) => json(200, serde_json::json!({ "value": n })),
        Err(e) => json(500, serde_json::json!({ "error": format!("{e:?}") })),
    }
}

/// Read-modify-write with compare-and-swap, retried until it wins.
fn cas_increment(args: &[&str]) -> Response<String> {
    let bucket = match open_bucket(args[0]) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut cas = atomics::Cas::new(&bucket, args[1]).unwrap();
    let mut retries = 0;
    loop {
        let current: u64 = cas.current().unwrap().map(|v| String::from_utf8(v).unwrap().parse().unwrap()).unwrap_or(0);
        match atomics::swap(cas, (current + 1).to_string().as_bytes()) {
            Ok(()) => return json(200, serde_json::json!({ "value": current + 1, "retries": retries })),
            Err(atomics::CasError::CasFailed(fresh)) => {
                retries += 1;
                cas = fresh;
            }
            Err(atomics::CasError::StoreError(e)) => return json(500, serde_json::json!({ "error": format!("{e:?}") })),
        }
    }
}

async fn fetch(req: &Request) -> Response<String> {
    let query = req.uri().query().unwrap_or("");
    let url = query.strip_prefix("url=").unwrap_or("");
    let url = percent_decode(url);
    match spin_sdk::http::get(&url).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.into_body().bytes().await.map(|b| String::from_utf8_lossy(&b).to_string()).unwrap_or_default();
            json(200, serde_json::json!({ "status": status, "body": body }))
        }
        Err(e) => json(StatusCode::BAD_GATEWAY.as_u16(), serde_json::json!({ "error": format!("{e:?}") })),
    }
}

/// `/probe/redis/<command>/<arg>...?address=<redis URL>`: one command
/// through outbound Redis's `execute`; arguments that parse as integers go
/// as integers.
async fn redis_execute(req: &Request, args: &[&str]) -> Response<String> {
    use spin_sdk::redis::{Connection, RedisParameter, RedisResult};
    let query = req.uri().query().unwrap_or("");
    let address = percent_decode(query.strip_prefix("address=").unwrap_or(""));
    let conn = match Connection::open(address).await {
        Ok(conn) => conn,
        Err(e) => return json(502, serde_json::json!({ "error": format!("{e:?}") })),
    };
    let parameters = args[1..].iter().map(|a| match a.parse::<i64>() {
        Ok(n) => RedisParameter::Int64(n),
        Err(_) => RedisParameter::Binary(a.as_bytes().to_vec()),
    });
    match conn.execute(args[0], parameters).await {
        Ok(results) => {
            let results: Vec<serde_json::Value> = results
                .into_iter()
                .map(|r| match r {
                    RedisResult::Nil => serde_json::Value::Null,
                    RedisResult::Status(s) => serde_json::json!(s),
                    RedisResult::Int64(n) => serde_json::json!(n),
                    RedisResult::Binary(b) => serde_json::json!(String::from_utf8_lossy(&b)),
                })
                .collect();
            json(200, serde_json::json!({ "results": results }))
        }
        Err(e) => json(500, serde_json::json!({ "error": format!("{e:?}") })),
    }
}

/// `POST /probe/sqlite/<label>` (`spin:sqlite/sqlite@3.1.0`, the rows as a
/// stream): the statements of the body, a JSON list of `{"sql", "params"}`,
/// on one connection, in the format of the WASIp2 probe's `/sqlite3`
/// (tests/guests/probe-p2), so that tests compare the two answers.
async fn sqlite(req: Request, label: &str) -> Response<String> {
    use spin_sdk::sqlite::{Connection, Value};
    let Ok(body) = req.into_body().bytes().await else { return json(400, serde_json::json!({ "error": "body" })) };
    let Ok(statements) = serde_json::from_slice::<Vec<serde_json::Value>>(&body) else {
        return json(400, serde_json::json!({ "error": "body: not a JSON list" }));
    };
    let parameter = |p: &serde_json::Value| -> Option<Value> {
        let Some((kind, value)) = p.as_object().and_then(|o| o.iter().next()) else { return p.is_null().then_some(Value::Null) };
        Some(match kind.as_str() {
            "integer" => Value::Integer(value.as_i64()?),
            "real" => Value::Real(value.as_f64()?),
            "text" => Value::Text(value.as_str()?.to_string()),
            "blob" => Value::Blob(serde_json::from_value(value.clone()).ok()?),
            _ => return None,
        })
    };
    let shown = |v: &Value| match v {
        Value::Integer(i) => serde_json::json!({ "integer": i }),
        Value::Real(r) => serde_json::json!({ "real": r }),
        Value::Text(t) => serde_json::json!({ "text": t }),
        Value::Blob(b) => serde_json::json!({ "blob": b }),
        Value::Null => serde_json::Value::Null,
    };
    let conn = match Connection::open(label).await {
        Ok(conn) => conn,
        Err(e) => return json(403, serde_json::json!({ "error": format!("{e:?}") })),
    };
    let mut answers = Vec::new();
    for (i, statement) in statements.iter().enumerate() {
        let params: Option<Vec<Value>> = statement["params"].as_array().map_or(Some(Vec::new()), |ps| ps.iter().map(parameter).collect());
        let (Some(sql), Some(params)) = (statement["sql"].as_str(), params) else {
            return json(400, serde_json::json!({ "error": format!("statement {i}") }));
        };
        let result = match conn.execute(sql, params).await {
            Ok(result) => result,
            Err(e) => return json(500, serde_json::json!({ "error": format!("statement {i}: {e:?}") })),
        };
        let columns = result.columns().to_vec();
        let rows = match result.collect().await {
            Ok(rows) => rows,
            Err(e) => return json(500, serde_json::json!({ "error": format!("statement {i}: {e:?}") })),
        };
        let rows: Vec<Vec<serde_json::Value>> = rows.iter().map(|row| row.values.iter().map(shown).collect()).collect();
        answers.push(serde_json::json!({
            "columns": columns,
            "rows": rows,
            "changes": conn.changes().await,
            "last_insert_rowid": conn.last_insert_rowid().await,
        }));
    }
    json(200, serde_json::Value::Array(answers))
}

/// `POST /probe/pg` (`spin:postgres/postgres@4.2.0`): the body is
/// `{"address", "ca_root"?, "statements": [{"sql", "params"?, "execute"?}]}`,
/// run in order on one connection (made by a `connection-builder` when
/// `ca_root` is given); the answer has one line per statement, the `Debug`
/// text of what `execute-async` returned or of the columns and the rows
/// `query-async` streamed with the outcome of its future. Parameters are
/// `{"int32": 1}`, `{"int64": 1}`, `{"str": "t"}`,
/// `{"range_int32": [[1, "inclusive"], null]}`, `{"interval": [micros, days, months]}`
/// or `null`. With `"open": N` instead of statements, it holds N connections
/// at once, each with a connection string of its own.
async fn postgres(req: Request) -> Response<String> {
    use spin_sdk::pg::{Certificate, Connection, Interval, OpenOptions, ParameterValue, RangeBoundKind};
    let text = |status: u16, body: String| Response::builder().status(status).body(body).unwrap();
    let Ok(body) = req.into_body().bytes().await else { return text(400, "body".into()) };
    let Ok(script) = serde_json::from_slice::<serde_json::Value>(&body) else { return text(400, "body: not JSON".into()) };
    let address = script["address"].as_str().unwrap_or_default();
    if let Some(count) = script["open"].as_u64() {
        // Holds `count` connections at once, each with a connection string
        // of its own; answers how many opened and the first error.
        let mut held = Vec::new();
        for i in 0..count {
            match Connection::open(format!("{address} application_name=probe{i}")).await {
                Ok(connection) => held.push(connection),
                Err(e) => return text(200, format!("{} opened; then {e:?}", held.len())),
            }
        }
        return text(200, format!("{} opened", held.len()));
    }
    let connection = match script["ca_root"].as_str() {
        Some(pem) => Connection::open_with_options(address, OpenOptions { ca_root: Some(Certificate::Text(pem.to_string())) }).await,
        None => Connection::open(address).await,
    };
    let connection = match connection {
        Ok(connection) => connection,
        Err(e) => return text(500, format!("{e:?}")),
    };
    let bound = |b: &serde_json::Value| -> Option<(i32, RangeBoundKind)> {
        let kind = if b[1] == "exclusive" { RangeBoundKind::Exclusive } else { RangeBoundKind::Inclusive };
        Some((i32::try_from(b[0].as_i64()?).ok()?, kind))
    };
    let parameter = |p: &serde_json::Value| -> Option<ParameterValue> {
        let Some((tag, value)) = p.as_object().and_then(|o| o.iter().next()) else { return p.is_null().then_some(ParameterValue::DbNull) };
        Some(match tag.as_str() {
            "int32" => ParameterValue::Int32(i32::try_from(value.as_i64()?).ok()?),
            "int64" => ParameterValue::Int64(value.as_i64()?),
            "str" => ParameterValue::Str(value.as_str()?.to_string()),
            "range_int32" => ParameterValue::RangeInt32((bound(&value[0]), bound(&value[1]))),
            "interval" => ParameterValue::Interval(Interval {
                micros: value[0].as_i64()?,
                days: i32::try_from(value[1].as_i64()?).ok()?,
                months: i32::try_from(value[2].as_i64()?).ok()?,
            }),
            _ => return None,
        })
    };
    let mut lines = Vec::new();
    for statement in script["statements"].as_array().cloned().unwrap_or_default() {
        let params: Option<Vec<ParameterValue>> =
            statement["params"].as_array().map_or(Some(Vec::new()), |ps| ps.iter().map(parameter).collect());
        let (Some(sql), Some(params)) = (statement["sql"].as_str(), params) else { return text(400, format!("statement {statement}")) };
        if statement["execute"].as_bool().unwrap_or(false) {
            lines.push(format!("{:?}", connection.execute(sql, params).await));
            continue;
        }
        match connection.query(sql, params).await {
            Ok(result) => {
                let (columns, rows, outcome) = result.into_inner();
                let rows = rows.collect().await;
                lines.push(format!("Ok({columns:?}, {rows:?}, {:?})", outcome.await));
            }
            Err(e) => lines.push(format!("Err({e:?})")),
        }
    }
    text(200, lines.join("\n"))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}
