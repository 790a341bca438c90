//! Traces: a host configured with an OTLP endpoint exports, over HTTP and protobuf, to a
//! receiver this module runs (decoding with `opentelemetry-proto`, real protobuf). One order
//! must come out as one trace across the four services, continuing the client's
//! `traceparent`, through the in-process calls and the broker.

use crate::support::{
    eventually, free_ports, shop_config_on, with_platform, Backends, Platform, RunNames, Test,
};
use anyhow::{ensure, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub fn tests() -> Vec<Test> {
    crate::real_backend_tests![
        one_order_is_one_trace_across_the_four_services,
        a_collector_that_is_down_costs_requests_nothing,
    ]
}

/// A span as the receiver got it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    /// OTLP's numbering: 2 server, 3 client, 4 producer, 5 consumer.
    kind: i32,
    attributes: BTreeMap<String, String>,
    events: Vec<String>,
}

/// An OTLP/HTTP traces endpoint on a free port, keeping every span it is sent.
struct Receiver {
    address: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = format!("http://{}", listener.local_addr()?);
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let kept = kept.clone();
                            async move {
                                let path = request.uri().path().to_string();
                                let body = request.into_body().collect().await?.to_bytes();
                                if path == "/v1/traces" {
                                    if let Ok(export) = ExportTraceServiceRequest::decode(body) {
                                        kept.lock().unwrap().extend(spans_of(export));
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
            task,
        })
    }

    fn of_trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
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
                });
            }
        }
    }
    spans
}

/// A shop exporting its traces to `endpoint`.
fn traced_shop(names: &RunNames, endpoint: &str) -> toml::Table {
    let ports: BTreeMap<&str, u16> = ["user", "product", "order", "notification"]
        .into_iter()
        .zip(free_ports(4))
        .collect();
    let mut config = shop_config_on(Backends::Real, names, &ports);
    crate::support::set(&mut config, &["tracing", "endpoint"], endpoint.into());
    config
}

