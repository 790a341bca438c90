//! OpenTelemetry traces: one tracer per service (its spans carry `service.name` = the
//! service), W3C trace context in and out of every request, outgoing call and message, and
//! export by OTLP over HTTP. Read by every layer, like `config`.
//!
//! Off unless an endpoint is configured (`[tracing]`, or the standard `OTEL_EXPORTER_OTLP_*`
//! variables): then every [`ServiceTracer`] is empty, no span, context or header is made and
//! the hot path pays one `Option` check. On, spans go into a bounded queue per service that a
//! task exports in batches (`OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`,
//! `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_EXPORT_TIMEOUT`); a request never waits for the
//! collector: a full queue or a failed export drops spans and counts them in the service's
//! `tracing_spans_dropped_total`.

pub mod logs;

use crate::config::TracingConfig;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Link, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub use opentelemetry::trace::SpanKind as Kind;
pub use opentelemetry::KeyValue as Attribute;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("tracing: {0}")]
    Invalid(String),
    #[error("tracing: cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// How the batches are made, from the standard `OTEL_BSP_*` variables.
#[derive(Debug, Clone, Copy)]
struct Batching {
    max_queue: usize,
    max_batch: usize,
    delay: Duration,
    export_timeout: Duration,
}

impl Batching {
    fn from_env(env: &impl Fn(&str) -> Option<String>) -> Result<Batching, TelemetryError> {
        let number = |name: &str, default: u64| -> Result<u64, TelemetryError> {
            match env(name) {
                None => Ok(default),
                Some(value) => value.trim().parse().map_err(|_| {
                    TelemetryError::Invalid(format!("{name} must be a number, got `{value}`"))
                }),
            }
        };
        Ok(Batching {
            max_queue: number("OTEL_BSP_MAX_QUEUE_SIZE", 2048)?.max(1) as usize,
            max_batch: number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?.max(1) as usize,
            delay: Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5000)?),
            export_timeout: Duration::from_millis(number("OTEL_BSP_EXPORT_TIMEOUT", 30000)?),
        })
    }
}

/// The tracing of the whole host: a provider per service, or nothing when off.
pub struct Telemetry {
    settings: Option<Settings>,
    providers: std::sync::Mutex<Vec<(SdkTracerProvider, mpsc::Sender<Queued>)>>,
}

struct Settings {
    config: TracingConfig,
    protocol: Protocol,
    sampler: Sampler,
    batching: Batching,
}

impl Telemetry {
    /// Tracing as `config` (with the environment applied) and `env` (`OTEL_BSP_*`) say.
    pub fn new(
        config: &TracingConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Telemetry, TelemetryError> {
        if config.endpoint.is_none() && config.traces_endpoint.is_none() {
            return Ok(Telemetry::off());
        }
        let protocol = match config.protocol.as_deref().unwrap_or("http/protobuf") {
            "http/protobuf" => Protocol::HttpBinary,
            "http/json" => Protocol::HttpJson,
            other => {
                return Err(TelemetryError::Invalid(format!(
                    "protocol `{other}` is not built in: use http/protobuf or http/json"
                )))
            }
        };
        tracing::info!(
            endpoint = config
                .traces_endpoint
                .as_deref()
                .or(config.endpoint.as_deref())
                .unwrap_or_default(),
            protocol = config.protocol.as_deref().unwrap_or("http/protobuf"),
            sampler = config.sampler.as_deref().unwrap_or("parentbased_always_on"),
            "tracing: spans exported by OTLP"
        );
        Ok(Telemetry {
            settings: Some(Settings {
                config: config.clone(),
                protocol,
                sampler: sampler(config.sampler.as_deref(), config.sampler_arg)?,
                batching: Batching::from_env(&env)?,
            }),
            providers: std::sync::Mutex::new(Vec::new()),
        })
    }

    pub fn off() -> Telemetry {
        Telemetry {
            settings: None,
            providers: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn is_on(&self) -> bool {
        self.settings.is_some()
    }

    /// The tracer of `service`; `dropped` counts the spans it could not export. Must run
    /// inside the tokio runtime (the export task is spawned on it).
    pub fn tracer(
        &self,
        service: &str,
        dropped: prometheus::IntCounter,
    ) -> Result<ServiceTracer, TelemetryError> {
        let Some(settings) = &self.settings else {
            return Ok(ServiceTracer::default());
        };
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(settings.protocol)
            .with_timeout(settings.batching.export_timeout);
        exporter = match (&settings.config.traces_endpoint, &settings.config.endpoint) {
            (Some(traces), _) => exporter.with_endpoint(traces.clone()),
            (None, Some(base)) => {
                exporter.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')))
            }
            (None, None) => exporter,
        };
        let exporter = exporter
            .build()
            .map_err(|error| TelemetryError::Exporter(error.to_string()))?;
        let name = format!("{}{service}", settings.config.service_name_prefix);
        let resource = Resource::builder().with_service_name(name).build();
        let (queue, spans) = mpsc::channel(settings.batching.max_queue);
        tokio::spawn(export_batches(
            exporter,
            resource.clone(),
            spans,
            settings.batching,
            dropped.clone(),
        ));
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(settings.sampler.clone())
            .with_span_processor(QueueingProcessor {
                queue: queue.clone(),
                dropped,
            })
            .build();
        let tracer = provider.tracer("platform");
        self.providers
            .lock()
            .expect("never held across a panic")
            .push((provider, queue));
        Ok(ServiceTracer(Some(tracer)))
    }

    /// Exports what every queue holds, waiting at most `deadline` (at shutdown).
    pub async fn flush(&self, deadline: Duration) {
        let queues: Vec<mpsc::Sender<Queued>> = self
            .providers
            .lock()
            .expect("never held across a panic")
            .iter()
            .map(|(_, queue)| queue.clone())
            .collect();
        let flushes = queues.into_iter().map(|queue| async move {
            let (done, flushed) = oneshot::channel();
            if queue.send(Queued::Flush(done)).await.is_ok() {
                let _ = flushed.await;
            }
        });
        let _ = tokio::time::timeout(deadline, futures::future::join_all(flushes)).await;
    }
}

/// The sampler `OTEL_TRACES_SAMPLER` names (the specification's names and default).
fn sampler(name: Option<&str>, ratio: Option<f64>) -> Result<Sampler, TelemetryError> {
    let ratio = || match ratio {
        Some(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        Some(ratio) => Err(TelemetryError::Invalid(format!(
            "the sampler ratio must be from 0 to 1, got {ratio}"
        ))),
        None => Ok(1.0),
    };
    Ok(match name.unwrap_or("parentbased_always_on") {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?)))
        }
        other => {
            return Err(TelemetryError::Invalid(format!(
                "unknown sampler `{other}` (always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off, parentbased_traceidratio)"
            )))
        }
    })
}

