//! The notification service's contract (`../shared/contract/rest-api.md`), row by row, and
//! the Events section: the messages the order service publishes and how the notification
//! service consumes them (idempotency, dead-lettering).
//!
//! Tests run in parallel against one shared queue, so every assertion is about this test's
//! own users, orders and event ids; counters are only compared with `>=`.

use crate::support::{
    amqp_connection, assert_utc_timestamp, eventually, id_of, unique, Backends, Platform, Test,
    TestUser,
};
use anyhow::{ensure, Context};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde_json::{json, Value};
use std::time::Duration;

pub fn tests() -> Vec<Test> {
    let mut tests = crate::tests![
        notifications_require_a_valid_token,
        notifications_pagination_out_of_range_is_422,
        a_new_user_has_no_notifications,
        an_order_produces_its_notification,
        cancelling_an_order_produces_an_order_cancelled_notification,
        notifications_are_listed_newest_first_and_paginated,
        a_redelivered_event_makes_no_second_notification,
        a_non_json_message_is_dead_lettered_at_once_and_consuming_goes_on,
        an_event_that_can_never_be_handled_ends_in_the_dead_letter_queue,
        platform_publish_injects_an_event_and_names_an_unknown_exchange,
        dead_letters_are_listed_and_replayed_through_the_consumer,
    ];
    // Binds a queue of its own to the exchange, which only RabbitMQ lets a client do; puts
    // PostgreSQL behind a proxy it takes down.
    tests.extend(crate::real_backend_tests![
        order_created_and_cancelled_events_have_the_contract_shape,
        events_that_arrive_while_the_database_is_down_are_all_handled_once_it_is_back,
        events_unavailable_past_the_maximum_age_are_dead_lettered,
    ]);
    // Crashes a host of its own on the embedded broker.
    tests.extend(crate::embedded_backend_tests![
        published_events_survive_a_crash_of_the_embedded_broker,
    ]);
    tests
}

/// How long a message may take to go through the broker and the consumer.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

// ---- helpers -------------------------------------------------------------------------

async fn get_notifications(
    platform: &Platform,
    user: &TestUser,
    query: &str,
) -> anyhow::Result<reqwest::Response> {
    Ok(platform
        .http()
        .get(platform.url("notification", &format!("/notifications{query}")))
        .header("authorization", user.bearer())
        .send()
        .await?)
}

/// `GET /notifications` with a query string (`""` for none), which must succeed.
async fn notifications(
    platform: &Platform,
    user: &TestUser,
    query: &str,
) -> anyhow::Result<Vec<Value>> {
    let response = get_notifications(platform, user, query).await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status == 200, "GET /notifications{query}: {status} {text}");
    let body: Value = serde_json::from_str(&text)?;
    body.as_array()
        .cloned()
        .context("GET /notifications answers a list")
}

/// The user's notifications about `order_id`.
async fn notifications_for(
    platform: &Platform,
    user: &TestUser,
    order_id: i64,
) -> anyhow::Result<Vec<Value>> {
    Ok(notifications(platform, user, "")
        .await?
        .into_iter()
        .filter(|notification| notification["order_id"] == order_id)
        .collect())
}

/// Waits until the user has a notification `event` about `order_id` and returns it.
pub(crate) async fn wait_for_notification(
    platform: &Platform,
    user: &TestUser,
    order_id: i64,
    event: &str,
) -> anyhow::Result<Value> {
    eventually(
        &format!("the {event} notification of order {order_id}"),
        DELIVERY_TIMEOUT,
        || async move {
            Ok(notifications_for(platform, user, order_id)
                .await?
                .into_iter()
                .find(|notification| notification["event"] == event))
        },
    )
    .await
}

async fn cancel_order(
    platform: &Platform,
    user: &TestUser,
    order_id: i64,
) -> anyhow::Result<Value> {
    let response = platform
        .http()
        .put(platform.url("order", &format!("/orders/{order_id}")))
        .header("authorization", user.bearer())
        .json(&json!({ "status": "cancelled" }))
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(
        status == 200,
        "cancelling order {order_id}: {status} {text}"
    );
    Ok(serde_json::from_str(&text)?)
}

/// `messages_consumed_total{queue=<the run's queue>, outcome}` of the notification service.
async fn consumed(platform: &Platform, outcome: &str) -> anyhow::Result<f64> {
    platform
        .metric(
            "notification",
            "messages_consumed_total",
            &[("queue", &platform.queue()), ("outcome", outcome)],
        )
        .await
}

