//! HTTP boundary types shared by every service: the request a component hands
//! in, the response it sends back, and the one error body shape
//! `{"error": {"code", "message", "field"?}}`.

use serde::Serialize;
use serde_json::{Value, json};

use crate::kv::StoreError;

/// Largest request body any service accepts; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    /// Any other method; every route answers it with 405.
    Other,
}

impl Method {
    pub fn parse(name: &str) -> Method {
        match name.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }
}

/// A request as a component received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: Method,
    /// Path without the query, e.g. `/orders/ord_1`.
    pub path: String,
    /// Raw query string without the `?`, still percent-encoded.
    pub query: String,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiRequest {
    /// Builds a request from a method and a path that may carry a `?query`.
    pub fn new(method: Method, path_and_query: &str) -> ApiRequest {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        ApiRequest {
            method,
            path: path.to_string(),
            query: query.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header; the name is lowercased.
    pub fn with_header(mut self, name: &str, value: &str) -> ApiRequest {
        self.headers.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> ApiRequest {
        self.body = body.into();
        self
    }

    /// First value of a header, by lowercase name.
    pub fn header(&self, lowercase_name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(name, _)| name == lowercase_name)
            .map(|(_, value)| value.as_str())
    }

    /// Path segments without empty ones, so `/orders/` routes like `/orders`.
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|segment| !segment.is_empty()).collect()
    }

    /// Decoded query parameters in order of appearance.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(name), percent_decode(value))
            })
            .collect()
    }

    /// Fails with 413 when the body is over [`MAX_BODY_BYTES`].
    pub fn check_body_size(&self) -> Result<(), ApiError> {
        if self.body.len() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                413,
                "payload_too_large",
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
        Ok(())
    }

    /// Checks `Authorization: Bearer <token>` against the configured admin
    /// token: 401 when missing, 403 when wrong. An empty configured token
    /// refuses everyone, so a missing configuration never opens admin routes.
    pub fn require_admin(&self, admin_token: &str) -> Result<(), ApiError> {
        let Some(authorization) = self.header("authorization") else {
            return Err(ApiError::new(401, "unauthorized", "admin routes need a bearer token"));
        };
        let presented = authorization
            .strip_prefix("Bearer ")
            .or_else(|| authorization.strip_prefix("bearer "))
            .unwrap_or("");
        if admin_token.is_empty() || !constant_time_eq(presented.as_bytes(), admin_token.as_bytes()) {
            return Err(ApiError::new(403, "forbidden", "the bearer token is not the admin token"));
        }
        Ok(())
    }
}

/// Compares without an early exit on the first differing byte, so the time
/// taken does not tell an attacker how much of a guessed token was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let longest = a.len().max(b.len());
    let mut difference = u8::from(a.len() != b.len());
    for i in 0..longest {
        difference |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    difference == 0
}

fn percent_decode(text: &str) -> String {
    fn hex_value(byte: u8) -> Option<u8> {
        (byte as char).to_digit(16).map(|digit| digit as u8)
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', high, low]) => hex_value(*high).zip(hex_value(*low)),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some((high, low)), _) => {
                decoded.push(high << 4 | low);
                i += 3;
            }
            (None, b'+') => {
                decoded.push(b' ');
                i += 1;
            }
            (None, byte) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// A response for a component to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    pub fn json(status: u16, body: &impl Serialize) -> ApiResponse {
        ApiResponse {
            status,
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body: serde_json::to_vec(body).expect("response bodies are plain data"),
        }
    }

    pub fn text(status: u16, content_type: &str, body: String) -> ApiResponse {
        ApiResponse {
            status,
            headers: vec![("content-type".to_string(), content_type.to_string())],
            body: body.into_bytes(),
        }
    }

    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub fn json_body(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// An error answer. `field` names the one request field at fault, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, code: code.to_string(), message: message.into(), field: None }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// 400 `validation_failed` naming the field.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(400, "validation_failed", message).with_field(field)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(404, "not_found", format!("{what} not found"))
    }

    pub fn no_route(path: &str) -> ApiError {
        ApiError::new(404, "not_found", format!("no route for {path}"))
    }

    pub fn method_not_allowed(allowed: &[&str]) -> ApiError {
        ApiError::new(
            405,
            "method_not_allowed",
            format!("allowed methods: {}", allowed.join(", ")),
        )
    }

    /// The `{"error": {...}}` body as a JSON value, for responses that add
    /// more top-level members beside it.
    pub fn body(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = &self.field {
            error["field"] = Value::String(field.clone());
        }
        json!({ "error": error })
    }

    pub fn into_response(self) -> ApiResponse {
        ApiResponse::json(self.status, &self.body())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        ApiError::new(503, "store_unavailable", error.message)
    }
}

