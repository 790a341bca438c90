//! A subscription on the embedded broker: takes the queue's ready messages, up to
//! `prefetch` at once, and settles each by the handler's answer.

use crate::bindings::messaging_types::Delivery;
use crate::capabilities::messaging::embedded::{EmbeddedBroker, Envelope};
use crate::config::SubscriptionConfig;
use crate::ingress::metrics::{MessageOutcome, ServiceMetrics};
use crate::runtime::DeployedService;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Consumes `subscription` for `service` until `shutdown`; the messages in progress then
/// finish and are settled.
pub async fn consume(
    service: Arc<DeployedService>,
    metrics: Arc<ServiceMetrics>,
    subscription: SubscriptionConfig,
    broker: Arc<EmbeddedBroker>,
    shutdown: CancellationToken,
) {
    let Some(queue) = broker.queue(&subscription.queue) else {
        tracing::error!(service = %service.name, queue = %subscription.queue, "the embedded broker has no such queue; not consuming");
        return;
    };
    service.broker_connected.store(true, Ordering::Relaxed);
    tracing::info!(service = %service.name, queue = %subscription.queue, "consuming (embedded broker)");
    let prefetch = Arc::new(Semaphore::new(usize::from(subscription.prefetch)));
    let in_progress = TaskTracker::new();
    let subscription = Arc::new(subscription);
    loop {
        let permit = tokio::select! {
            permit = prefetch.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
        let envelope = tokio::select! {
            envelope = queue.next() => envelope,
            _ = shutdown.cancelled() => break,
        };
        let (service, metrics, subscription, broker) = (
            service.clone(),
            metrics.clone(),
            subscription.clone(),
            broker.clone(),
        );
        in_progress.spawn(async move {
            let outcome = process(&service, &subscription, &broker, envelope).await;
            metrics.observe_message(&subscription.queue, outcome);
            drop(permit);
        });
    }
    in_progress.close();
    in_progress.wait().await;
    service.broker_connected.store(false, Ordering::Relaxed);
}

async fn process(
    service: &DeployedService,
    subscription: &SubscriptionConfig,
    broker: &EmbeddedBroker,
    envelope: Envelope,
) -> MessageOutcome {
    let message_id = super::message_id(&envelope.message.headers, || {
        format!("message-{}", envelope.id)
    });
    let delivery = Delivery {
        queue: subscription.queue.clone(),
        message: envelope.message.clone(),
        attempt: envelope.retries + 1,
    };
    let outcome = super::deliver(service, subscription, &message_id, delivery).await;
    let settled = match outcome {
        MessageOutcome::Acked => broker.ack(&envelope).await,
        MessageOutcome::Retried => broker.retry(&subscription.queue, envelope).await,
        MessageOutcome::DeadLettered => {
            broker
                .dead_letter(&subscription.dead_letter_queue, envelope)
                .await
        }
    };
    if let Err(error) = settled {
        // Still stored: delivered again after a restart, like an unsettled AMQP delivery.
        tracing::warn!(service = %service.name, message_id, %error, "could not record how a message was settled");
    }
    outcome
}
