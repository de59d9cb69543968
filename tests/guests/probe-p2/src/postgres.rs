//! `POST /pg/<version>`: PostgreSQL through `fermyon:spin/postgres@2.0.0`
//! (`2`), `spin:postgres/postgres@3.0.0` (`3`) or `@4.0.0` (`4`). The body is
//! `{"address": "...", "statements": [{"sql": "...", "params": [...],
//! "execute": true}]}`, run in order on one connection; the answer has one
//! line per statement, the `Debug` text of what `query` (or `execute`)
//! returned, so a test sees values, column types and error variants as the
//! guest got them. Parameters are tagged JSON (`{"int32": 1}`,
//! `{"str": "t"}`, `null` for db-null, ...); tags a version lacks are a 400.

use super::answer;
use serde_json::Value as Json;
use spin_sdk::http::Response;

/// The address and statements of a request body; `Err` is a 400.
fn script(body: &[u8]) -> Result<(String, Vec<(String, Vec<Json>, bool)>), Response> {
    let bad = |why: &str| answer(400, format!("body: {why}"));
    let script: Json = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
    let address = script["address"].as_str().ok_or_else(|| bad("no address"))?.to_string();
    let statements = script["statements"].as_array().cloned().unwrap_or_default();
    let statements = statements
        .into_iter()
        .map(|s| {
            let sql = s["sql"].as_str().ok_or_else(|| bad("a statement without `sql`"))?.to_string();
            let params = s.get("params").and_then(Json::as_array).cloned().unwrap_or_default();
            Ok((sql, params, s["execute"].as_bool().unwrap_or(false)))
        })
        .collect::<Result<_, Response>>()?;
    Ok((address, statements))
}

fn tuple<T: serde::de::DeserializeOwned>(value: &Json) -> Option<T> {
    serde_json::from_value(value.clone()).ok()
}

/// Runs a script through one version; `$extra` turns the tags only that
/// version has into parameters.
macro_rules! pg_probe {
    ($pg:path, $body:expr, $extra:expr) => {{
        use $pg as pg;
        let run = || -> Result<String, Response> {
            let (address, statements) = script($body)?;
            let connection = pg::Connection::open(&address).map_err(|e| answer(500, format!("{e:?}")))?;
            let mut lines = Vec::new();
            for (sql, params, execute) in statements {
                let params = params
                    .iter()
                    .map(|json| {
                        let bad = || answer(400, format!("parameter {json}"));
                        let Some((tag, value)) = json.as_object().and_then(|o| o.iter().next()) else {
                            return if json.is_null() { Ok(pg::ParameterValue::DbNull) } else { Err(bad()) };
                        };
                        Ok(match tag.as_str() {
                            "bool" => pg::ParameterValue::Boolean(value.as_bool().ok_or_else(bad)?),
                            "int8" => pg::ParameterValue::Int8(tuple(value).ok_or_else(bad)?),
                            "int16" => pg::ParameterValue::Int16(tuple(value).ok_or_else(bad)?),
                            "int32" => pg::ParameterValue::Int32(tuple(value).ok_or_else(bad)?),
                            "int64" => pg::ParameterValue::Int64(tuple(value).ok_or_else(bad)?),
                            "float64" => pg::ParameterValue::Floating64(value.as_f64().ok_or_else(bad)?),
                            "str" => pg::ParameterValue::Str(value.as_str().ok_or_else(bad)?.to_string()),
                            "binary" => pg::ParameterValue::Binary(tuple(value).ok_or_else(bad)?),
                            _ => $extra(tag.as_str(), value).ok_or_else(bad)?,
                        })
                    })
                    .collect::<Result<Vec<_>, Response>>()?;
                lines.push(if execute {
                    format!("{:?}", connection.execute(&sql, &params))
                } else {
                    format!("{:?}", connection.query(&sql, &params))
                });
            }
            Ok(lines.join("\n"))
        };
        match run() {
            Ok(lines) => answer(200, lines),
            Err(response) => response,
        }
    }};
}

pub fn probe(version: &str, body: &[u8]) -> Response {
    match version {
        "2" => pg_probe!(spin_sdk::pg, body, |tag: &str, value: &Json| match tag {
            "uint32" => tuple(value).map(spin_sdk::pg::ParameterValue::Uint32),
            _ => None,
        }),
        "3" => pg_probe!(spin_sdk::pg3, body, |tag: &str, value: &Json| {
            use spin_sdk::pg3::ParameterValue as V;
            match tag {
                "date" => tuple(value).map(V::Date),
                "time" => tuple(value).map(V::Time),
                "datetime" => tuple(value).map(V::Datetime),
                "timestamp" => tuple(value).map(V::Timestamp),
                _ => None,
            }
        }),
        "4" => pg_probe!(spin_sdk::pg4, body, |tag: &str, value: &Json| {
            use spin_sdk::pg4::{ParameterValue as V, RangeBoundKind};
            let bound = |json: &Json| -> Option<Option<(i32, RangeBoundKind)>> {
                if json.is_null() {
                    return Some(None);
                }
                let (value, kind): (i32, String) = tuple(json)?;
                let kind = if kind == "inclusive" { RangeBoundKind::Inclusive } else { RangeBoundKind::Exclusive };
                Some(Some((value, kind)))
            };
            match tag {
                "date" => tuple(value).map(V::Date),
                "time" => tuple(value).map(V::Time),
                "datetime" => tuple(value).map(V::Datetime),
                "timestamp" => tuple(value).map(V::Timestamp),
                "uuid" => value.as_str().map(|s| V::Uuid(s.to_string())),
                "jsonb" => Some(V::Jsonb(value.to_string().into_bytes())),
                "decimal" => value.as_str().map(|s| V::Decimal(s.to_string())),
                "range_int32" => Some(V::RangeInt32((bound(&value[0])?, bound(&value[1])?))),
                "array_int32" => tuple(value).map(V::ArrayInt32),
                "array_str" => tuple(value).map(V::ArrayStr),
                "interval" => {
                    let (micros, days, months) = tuple(value)?;
                    Some(V::Interval(spin_sdk::pg4::Interval { micros, days, months }))
                }
                _ => None,
            }
        }),
        _ => answer(404, format!("no PostgreSQL interface version {version}")),
    }
}