/// A header of a message as text, if it is text or a number.
fn header(properties: &BasicProperties, name: &str) -> Option<String> {
    let value = properties.headers().as_ref()?.inner().get(name)?.clone();
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        AMQPValue::LongUInt(n) => Some(n.to_string()),
        AMQPValue::ShortInt(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The queues the broker's `x-death` header says the message was dead-lettered from.
/// A message found in the run's dead-letter queue.
struct DeadLetter {
    /// Why the platform dead-lettered it.
    reason: Option<String>,
    /// Failed deliveries before it was dead-lettered (`None`: none).
    retries: Option<String>,
}

async fn take_dead_letter(platform: &Platform, body: &[u8]) -> anyhow::Result<DeadLetter> {
    if platform.on_server("messaging") {
        let properties = take_amqp_dead_letter(platform, body).await?;
        return Ok(DeadLetter {
            reason: header(&properties, "x-dead-letter-reason"),
            retries: header(&properties, "x-retry-count"),
        });
    }
    let (retries, reason) = eventually(
        "the message in the dead-letter queue",
        DELIVERY_TIMEOUT,
        || platform.take_embedded_dead_letter(body),
    )
    .await?;
    Ok(DeadLetter {
        reason,
        retries: (retries > 0).then(|| retries.to_string()),
    })
}

/// [`take_dead_letter`] on RabbitMQ: takes the message (ack) and returns its properties.
/// Other tests' dead letters are handed back (nack with requeue) untouched.
async fn take_amqp_dead_letter(
    platform: &Platform,
    body: &[u8],
) -> anyhow::Result<BasicProperties> {
    let connection = amqp_connection().await?;
    let connection = &connection;
    let found = eventually(
        "the message in the dead-letter queue",
        DELIVERY_TIMEOUT,
        || async move {
            let channel = connection.create_channel().await?;
            let mut others = Vec::new();
            let mut found = None;
            // Take every message (unacknowledged) until ours: a requeued message goes back to
            // the head of the queue, so handing back others one by one would never get past them.
            while let Some(message) = channel
                .basic_get(
                    &platform.dead_letter_queue(),
                    BasicGetOptions { no_ack: false },
                )
                .await?
            {
                if message.delivery.data == body {
                    message
                        .delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await?;
                    found = Some(message.delivery.properties.clone());
                    break;
                }
                others.push(message);
            }
            for other in others {
                other
                    .delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        multiple: false,
                    })
                    .await?;
            }
            let _ = channel.close(200, "done").await;
            Ok(found)
        },
    )
    .await;
    let _ = connection.close(200, "done").await;
    found
}

/// A valid `order.created` event body about `order_id` of `user`.
pub(crate) fn created_event(
    event_id: &str,
    order_id: i64,
    user: &TestUser,
    product_name: &str,
) -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({
        "event": "order.created",
        "event_id": event_id,
        "occurred_at": now,
        "data": {
            "order_id": order_id,
            "user_id": user.id,
            "username": user.username,
            "product_id": 1,
            "product_name": product_name,
            "quantity": 2,
            "unit_price": 1.25,
            "total_price": 2.5,
            "status": "pending",
            "created_at": now
        }
    })
}

/// An order id no real order of this run has.
/// PostgreSQL is unreachable for 5 s (a proxy between the host and it resets every
/// connection and refuses new ones) while 20 events arrive: a database that is down is
/// waited out with a growing pause, not counted as a failure of the message (two counted
/// failures would dead-letter it here), so none is dead-lettered and all 20 notifications
/// are there once it is back.
async fn events_that_arrive_while_the_database_is_down_are_all_handled_once_it_is_back(
    _: &'static Platform,
) -> anyhow::Result<()> {
    with_database_behind_a_proxy(
        |subscription| {
            // The shipped pause (2 s), and a second failure that counted would be the last.
            subscription.insert("retry_delay_ms".into(), 2000.into());
            subscription.insert("max_retry_attempts".into(), 2.into());
        },
        async |platform, proxy| database_outage(platform, proxy).await,
    )
    .await
}