/// Turns a handler result into the response, errors included.
pub fn respond(result: Result<ApiResponse, ApiError>) -> ApiResponse {
    result.unwrap_or_else(ApiError::into_response)
}

/// Checks the method of a matched route; 405 naming the allowed ones otherwise.
pub fn allow(request: &ApiRequest, allowed: &[(Method, &str)]) -> Result<Method, ApiError> {
    if allowed.iter().any(|(method, _)| *method == request.method) {
        return Ok(request.method);
    }
    let names: Vec<&str> = allowed.iter().map(|(_, name)| *name).collect();
    Err(ApiError::method_not_allowed(&names))
}

/// Query parameters checked against the names a route accepts: unknown or
/// repeated parameters are refused with 400 rather than silently ignored.
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(request: &ApiRequest, accepted: &[&str]) -> Result<Query, ApiError> {
        let pairs = request.query_pairs();
        for (index, (name, _)) in pairs.iter().enumerate() {
            if !accepted.contains(&name.as_str()) {
                return Err(ApiError::validation(name, format!("unknown query parameter {name}")));
            }
            if pairs[..index].iter().any(|(earlier, _)| earlier == name) {
                return Err(ApiError::validation(name, format!("query parameter {name} given twice")));
            }
        }
        Ok(Query { pairs })
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// An integer parameter within `min..=max`; `default` when absent.
    pub fn integer(&self, name: &str, min: u64, max: u64, default: u64) -> Result<u64, ApiError> {
        let Some(text) = self.text(name) else {
            return Ok(default);
        };
        match text.parse::<u64>() {
            Ok(value) if (min..=max).contains(&value) => Ok(value),
            _ => Err(ApiError::validation(
                name,
                format!("{name} must be an integer from {min} to {max}"),
            )),
        }
    }
}

/// `page` (from 1) and `page_size` (1 to 100, default 10) of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u64,
    pub page_size: u64,
}

impl PageRequest {
    pub const MAX_PAGE_SIZE: u64 = 100;
    pub const DEFAULT_PAGE_SIZE: u64 = 10;
    /// Bounds `page * page_size` far below overflow.
    pub const MAX_PAGE: u64 = 1_000_000_000;

    pub fn from_query(query: &Query) -> Result<PageRequest, ApiError> {
        Ok(PageRequest {
            page: query.integer("page", 1, Self::MAX_PAGE, 1)?,
            page_size: query.integer("page_size", 1, Self::MAX_PAGE_SIZE, Self::DEFAULT_PAGE_SIZE)?,
        })
    }

    /// Items before this page.
    pub fn skip(&self) -> u64 {
        (self.page - 1) * self.page_size
    }

    /// `{<items_name>: items, total_count, page, page_size, has_next, has_previous}`.
    pub fn envelope(&self, items_name: &str, items: Vec<Value>, total_count: u64) -> Value {
        let mut body = json!({
            "total_count": total_count,
            "page": self.page,
            "page_size": self.page_size,
            "has_next": self.page * self.page_size < total_count,
            "has_previous": self.page > 1,
        });
        body[items_name] = Value::Array(items);
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_percent_decoded() {
        let request = ApiRequest::new(Method::Get, "/orders?reason=too%20late+sorry&x=%zz&y=%4");
        assert_eq!(
            request.query_pairs(),
            vec![
                ("reason".to_string(), "too late sorry".to_string()),
                ("x".to_string(), "%zz".to_string()),
                ("y".to_string(), "%4".to_string()),
            ]
        );
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn admin_check_distinguishes_missing_from_wrong() {
        let request = ApiRequest::new(Method::Put, "/x");
        assert_eq!(request.require_admin("t0k").unwrap_err().status, 401);
        let wrong = request.clone().with_header("Authorization", "Bearer nope");
        assert_eq!(wrong.require_admin("t0k").unwrap_err().status, 403);
        let right = request.clone().with_header("Authorization", "Bearer t0k");
        assert!(right.require_admin("t0k").is_ok());
        let unconfigured = request.with_header("Authorization", "Bearer ");
        assert_eq!(unconfigured.require_admin("").unwrap_err().status, 403);
    }

    #[test]
    fn query_refuses_unknown_repeated_and_out_of_range_parameters() {
        let request = ApiRequest::new(Method::Get, "/orders?page=0");
        let query = Query::parse(&request, &["page"]).unwrap();
        assert_eq!(query.integer("page", 1, 10, 1).unwrap_err().field.as_deref(), Some("page"));
        let unknown = ApiRequest::new(Method::Get, "/orders?pgae=1");
        assert_eq!(Query::parse(&unknown, &["page"]).err().unwrap().field.as_deref(), Some("pgae"));
        let twice = ApiRequest::new(Method::Get, "/orders?page=1&page=2");
        assert!(Query::parse(&twice, &["page"]).is_err());
    }
}
