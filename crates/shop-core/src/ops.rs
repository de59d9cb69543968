//! Operational endpoints every component serves beside its API:
//! `GET /health` (checks the component ran), `GET /metrics` (Prometheus text
//! of business figures read from the services' counters; nothing is written
//! per request) and `GET /info`.

use serde::Serialize;
use serde_json::json;

use crate::http::{ApiError, ApiRequest, ApiResponse, Method};

/// Which operational endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsEndpoint {
    Health,
    Metrics,
    Info,
}

impl OpsEndpoint {
    /// Some for `/health`, `/metrics` and `/info` (any method: a wrong one
    /// is answered by [`OpsEndpoint::check_method`]); None for other paths.
    pub fn of(request: &ApiRequest) -> Option<OpsEndpoint> {
        match request.segments().as_slice() {
            ["health"] => Some(OpsEndpoint::Health),
            ["metrics"] => Some(OpsEndpoint::Metrics),
            ["info"] => Some(OpsEndpoint::Info),
            _ => None,
        }
    }

    /// These endpoints only answer GET; 405 otherwise.
    pub fn check_method(request: &ApiRequest) -> Result<(), ApiResponse> {
        if request.method == Method::Get {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(&["GET"]).into_response())
        }
    }
}

/// One check a component ran (e.g. "key-value store reachable").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub name: String,
    pub ok: bool,
    pub detail: Option<String>,
}

/// 200 `{"status": "ok", checks}` when every check passed, else 503 `degraded`.
pub fn health_response(checks: &[HealthCheck]) -> ApiResponse {
    let healthy = checks.iter().all(|check| check.ok);
    let (status, word) = if healthy { (200, "ok") } else { (503, "degraded") };
    ApiResponse::json(status, &json!({"status": word, "checks": checks}))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceInfo {
    pub name: String,
    pub version: String,
    pub environment: String,
}

pub fn info_response(info: &ServiceInfo) -> ApiResponse {
    ApiResponse::json(200, info)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// Label names and values of one sample.
pub type Labels = Vec<(&'static str, String)>;

/// One metric with its samples, as the services report them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub samples: Vec<(Labels, i64)>,
}

impl MetricFamily {
    pub fn new(name: &'static str, help: &'static str, kind: MetricKind, samples: Vec<(Labels, i64)>) -> MetricFamily {
        MetricFamily { name, help, kind, samples }
    }
}

/// Prometheus text exposition (version 0.0.4) of the families.
pub fn metrics_response(families: &[MetricFamily]) -> ApiResponse {
    let mut text = String::new();
    for family in families {
        let kind = match family.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        text.push_str(&format!("# HELP {} {}\n# TYPE {} {kind}\n", family.name, family.help, family.name));
        for (labels, value) in &family.samples {
            let labels: Vec<String> =
                labels.iter().map(|(name, value)| format!("{name}=\"{}\"", escape_label(value))).collect();
            if labels.is_empty() {
                text.push_str(&format!("{} {value}\n", family.name));
            } else {
                text.push_str(&format!("{}{{{}}} {value}\n", family.name, labels.join(",")));
            }
        }
    }
    ApiResponse::text(200, "text/plain; version=0.0.4", text)
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_text_format() {
        let family = MetricFamily::new(
            "shop_orders",
            "Orders by status.",
            MetricKind::Gauge,
            vec![(vec![("status", "paid".to_string())], 3), (vec![("note", "a\"b".to_string())], 1)],
        );
        let response = metrics_response(&[family]);
        let text = String::from_utf8(response.body).unwrap();
        assert_eq!(
            text,
            "# HELP shop_orders Orders by status.\n# TYPE shop_orders gauge\n\
             shop_orders{status=\"paid\"} 3\nshop_orders{note=\"a\\\"b\"} 1\n"
        );
    }

    #[test]
    fn health_is_degraded_when_any_check_fails() {
        let ok = HealthCheck { name: "kv".to_string(), ok: true, detail: None };
        let failing = HealthCheck { name: "redis".to_string(), ok: false, detail: Some("refused".to_string()) };
        assert_eq!(health_response(std::slice::from_ref(&ok)).status, 200);
        let response = health_response(&[ok, failing]);
        assert_eq!(response.status, 503);
        assert_eq!(response.json_body()["status"], "degraded");
    }
}