/// The same outage, with events allowed to be unavailable for 1 s only: each is
/// dead-lettered while the database is still down, and none becomes a notification.
async fn events_unavailable_past_the_maximum_age_are_dead_lettered(
    _: &'static Platform,
) -> anyhow::Result<()> {
    with_database_behind_a_proxy(
        |subscription| {
            subscription.insert("max_retry_age_seconds".into(), 1.into());
        },
        async |platform, proxy| {
            let user = platform.new_user().await?;
            let order_ids: Vec<i64> = (0..3).map(|_| synthetic_order_id()).collect();
            let bodies: Vec<Vec<u8>> = order_ids
                .iter()
                .map(|order_id| {
                    let event = created_event(
                        &uuid::Uuid::new_v4().to_string(),
                        *order_id,
                        &user,
                        "too long unavailable",
                    );
                    serde_json::to_vec(&event).expect("JSON")
                })
                .collect();
            let dead_letters_before = consumed(platform, "dead_letter").await?;
            proxy.down();
            let messages: Vec<(&str, &[u8])> = bodies
                .iter()
                .map(|body| ("order.created", body.as_slice()))
                .collect();
            platform.publish(&messages).await?;
            let dead = eventually(
                "the events to be dead-lettered during the outage",
                Duration::from_secs(20),
                || async {
                    let dead = consumed(platform, "dead_letter").await? - dead_letters_before;
                    Ok((dead >= 3.0).then_some(dead))
                },
            )
            .await;
            proxy.up();
            assert_eq!(dead?, 3.0);
            let notifications: Value = get_notifications(platform, &user, "").await?.json().await?;
            assert_eq!(notifications, json!([]));
            Ok(())
        },
    )
    .await
}

/// A shop on the real servers with PostgreSQL behind a fault proxy, the notification
/// subscription adjusted by `configure`; the proxy is brought back up whatever `test` did.
async fn with_database_behind_a_proxy(
    configure: impl FnOnce(&mut toml::Table),
    test: impl AsyncFnOnce(&Platform, &crate::fault_proxy::FaultProxy) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let proxy = crate::fault_proxy::FaultProxy::start("127.0.0.1:5432").await?;
    let names = crate::support::RunNames::new();
    let ports: std::collections::BTreeMap<&str, u16> = ["user", "product", "order", "notification"]
        .into_iter()
        .zip(crate::support::free_ports(4))
        .collect();
    let mut config = crate::support::shop_config(&names, &ports);
    crate::support::set(
        &mut config,
        &["database", "url"],
        format!("postgres://postgres@{}/postgres", proxy.address).into(),
    );
    if let Some(subscription) =
        config["services"]["notification"]["subscriptions"][0].as_table_mut()
    {
        configure(subscription);
    }
    let result =
        crate::support::with_platform(names, config, async |platform| test(platform, &proxy).await)
            .await;
    proxy.up();
    result
}

async fn database_outage(
    platform: &Platform,
    proxy: &crate::fault_proxy::FaultProxy,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let events: Vec<(i64, Vec<u8>)> = (0..20)
        .map(|index| {
            let order_id = synthetic_order_id();
            let event = created_event(
                &uuid::Uuid::new_v4().to_string(),
                order_id,
                &user,
                &format!("during the outage {index}"),
            );
            (order_id, serde_json::to_vec(&event).expect("JSON"))
        })
        .collect();
    let dead_letters_before = consumed(platform, "dead_letter").await?;
    proxy.down();
    let messages: Vec<(&str, &[u8])> = events
        .iter()
        .map(|(_, body)| ("order.created", body.as_slice()))
        .collect();
    platform.publish(&messages).await?;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    proxy.up();
    for (order_id, _) in &events {
        wait_for_notification(platform, &user, *order_id, "order.created").await?;
    }
    assert_eq!(
        consumed(platform, "dead_letter").await?,
        dead_letters_before,
        "an event was dead-lettered during a 5 s outage"
    );
    Ok(())
}

