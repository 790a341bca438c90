//! Log records that name their trace: the `tracing` span a traced call runs in
//! ([`super::Trace::log_span`]) carries its trace and span ids; [`TraceIdsLayer`] keeps them
//! with the span so that any layer can read them for an event inside it ([`trace_ids`]), and
//! [`JsonLayer`] writes one JSON object per record, the ids at its top level, for log
//! shippers (Loki, Elasticsearch, an OpenTelemetry collector's filelog receiver).

use serde_json::{Map, Value};
use std::io::Write;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{filter_fn, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// `text` cut to at most `limit` bytes on a character boundary, marked with `…` when cut:
/// what a component or a field puts into the log stays bounded.
pub fn cut_to(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The name of the span [`super::Trace::log_span`] makes.
pub(super) const SPAN_NAME: &str = "trace";

/// The trace and span a log record belongs to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceIds {
    pub trace_id: String,
    pub span_id: String,
}

/// Keeps each trace span's ids in the span's extensions; installed through
/// [`trace_ids_layer`].
pub struct TraceIdsLayer;

/// [`TraceIdsLayer`], filtered to the trace spans alone. Unfiltered, the layer would be
/// interested in every callsite of every crate: each `debug!` in hyper and each
/// `log::trace!` in Cranelift would then pay a full dispatch (compiling a 12 MB component
/// took minutes), and the `log` crate's maximum level would be lifted to `TRACE`.
pub fn trace_ids_layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    TraceIdsLayer.with_filter(
        filter_fn(|metadata| metadata.is_span() && metadata.name() == SPAN_NAME)
            // `Trace::log_span` makes them at INFO.
            .with_max_level_hint(LevelFilter::INFO),
    )
}

impl<S> Layer<S> for TraceIdsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attributes.metadata().name() != SPAN_NAME {
            return;
        }
        let mut ids = TraceIds::default();
        attributes.record(&mut ids);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(ids);
        }
    }
}

impl Visit for TraceIds {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "trace_id" => self.trace_id = format!("{value:?}"),
            "span_id" => self.span_id = format!("{value:?}"),
            _ => {}
        }
    }
}

/// The ids of the innermost trace span `event` happened in, if any (and if
/// [`TraceIdsLayer`] is installed).
pub fn trace_ids<S>(ctx: &Context<'_, S>, event: &Event<'_>) -> Option<TraceIds>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    ctx.event_scope(event)?
        .find_map(|span| span.extensions().get::<TraceIds>().cloned())
}

/// One JSON object per log record, on one line: `timestamp`, `level`, `target`, `message`,
/// the record's fields, and `trace_id` / `span_id` inside a traced call.
pub struct JsonLayer<W> {
    writer: W,
}

impl<W> JsonLayer<W> {
    pub fn new(writer: W) -> JsonLayer<W> {
        JsonLayer { writer }
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let mut record = JsonFields(Map::new());
        record.0.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        record
            .0
            .insert("level".into(), metadata.level().as_str().into());
        record.0.insert("target".into(), metadata.target().into());
        event.record(&mut record);
        if let Some(ids) = trace_ids(&ctx, event) {
            record.0.insert("trace_id".into(), ids.trace_id.into());
            record.0.insert("span_id".into(), ids.span_id.into());
        }
        let Ok(mut line) = serde_json::to_vec(&record.0) else {
            return;
        };
        line.push(b'\n');
        // A log that cannot be written is not worth failing the host over.
        let _ = self.writer.make_writer_for(metadata).write_all(&line);
    }
}

struct JsonFields(Map<String, Value>);

impl Visit for JsonFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;

        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    fn records(lines: &Lines) -> Vec<Value> {
        String::from_utf8(lines.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
            .collect()
    }

    #[test]
    fn a_record_inside_a_trace_span_names_its_trace_at_the_top_level() {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry()
            .with(trace_ids_layer())
            .with(JsonLayer::new(lines.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(service = "order", attempt = 2, "outside \"quoted\"");
            let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
            let span_id = "00f067aa0ba902b7";
            tracing::info_span!(SPAN_NAME, trace_id = %trace_id, span_id = %span_id).in_scope(
                || {
                    tracing::info_span!("inner").in_scope(|| {
                        tracing::error!(service = "order", request_id = "r-1", "inside");
                    })
                },
            );
        });
        let records = records(&lines);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["message"], "outside \"quoted\"");
        assert_eq!(records[0]["level"], "WARN");
        assert_eq!(records[0]["attempt"], 2);
        assert!(records[0].get("trace_id").is_none());
        assert_eq!(records[1]["message"], "inside");
        assert_eq!(records[1]["request_id"], "r-1");
        assert_eq!(records[1]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(records[1]["span_id"], "00f067aa0ba902b7");
        assert!(records[1]["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
