//! Prometheus metrics of one service, shared by its HTTP listener and its message consumers.
//!
//! The HTTP names are the ones the FastAPI design's instrumentation exported, so existing
//! dashboards keep working. `handler` is always a route template (or `none` for unmatched
//! paths), never a raw path, so cardinality stays bounded. `version` (the serving
//! component's short digest) is the one label they add: a canary or a bad deploy shows up
//! as its own series. Only the [`VERSIONS_KEPT`] newest versions keep their series, so a
//! day of `--watch` rebuilds does not grow the exposition without bound.

use crate::runtime::Overloaded;
use arc_swap::ArcSwap;
use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Versions whose request series are kept; an older one's are removed.
pub const VERSIONS_KEPT: usize = 5;

/// The `reason` labels of `http_requests_shed_total`.
const SHED_REASONS: [&str; 3] = ["queue_full", "queue_timeout", "saturated"];

pub struct ServiceMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    messages: IntCounterVec,
    schedules: IntCounterVec,
    shed: IntCounterVec,
    in_process: IntCounter,
    instances_in_use: IntGauge,
    instances_max: IntGauge,
    /// The versions that have request series, newest last.
    labelled_versions: ArcSwap<Vec<String>>,
    /// Spans the tracer could not export (a full queue, a collector that failed).
    pub spans_dropped: IntCounter,
    /// When load shedding was last logged (milliseconds since `started`).
    shed_logged_ms: AtomicU64,
    started: std::time::Instant,
    /// Requests the serving version answered, for `platform ps`.
    version: ArcSwap<VersionCounters>,
}

/// Requests one version answered, and how many of them with a 5xx.
#[derive(Default)]
struct VersionCounters {
    digest: String,
    served: AtomicU64,
    errors: AtomicU64,
}

/// How a consumed message was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    Acked,
    Retried,
    DeadLettered,
}

impl MessageOutcome {
    /// Its name in `messages_consumed_total` and in a consumer span's events.
    pub fn label(self) -> &'static str {
        match self {
            MessageOutcome::Acked => "ack",
            MessageOutcome::Retried => "retry",
            MessageOutcome::DeadLettered => "dead_letter",
        }
    }
}

/// What became of one tick of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleOutcome {
    Ok,
    /// The component answered an error, or trapped.
    Error,
    Timeout,
    /// The service was at its limits; the tick was skipped.
    Shed,
    /// Another host holds the schedule, or the lease server could not tell.
    Standby,
}

impl ScheduleOutcome {
    fn label(self) -> &'static str {
        match self {
            ScheduleOutcome::Ok => "ok",
            ScheduleOutcome::Error => "error",
            ScheduleOutcome::Timeout => "timeout",
            ScheduleOutcome::Shed => "shed",
            ScheduleOutcome::Standby => "standby",
        }
    }
}

