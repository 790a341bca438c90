//! An OTLP/HTTP traces endpoint for the tests and the load bench: it decodes each export
//! with `opentelemetry-proto` (real protobuf) and keeps the spans, so a test can check what
//! the host sent; the bench uses it as a collector that answers at once.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A span as the receiver got it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    pub name: String,
    /// OTLP's numbering: 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    pub events: Vec<String>,
    /// The span ids of its links.
    pub links: Vec<String>,
    /// When it started, in nanoseconds since the epoch.
    pub start: u64,
}

/// An OTLP/HTTP traces endpoint on a free port, keeping every span it is sent.
pub struct Receiver {
    /// `http://127.0.0.1:<port>`, for `[tracing] endpoint`.
    pub address: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    /// Spans received, kept or not.
    received: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver that keeps every span.
    pub async fn start() -> anyhow::Result<Receiver> {
        Receiver::listen(true).await
    }

    /// A receiver that only counts the spans (a collector for the load bench).
    #[allow(dead_code)] // the bench's
    pub async fn counting() -> anyhow::Result<Receiver> {
        Receiver::listen(false).await
    }

    async fn listen(keep: bool) -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = format!("http://{}", listener.local_addr()?);
        let spans = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(AtomicUsize::new(0));
        let (kept, counted) = (spans.clone(), received.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (kept, counted) = (kept.clone(), counted.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let (kept, counted) = (kept.clone(), counted.clone());
                            async move {
                                let path = request.uri().path().to_string();
                                let body = request.into_body().collect().await?.to_bytes();
                                if path == "/v1/traces" {
                                    if let Ok(export) = ExportTraceServiceRequest::decode(body) {
                                        let spans = spans_of(export);
                                        counted.fetch_add(spans.len(), Ordering::Relaxed);
                                        if keep {
                                            kept.lock().unwrap().extend(spans);
                                        }
                                    }
                                }
                                let mut response = http::Response::new(Full::new(Bytes::new()));
                                response.headers_mut().insert(
                                    http::header::CONTENT_TYPE,
                                    http::HeaderValue::from_static("application/x-protobuf"),
                                );
                                Ok::<_, hyper::Error>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Receiver {
            address,
            spans,
            received,
            task,
        })
    }

    /// Spans received so far.
    #[allow(dead_code)] // the bench's
    pub fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }

    pub fn of_trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|span| span.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|value| value.value.as_ref()) {
        Some(any_value::Value::StringValue(text)) => text.clone(),
        Some(any_value::Value::IntValue(n)) => n.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn spans_of(export: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut spans = Vec::new();
    for resource_spans in export.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .map(|attribute| text(&attribute.value))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent: hex::encode(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|attribute| (attribute.key.clone(), text(&attribute.value)))
                        .collect(),
                    events: span.events.into_iter().map(|event| event.name).collect(),
                    links: span
                        .links
                        .iter()
                        .map(|link| hex::encode(&link.span_id))
                        .collect(),
                    start: span.start_time_unix_nano,
                });
            }
        }
    }
    spans
}
