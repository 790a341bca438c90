//! A subscription on RabbitMQ: declares the queue, its bindings and its dead-letter queue,
//! then feeds each delivery to the service ([`super::deliver`]) and acknowledges, retries
//! or dead-letters it by the handler's answer.
//!
//! Retries travel as a republished copy carrying `x-retry-count` (the broker's own
//! redelivery counter does not survive a requeue), confirmed before the original is
//! acknowledged, so a message is never lost between the two. Dead-lettering is the
//! broker's: the queue is declared with `x-dead-letter-routing-key` = the DLQ, and a
//! rejected message moves there atomically.

use crate::bindings::messaging_types::{Delivery as GuestDelivery, Message};
use crate::capabilities::messaging::amqp::{connect, declare_exchanges};
use crate::config::{ExchangeConfig, SubscriptionConfig};
use crate::ingress::metrics::{MessageOutcome, ServiceMetrics};
use crate::runtime::DeployedService;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const RETRY_HEADER: &str = "x-retry-count";
const ORIGINAL_EXCHANGE_HEADER: &str = "x-original-exchange";
const ORIGINAL_ROUTING_KEY_HEADER: &str = "x-original-routing-key";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(10);

/// Consumes `subscription` for `service` until `shutdown`, reconnecting whenever the
/// broker goes away.
pub async fn consume(
    service: Arc<DeployedService>,
    metrics: Arc<ServiceMetrics>,
    subscription: SubscriptionConfig,
    url: String,
    exchanges: Vec<ExchangeConfig>,
    shutdown: CancellationToken,
) {
    let mut pause = Duration::from_millis(500);
    loop {
        let outcome = tokio::select! {
            outcome = consume_once(&service, &metrics, &subscription, &url, &exchanges, &shutdown) => outcome,
            _ = shutdown.cancelled() => Ok(()),
        };
        service.broker_connected.store(false, Ordering::Relaxed);
        match outcome {
            Ok(()) if shutdown.is_cancelled() => return,
            Ok(()) => {
                tracing::warn!(service = %service.name, queue = %subscription.queue, "consumer stopped by the broker; reconnecting")
            }
            Err(error) => {
                tracing::warn!(service = %service.name, queue = %subscription.queue, %error, "broker unavailable; reconnecting in {pause:?}")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return,
        }
        pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
    }
}

async fn consume_once(
    service: &Arc<DeployedService>,
    metrics: &ServiceMetrics,
    subscription: &SubscriptionConfig,
    url: &str,
    exchanges: &[ExchangeConfig],
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let connection = connect(url, CONNECT_TIMEOUT).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    declare_topology(&channel, subscription, exchanges)
        .await
        .map_err(|e| format!("declaring queue `{}`: {e}", subscription.queue))?;
    channel
        .basic_qos(subscription.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let consumer = channel
        .basic_consume(
            &subscription.queue,
            &format!("platform-{}-{}", service.name, uuid::Uuid::new_v4()),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    service.broker_connected.store(true, Ordering::Relaxed);
    tracing::info!(service = %service.name, queue = %subscription.queue, "consuming");

    // Deliveries run concurrently up to the prefetch window; on shutdown the stream stops
    // and the deliveries in progress finish before the connection closes.
    let deliveries = consumer.take_until(shutdown.cancelled());
    deliveries
        .for_each_concurrent(usize::from(subscription.prefetch), |delivery| {
            let channel = channel.clone();
            async move {
                match delivery {
                    Ok(delivery) => {
                        let outcome = process(service, subscription, &channel, delivery).await;
                        if let Some(outcome) = outcome {
                            metrics.observe_message(&subscription.queue, outcome);
                        }
                    }
                    Err(error) => tracing::warn!(service = %service.name, %error, "delivery error"),
                }
            }
        })
        .await;
    let _ = connection.close(200, "shutting down").await;
    if shutdown.is_cancelled() {
        Ok(())
    } else {
        Err("the consumer's connection was lost".into())
    }
}

async fn declare_topology(
    channel: &Channel,
    subscription: &SubscriptionConfig,
    exchanges: &[ExchangeConfig],
) -> Result<(), lapin::Error> {
    declare_exchanges(channel, exchanges).await?;
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
    let mut arguments = FieldTable::default();
    arguments.insert(
        ShortString::from("x-dead-letter-exchange"),
        AMQPValue::LongString(LongString::from("")),
    );
    arguments.insert(
        ShortString::from("x-dead-letter-routing-key"),
        AMQPValue::LongString(LongString::from(subscription.dead_letter_queue.clone())),
    );
    channel
        .queue_declare(&subscription.queue, durable, arguments)
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

/// Runs one delivery through the component and settles it; `None` if it could not be
/// settled (the broker redelivers it).
async fn process(
    service: &DeployedService,
    subscription: &SubscriptionConfig,
    channel: &Channel,
    delivery: Delivery,
) -> Option<MessageOutcome> {
    let headers = string_headers(delivery.properties.headers());
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let retries: u32 = header(RETRY_HEADER)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let attempt = retries + 1;
    let exchange =
        header(ORIGINAL_EXCHANGE_HEADER).unwrap_or_else(|| delivery.exchange.to_string());
    let routing_key =
        header(ORIGINAL_ROUTING_KEY_HEADER).unwrap_or_else(|| delivery.routing_key.to_string());
    let message_id = super::message_id(&headers, || {
        delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_else(|| format!("delivery-{}", delivery.delivery_tag))
    });

    let guest_delivery = GuestDelivery {
        queue: subscription.queue.clone(),
        message: Message {
            exchange: exchange.clone(),
            routing_key: routing_key.clone(),
            payload: delivery.data.clone(),
            content_type: delivery
                .properties
                .content_type()
                .as_ref()
                .map(|c| c.to_string()),
            headers: headers
                .iter()
                .filter(|(name, _)| !name.starts_with("x-"))
                .cloned()
                .collect(),
        },
        attempt,
    };
    let settled_as = super::deliver(service, subscription, &message_id, guest_delivery).await;
    let settled = match settled_as {
        MessageOutcome::Acked => delivery.acker.ack(BasicAckOptions::default()).await,
        MessageOutcome::Retried => {
            match republish(
                channel,
                subscription,
                &delivery,
                attempt,
                &exchange,
                &routing_key,
            )
            .await
            {
                Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
                Err(error) => {
                    tracing::warn!(service = %service.name, message_id, %error, "retry copy not confirmed; requeueing the original");
                    delivery
                        .acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            multiple: false,
                        })
                        .await
                }
            }
        }
        // The queue's dead-letter routing moves it to the DLQ atomically.
        MessageOutcome::DeadLettered => {
            delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await
        }
    };
    match settled {
        Ok(()) => Some(settled_as),
        Err(error) => {
            // The broker will redeliver it to the next consumer: nothing is lost.
            tracing::warn!(service = %service.name, message_id, %error, "could not settle a delivery");
            None
        }
    }
}

async fn republish(
    channel: &Channel,
    subscription: &SubscriptionConfig,
    delivery: &Delivery,
    attempt: u32,
    exchange: &str,
    routing_key: &str,
) -> Result<(), lapin::Error> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(
        ShortString::from(RETRY_HEADER),
        AMQPValue::LongString(LongString::from(attempt.to_string())),
    );
    headers.insert(
        ShortString::from(ORIGINAL_EXCHANGE_HEADER),
        AMQPValue::LongString(LongString::from(exchange)),
    );
    headers.insert(
        ShortString::from(ORIGINAL_ROUTING_KEY_HEADER),
        AMQPValue::LongString(LongString::from(routing_key)),
    );
    let properties: BasicProperties = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2);
    let confirmation = channel
        .basic_publish(
            "",
            &subscription.queue,
            BasicPublishOptions::default(),
            &delivery.data,
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