impl ServiceMetrics {
    pub fn new(service: &str) -> ServiceMetrics {
        let registry = Registry::new_custom(None, None).expect("an empty registry is valid");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "Total number of requests by method, status and handler.",
            )
            .const_label("service", service),
            &["handler", "method", "status", "version"],
        )
        .expect("valid metric definition");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Latency with only few buckets by handler and method.",
            )
            .const_label("service", service)
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["handler", "method", "version"],
        )
        .expect("valid metric definition");
        let messages = IntCounterVec::new(
            Opts::new(
                "messages_consumed_total",
                "Messages consumed by queue and by how they were settled (ack, retry, dead_letter).",
            )
            .const_label("service", service),
            &["queue", "outcome"],
        )
        .expect("valid metric definition");
        let schedules = IntCounterVec::new(
            Opts::new(
                "schedule_runs_total",
                "Schedule runs by schedule and outcome (ok, error, timeout, shed, standby: another host holds the schedule).",
            )
            .const_label("service", service),
            &["schedule", "outcome"],
        )
        .expect("valid metric definition");
        let shed = IntCounterVec::new(
            Opts::new(
                "http_requests_shed_total",
                "Requests answered 503 because the service was at its limits, by reason (queue_full, queue_timeout, saturated).",
            )
            .const_label("service", service),
            &["reason"],
        )
        .expect("valid metric definition");
        let in_process = IntCounter::with_opts(
            Opts::new(
                "http_requests_in_process_total",
                "Requests from another service of this host, answered without a socket.",
            )
            .const_label("service", service),
        )
        .expect("valid metric definition");
        let spans_dropped = IntCounter::with_opts(
            Opts::new(
                "tracing_spans_dropped_total",
                "Spans dropped instead of exported: the export queue was full or the collector failed.",
            )
            .const_label("service", service),
        )
        .expect("valid metric definition");
        let instances_in_use = IntGauge::with_opts(
            Opts::new(
                "platform_instances_in_use",
                "Component instances serving a request, message or scheduled run right now.",
            )
            .const_label("service", service),
        )
        .expect("valid metric definition");
        let instances_max = IntGauge::with_opts(
            Opts::new(
                "platform_instances_max",
                "The service's limit on instances at once (max_concurrent).",
            )
            .const_label("service", service),
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(instances_in_use.clone()))
            .expect("registered once");
        registry
            .register(Box::new(instances_max.clone()))
            .expect("registered once");
        registry
            .register(Box::new(spans_dropped.clone()))
            .expect("registered once");
        registry
            .register(Box::new(in_process.clone()))
            .expect("registered once");
        registry
            .register(Box::new(shed.clone()))
            .expect("registered once");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(duration.clone()))
            .expect("registered once");
        registry
            .register(Box::new(messages.clone()))
            .expect("registered once");
        registry
            .register(Box::new(schedules.clone()))
            .expect("registered once");
        ServiceMetrics {
            registry,
            requests,
            duration,
            messages,
            schedules,
            shed,
            in_process,
            instances_in_use,
            instances_max,
            labelled_versions: ArcSwap::default(),
            spans_dropped,
            shed_logged_ms: AtomicU64::new(0),
            started: std::time::Instant::now(),
            version: ArcSwap::default(),
        }
    }

    /// Counts a request another service of this host made in process.
    pub fn count_in_process(&self) {
        self.in_process.inc();
    }

    /// Counts a shed request; true at most once a second, when it is worth a log line.
    pub fn observe_shed(&self, overloaded: &Overloaded) -> bool {
        let reason = match overloaded {
            Overloaded::QueueFull(_) => SHED_REASONS[0],
            Overloaded::QueueTimeout(_) => SHED_REASONS[1],
            Overloaded::Saturated(_) => SHED_REASONS[2],
        };
        self.shed.with_label_values(&[reason]).inc();
        let now = self.started.elapsed().as_millis() as u64 + 1000;
        let last = self.shed_logged_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= 1000
            && self
                .shed_logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Requests shed since the host started, for every reason.
    pub fn shed_total(&self) -> u64 {
        SHED_REASONS
            .iter()
            .map(|reason| self.shed.with_label_values(&[reason]).get())
            .sum()
    }

    /// Counts one answered request of version `digest`; `failed` for a 5xx. The counts
    /// start again from zero when another version answers.
    pub fn count_request(&self, digest: &str, failed: bool) {
        let mut counters = self.version.load();
        if counters.digest != digest {
            self.version.rcu(|current| {
                if current.digest == digest {
                    current.clone()
                } else {
                    Arc::new(VersionCounters {
                        digest: digest.to_string(),
                        ..VersionCounters::default()
                    })
                }
            });
            counters = self.version.load();
        }
        counters.served.fetch_add(1, Ordering::Relaxed);
        if failed {
            counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests version `digest` answered, and 5xx among them.
    pub fn request_counts(&self, digest: &str) -> (u64, u64) {
        let counters = self.version.load();
        if counters.digest != digest {
            return (0, 0);
        }
        (
            counters.served.load(Ordering::Relaxed),
            counters.errors.load(Ordering::Relaxed),
        )
    }

    /// Counts one tick of `schedule` by its outcome.
    pub fn observe_schedule(&self, schedule: &str, outcome: ScheduleOutcome) {
        self.schedules
            .with_label_values(&[schedule, outcome.label()])
            .inc();
    }

    /// Counts one settled delivery of `queue`.
    pub fn observe_message(&self, queue: &str, outcome: MessageOutcome) {
        self.messages
            .with_label_values(&[queue, outcome.label()])
            .inc();
    }

    /// Counts one answered request. Methods outside HTTP's own set count as `other`, so
    /// made-up methods cannot grow the series without bound.
    pub fn observe(
        &self,
        handler: &str,
        method: &http::Method,
        version: &str,
        status: u16,
        elapsed: Duration,
    ) {
        let method = method_label(method);
        self.note_version(version);
        // FastAPI's instrumentator groups statuses as 2xx, 4xx...: dashboards filter on that.
        let status_group = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .with_label_values(&[handler, method, status_group, version])
            .inc();
        self.duration
            .with_label_values(&[handler, method, version])
            .observe(elapsed.as_secs_f64());
    }

    /// Makes `version` the newest with series; removes the series of a version that falls
    /// out of the [`VERSIONS_KEPT`] newest. One atomic load when nothing changed.
    fn note_version(&self, version: &str) {
        if self
            .labelled_versions
            .load()
            .last()
            .is_some_and(|newest| newest == version)
        {
            return;
        }
        let mut retired = Vec::new();
        self.labelled_versions.rcu(|versions| {
            let mut versions: Vec<String> = versions
                .iter()
                .filter(|kept| *kept != version)
                .cloned()
                .collect();
            versions.push(version.to_string());
            retired = versions
                .drain(..versions.len().saturating_sub(VERSIONS_KEPT))
                .collect();
            versions
        });
        for old in retired {
            remove_series(
                &self.requests,
                &["handler", "method", "status", "version"],
                &old,
            );
            remove_series(&self.duration, &["handler", "method", "version"], &old);
        }
    }

    /// The Prometheus text exposition, with the instances in use out of `max_concurrent`.
    pub fn render(&self, instances_in_use: usize, max_concurrent: usize) -> Vec<u8> {
        self.instances_in_use.set(instances_in_use as i64);
        self.instances_max.set(max_concurrent as i64);
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("encoding into a Vec cannot fail");
        buffer
    }
}

/// Removes every series of `metric` whose `version` label is `version`; `labels` are the
/// metric's variable labels in their declared order.
fn remove_series<M>(metric: &prometheus::core::MetricVec<M>, labels: &[&str], version: &str)
where
    M: prometheus::core::MetricVecBuilder,
{
    for family in metric.collect() {
        for series in family.get_metric() {
            let value_of = |name: &str| {
                series
                    .get_label()
                    .iter()
                    .find(|pair| pair.name() == name)
                    .map(|pair| pair.value().to_string())
            };
            if value_of("version").as_deref() != Some(version) {
                continue;
            }
            let values: Option<Vec<String>> = labels.iter().map(|name| value_of(name)).collect();
            if let Some(values) = values {
                let values: Vec<&str> = values.iter().map(String::as_str).collect();
                let _ = metric.remove_label_values(&values);
            }
        }
    }
}

fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_by_template() {
        let metrics = ServiceMetrics::new("product");
        metrics.observe(
            "/products/{product_id}",
            &http::Method::GET,
            "abc",
            200,
            Duration::from_millis(3),
        );
        let text = String::from_utf8(metrics.render(1, 4)).unwrap();
        assert!(text.contains(
            r#"http_requests_total{handler="/products/{product_id}",method="GET",service="product",status="2xx",version="abc"} 1"#
        ));
        assert!(text.contains("http_request_duration_seconds_bucket"));
        assert!(text.contains(r#"platform_instances_in_use{service="product"} 1"#));
        assert!(text.contains(r#"platform_instances_max{service="product"} 4"#));
    }

    #[test]
    fn made_up_methods_share_one_label() {
        let metrics = ServiceMetrics::new("product");
        for index in 0..100 {
            let method = http::Method::from_bytes(format!("M{index}").as_bytes()).unwrap();
            metrics.observe("none", &method, "abc", 405, Duration::from_millis(1));
        }
        let text = String::from_utf8(metrics.render(0, 1)).unwrap();
        assert!(text.contains(r#"method="other""#));
        assert!(!text.contains("M42"));
    }

    #[test]
    fn counts_requests_of_the_serving_version_only() {
        let metrics = ServiceMetrics::new("product");
        metrics.count_request("aaa", false);
        metrics.count_request("aaa", true);
        assert_eq!(metrics.request_counts("aaa"), (2, 1));
        metrics.count_request("bbb", false);
        assert_eq!(metrics.request_counts("bbb"), (1, 0));
        assert_eq!(metrics.request_counts("aaa"), (0, 0));
    }

    #[test]
    fn only_the_newest_versions_keep_their_series() {
        let metrics = ServiceMetrics::new("product");
        let get = http::Method::GET;
        let versions: Vec<String> = (0..VERSIONS_KEPT + 2).map(|n| format!("v{n}")).collect();
        for version in &versions {
            metrics.observe("/a", &get, version, 200, Duration::from_millis(1));
            metrics.observe("/a", &get, version, 500, Duration::from_millis(1));
        }
        // A rollback to a kept version keeps every kept one.
        metrics.observe("/a", &get, "v3", 200, Duration::from_millis(1));
        let text = String::from_utf8(metrics.render(0, 1)).unwrap();
        for (index, version) in versions.iter().enumerate() {
            let label = format!(r#"version="{version}""#);
            assert_eq!(
                text.contains(&label),
                index >= 2,
                "{version} kept only if among the {VERSIONS_KEPT} newest:\n{text}"
            );
        }
        assert!(text.contains(
            r#"http_requests_total{handler="/a",method="GET",service="product",status="2xx",version="v3"} 2"#
        ));
    }

    /// Every metric the shipped Grafana dashboard queries is one the host exports.
    #[test]
    fn the_grafana_dashboard_queries_only_exported_metrics() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/grafana/dashboards/platform.json"
        );
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let metrics = ServiceMetrics::new("product");
        metrics.observe(
            "/a",
            &http::Method::GET,
            "v1",
            200,
            Duration::from_millis(1),
        );
        metrics.observe_message("q", MessageOutcome::Acked);
        metrics.observe_schedule("s", ScheduleOutcome::Ok);
        metrics.observe_shed(&Overloaded::QueueFull(1));
        metrics.count_in_process();
        let exported = String::from_utf8(metrics.render(0, 1)).unwrap();
        let mut queried = Vec::new();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap();
                // A metric name is the identifier right before a `{` selector.
                for (at, _) in expr.match_indices('{') {
                    let name: String = expr[..at]
                        .chars()
                        .rev()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    if !name.is_empty() {
                        queried.push(name);
                    }
                }
            }
        }
        assert!(queried.len() > 10, "{queried:?}");
        for name in queried {
            let family = name.trim_end_matches("_bucket");
            assert!(
                exported.contains(&format!("# TYPE {family} ")),
                "the dashboard queries {name}, which the host does not export"
            );
        }
    }

    #[test]
    fn counts_messages_by_queue_and_outcome() {
        let metrics = ServiceMetrics::new("notification");
        metrics.observe_message("q", MessageOutcome::Acked);
        metrics.observe_message("q", MessageOutcome::Acked);
        metrics.observe_message("q", MessageOutcome::DeadLettered);
        let text = String::from_utf8(metrics.render(0, 1)).unwrap();
        assert!(text.contains(
            r#"messages_consumed_total{outcome="ack",queue="q",service="notification"} 2"#
        ));
        assert!(text.contains(
            r#"messages_consumed_total{outcome="dead_letter",queue="q",service="notification"} 1"#
        ));
    }
}