/// `platform dlq list` shows a dead letter with its payload and id on either broker, and
/// `platform dlq replay --id` sends exactly that one through the consumer again.
async fn dead_letters_are_listed_and_replayed_through_the_consumer(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let event_id = uuid::Uuid::new_v4().to_string();
    // Valid JSON without the order it is about: dead-lettered at once, every time.
    let payload = json!({ "event": "order.created", "event_id": event_id, "data": {} }).to_string();
    platform.publish_event(&payload, &event_id).await?;
    let find = || async {
        let listed = platform
            .cli(&["dlq", "list", &platform.queue(), "--json"])
            .await?;
        ensure!(listed.code == 0, "{listed:?}");
        let entries = listed.json()?;
        anyhow::Ok(
            entries
                .as_array()
                .into_iter()
                .flatten()
                .find(|entry| entry["payload"] == payload.as_str())
                .cloned(),
        )
    };
    let entry = crate::support::eventually(
        "the dead letter to be listed",
        std::time::Duration::from_secs(20),
        || async { find().await },
    )
    .await?;
    assert_eq!(entry["routing_key"], "order.created", "{entry}");
    assert_eq!(entry["exchange"], platform.exchange().as_str(), "{entry}");
    let id = entry["id"].as_str().unwrap_or_default().to_string();

    let replayed = platform
        .cli(&["dlq", "replay", &platform.queue(), "--id", &id, "--json"])
        .await?;
    ensure!(replayed.code == 0, "{replayed:?}");
    assert_eq!(replayed.json()?["replayed"], 1);
    // Consumed again (and, being poison still, dead-lettered again): the host logs each
    // dead-lettering with the event's id.
    let dead_lettered = || {
        platform
            .log()
            .lines()
            .filter(|line| line.contains(&event_id) && line.contains("message dead-lettered"))
            .count()
    };
    crate::support::eventually(
        "the replayed message to be consumed again",
        std::time::Duration::from_secs(20),
        || async { Ok((dead_lettered() >= 2).then_some(())) },
    )
    .await?;
    assert_eq!(dead_lettered(), 2, "replayed once, consumed once more");
    let missing = platform
        .cli(&["dlq", "replay", &platform.queue(), "--id", "no-such-letter"])
        .await?;
    assert_ne!(missing.code, 0, "{missing:?}");
    let unknown = platform.cli(&["dlq", "list", "no_such_queue"]).await?;
    assert_eq!(unknown.code, 2, "{unknown:?}");
    Ok(())
}

pub(crate) fn synthetic_order_id() -> i64 {
    1_000_000_000_000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000_000_000) as i64
}

// ---- GET /notifications --------------------------------------------------------------

async fn notifications_require_a_valid_token(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    for authorization in [
        None,
        Some("Bearer not-a-token".to_string()),
        Some(format!("Basic {}", user.token)),
    ] {
        let request = platform
            .http()
            .get(platform.url("notification", "/notifications"));
        let request = match &authorization {
            Some(value) => request.header("authorization", value),
            None => request,
        };
        let response = request.send().await?;
        assert_eq!(response.status(), 401, "authorization {authorization:?}");
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        let body: Value = response.json().await?;
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
    Ok(())
}

async fn notifications_pagination_out_of_range_is_422(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-5", "limit"),
        ("limit=x", "limit"),
        ("skip=-1", "skip"),
        ("skip=x", "skip"),
    ] {
        let response = get_notifications(platform, &user, &format!("?{query}")).await?;
        assert_eq!(response.status(), 422, "?{query}");
        let body: Value = response.json().await?;
        let detail = body["detail"]
            .as_array()
            .with_context(|| format!("?{query}: detail list: {body}"))?;
        assert!(
            detail
                .iter()
                .any(|entry| entry["loc"] == json!(["query", field])
                    && entry["msg"].is_string()
                    && entry["type"].is_string()),
            "?{query}: {body}"
        );
    }
    for query in ["?limit=1", "?limit=100", "?skip=0", "?skip=1000&limit=1"] {
        notifications(platform, &user, query).await?;
    }
    Ok(())
}

async fn a_new_user_has_no_notifications(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    assert!(notifications(platform, &user, "").await?.is_empty());
    Ok(())
}

async fn an_order_produces_its_notification(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let other = platform.new_user().await?;
    let product = platform.new_product(&user, "19.99", 10).await?;
    let product_name = product["name"]
        .as_str()
        .context("product name")?
        .to_string();
    let order = platform.place_order(&user, id_of(&product)?, 3).await?;
    let order_id = id_of(&order)?;
    assert_eq!(order["total_price"].to_string(), "59.97");

    let notification = wait_for_notification(platform, &user, order_id, "order.created").await?;
    assert!(
        notification["id"].as_i64().is_some_and(|id| id > 0),
        "{notification}"
    );
    assert_eq!(notification["user_id"], user.id);
    assert_eq!(notification["order_id"], order_id);
    assert_eq!(notification["event"], "order.created");
    let message = notification["message"].as_str().context("message")?;
    assert!(
        message.contains(&order_id.to_string()),
        "message names order {order_id}: {message}"
    );
    assert!(
        message.contains(&product_name),
        "message names the product {product_name}: {message}"
    );
    assert!(
        message.contains("59.97"),
        "message names the total 59.97: {message}"
    );
    let created_at = assert_utc_timestamp(&notification["created_at"], "created_at");
    let ordered_at = assert_utc_timestamp(&order["created_at"], "order created_at");
    assert!(
        created_at >= ordered_at,
        "notified after the order was placed: {notification} {order}"
    );

    let mine = notifications_for(platform, &user, order_id).await?;
    assert_eq!(mine.len(), 1, "one notification per event: {mine:?}");
    let others = notifications(platform, &other, "").await?;
    assert!(
        others.is_empty(),
        "another user sees none of it: {others:?}"
    );
    Ok(())
}

