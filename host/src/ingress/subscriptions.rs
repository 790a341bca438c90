//! One consumer per subscription, on whichever broker the platform runs: each delivery
//! runs through a fresh instance of the service's current version, and the handler's
//! answer becomes one [`Settle`] (ack, retry or dead-letter) that the broker carries out.
//! A lost connection is retried with a growing pause; on shutdown the deliveries in
//! progress finish and are settled first.

use super::metrics::MessageOutcome;
use super::ServiceEndpoint;
use crate::backends::broker::{Broker, Consumer, Delivery, Settle};
use crate::bindings::messaging_types::{Delivery as GuestDelivery, Message, Outcome};
use crate::config::SubscriptionConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const FIRST_RECONNECT_PAUSE: Duration = Duration::from_millis(500);
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(10);

/// Consumes `subscription` for the endpoint's service until `shutdown`.
pub async fn consume(
    endpoint: Arc<ServiceEndpoint>,
    subscription: SubscriptionConfig,
    broker: Arc<dyn Broker>,
    shutdown: CancellationToken,
) {
    let name = endpoint.service.name().to_string();
    let subscription = Arc::new(subscription);
    let mut pause = FIRST_RECONNECT_PAUSE;
    loop {
        let consumer = tokio::select! {
            consumer = broker.consume(&subscription) => consumer,
            _ = shutdown.cancelled() => return,
        };
        match consumer {
            Ok(consumer) => {
                tracing::info!(service = %name, queue = %subscription.queue, "consuming");
                pause = FIRST_RECONNECT_PAUSE;
                endpoint.consumers.connected();
                run(&endpoint, &subscription, consumer, &shutdown).await;
                endpoint.consumers.disconnected();
                if shutdown.is_cancelled() {
                    return;
                }
                tracing::warn!(service = %name, queue = %subscription.queue, "lost the broker; reconnecting");
            }
            Err(error) => {
                tracing::warn!(service = %name, queue = %subscription.queue, %error, "broker unavailable; reconnecting in {pause:?}")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return,
        }
        pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
    }
}

/// Takes deliveries, up to `prefetch` at once, until the connection is lost or `shutdown`.
async fn run(
    endpoint: &Arc<ServiceEndpoint>,
    subscription: &Arc<SubscriptionConfig>,
    mut consumer: Box<dyn Consumer>,
    shutdown: &CancellationToken,
) {
    let prefetch = Arc::new(Semaphore::new(usize::from(subscription.prefetch)));
    let in_progress = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            permit = prefetch.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
        let delivery = tokio::select! {
            delivery = consumer.next() => delivery,
            _ = shutdown.cancelled() => break,
        };
        let Some(delivery) = delivery else {
            break;
        };
        let (endpoint, subscription) = (endpoint.clone(), subscription.clone());
        in_progress.spawn(async move {
            if let Some(outcome) = process(&endpoint, &subscription, delivery).await {
                endpoint
                    .metrics
                    .observe_message(&subscription.queue, outcome);
            }
            drop(permit);
        });
    }
    in_progress.close();
    in_progress.wait().await;
    consumer.close().await;
}

/// Runs one delivery through the component and settles it; `None` if it could not be
/// settled (the broker keeps it and delivers it again).
async fn process(
    endpoint: &ServiceEndpoint,
    subscription: &SubscriptionConfig,
    delivery: Delivery,
) -> Option<MessageOutcome> {
    let service = &endpoint.service;
    let message_id = message_id(&delivery);
    let attempt = delivery.retries.saturating_add(1);
    let guest_delivery = GuestDelivery {
        queue: subscription.queue.clone(),
        message: Message {
            exchange: delivery.message.exchange.clone(),
            routing_key: delivery.message.routing_key.clone(),
            payload: delivery.message.payload.clone(),
            content_type: delivery.message.content_type.clone(),
            headers: delivery.message.headers.clone(),
        },
        attempt,
    };
    let version = service.current.load_full();
    let outcome = version
        .handle_message(&service.service, &message_id, guest_delivery)
        .await
        // A trap or a timeout counts as a request to retry.
        .unwrap_or_else(|error| Outcome::Retry(error.to_string()));
    let (settle, outcome) = match outcome {
        Outcome::Ack => (Settle::Ack, MessageOutcome::Acked),
        Outcome::Retry(reason) if attempt < subscription.max_retry_attempts => {
            // A growing pause, so a failing backend is not hammered; the message waits at
            // the broker, and this delivery slot takes the next message.
            let delay = subscription.retry_delay(delivery.retries);
            tracing::warn!(service = %service.name(), message_id, attempt, %reason, ?delay, "message failed; retrying");
            (Settle::Retry(delay), MessageOutcome::Retried)
        }
        Outcome::Retry(reason) | Outcome::DeadLetter(reason) => {
            tracing::error!(service = %service.name(), message_id, attempt, %reason, dead_letter_queue = %subscription.dead_letter_queue, "message dead-lettered");
            (Settle::DeadLetter, MessageOutcome::DeadLettered)
        }
    };
    match delivery.settle(settle).await {
        Ok(()) => Some(outcome),
        Err(error) => {
            tracing::warn!(service = %service.name(), message_id, %error, "could not settle a delivery; the broker keeps it");
            None
        }
    }
}

/// The id a handler's logs and idempotency use: the `event_id` header if the publisher
/// set one, else what the broker knows the message by.
fn message_id(delivery: &Delivery) -> String {
    delivery
        .message
        .headers
        .iter()
        .find(|(name, _)| name == "event_id")
        .map(|(_, value)| value.clone())
        .unwrap_or_else(|| delivery.broker_id.clone())
}