async fn one_order_is_one_trace_across_the_four_services(
    _: &'static Platform,
) -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let names = RunNames::new();
    let config = traced_shop(&names, &receiver.address);
    with_platform(names, config, async |platform| {
        let user = platform.new_user().await?;
        let product = platform.new_product(&user, "4.20", 3).await?;
        // The client's own trace, which the platform must continue.
        let trace_id = hex::encode(uuid::Uuid::new_v4().as_bytes());
        let client_span = &trace_id[..16];
        let response = platform
            .http()
            .post(platform.url("order", "/orders"))
            .header("authorization", user.bearer())
            .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
            .json(&json!({ "product_id": product["id"], "quantity": 1 }))
            .send()
            .await?;
        ensure!(
            response.status() == 201,
            "POST /orders: {}",
            response.status()
        );

        let spans = eventually(
            "the order's trace from all four services",
            Duration::from_secs(30),
            || async {
                let spans = receiver.of_trace(&trace_id);
                let services: std::collections::BTreeSet<&str> =
                    spans.iter().map(|span| span.service.as_str()).collect();
                let consumed = spans.iter().any(|span| span.kind == 5);
                Ok((services.len() == 4 && consumed).then_some(spans.clone()))
            },
        )
        .await?;
        let by_id: BTreeMap<&str, &ReceivedSpan> = spans
            .iter()
            .map(|span| (span.span_id.as_str(), span))
            .collect();
        let parent_of = |span: &ReceivedSpan| by_id.get(span.parent.as_str()).copied();
        let find = |service: &str, kind: i32, name: &str| {
            spans
                .iter()
                .find(|span| {
                    span.service == service && span.kind == kind && span.name.contains(name)
                })
                .with_context(|| format!("no {service} span {name} (kind {kind}) in {spans:#?}"))
        };

        let order = find("order", 2, "POST /orders")?;
        assert_eq!(order.parent, client_span, "the client's trace is continued");
        assert_eq!(order.attributes["http.route"], "/orders");
        assert_eq!(order.attributes["http.response.status_code"], "201");
        assert_eq!(order.attributes["http.request.method"], "POST");

        // The token check: a client span of the order's request, the user service's server
        // span its child.
        let check = find("order", 3, "token validation")?;
        assert_eq!(check.parent, order.span_id);
        let validated = find("user", 2, "POST /validate-token")?;
        assert_eq!(
            validated.parent, check.span_id,
            "the user service continues the check"
        );

        // The reservation: the order's outgoing call, the product service's span its child.
        let reserve = spans
            .iter()
            .find(|span| {
                span.service == "product"
                    && span.kind == 2
                    && span.name.starts_with("POST /products/")
            })
            .with_context(|| format!("no reserve span in {spans:#?}"))?;
        let call = parent_of(reserve).context("the reserve call's parent was exported")?;
        assert_eq!((call.service.as_str(), call.kind), ("order", 3), "{call:?}");
        assert_eq!(call.parent, order.span_id);

        // The event: published under the order's request, consumed as its continuation.
        let publish = find("order", 4, "publish")?;
        assert_eq!(
            parent_of(publish).map(|span| span.span_id.as_str()),
            Some(order.span_id.as_str())
        );
        let consumed = find("notification", 5, "process")?;
        assert_eq!(
            consumed.parent, publish.span_id,
            "the consumer continues the publish"
        );
        assert!(consumed.events.contains(&"ack".to_string()), "{consumed:?}");

        // Database calls: children of their request, summarised, never with values.
        let statements: Vec<&ReceivedSpan> = spans
            .iter()
            .filter(|span| {
                span.attributes.contains_key("db.system.name")
                    && span.attributes["db.system.name"] == "postgresql"
            })
            .collect();
        ensure!(!statements.is_empty(), "no database spans in {spans:#?}");
        for statement in &statements {
            let summary = &statement.attributes["db.query.summary"];
            assert!(
                !summary.contains('\'') && !summary.contains(&user.username),
                "{summary}"
            );
            assert!(
                parent_of(statement).is_some(),
                "{statement:?} has its request as parent"
            );
        }
        for span in &spans {
            for value in span.attributes.values() {
                assert!(
                    !value.contains(&user.username) || span.name.contains("validate"),
                    "{span:?} carries the username"
                );
            }
        }
        Ok(())
    })
    .await
}

async fn a_collector_that_is_down_costs_requests_nothing(
    _: &'static Platform,
) -> anyhow::Result<()> {
    // A collector that takes connections and never answers: every export waits out its
    // timeout (one second in the tests) while the batches keep coming every 100 ms.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let silent = format!("http://{}", listener.local_addr()?);
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            connections.push(connection);
        }
    });
    let names = RunNames::new();
    let mut config = traced_shop(&names, &silent);
    crate::support::set(&mut config, &["tracing", "sampler"], "always_on".into());
    let result = with_platform(names, config, async |platform| {
        let user = platform.new_user().await?;
        let product = platform.new_product(&user, "1.00", 5).await?;
        let url = platform.url("product", &format!("/products/{}", product["id"]));
        // Across several exports stuck on the collector, each request answers at once.
        let until = std::time::Instant::now() + Duration::from_secs(3);
        let mut slowest = Duration::ZERO;
        while std::time::Instant::now() < until {
            let asked = std::time::Instant::now();
            let response = platform.http().get(&url).send().await?;
            ensure!(response.status() == 200, "{}", response.status());
            slowest = slowest.max(asked.elapsed());
        }
        ensure!(
            slowest < Duration::from_millis(500),
            "a request waited {slowest:?} while the collector did not answer"
        );
        eventually(
            "the unexported spans to be counted",
            Duration::from_secs(30),
            || async {
                let dropped = platform
                    .metric("product", "tracing_spans_dropped_total", &[])
                    .await?;
                Ok((dropped > 0.0).then_some(()))
            },
        )
        .await
    })
    .await;
    held.abort();
    result
}