async fn cancelling_an_order_produces_an_order_cancelled_notification(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "0.10", 10).await?;
    let product_name = product["name"]
        .as_str()
        .context("product name")?
        .to_string();
    let order = platform.place_order(&user, id_of(&product)?, 3).await?;
    let order_id = id_of(&order)?;
    let created = wait_for_notification(platform, &user, order_id, "order.created").await?;

    cancel_order(platform, &user, order_id).await?;
    let cancelled = wait_for_notification(platform, &user, order_id, "order.cancelled").await?;
    assert_eq!(cancelled["user_id"], user.id);
    assert_eq!(cancelled["order_id"], order_id);
    let message = cancelled["message"].as_str().context("message")?;
    assert!(message.contains(&order_id.to_string()), "{message}");
    assert!(message.contains(&product_name), "{message}");
    assert!(
        message.contains("0.3"),
        "message names the total 0.30: {message}"
    );
    assert!(!message.contains("0.30000000000000004"), "{message}");
    assert_ne!(
        cancelled["message"], created["message"],
        "the sentences tell the events apart"
    );
    assert_utc_timestamp(&cancelled["created_at"], "created_at");

    let mine = notifications_for(platform, &user, order_id).await?;
    assert_eq!(
        ids_of(&mine),
        vec![id_of(&cancelled)?, id_of(&created)?],
        "newest first, one per event"
    );
    Ok(())
}

fn ids_of(notifications: &[Value]) -> Vec<i64> {
    notifications
        .iter()
        .map(|n| n["id"].as_i64().unwrap_or_default())
        .collect()
}

async fn notifications_are_listed_newest_first_and_paginated(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let other = platform.new_user().await?;
    let product = platform.new_product(&user, "2.00", 20).await?;
    let product_id = id_of(&product)?;
    let mut order_ids = Vec::new();
    for quantity in 1..=3 {
        let order = platform.place_order(&user, product_id, quantity).await?;
        let order_id = id_of(&order)?;
        // One at a time, so that the order of the notifications is known.
        wait_for_notification(platform, &user, order_id, "order.created").await?;
        order_ids.push(order_id);
    }
    let others_order = platform.place_order(&other, product_id, 1).await?;
    wait_for_notification(platform, &other, id_of(&others_order)?, "order.created").await?;

    let order_of = |list: Vec<Value>| {
        list.iter()
            .map(|n| n["order_id"].as_i64().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let newest_first: Vec<i64> = order_ids.iter().rev().copied().collect();
    let all = notifications(platform, &user, "").await?;
    assert!(all.iter().all(|n| n["user_id"] == user.id), "{all:?}");
    assert_eq!(order_of(all), newest_first);
    assert_eq!(
        order_of(notifications(platform, &user, "?limit=2").await?),
        newest_first[..2]
    );
    assert_eq!(
        order_of(notifications(platform, &user, "?skip=1&limit=1").await?),
        newest_first[1..2]
    );
    assert_eq!(
        order_of(notifications(platform, &user, "?skip=2&limit=100").await?),
        newest_first[2..]
    );
    assert!(notifications(platform, &user, "?skip=3").await?.is_empty());
    assert_eq!(
        order_of(notifications(platform, &other, "").await?),
        vec![id_of(&others_order)?]
    );
    Ok(())
}

// ---- Events --------------------------------------------------------------------------

/// Reads `consumer` until the `event` about `order_id` arrives (skipping everything else
/// other tests publish), failing after the delivery timeout.
async fn next_event(
    consumer: &mut lapin::Consumer,
    event: &str,
    order_id: i64,
) -> anyhow::Result<(lapin::message::Delivery, Value)> {
    let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let delivery = tokio::time::timeout_at(deadline, consumer.next())
            .await
            .with_context(|| {
                format!("no {event} event for order {order_id} within {DELIVERY_TIMEOUT:?}")
            })?
            .context("the consumer was cancelled")??;
        let Ok(body) = serde_json::from_slice::<Value>(&delivery.data) else {
            continue;
        };
        if body["event"] == event && body["data"]["order_id"] == order_id {
            return Ok((delivery, body));
        }
    }
}

/// Checks the broker message of `event` about `order` placed by `user`.
fn check_event_message(
    platform: &Platform,
    delivery: &lapin::message::Delivery,
    body: &Value,
    event: &str,
    order: &Value,
    user: &TestUser,
) -> anyhow::Result<()> {
    assert_eq!(
        delivery.exchange.as_str(),
        platform.exchange(),
        "{event}: published to the exchange"
    );
    assert_eq!(
        delivery.routing_key.as_str(),
        event,
        "{event}: the routing key is the event name"
    );
    assert_eq!(
        *delivery.properties.delivery_mode(),
        Some(2),
        "{event}: persistent"
    );
    assert_eq!(
        delivery
            .properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str()),
        Some("application/json"),
        "{event}: content type"
    );
    for field in ["event", "event_id", "occurred_at", "data"] {
        assert!(body.get(field).is_some(), "{event}: `{field}` in {body}");
    }
    assert_eq!(body["event"], event);
    let event_id = body["event_id"].as_str().context("event_id is a string")?;
    uuid::Uuid::parse_str(event_id)
        .with_context(|| format!("{event}: event_id `{event_id}` is a UUID"))?;
    assert_utc_timestamp(&body["occurred_at"], "occurred_at");

    let data = &body["data"];
    assert!(data.is_object(), "{event}: data is an object: {body}");
    for field in [
        "order_id",
        "user_id",
        "username",
        "product_id",
        "product_name",
        "quantity",
        "unit_price",
        "total_price",
        "status",
        "created_at",
    ] {
        assert!(
            data.get(field).is_some(),
            "{event}: `data.{field}` in {body}"
        );
    }
    assert_eq!(data["order_id"], order["id"]);
    assert_eq!(data["user_id"], user.id);
    assert_eq!(data["username"], user.username.as_str());
    assert_eq!(data["product_id"], order["product_id"]);
    assert_eq!(data["product_name"], order["product_name"]);
    assert_eq!(data["quantity"], order["quantity"]);
    assert_eq!(data["status"], order["status"]);
    assert!(
        data["unit_price"].is_number() && data["total_price"].is_number(),
        "{event}: prices are numbers: {body}"
    );
    assert_eq!(
        data["unit_price"].to_string(),
        order["unit_price"].to_string(),
        "{event}: {body}"
    );
    assert_eq!(
        data["total_price"].to_string(),
        order["total_price"].to_string(),
        "{event}: {body}"
    );
    assert_eq!(
        assert_utc_timestamp(&data["created_at"], "data.created_at"),
        assert_utc_timestamp(&order["created_at"], "order created_at"),
        "{event}: data.created_at is the order's"
    );
    Ok(())
}

