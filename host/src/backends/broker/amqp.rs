//! RabbitMQ through lapin: confirmed, persistent publishing on one lazily opened channel,
//! and one connection per consumed subscription.
//!
//! Retries and dead letters travel as a republished copy, confirmed before the original
//! is acknowledged, so a message is never lost between the two (a crash between them can
//! repeat it): a retry's copy carries `x-retry-count` (the broker's own redelivery counter
//! does not survive a requeue), a dead letter's `x-dead-letter-reason`. A subscription's
//! queue is also declared durable with `x-dead-letter-routing-key` = its dead-letter queue:
//! should a dead letter's copy not be confirmed, the rejected original moves there
//! atomically, without its reason.

use super::{
    Broker, ConsumeError, Consumer, DeadLetter, Delivery, Message, PublishError, Settle, Settler,
    DEAD_LETTER_BATCH,
};
use crate::config::{ExchangeConfig, ExchangeKindConfig, SubscriptionConfig};
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const RETRY_HEADER: &str = "x-retry-count";
/// When a delivery of the message first failed, in milliseconds since the Unix epoch.
const FIRST_FAILED_HEADER: &str = "x-first-failed-at";
const ORIGINAL_EXCHANGE_HEADER: &str = "x-original-exchange";
const ORIGINAL_ROUTING_KEY_HEADER: &str = "x-original-routing-key";
/// Why the platform dead-lettered the message.
const DEAD_LETTER_REASON_HEADER: &str = "x-dead-letter-reason";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// RabbitMQ with the exchanges of `platform.toml`.
pub struct AmqpBroker {
    url: String,
    exchanges: Vec<ExchangeConfig>,
    /// The publishing connection and confirm-mode channel: read without a lock; reopened
    /// after the broker went away by one publish at a time (the others fail fast).
    publishing: ArcSwapOption<(Connection, Channel)>,
    reconnecting: Mutex<()>,
    /// Milliseconds since `started` of the last failed reconnect: for a second after it,
    /// publishes fail at once instead of each paying a connection timeout.
    last_failure_ms: AtomicU64,
    started: Instant,
}

/// How long publishes fail fast after a failed reconnect.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

