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
use crate::runtime::CallError;
use crate::telemetry::{Attribute, Trace};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

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
    let trace = endpoint.tracer.consumer(
        &delivery.message.headers,
        || format!("process {}", subscription.queue),
        || {
            vec![
                Attribute::new("messaging.system", "rabbitmq"),
                Attribute::new("messaging.operation.type", "process"),
                Attribute::new("messaging.destination.name", subscription.queue.clone()),
                Attribute::new("messaging.message.id", message_id.clone()),
                Attribute::new(
                    "messaging.rabbitmq.destination.routing_key",
                    delivery.message.routing_key.clone(),
                ),
                Attribute::new("platform.delivery.attempt", i64::from(attempt)),
                Attribute::new("service.version", version.short_digest().to_string()),
            ]
        },
    );
    let log_span = trace
        .as_ref()
        .map_or_else(tracing::Span::none, Trace::log_span);
    let outcome = match version
        .handle_message(&service.service, &message_id, guest_delivery, trace.clone())
        .instrument(log_span.clone())
        .await
    {
        Ok(outcome) => outcome,
        // The host had no room for the call: nothing is wrong with the message.
        Err(error @ (CallError::Overloaded(_) | CallError::Instantiate(_))) => {
            Outcome::Unavailable(error.to_string())
        }
        // A trap or a timeout counts as a failure of the message.
        Err(error) => Outcome::Retry(error.to_string()),
    };
    let failing = delivery
        .first_failed_at
        .and_then(|first| SystemTime::now().duration_since(first).ok())
        .unwrap_or_default();
    let settle = decide(&outcome, delivery.retries, failing, subscription);
    let (settled_as, reason) = log_span.in_scope(|| match (&settle, &outcome) {
        (Settle::Ack, _) => (MessageOutcome::Acked, None),
        (Settle::Retry { delay, .. }, Outcome::Retry(reason) | Outcome::Unavailable(reason)) => {
            tracing::warn!(service = %service.name(), message_id, attempt, %reason, ?delay, "message failed; retrying");
            (MessageOutcome::Retried, Some(reason.clone()))
        }
        (Settle::DeadLetter { reason }, _) => {
            tracing::error!(service = %service.name(), message_id, attempt, %reason, ?failing, dead_letter_queue = %subscription.dead_letter_queue, "message dead-lettered");
            (MessageOutcome::DeadLettered, Some(reason.clone()))
        }
        (Settle::Retry { .. }, _) => unreachable!("only a failure is retried"),
    });
    if let Some(trace) = &trace {
        let mut attributes = vec![Attribute::new(
            "platform.delivery.attempt",
            i64::from(attempt),
        )];
        if let Some(reason) = reason {
            trace.fail(reason.clone());
            attributes.push(Attribute::new("platform.reason", reason));
        }
        trace.event(settled_as.label(), attributes);
    }
    let settled = delivery.settle(settle).instrument(log_span).await;
    if let Some(trace) = trace {
        trace.end();
    }
    match settled {
        Ok(()) => Some(settled_as),
        Err(error) => {
            tracing::warn!(service = %service.name(), message_id, %error, "could not settle a delivery; the broker keeps it");
            None
        }
    }
}

/// What becomes of a delivery the handler answered `outcome` for, after `retries` counted
/// retries and `failing` since its first failure. A `retry` is counted and its pause
/// doubles, so a message that always fails (poison) is dead-lettered after
/// `max_retry_attempts`; an `unavailable` is not counted, its pause grows with the outage,
/// and it is dead-lettered only once it has been failing for `max_retry_age_seconds`.
fn decide(
    outcome: &Outcome,
    retries: u32,
    failing: Duration,
    subscription: &SubscriptionConfig,
) -> Settle {
    match outcome {
        Outcome::Ack => Settle::Ack,
        Outcome::Retry(_) if retries.saturating_add(1) < subscription.max_retry_attempts => {
            Settle::Retry {
                delay: subscription.retry_delay(retries),
                counted: true,
            }
        }
        Outcome::Unavailable(_) if failing < subscription.max_retry_age() => Settle::Retry {
            delay: subscription.unavailable_delay(failing),
            counted: false,
        },
        Outcome::Retry(reason) | Outcome::Unavailable(reason) | Outcome::DeadLetter(reason) => {
            Settle::DeadLetter {
                reason: reason.clone(),
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription() -> SubscriptionConfig {
        toml::from_str(
            r#"
            queue = "q"
            exchange = "e"
            routing_keys = ["k"]
            dead_letter_queue = "q.dlq"
            max_retry_attempts = 3
            retry_delay_ms = 1000
            max_retry_delay_ms = 8000
            max_retry_age_seconds = 60
            "#,
        )
        .unwrap()
    }

    const fn seconds(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn a_failing_message_is_retried_with_doubling_pauses_then_dead_lettered() {
        let subscription = subscription();
        let failed = Outcome::Retry("boom".into());
        let delays: Vec<Settle> = (0..3)
            .map(|retries| decide(&failed, retries, seconds(0), &subscription))
            .collect();
        assert_eq!(
            delays,
            vec![
                Settle::Retry {
                    delay: seconds(1),
                    counted: true
                },
                Settle::Retry {
                    delay: seconds(2),
                    counted: true
                },
                Settle::DeadLetter {
                    reason: "boom".into()
                },
            ]
        );
        // A forged or runaway count dead-letters, never overflows.
        assert_eq!(
            decide(&failed, u32::MAX, seconds(0), &subscription),
            Settle::DeadLetter {
                reason: "boom".into()
            }
        );
    }

    #[test]
    fn an_unavailable_backend_is_waited_out_until_the_maximum_age() {
        let subscription = subscription();
        let unavailable = Outcome::Unavailable("database down".into());
        // Not counted: even far past max_retry_attempts it is retried.
        assert_eq!(
            decide(&unavailable, 50, seconds(0), &subscription),
            Settle::Retry {
                delay: seconds(1),
                counted: false
            }
        );
        // The pause is as long as the outage so far, within the configured bounds.
        assert_eq!(
            decide(&unavailable, 0, seconds(3), &subscription),
            Settle::Retry {
                delay: seconds(3),
                counted: false
            }
        );
        assert_eq!(
            decide(&unavailable, 0, seconds(59), &subscription),
            Settle::Retry {
                delay: seconds(8),
                counted: false
            }
        );
        assert_eq!(
            decide(&unavailable, 0, seconds(60), &subscription),
            Settle::DeadLetter {
                reason: "database down".into()
            }
        );
    }

    #[test]
    fn acks_and_dead_letters_are_final() {
        let subscription = subscription();
        assert_eq!(
            decide(&Outcome::Ack, 9, seconds(999), &subscription),
            Settle::Ack
        );
        assert_eq!(
            decide(
                &Outcome::DeadLetter("bad".into()),
                0,
                seconds(0),
                &subscription
            ),
            Settle::DeadLetter {
                reason: "bad".into()
            }
        );
    }
}