enum Queued {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// Hands ended spans to the export task without waiting: a full queue drops the span.
#[derive(Debug)]
struct QueueingProcessor {
    queue: mpsc::Sender<Queued>,
    dropped: prometheus::IntCounter,
}

impl SpanProcessor for QueueingProcessor {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.queue.try_send(Queued::Span(Box::new(span))).is_err() {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Exports a service's spans in batches until its queue closes.
async fn export_batches(
    mut exporter: opentelemetry_otlp::SpanExporter,
    resource: Resource,
    mut spans: mpsc::Receiver<Queued>,
    batching: Batching,
    dropped: prometheus::IntCounter,
) {
    exporter.set_resource(&resource);
    let mut batch: Vec<SpanData> = Vec::with_capacity(batching.max_batch);
    let mut last_warned: Option<std::time::Instant> = None;
    loop {
        let mut flushed = None;
        let deadline = tokio::time::sleep(batching.delay);
        tokio::pin!(deadline);
        // Collect until the batch is full, the delay is up or a flush is asked for.
        while batch.len() < batching.max_batch && flushed.is_none() {
            tokio::select! {
                queued = spans.recv() => match queued {
                    Some(Queued::Span(span)) => batch.push(*span),
                    Some(Queued::Flush(done)) => flushed = Some(done),
                    None => {
                        export(&exporter, &mut batch, &dropped, &mut last_warned).await;
                        return;
                    }
                },
                _ = &mut deadline => break,
            }
        }
        export(&exporter, &mut batch, &dropped, &mut last_warned).await;
        if let Some(done) = flushed {
            let _ = done.send(());
        }
    }
}

async fn export(
    exporter: &opentelemetry_otlp::SpanExporter,
    batch: &mut Vec<SpanData>,
    dropped: &prometheus::IntCounter,
    last_warned: &mut Option<std::time::Instant>,
) {
    if batch.is_empty() {
        return;
    }
    let spans = batch.len();
    if let Err(error) = exporter.export(std::mem::take(batch)).await {
        dropped.inc_by(spans as u64);
        if last_warned.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
            *last_warned = Some(std::time::Instant::now());
            tracing::warn!(%error, spans, "could not export spans; dropped (logged once a minute)");
        }
    }
}

/// A service's tracer; empty when tracing is off.
#[derive(Clone, Default)]
pub struct ServiceTracer(Option<SdkTracer>);

impl ServiceTracer {
    /// The span of a request the service serves, continuing the caller's trace (its
    /// `traceparent`) or starting one. `None` when tracing is off.
    pub fn server(
        &self,
        headers: &http::HeaderMap,
        name: impl FnOnce() -> String,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Option<Trace> {
        self.continuing(
            &HeaderExtractor(headers),
            SpanKind::Server,
            name,
            attributes,
        )
    }

    /// The span of one delivery the service consumes, continuing the publisher's trace
    /// (its `traceparent` header).
    pub fn consumer(
        &self,
        headers: &[(String, String)],
        name: impl FnOnce() -> String,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Option<Trace> {
        self.continuing(
            &PairExtractor(headers),
            SpanKind::Consumer,
            name,
            attributes,
        )
    }

    /// The span of one run of a scheduled task: a trace of its own.
    pub fn scheduled(
        &self,
        name: &str,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Option<Trace> {
        let tracer = self.0.as_ref()?;
        Some(Trace::start(
            tracer,
            &Context::new(),
            format!("schedule {name}"),
            SpanKind::Internal,
            attributes(),
        ))
    }

    fn continuing(
        &self,
        carrier: &dyn Extractor,
        kind: SpanKind,
        name: impl FnOnce() -> String,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Option<Trace> {
        let tracer = self.0.as_ref()?;
        let parent = TraceContextPropagator::new().extract(carrier);
        Some(Trace::start(tracer, &parent, name(), kind, attributes()))
    }
}

/// A span in progress, and the context its children and outgoing calls carry.
#[derive(Clone)]
pub struct Trace {
    tracer: SdkTracer,
    context: Context,
}

impl Trace {
    fn start(
        tracer: &SdkTracer,
        parent: &Context,
        name: String,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> Trace {
        let span = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(tracer, parent);
        Trace {
            tracer: tracer.clone(),
            context: parent.with_span(span),
        }
    }

    /// A child span of this one, to be ended by [`Trace::end`]. A span that is not sampled
    /// has none: the "child" shares its context (which still travels, unsampled), and ending
    /// it does nothing, so a trace the sampler dropped costs no span per capability call.
    pub fn child(
        &self,
        name: impl Into<String>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> Trace {
        if !self.is_recording() {
            return self.clone();
        }
        Trace::start(&self.tracer, &self.context, name.into(), kind, attributes)
    }

    /// Whether the span is sampled: what is set on one that is not goes nowhere, so callers
    /// can skip building it.
    pub fn is_recording(&self) -> bool {
        self.context.span().is_recording()
    }

    pub fn rename(&self, name: String) {
        self.context.span().update_name(name);
    }

    pub fn set(&self, attribute: KeyValue) {
        self.context.span().set_attribute(attribute);
    }

    pub fn event(&self, name: &'static str, attributes: Vec<KeyValue>) {
        self.context.span().add_event(name, attributes);
    }

    /// Marks the span failed, with why.
    pub fn fail(&self, description: impl Into<std::borrow::Cow<'static, str>>) {
        self.context.span().set_status(Status::error(description));
    }

    pub fn end(&self) {
        self.context.span().end();
    }

    /// Puts this span's `traceparent` (and `tracestate`) into outgoing HTTP headers.
    pub fn inject_http(&self, headers: &mut http::HeaderMap) {
        TraceContextPropagator::new().inject_context(&self.context, &mut HeaderInjector(headers));
    }

    /// Puts this span's `traceparent` (and `tracestate`) into a message's headers.
    pub fn inject_message(&self, headers: &mut Vec<(String, String)>) {
        TraceContextPropagator::new().inject_context(&self.context, &mut PairInjector(headers));
    }

    /// The trace's id, as 32 hex digits.
    pub fn trace_id(&self) -> String {
        self.context.span().span_context().trace_id().to_string()
    }

    /// This span's W3C context, as a component reads it.
    pub fn w3c(&self) -> W3cContext {
        let mut headers = Vec::new();
        self.inject_message(&mut headers);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
                .unwrap_or_default()
        };
        let span = self.context.span();
        let span_context = span.span_context();
        W3cContext {
            trace_id: span_context.trace_id().to_string(),
            span_id: span_context.span_id().to_string(),
            traceparent: header("traceparent"),
            tracestate: header("tracestate"),
            sampled: span_context.is_sampled(),
        }
    }

    /// The span of publishing a message. A message that carries a `traceparent` of another
    /// trace (an outbox row's, kept from the request that wrote it) continues that trace,
    /// linked to this one; any other is a child of this span.
    pub fn child_for_message(
        &self,
        headers: &[(String, String)],
        name: String,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> Trace {
        let carried = TraceContextPropagator::new().extract(&PairExtractor(headers));
        let carried_span = carried.span().span_context().clone();
        let own = self.context.span().span_context().clone();
        if !carried_span.is_valid() || carried_span.trace_id() == own.trace_id() {
            return self.child(name, kind, attributes);
        }
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .with_links(vec![Link::with_context(own)])
            .start_with_context(&self.tracer, &carried);
        Trace {
            tracer: self.tracer.clone(),
            context: carried.with_span(span),
        }
    }

    /// A `tracing` span carrying this span's trace and span ids: the host's log records
    /// inside it, a component's included, name the trace they belong to.
    pub fn log_span(&self) -> tracing::Span {
        let span = self.context.span();
        let span_context = span.span_context();
        tracing::info_span!(
            logs::SPAN_NAME,
            trace_id = %span_context.trace_id(),
            span_id = %span_context.span_id()
        )
    }
}

/// Where a call stands in its trace, in W3C Trace Context terms.
pub struct W3cContext {
    pub trace_id: String,
    pub span_id: String,
    pub traceparent: String,
    pub tracestate: String,
    pub sampled: bool,
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct PairExtractor<'a>(&'a [(String, String)]);

impl Extractor for PairExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_str()).collect()
    }
}

struct PairInjector<'a>(&'a mut Vec<(String, String)>);

impl Injector for PairInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(name, _)| !name.eq_ignore_ascii_case(key));
        self.0.push((key.to_string(), value));
    }
}

/// A statement's summary for `db.query.summary`: its verb and the table it names, never a
/// value (`SELECT products`, `INSERT orders`).
pub fn statement_summary(sql: &str) -> String {
    let words: Vec<&str> = sql
        .split(|c: char| c.is_whitespace() || c == '(' || c == ',' || c == ';')
        .filter(|word| !word.is_empty())
        .take(64)
        .collect();
    let Some(verb) = words.first().map(|verb| verb.to_ascii_uppercase()) else {
        return String::new();
    };
    let after = |keyword: &str| {
        words
            .iter()
            .position(|word| word.eq_ignore_ascii_case(keyword))
            .and_then(|at| words.get(at + 1))
    };
    let table = match verb.as_str() {
        "SELECT" | "DELETE" => after("FROM"),
        "INSERT" => after("INTO"),
        "UPDATE" => words.get(1),
        _ => None,
    };
    let identifier = |name: &&str| {
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '"')
    };
    match table.copied().filter(identifier) {
        Some(table) => format!("{verb} {}", table.trim_matches('"')),
        None => verb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_summarised_without_its_values() {
        assert_eq!(
            statement_summary("SELECT id, name FROM products WHERE id = $1"),
            "SELECT products"
        );
        assert_eq!(
            statement_summary("insert into orders (user_id) values ('secret')"),
            "INSERT orders"
        );
        assert_eq!(
            statement_summary("UPDATE products SET quantity = quantity - 2"),
            "UPDATE products"
        );
        assert_eq!(statement_summary("BEGIN"), "BEGIN");
        assert_eq!(statement_summary("SELECT 'a b' FROM"), "SELECT");
        assert_eq!(statement_summary("  "), "");
    }

    #[test]
    fn samplers_have_the_specifications_names() {
        assert!(matches!(sampler(None, None), Ok(Sampler::ParentBased(_))));
        assert!(matches!(
            sampler(Some("traceidratio"), Some(0.1)),
            Ok(Sampler::TraceIdRatioBased(ratio)) if ratio == 0.1
        ));
        assert!(sampler(Some("traceidratio"), Some(1.5)).is_err());
        assert!(sampler(Some("sometimes"), None).is_err());
    }

    /// A trace the sampler dropped still carries its context to outgoing calls, but makes
    /// no span per capability call: the "child" is the same unsampled span.
    #[tokio::test]
    async fn an_unsampled_trace_has_no_child_spans() {
        let config = TracingConfig {
            endpoint: Some("http://127.0.0.1:9".into()),
            sampler: Some("always_off".into()),
            ..TracingConfig::default()
        };
        let telemetry = Telemetry::new(&config, |_| None).unwrap();
        let tracer = telemetry
            .tracer("a", prometheus::IntCounter::new("d", "d").unwrap())
            .unwrap();
        let server = tracer
            .server(&http::HeaderMap::new(), || "GET /".into(), Vec::new)
            .expect("tracing is on");
        assert!(!server.is_recording());
        let child = server.child("SELECT", Kind::Client, Vec::new());
        assert_eq!(child.w3c().span_id, server.w3c().span_id);
        let mut headers = http::HeaderMap::new();
        child.inject_http(&mut headers);
        let traceparent = headers["traceparent"].to_str().unwrap();
        assert!(traceparent.ends_with("-00"), "unsampled: {traceparent}");
        assert!(traceparent.contains(&server.trace_id()));
    }

    #[test]
    fn off_without_an_endpoint() {
        let telemetry = Telemetry::new(&TracingConfig::default(), |_| None).unwrap();
        assert!(!telemetry.is_on());
        let tracer = telemetry
            .tracer("a", prometheus::IntCounter::new("d", "d").unwrap())
            .unwrap();
        assert!(tracer
            .server(
                &http::HeaderMap::new(),
                || unreachable!(),
                || unreachable!()
            )
            .is_none());
    }
}