impl AmqpBroker {
    pub fn new(url: &str, exchanges: Vec<ExchangeConfig>) -> AmqpBroker {
        AmqpBroker {
            url: url.to_string(),
            exchanges,
            publishing: ArcSwapOption::empty(),
            reconnecting: Mutex::new(()),
            last_failure_ms: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// A new connection and confirm-mode channel with the exchanges declared.
    async fn open_channel(&self) -> Result<(Connection, Channel), String> {
        let properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        let connection =
            match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.url, properties))
                .await
            {
                Ok(Ok(connection)) => connection,
                Ok(Err(error)) => return Err(error.to_string()),
                Err(_) => return Err("connection to the broker timed out".into()),
            };
        let channel = connection
            .create_channel()
            .await
            .map_err(|error| error.to_string())?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|error| error.to_string())?;
        declare_exchanges(&channel, &self.exchanges)
            .await
            .map_err(|error| format!("declaring the exchanges: {error}"))?;
        Ok((connection, channel))
    }

    /// The open publishing channel, or a new one. While the broker is down, a publish waits
    /// for no other: one reconnects, the others (and everyone for a second after a failed
    /// attempt) are told at once that the broker is unavailable, so a caller's database
    /// transaction never waits out a reconnect.
    async fn publishing_channel(&self) -> Result<Channel, PublishError> {
        if let Some(open) = self.publishing.load_full() {
            let (connection, channel) = &*open;
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        let unavailable = || PublishError::Unavailable("the broker is unreachable".into());
        let now = self.started.elapsed().as_millis() as u64;
        let failed = self.last_failure_ms.load(Ordering::Relaxed);
        if failed != 0 && now.saturating_sub(failed) < RECONNECT_PAUSE.as_millis() as u64 {
            return Err(unavailable());
        }
        let Ok(_reconnecting) = self.reconnecting.try_lock() else {
            return Err(unavailable());
        };
        match self.open_channel().await {
            Ok((connection, channel)) => {
                self.publishing
                    .store(Some(Arc::new((connection, channel.clone()))));
                Ok(channel)
            }
            Err(cause) => {
                self.last_failure_ms.store(now.max(1), Ordering::Relaxed);
                Err(PublishError::Unavailable(cause))
            }
        }
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    async fn publish(&self, message: Message) -> Result<(), PublishError> {
        let channel = self.publishing_channel().await?;
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(field_table(&message.headers));
        if let Some(content_type) = &message.content_type {
            properties = properties.with_content_type(ShortString::from(content_type.clone()));
        }
        let publish = async {
            let confirm = channel
                .basic_publish(
                    &message.exchange,
                    &message.routing_key,
                    // An unroutable message comes back instead of vanishing.
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.payload,
                    properties,
                )
                .await?;
            confirm.await
        };
        match tokio::time::timeout(CONFIRM_TIMEOUT, publish).await {
            Ok(Ok(Confirmation::Ack(Some(returned)))) => Err(PublishError::Rejected(format!(
                "no queue is bound to `{}` for routing key `{}` ({})",
                message.exchange, message.routing_key, returned.reply_text
            ))),
            Ok(Ok(Confirmation::Ack(None))) | Ok(Ok(Confirmation::NotRequested)) => Ok(()),
            Ok(Ok(Confirmation::Nack(_))) => Err(PublishError::Rejected(
                "the broker did not confirm the message".into(),
            )),
            Ok(Err(lapin::Error::ProtocolError(error))) => {
                Err(PublishError::Rejected(error.to_string()))
            }
            Ok(Err(error)) => {
                self.publishing.store(None);
                Err(PublishError::Unavailable(error.to_string()))
            }
            Err(_) => {
                self.publishing.store(None);
                Err(PublishError::Unavailable(
                    "the broker did not confirm in time".into(),
                ))
            }
        }
    }

    async fn consume(
        &self,
        subscription: &SubscriptionConfig,
    ) -> Result<Box<dyn Consumer>, ConsumeError> {
        let (connection, channel) = self.open_channel().await.map_err(ConsumeError)?;
        declare_queues(&channel, subscription)
            .await
            .map_err(|error| {
                ConsumeError(format!("declaring queue `{}`: {error}", subscription.queue))
            })?;
        channel
            .basic_qos(subscription.prefetch, BasicQosOptions::default())
            .await
            .map_err(|error| ConsumeError(error.to_string()))?;
        let deliveries = channel
            .basic_consume(
                &subscription.queue,
                &format!("platform-{}-{}", subscription.queue, uuid::Uuid::new_v4()),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|error| ConsumeError(error.to_string()))?;
        Ok(Box::new(AmqpConsumer {
            connection,
            channel,
            deliveries,
            queue: subscription.queue.clone(),
            dead_letter_queue: subscription.dead_letter_queue.clone(),
        }))
    }

    async fn dead_letters(
        &self,
        subscription: &SubscriptionConfig,
    ) -> Result<Vec<DeadLetter>, ConsumeError> {
        let (connection, channel) = self.open_channel().await.map_err(ConsumeError)?;
        let taken = take_dead_letters(&channel, subscription).await;
        let listed = match &taken {
            Ok(taken) => Ok(taken.iter().map(|(_, dead)| dead.clone()).collect()),
            Err(error) => Err(ConsumeError(error.to_string())),
        };
        // Every one goes back where it was: a listing changes nothing.
        let _ = channel
            .basic_recover(lapin::options::BasicRecoverOptions { requeue: true })
            .await;
        let _ = connection.close(200, "listed").await;
        listed
    }

    async fn replay(
        &self,
        subscription: &SubscriptionConfig,
        id: Option<&str>,
    ) -> Result<usize, ConsumeError> {
        let (connection, channel) = self.open_channel().await.map_err(ConsumeError)?;
        let failed = |error: lapin::Error| ConsumeError(error.to_string());
        let taken = take_dead_letters(&channel, subscription)
            .await
            .map_err(failed)?;
        let mut replayed = 0;
        for (delivery, dead) in &taken {
            if id.is_some_and(|id| id != dead.id) {
                continue;
            }
            // Back through its original exchange, with the application's headers only: a
            // fresh start, retry count included.
            let mut properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(field_table(&dead.message.headers));
            if let Some(content_type) = &dead.message.content_type {
                properties = properties.with_content_type(ShortString::from(content_type.clone()));
            }
            let confirmation = channel
                .basic_publish(
                    &dead.message.exchange,
                    &dead.message.routing_key,
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &dead.message.payload,
                    properties,
                )
                .await
                .map_err(failed)?
                .await
                .map_err(failed)?;
            if !matches!(confirmation, Confirmation::Ack(None)) {
                return Err(ConsumeError(format!(
                    "the broker did not take dead letter {} back",
                    dead.id
                )));
            }
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(failed)?;
            replayed += 1;
        }
        // The ones not replayed go back where they were.
        let _ = channel
            .basic_recover(lapin::options::BasicRecoverOptions { requeue: true })
            .await;
        let _ = connection.close(200, "replayed").await;
        Ok(replayed)
    }
}

/// Takes (unacknowledged) the oldest dead letters of `subscription`, each with what it was
/// first published as.
async fn take_dead_letters(
    channel: &Channel,
    subscription: &SubscriptionConfig,
) -> Result<Vec<(lapin::message::Delivery, DeadLetter)>, lapin::Error> {
    let mut taken = Vec::new();
    while taken.len() < DEAD_LETTER_BATCH {
        let Some(message) = channel
            .basic_get(
                &subscription.dead_letter_queue,
                BasicGetOptions { no_ack: false },
            )
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let mut headers = string_headers(delivery.properties.headers());
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let retries = header(RETRY_HEADER)
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        let (death_exchange, death_key) = first_death(delivery.properties.headers());
        let exchange = header(ORIGINAL_EXCHANGE_HEADER)
            .or(death_exchange)
            .unwrap_or_else(|| subscription.exchange.clone());
        let routing_key = header(ORIGINAL_ROUTING_KEY_HEADER)
            .or(death_key)
            .unwrap_or_default();
        let reason = header(DEAD_LETTER_REASON_HEADER);
        let id = header("event_id")
            .or_else(|| {
                delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.to_string())
            })
            .unwrap_or_else(|| format!("position-{}", taken.len() + 1));
        headers.retain(|(name, _)| !name.starts_with("x-"));
        let dead = DeadLetter {
            id,
            message: Message {
                exchange,
                routing_key,
                payload: delivery.data.clone(),
                content_type: delivery
                    .properties
                    .content_type()
                    .as_ref()
                    .map(|content_type| content_type.to_string()),
                headers,
            },
            retries,
            reason,
        };
        taken.push((delivery, dead));
    }
    Ok(taken)
}

