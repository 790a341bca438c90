//! Prometheus metrics of one service, shared by its HTTP listener and its message consumers.
//!
//! The HTTP names are the ones the FastAPI design's instrumentation exported, so existing
//! dashboards keep working. `handler` is always a route template (or `none` for unmatched
//! paths), never a raw path, so cardinality stays bounded.

use arc_swap::ArcSwap;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct ServiceMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    messages: IntCounterVec,
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
    fn label(self) -> &'static str {
        match self {
            MessageOutcome::Acked => "ack",
            MessageOutcome::Retried => "retry",
            MessageOutcome::DeadLettered => "dead_letter",
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
            &["handler", "method", "status"],
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
            &["handler", "method"],
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
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(duration.clone()))
            .expect("registered once");
        registry
            .register(Box::new(messages.clone()))
            .expect("registered once");
        ServiceMetrics {
            registry,
            requests,
            duration,
            messages,
            version: ArcSwap::default(),
        }
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

    /// Counts one settled delivery of `queue`.
    pub fn observe_message(&self, queue: &str, outcome: MessageOutcome) {
        self.messages
            .with_label_values(&[queue, outcome.label()])
            .inc();
    }

    pub fn observe(&self, handler: &str, method: &str, status: u16, elapsed: Duration) {
        // FastAPI's instrumentator groups statuses as 2xx, 4xx...: dashboards filter on that.
        let status_group = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .with_label_values(&[handler, method, status_group])
            .inc();
        self.duration
            .with_label_values(&[handler, method])
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("encoding into a Vec cannot fail");
        buffer
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
            "GET",
            200,
            Duration::from_millis(3),
        );
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(text.contains(
            r#"http_requests_total{handler="/products/{product_id}",method="GET",service="product",status="2xx"} 1"#
        ));
        assert!(text.contains("http_request_duration_seconds_bucket"));
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
    fn counts_messages_by_queue_and_outcome() {
        let metrics = ServiceMetrics::new("notification");
        metrics.observe_message("q", MessageOutcome::Acked);
        metrics.observe_message("q", MessageOutcome::Acked);
        metrics.observe_message("q", MessageOutcome::DeadLettered);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(text.contains(
            r#"messages_consumed_total{outcome="ack",queue="q",service="notification"} 2"#
        ));
        assert!(text.contains(
            r#"messages_consumed_total{outcome="dead_letter",queue="q",service="notification"} 1"#
        ));
    }
}