async fn order_created_and_cancelled_events_have_the_contract_shape(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let connection = amqp_connection().await?;
    let channel = connection.create_channel().await?;
    let queue = channel
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.name().as_str(),
            &platform.exchange(),
            "order.*",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.name().as_str(),
            &unique("event_shape"),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;

    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "0.10", 10).await?;
    let order = platform.place_order(&user, id_of(&product)?, 3).await?;
    let order_id = id_of(&order)?;
    let (delivery, created) = next_event(&mut consumer, "order.created", order_id).await?;
    check_event_message(
        platform,
        &delivery,
        &created,
        "order.created",
        &order,
        &user,
    )?;
    assert_eq!(created["data"]["status"], "pending");
    assert_eq!(created["data"]["unit_price"].to_string(), "0.1");
    assert_eq!(
        created["data"]["total_price"].to_string(),
        "0.3",
        "exact: {created}"
    );

    let cancelled_order = cancel_order(platform, &user, order_id).await?;
    let (delivery, cancelled) = next_event(&mut consumer, "order.cancelled", order_id).await?;
    check_event_message(
        platform,
        &delivery,
        &cancelled,
        "order.cancelled",
        &cancelled_order,
        &user,
    )?;
    assert_eq!(cancelled["data"]["status"], "cancelled");
    assert_ne!(
        cancelled["event_id"], created["event_id"],
        "every event has its own id"
    );

    let _ = channel.close(200, "done").await;
    let _ = connection.close(200, "done").await;
    Ok(())
}