/// The exchange and routing key RabbitMQ recorded in `x-death` when it first dead-lettered
/// the message (its first publish, when it was never retried).
fn first_death(headers: &Option<FieldTable>) -> (Option<String>, Option<String>) {
    let text = |value: &AMQPValue| match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        _ => None,
    };
    let Some(AMQPValue::FieldArray(deaths)) = headers
        .as_ref()
        .and_then(|headers| headers.inner().get("x-death"))
    else {
        return (None, None);
    };
    let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().last() else {
        return (None, None);
    };
    let exchange = death.inner().get("exchange").and_then(text);
    let routing_key = match death.inner().get("routing-keys") {
        Some(AMQPValue::FieldArray(keys)) => keys.as_slice().first().and_then(text),
        _ => None,
    };
    (exchange, routing_key)
}

/// Declares the exchanges of `platform.toml` (durable) on `channel`.
async fn declare_exchanges(
    channel: &Channel,
    exchanges: &[ExchangeConfig],
) -> Result<(), lapin::Error> {
    for exchange in exchanges {
        let kind = match exchange.kind {
            ExchangeKindConfig::Topic => ExchangeKind::Topic,
            ExchangeKindConfig::Direct => ExchangeKind::Direct,
            ExchangeKindConfig::Fanout => ExchangeKind::Fanout,
            ExchangeKindConfig::Headers => ExchangeKind::Headers,
        };
        channel
            .exchange_declare(
                &exchange.name,
                kind,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Where a subscription's retries wait: each copy expires after its own delay and
/// dead-letters back into the work queue. (RabbitMQ expires messages at the head of a
/// queue, so a copy may wait behind a longer one: never less than its delay.)
fn delay_queue(queue: &str) -> String {
    format!("{queue}.retry")
}

/// Queue arguments that send what the queue rejects or expires into `queue` (through the
/// default exchange).
fn dead_letters_into(queue: &str) -> FieldTable {
    field_table(&[
        ("x-dead-letter-exchange".to_string(), String::new()),
        ("x-dead-letter-routing-key".to_string(), queue.to_string()),
    ])
}

/// The subscription's queue, bound by its routing keys, its dead-letter queue and the
/// delay queue its retries wait in.
async fn declare_queues(
    channel: &Channel,
    subscription: &SubscriptionConfig,
) -> Result<(), lapin::Error> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(
            &subscription.dead_letter_queue,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            &subscription.queue,
            durable,
            dead_letters_into(&subscription.dead_letter_queue),
        )
        .await?;
    channel
        .queue_declare(
            &delay_queue(&subscription.queue),
            durable,
            dead_letters_into(&subscription.queue),
        )
        .await?;
    for key in &subscription.routing_keys {
        channel
            .queue_bind(
                &subscription.queue,
                &subscription.exchange,
                key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

struct AmqpConsumer {
    connection: Connection,
    channel: Channel,
    deliveries: lapin::Consumer,
    queue: String,
    dead_letter_queue: String,
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            match self.deliveries.next().await? {
                Ok(delivery) => return Some(self.delivery(delivery)),
                Err(error) => {
                    tracing::warn!(queue = %self.queue, %error, "delivery error");
                    if !self.connection.status().connected() {
                        return None;
                    }
                }
            }
        }
    }

    async fn close(self: Box<Self>) {
        let _ = self.connection.close(200, "shutting down").await;
    }
}

impl AmqpConsumer {
    fn delivery(&self, delivery: lapin::message::Delivery) -> Delivery {
        let mut headers = string_headers(delivery.properties.headers());
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let retries: u32 = header(RETRY_HEADER)
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        let first_failed_at = header(FIRST_FAILED_HEADER)
            .and_then(|value| value.parse().ok())
            .and_then(super::from_epoch_millis);
        let exchange =
            header(ORIGINAL_EXCHANGE_HEADER).unwrap_or_else(|| delivery.exchange.to_string());
        let routing_key =
            header(ORIGINAL_ROUTING_KEY_HEADER).unwrap_or_else(|| delivery.routing_key.to_string());
        let broker_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_else(|| format!("delivery-{}", delivery.delivery_tag));
        // The broker's own bookkeeping headers are not the application's.
        headers.retain(|(name, _)| !name.starts_with("x-"));
        let message = Message {
            exchange,
            routing_key,
            payload: delivery.data.clone(),
            content_type: delivery
                .properties
                .content_type()
                .as_ref()
                .map(|content_type| content_type.to_string()),
            headers,
        };
        Delivery {
            message,
            retries,
            first_failed_at,
            broker_id,
            settler: Box::new(AmqpSettler {
                channel: self.channel.clone(),
                queue: self.queue.clone(),
                dead_letter_queue: self.dead_letter_queue.clone(),
                delivery,
            }),
        }
    }
}

struct AmqpSettler {
    channel: Channel,
    queue: String,
    dead_letter_queue: String,
    delivery: lapin::message::Delivery,
}

#[async_trait]
impl Settler for AmqpSettler {
    async fn settle(
        self: Box<Self>,
        settle: Settle,
        message: Message,
        failures: super::Failures,
    ) -> Result<(), ConsumeError> {
        let acker = &self.delivery.acker;
        let settled = match settle {
            Settle::Ack => acker.ack(BasicAckOptions::default()).await,
            Settle::Retry { delay, counted } => {
                let properties = self
                    .copy_properties(&message, Some(failures.after_retry(counted)), None)
                    .with_expiration(ShortString::from(delay.as_millis().max(1).to_string()));
                match self
                    .publish_copy(&delay_queue(&self.queue), properties)
                    .await
                {
                    Ok(()) => acker.ack(BasicAckOptions::default()).await,
                    Err(error) => {
                        tracing::warn!(queue = %self.queue, %error, "retry copy not confirmed; requeueing the original");
                        acker
                            .nack(BasicNackOptions {
                                requeue: true,
                                multiple: false,
                            })
                            .await
                    }
                }
            }
            // A copy that carries the reason; should the broker not confirm it, the
            // queue's own dead-letter routing moves the original there, without one.
            Settle::DeadLetter { reason } => {
                // Its counts stay the ones the delivery arrived with.
                let properties = self.copy_properties(&message, None, Some(&reason));
                match self.publish_copy(&self.dead_letter_queue, properties).await {
                    Ok(()) => acker.ack(BasicAckOptions::default()).await,
                    Err(error) => {
                        tracing::warn!(queue = %self.queue, %error, "dead-letter copy not confirmed; dead-lettering the original without its reason");
                        acker.reject(BasicRejectOptions { requeue: false }).await
                    }
                }
            }
        };
        settled.map_err(|error| ConsumeError(error.to_string()))
    }
}

impl AmqpSettler {
    /// The delivery's properties for a copy of it, with its original exchange and routing
    /// key (a copy published to the default exchange loses them), a retry's new counts, and
    /// the reason it is dead-lettered, if it is.
    fn copy_properties(
        &self,
        message: &Message,
        retry: Option<(u32, std::time::SystemTime)>,
        dead_letter_reason: Option<&str>,
    ) -> BasicProperties {
        let mut headers = self
            .delivery
            .properties
            .headers()
            .clone()
            .unwrap_or_default();
        let mut set = |name: &str, value: &str| {
            headers.insert(
                ShortString::from(name),
                AMQPValue::LongString(LongString::from(value)),
            )
        };
        if let Some((retries, first_failed_at)) = retry {
            set(RETRY_HEADER, &retries.to_string());
            set(
                FIRST_FAILED_HEADER,
                &super::epoch_millis(first_failed_at).to_string(),
            );
        }
        set(ORIGINAL_EXCHANGE_HEADER, &message.exchange);
        set(ORIGINAL_ROUTING_KEY_HEADER, &message.routing_key);
        if let Some(reason) = dead_letter_reason {
            set(DEAD_LETTER_REASON_HEADER, super::bounded_reason(reason));
        }
        self.delivery
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2)
    }

    /// Publishes a copy of the delivery straight into `queue` and waits for the broker's
    /// confirmation. A retry's copy goes to the delay queue: it expires there and
    /// dead-letters back into the work queue.
    async fn publish_copy(
        &self,
        queue: &str,
        properties: BasicProperties,
    ) -> Result<(), lapin::Error> {
        let confirmation = self
            .channel
            .basic_publish(
                "",
                queue,
                BasicPublishOptions::default(),
                &self.delivery.data,
                properties,
            )
            .await?
            .await?;
        match confirmation {
            Confirmation::Nack(_) => Err(lapin::Error::InvalidChannelState(
                lapin::ChannelState::Error,
            )),
            _ => Ok(()),
        }
    }
}

/// Turns string headers into an AMQP field table.
fn field_table(headers: &[(String, String)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in headers {
        table.insert(
            ShortString::from(name.clone()),
            AMQPValue::LongString(LongString::from(value.clone())),
        );
    }
    table
}

/// The headers whose values are text or numbers, as strings.
fn string_headers(headers: &Option<FieldTable>) -> Vec<(String, String)> {
    let Some(headers) = headers else {
        return Vec::new();
    };
    headers
        .inner()
        .iter()
        .filter_map(|(name, value)| {
            let text = match value {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.to_string(),
                AMQPValue::LongInt(n) => n.to_string(),
                AMQPValue::LongLongInt(n) => n.to_string(),
                AMQPValue::ShortInt(n) => n.to_string(),
                AMQPValue::LongUInt(n) => n.to_string(),
                AMQPValue::Boolean(b) => b.to_string(),
                _ => return None,
            };
            Some((name.to_string(), text))
        })
        .collect()
}
