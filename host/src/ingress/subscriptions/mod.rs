//! One consumer per subscription, on RabbitMQ ([`amqp`]) or on the embedded broker
//! ([`embedded`]). Both hand each message to [`deliver`], which runs it through the
//! service's current component and turns the handler's answer into what the broker does.

pub mod amqp;
pub mod embedded;

use crate::bindings::messaging_types::{Delivery, Outcome};
use crate::config::SubscriptionConfig;
use crate::ingress::metrics::MessageOutcome;
use crate::runtime::DeployedService;
use std::time::Duration;

/// Runs `delivery` through a fresh instance of the service's current version and decides:
/// acknowledge, retry (the handler asked and attempts remain; after a short, growing pause
/// so a failing backend is not hammered) or dead-letter. A trap or timeout counts as a
/// retry request.
pub async fn deliver(
    service: &DeployedService,
    subscription: &SubscriptionConfig,
    message_id: &str,
    delivery: Delivery,
) -> MessageOutcome {
    let attempt = delivery.attempt;
    let version = service.current.load_full();
    let outcome = version
        .handle_message(&service.capabilities, &service.limits, message_id, delivery)
        .await
        .unwrap_or_else(|error| Outcome::Retry(error.to_string()));
    match outcome {
        Outcome::Ack => MessageOutcome::Acked,
        Outcome::Retry(reason) if attempt < subscription.max_retry_attempts => {
            tracing::warn!(service = %service.name, message_id, attempt, %reason, "message failed; retrying");
            tokio::time::sleep(Duration::from_millis(200) * attempt).await;
            MessageOutcome::Retried
        }
        Outcome::Retry(reason) | Outcome::DeadLetter(reason) => {
            tracing::error!(service = %service.name, message_id, attempt, %reason, dead_letter_queue = %subscription.dead_letter_queue, "message dead-lettered");
            MessageOutcome::DeadLettered
        }
    }
}

/// The id a handler's logs and idempotency use: the `event_id` header if the publisher
/// set one, else what the broker knows the message by.
fn message_id(headers: &[(String, String)], fallback: impl FnOnce() -> String) -> String {
    headers
        .iter()
        .find(|(name, _)| name == "event_id")
        .map(|(_, value)| value.clone())
        .unwrap_or_else(fallback)
}