async fn a_redelivered_event_makes_no_second_notification(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let order_id = synthetic_order_id();
    let event_id = uuid::Uuid::new_v4().to_string();
    let product_name = unique("redelivered");
    let body = serde_json::to_vec(&created_event(&event_id, order_id, &user, &product_name))?;
    // Published after the two copies: once its notification is there, the copies before it
    // have been delivered too.
    let sentinel_order_id = synthetic_order_id();
    let sentinel = created_event(
        &uuid::Uuid::new_v4().to_string(),
        sentinel_order_id,
        &user,
        "sentinel",
    );

    let acks_before = consumed(platform, "ack").await?;
    let sentinel = serde_json::to_vec(&sentinel)?;
    platform
        .publish(&[
            ("order.created", &body),
            ("order.created", &body),
            ("order.created", &sentinel),
        ])
        .await?;

    eventually(
        "three more acknowledged deliveries",
        DELIVERY_TIMEOUT,
        || async move { Ok((consumed(platform, "ack").await? >= acks_before + 3.0).then_some(())) },
    )
    .await?;
    wait_for_notification(platform, &user, sentinel_order_id, "order.created").await?;
    let notification = wait_for_notification(platform, &user, order_id, "order.created").await?;

    let mine = notifications_for(platform, &user, order_id).await?;
    assert_eq!(
        mine.len(),
        1,
        "the same event_id twice makes one notification: {mine:?}"
    );
    assert_eq!(notification["user_id"], user.id);
    let message = notification["message"].as_str().context("message")?;
    assert!(message.contains(&order_id.to_string()), "{message}");
    assert!(message.contains(&product_name), "{message}");
    assert!(
        message.contains("2.5"),
        "message names the total 2.50: {message}"
    );
    assert_eq!(
        notifications(platform, &user, "").await?.len(),
        2,
        "the event and the sentinel, nothing else"
    );
    Ok(())
}

async fn a_non_json_message_is_dead_lettered_at_once_and_consuming_goes_on(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let body = format!("not json {}", uuid::Uuid::new_v4());
    let dead_letters_before = consumed(platform, "dead_letter").await?;
    platform
        .publish(&[("order.created", body.as_bytes())])
        .await?;

    let dead_letter = take_dead_letter(platform, body.as_bytes()).await?;
    let reason = dead_letter.reason.unwrap_or_default();
    assert!(
        reason.starts_with("not JSON: "),
        "kept with why it was dead-lettered: {reason}"
    );
    assert_eq!(
        dead_letter.retries, None,
        "a message that is not JSON is not retried"
    );
    // Counted once the dead-letter queue has it, so a moment after it can be taken there.
    eventually(
        "the dead letter to be counted",
        Duration::from_secs(10),
        || async {
            let counted = consumed(platform, "dead_letter").await?;
            Ok((counted >= dead_letters_before + 1.0).then_some(()))
        },
    )
    .await?;

    // The consumer is still working.
    let user = platform.new_user().await?;
    let product = platform.new_product(&user, "3.00", 5).await?;
    let order = platform.place_order(&user, id_of(&product)?, 1).await?;
    wait_for_notification(platform, &user, id_of(&order)?, "order.created").await?;
    Ok(())
}

async fn an_event_that_can_never_be_handled_ends_in_the_dead_letter_queue(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let event_id = uuid::Uuid::new_v4().to_string();
    // Valid JSON, but without the order and user it is about: no delivery can ever succeed.
    let missing_fields =
        serde_json::to_vec(&json!({ "event": "order.created", "event_id": event_id, "data": {} }))?;
    // An event this service does not know, about this test's user.
    let unknown_order_id = synthetic_order_id();
    let mut unknown = created_event(
        &uuid::Uuid::new_v4().to_string(),
        unknown_order_id,
        &user,
        "unknown",
    );
    unknown["event"] = json!("order.exploded");
    let unknown = serde_json::to_vec(&unknown)?;

    platform
        .publish(&[
            ("order.created", &missing_fields),
            ("order.created", &unknown),
        ])
        .await?;

    let max_retry_attempts = platform.config["services"]["notification"]["subscriptions"][0]
        ["max_retry_attempts"]
        .as_integer()
        .unwrap_or(3);
    for (what, body) in [
        ("missing fields", &missing_fields),
        ("unknown event", &unknown),
    ] {
        let dead_letter = take_dead_letter(platform, body)
            .await
            .with_context(|| what.to_string())?;
        let reason = dead_letter.reason.clone().unwrap_or_default();
        assert!(
            reason.contains(if what == "missing fields" {
                "data"
            } else {
                "order.exploded"
            }),
            "{what}: kept with why it was dead-lettered: {reason}"
        );
        // Either dead-lettered at once, or after exactly MAX_RETRY_ATTEMPTS deliveries.
        let retries = dead_letter.retries;
        assert!(
            retries.is_none() || retries == Some((max_retry_attempts - 1).to_string()),
            "{what}: dead-lettered after x-retry-count {retries:?} (max attempts {max_retry_attempts})"
        );
    }
    let mine = notifications_for(platform, &user, unknown_order_id).await?;
    assert!(
        mine.is_empty(),
        "an unknown event records nothing: {mine:?}"
    );
    Ok(())
}

