//! The host's own ring of each service's last warnings and errors, for the console and
//! `platform errors`: a `tracing` layer keeps the newest [`PER_SERVICE`] events at WARN or
//! ERROR that name a `service`, with their request id, whatever `RUST_LOG` lets through to
//! the log itself. Memory stays bounded: entries per service, services, and bytes per field.

use crate::admin_api::RecentError;
use crate::telemetry::logs::{cut_to, trace_ids};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Entries kept per service.
pub const PER_SERVICE: usize = 100;
/// Services kept (only the host names services, but a bound costs nothing).
const MAX_SERVICES: usize = 256;
/// Longest message or field value kept.
const MAX_FIELD_BYTES: usize = 2048;

#[derive(Default)]
pub struct RecentErrors {
    by_service: Mutex<HashMap<String, VecDeque<RecentError>>>,
}

impl RecentErrors {
    pub fn new() -> Arc<RecentErrors> {
        Arc::new(RecentErrors::default())
    }

    /// The layer that fills this ring; install it beside the log's own.
    pub fn layer(self: &Arc<Self>) -> RecentErrorsLayer {
        RecentErrorsLayer(self.clone())
    }

    /// `service`'s kept entries, newest first.
    pub fn of(&self, service: &str) -> Vec<RecentError> {
        self.by_service
            .lock()
            .expect("the ring's lock is never held across a panic")
            .get(service)
            .map(|entries| entries.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    fn keep(&self, service: String, entry: RecentError) {
        let mut by_service = self
            .by_service
            .lock()
            .expect("the ring's lock is never held across a panic");
        if by_service.len() >= MAX_SERVICES && !by_service.contains_key(&service) {
            return;
        }
        let entries = by_service.entry(service).or_default();
        if entries.len() == PER_SERVICE {
            entries.pop_front();
        }
        entries.push_back(entry);
    }
}

pub struct RecentErrorsLayer(Arc<RecentErrors>);

impl<S> Layer<S> for RecentErrorsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        // More severe levels compare lower.
        if level > Level::WARN {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(service) = fields.service else {
            return;
        };
        if let Some(ids) = trace_ids(&ctx, event) {
            fields.other.insert("trace_id".into(), ids.trace_id);
        }
        self.0.keep(
            service,
            RecentError {
                at: chrono::Utc::now(),
                level: level.as_str().to_ascii_lowercase(),
                message: fields.message,
                request_id: fields.request_id,
                fields: fields.other,
            },
        );
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    service: Option<String>,
    request_id: Option<String>,
    other: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.keep(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.keep(field, text);
    }
}

impl Fields {
    fn keep(&mut self, field: &Field, value: String) {
        let value = cut_to(value, MAX_FIELD_BYTES);
        match field.name() {
            "message" => self.message = value,
            "service" => self.service = Some(value),
            "request_id" => self.request_id = Some(value),
            name => {
                self.other.insert(name.to_string(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn keeps_each_services_newest_warnings_and_errors_only() {
        let ring = RecentErrors::new();
        let subscriber = tracing_subscriber::registry().with(ring.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(service = "a", "not kept: info");
            tracing::error!("not kept: no service");
            for n in 0..PER_SERVICE + 5 {
                tracing::warn!(service = "a", request_id = "r", n, "slow {n}");
            }
            tracing::error!(service = "b", request_id = "id-1", error = %"boom", "request failed");
        });
        let a = ring.of("a");
        assert_eq!(a.len(), PER_SERVICE, "the oldest went");
        assert_eq!(
            a[0].message,
            format!("slow {}", PER_SERVICE + 4),
            "newest first"
        );
        assert_eq!(a[PER_SERVICE - 1].message, "slow 5");
        assert_eq!(a[0].level, "warn");
        let b = ring.of("b");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].level, "error");
        assert_eq!(b[0].request_id.as_deref(), Some("id-1"));
        assert_eq!(b[0].fields["error"], "boom");
        assert!(ring.of("c").is_empty());
    }

    #[test]
    fn a_huge_message_is_cut() {
        let ring = RecentErrors::new();
        let subscriber = tracing_subscriber::registry().with(ring.layer());
        let huge = "x".repeat(MAX_FIELD_BYTES * 4);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(service = "a", "{huge}");
        });
        assert!(ring.of("a")[0].message.len() <= MAX_FIELD_BYTES + '…'.len_utf8());
    }
}
