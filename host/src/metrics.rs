//! Prometheus metrics for the host itself (served on their own listen
//! address): requests and durations by component and status, instances
//! created, traps and deadline kills. Business figures are the app's own
//! `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the duration histogram, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Series {
    count: u64,
    sum_seconds: f64,
    buckets: [u64; BUCKETS.len()],
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), Series>>,
    pub instances_created: AtomicU64,
    pub traps: AtomicU64,
    pub deadline_kills: AtomicU64,
    pub redis_messages: AtomicU64,
    pub redis_handler_errors: AtomicU64,
}

impl Metrics {
    pub fn observe_request(&self, component: &str, status: u16, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let series = requests.entry((component.to_string(), status)).or_default();
        series.count += 1;
        series.sum_seconds += seconds;
        for (bucket, bound) in series.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP wharf_http_requests_total HTTP requests by component and status.\n# TYPE wharf_http_requests_total counter\n");
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for ((component, status), s) in requests.iter() {
            let _ = writeln!(out, "wharf_http_requests_total{{component=\"{component}\",status=\"{status}\"}} {}", s.count);
        }
        out.push_str("# HELP wharf_http_request_duration_seconds HTTP request durations.\n# TYPE wharf_http_request_duration_seconds histogram\n");
        for ((component, status), s) in requests.iter() {
            let labels = format!("component=\"{component}\",status=\"{status}\"");
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(out, "wharf_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "wharf_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "wharf_http_request_duration_seconds_sum{{{labels}}} {}", s.sum_seconds);
            let _ = writeln!(out, "wharf_http_request_duration_seconds_count{{{labels}}} {}", s.count);
        }
        for (name, help, counter) in [
            ("wharf_instances_created_total", "Component instances created.", &self.instances_created),
            ("wharf_traps_total", "Instances retired after a trap.", &self.traps),
            ("wharf_deadline_kills_total", "Requests stopped at their deadline.", &self.deadline_kills),
            ("wharf_redis_messages_total", "Redis messages handled by components (successfully or not).", &self.redis_messages),
            ("wharf_redis_handler_errors_total", "Redis messages whose handler failed.", &self.redis_handler_errors),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", counter.load(Relaxed));
        }
        out
    }
}