/// Events the embedded broker confirmed and had not delivered yet when the host was killed
/// (SIGKILL: nothing settles) are all delivered after the restart, each making exactly one
/// notification: the broker loses nothing, and a redelivery makes no second one.
async fn published_events_survive_a_crash_of_the_embedded_broker(
    _shared: &'static Platform,
) -> anyhow::Result<()> {
    use futures::stream::{self, TryStreamExt};
    let platform = Platform::start_shop(Backends::Embedded).await?;
    let result = async {
        let user = platform.new_user().await?;
        let mut order_ids = Vec::new();
        // Publish until the crash catches events still in the queue (the first round
        // almost always does: the consumer handles them one fsync'd write at a time).
        for round in 1..=3 {
            let events: Vec<(i64, String)> = (0..30)
                .map(|_| {
                    let order_id = synthetic_order_id();
                    let event =
                        created_event(&uuid::Uuid::new_v4().to_string(), order_id, &user, "crash");
                    (order_id, event.to_string())
                })
                .collect();
            stream::iter(events.iter().map(Ok::<_, anyhow::Error>))
                .try_for_each_concurrent(8, |(_, event)| {
                    platform.admin_publish("order.created", event, &[])
                })
                .await?;
            order_ids.extend(events.iter().map(|(id, _)| *id));
            platform.crash().await;
            let pending = platform.embedded_unacknowledged().await?;
            platform.restart().await?;
            if pending > 0 {
                ensure!(
                    platform
                        .log()
                        .contains("messages from before the restart will be delivered"),
                    "the restarted broker did not load the {pending} pending messages"
                );
                break;
            }
            ensure!(
                round < 3,
                "every event was handled before the crash, three times over"
            );
        }
        let expected = order_ids.len();
        let listed = eventually(
            "a notification for every confirmed event",
            DELIVERY_TIMEOUT,
            || async {
                let listed = notifications(&platform, &user, "?limit=100").await?;
                Ok((listed.len() >= expected).then_some(listed))
            },
        )
        .await?;
        let mut notified: Vec<i64> = listed
            .iter()
            .map(|n| n["order_id"].as_i64().context("order_id"))
            .collect::<anyhow::Result<_>>()?;
        notified.sort_unstable();
        order_ids.sort_unstable();
        assert_eq!(notified, order_ids, "each event exactly once");
        // A notification is visible a moment before its message's ack is on disk.
        eventually("every message acknowledged", DELIVERY_TIMEOUT, || async {
            Ok((platform.embedded_unacknowledged().await? == 0).then_some(()))
        })
        .await?;
        Ok(())
    }
    .await;
    platform.stop().await;
    result
}

/// `platform publish` puts a message into the exchange through the host's broker (here the
/// event a notification is made of); an exchange the configuration does not declare is a
/// usage error (exit code 2, like an unknown service) that names it.
async fn platform_publish_injects_an_event_and_names_an_unknown_exchange(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let order_id = synthetic_order_id();
    let event_id = uuid::Uuid::new_v4().to_string();
    let event = created_event(&event_id, order_id, &user, "published by hand");
    let published = platform
        .cli(&[
            "publish",
            &platform.exchange(),
            "order.created",
            &event.to_string(),
            "--header",
            &format!("event_id={event_id}"),
            "--json",
        ])
        .await?;
    ensure!(published.code == 0, "platform publish: {published:?}");
    assert_eq!(published.json()?["routing_key"], "order.created");
    wait_for_notification(platform, &user, order_id, "order.created").await?;

    let refused = platform
        .cli(&["publish", "no_such_exchange", "order.created", "{}"])
        .await?;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("no exchange `no_such_exchange`"),
        "{refused:?}"
    );

    // A message no queue is bound for is refused by the broker (RabbitMQ returns it as a
    // mandatory message; the embedded broker the same), never confirmed and lost.
    let unroutable = platform
        .cli(&["publish", &platform.exchange(), "nobody.listens", "{}"])
        .await?;
    assert_eq!(unroutable.code, 4, "{unroutable:?}");
    assert!(
        unroutable.stderr.contains("no queue is bound"),
        "{unroutable:?}"
    );
    // Headers starting with x- are the broker's bookkeeping: nobody forges a retry count.
    let forged = platform
        .cli(&[
            "publish",
            &platform.exchange(),
            "order.created",
            "{}",
            "--header",
            "x-retry-count=9",
        ])
        .await?;
    assert_ne!(forged.code, 0, "{forged:?}");
    assert!(forged.stderr.contains("x-retry-count"), "{forged:?}");
    Ok(())
}
