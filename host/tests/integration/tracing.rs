//! Traces: a host configured with an OTLP endpoint exports, over HTTP and protobuf, to a
//! receiver this module runs (decoding with `opentelemetry-proto`, real protobuf). One order
//! must come out as one trace across the four services, continuing the client's
//! `traceparent`, through the in-process calls and the broker.

use crate::fault_proxy::FaultProxy;
use crate::otlp_receiver::{ReceivedSpan, Receiver};
use crate::support::{
    eventually, free_ports, shop_config_on, with_platform, Backends, Platform, RunNames, Test,
};
use anyhow::{ensure, Context};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

pub fn tests() -> Vec<Test> {
    crate::real_backend_tests![
        one_order_is_one_trace_across_the_four_services,
        an_event_published_later_continues_the_trace_of_the_order_that_wrote_it,
        a_retried_then_dead_lettered_message_shows_every_attempt,
        a_collector_that_is_down_costs_requests_nothing,
    ]
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
                // Each service exports on its own, in batches: wait for the server span of
                // each of the three, and for the consumer span with the publish it continues.
                let spans = receiver.of_trace(&trace_id);
                let served = |service: &str| {
                    spans
                        .iter()
                        .any(|span| span.service == service && span.kind == 2)
                };
                let consumed = spans.iter().any(|consumer| {
                    consumer.kind == 5 && spans.iter().any(|span| span.span_id == consumer.parent)
                });
                let complete = served("user") && served("product") && served("order") && consumed;
                Ok(complete.then_some(spans.clone()))
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
        // It carries the client's token, which the order's request checked: the product
        // service takes that check, and the identity service is asked once per order.
        assert_eq!(
            reserve.attributes.get("platform.token.checked_upstream"),
            Some(&"true".to_string()),
            "{reserve:?}"
        );
        let checks = spans
            .iter()
            .filter(|span| span.service == "user" && span.name.contains("/validate-token"))
            .count();
        assert_eq!(checks, 1, "{spans:#?}");

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

/// A client's `traceparent` for a new trace: its trace id, and the client's span id.
fn client_trace() -> (String, String) {
    let trace_id = hex::encode(uuid::Uuid::new_v4().as_bytes());
    let client_span = trace_id[..16].to_string();
    (trace_id, client_span)
}

/// RabbitMQ is down while an order is placed (logs in JSON): its event waits in the outbox
/// and goes out later, from the maintenance schedule or another request; the message still
/// continues the order's trace (linked to the call that sent it), and the warning the order
/// service logged names the trace.
async fn an_event_published_later_continues_the_trace_of_the_order_that_wrote_it(
    _: &'static Platform,
) -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let proxy = FaultProxy::start("127.0.0.1:5672").await?;
    let names = RunNames::new();
    let mut config = traced_shop(&names, &receiver.address);
    crate::support::set(
        &mut config,
        &["messaging", "url"],
        format!("amqp://guest:guest@{}/%2f", proxy.address).into(),
    );
    crate::stock::settle_quickly(&mut config);
    let platform = Platform::start_with(names, config, &["--log-format", "json"]).await?;
    let result = async {
        let user = platform.new_user().await?;
        let product = platform.new_product(&user, "2.50", 5).await?;
        let (trace_id, client_span) = client_trace();
        proxy.down();
        let response = platform
            .http()
            .post(platform.url("order", "/orders"))
            .header("authorization", user.bearer())
            .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
            .json(&json!({ "product_id": product["id"], "quantity": 1 }))
            .send()
            .await?;
        ensure!(response.status() == 201, "{}", response.status());
        proxy.up();

        let spans = eventually(
            "the late event's consumer span and the span it continues, in the order's trace",
            Duration::from_secs(60),
            || async {
                // Each service exports on its own: the order service's publish span can
                // arrive after the notification service's consumer span.
                let spans = receiver.of_trace(&trace_id);
                let continued = spans.iter().any(|consumer| {
                    consumer.kind == 5 && spans.iter().any(|span| span.span_id == consumer.parent)
                });
                Ok(continued.then_some(spans.clone()))
            },
        )
        .await?;
        let span = |id: &str| spans.iter().find(|span| span.span_id == id);
        let order = spans
            .iter()
            .find(|span| span.service == "order" && span.kind == 2)
            .context("the order's server span")?;
        assert_eq!(order.parent, client_span);
        let consumed = spans.iter().find(|span| span.kind == 5).unwrap();
        assert_eq!(consumed.service, "notification");
        let publish = span(&consumed.parent).context("the publish the consumer continues")?;
        assert_eq!((publish.service.as_str(), publish.kind), ("order", 4));
        assert_eq!(
            publish.parent, order.span_id,
            "the late publish continues the request that wrote the event"
        );
        ensure!(
            !publish.links.is_empty(),
            "the late publish links the call that sent it: {publish:?}"
        );

        // Every line of the log is one JSON object; the order service's warning about the
        // unpublished event names the order's trace and span.
        let log = platform.log();
        let records: Vec<serde_json::Value> = log
            .lines()
            .map(|line| {
                serde_json::from_str(line).with_context(|| format!("a log line not JSON: {line}"))
            })
            .collect::<anyhow::Result<_>>()?;
        let warning = records
            .iter()
            .find(|record| {
                record["target"] == "component"
                    && record["service"] == "order"
                    && record["message"]
                        .as_str()
                        .is_some_and(|message| message.contains("stays in the outbox"))
            })
            .with_context(|| format!("no outbox warning in the log:\n{log}"))?;
        assert_eq!(warning["level"], "WARN");
        assert_eq!(warning["trace_id"], trace_id.as_str());
        assert_eq!(warning["span_id"], order.span_id.as_str());
        assert!(warning["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()));
        Ok(())
    }
    .await;
    platform.stop().await;
    proxy.up();
    result
}

/// The notification service's database is down: a traced event is retried (each delivery
/// a consumer span continuing the publisher's, with a `retry` event) until it is too old,
/// then dead-lettered (the last span's event). A database that is down is waited out, not
/// counted against the message: each delivery stays its first attempt.
async fn a_retried_then_dead_lettered_message_shows_every_attempt(
    _: &'static Platform,
) -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let proxy = FaultProxy::start("127.0.0.1:5432").await?;
    let names = RunNames::new();
    let mut config = traced_shop(&names, &receiver.address);
    crate::support::set(
        &mut config,
        &["database", "url"],
        format!("postgres://postgres@{}/postgres", proxy.address).into(),
    );
    if let Some(subscription) =
        config["services"]["notification"]["subscriptions"][0].as_table_mut()
    {
        subscription.insert("retry_delay_ms".into(), 200.into());
        subscription.insert("max_retry_age_seconds".into(), 2.into());
    }
    let result = with_platform(names, config, async |platform| {
        let user = platform.new_user().await?;
        let event = crate::notification::created_event(
            &uuid::Uuid::new_v4().to_string(),
            crate::notification::synthetic_order_id(),
            &user,
            "never stored",
        );
        let (trace_id, producer_span) = client_trace();
        proxy.down();
        let traceparent = format!("00-{trace_id}-{producer_span}-01");
        platform
            .publish_with_headers(
                &[("order.created", &serde_json::to_vec(&event)?)],
                &[("traceparent", &traceparent)],
            )
            .await?;
        let mut deliveries = eventually(
            "the event's dead-lettered delivery",
            Duration::from_secs(30),
            || async {
                let deliveries: Vec<ReceivedSpan> = receiver
                    .of_trace(&trace_id)
                    .into_iter()
                    .filter(|span| span.kind == 5)
                    .collect();
                let dead = deliveries
                    .iter()
                    .any(|span| span.events.contains(&"dead_letter".to_string()));
                Ok(dead.then_some(deliveries))
            },
        )
        .await?;
        proxy.up();
        deliveries.sort_by_key(|span| span.start);
        ensure!(
            deliveries.len() >= 2,
            "retried before it was dead-lettered: {deliveries:#?}"
        );
        for (index, delivery) in deliveries.iter().enumerate() {
            assert_eq!(delivery.service, "notification");
            assert_eq!(
                delivery.parent, producer_span,
                "each attempt continues the publisher's span"
            );
            assert_eq!(delivery.attributes["platform.delivery.attempt"], "1");
            let last = index == deliveries.len() - 1;
            let expected = if last { "dead_letter" } else { "retry" };
            assert_eq!(delivery.events, vec![expected.to_string()], "{delivery:?}");
        }
        Ok(())
    })
    .await;
    proxy.up();
    result
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
