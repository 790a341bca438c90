//! The message broker, publishing *and* consuming: RabbitMQ ([`amqp`]) or the embedded
//! broker ([`embedded`]), behind one [`Broker`] trait. The `messaging` capability publishes
//! through it; the subscriptions of the ingress consume from it and settle each delivery
//! with one [`Settle`] answer, which each broker carries out its own way.

pub mod amqp;
pub mod embedded;

pub use amqp::AmqpBroker;
pub use embedded::{EmbeddedBroker, OpenBrokerError};

use crate::config::SubscriptionConfig;
use async_trait::async_trait;

/// A message to publish, or one being delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub exchange: String,
    pub routing_key: String,
    pub payload: Vec<u8>,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
}

/// Why a publish did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PublishError {
    /// The broker is unreachable or did not confirm in time; nothing was published.
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the message (unknown exchange, negative confirmation).
    #[error("the broker refused the message: {0}")]
    Rejected(String),
}

/// Why consuming stopped or could not start; the subscription connects again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ConsumeError(pub String);

/// What becomes of a delivery once its handler answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Handled: gone for good.
    Ack,
    /// Deliver it again after `delay`; a `counted` retry makes its retry count one higher
    /// (a redelivery after a transient failure does not). Either way the time of its first
    /// failure is kept. The message waits at the broker, not in a consumer's delivery slot.
    Retry {
        delay: std::time::Duration,
        counted: bool,
    },
    /// Move it to the subscription's dead-letter queue, with why (kept beside it, at most
    /// [`MAX_DEAD_LETTER_REASON_BYTES`], for whoever lists the dead letters).
    DeadLetter { reason: String },
}

/// Longest reason kept with a dead letter.
pub const MAX_DEAD_LETTER_REASON_BYTES: usize = 1024;

/// `reason` cut to [`MAX_DEAD_LETTER_REASON_BYTES`] on a character boundary.
fn bounded_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_DEAD_LETTER_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// A message taken from a subscription's queue, until it is settled.
pub struct Delivery {
    pub message: Message,
    /// Counted retries before this one (see [`Settle::Retry`]).
    pub retries: u32,
    /// When a delivery of it first failed, if one did.
    pub first_failed_at: Option<std::time::SystemTime>,
    /// What the broker knows the message by (for logs when the publisher set no id).
    pub broker_id: String,
    settler: Box<dyn Settler>,
}

impl Delivery {
    /// Carries out `settle`. An error leaves the message with the broker, which delivers
    /// it again (on RabbitMQ to the next consumer, on the embedded broker after a restart).
    pub async fn settle(self, settle: Settle) -> Result<(), ConsumeError> {
        let failure = Failures {
            retries: self.retries,
            first_failed_at: self.first_failed_at,
        };
        self.settler.settle(settle, self.message, failure).await
    }
}

/// How one broker settles one of its deliveries.
#[async_trait]
trait Settler: Send {
    async fn settle(
        self: Box<Self>,
        settle: Settle,
        message: Message,
        failures: Failures,
    ) -> Result<(), ConsumeError>;
}

/// What a delivery's earlier failures left on it.
#[derive(Debug, Clone, Copy)]
struct Failures {
    retries: u32,
    first_failed_at: Option<std::time::SystemTime>,
}

impl Failures {
    /// The counts after a retry now: one more if `counted`, and the first failure's time.
    fn after_retry(self, counted: bool) -> (u32, std::time::SystemTime) {
        let retries = match counted {
            true => self.retries.saturating_add(1),
            false => self.retries,
        };
        (
            retries,
            self.first_failed_at
                .unwrap_or_else(std::time::SystemTime::now),
        )
    }
}

/// Milliseconds since the Unix epoch, as brokers store a time.
fn epoch_millis(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The time `millis` since the Unix epoch names.
fn from_epoch_millis(millis: i64) -> Option<std::time::SystemTime> {
    let millis = u64::try_from(millis).ok()?;
    std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(millis))
}

/// The deliveries of one subscription, while the broker is connected.
#[async_trait]
pub trait Consumer: Send {
    /// The next delivery; `None` once the connection to the broker is lost.
    async fn next(&mut self) -> Option<Delivery>;
    /// Stops consuming (after the deliveries in progress were settled).
    async fn close(self: Box<Self>);
}

/// A message in a subscription's dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// What a replay names it by: the row on the embedded broker, the publisher's
    /// `event_id` (or message id) on RabbitMQ.
    pub id: String,
    /// With the exchange and routing key it was first published with.
    pub message: Message,
    pub retries: u32,
    /// Why it was dead-lettered, when the platform put it there (RabbitMQ's own
    /// dead-lettering, on an expired or refused message, records none).
    pub reason: Option<String>,
}

/// The most dead letters a listing or a replay handles at once.
pub const DEAD_LETTER_BATCH: usize = 1_000;

#[async_trait]
pub trait Broker: Send + Sync {
    /// Publishes persistently and waits for the broker's confirmation.
    async fn publish(&self, message: Message) -> Result<(), PublishError>;
    /// Starts consuming `subscription`'s queue (declared with its bindings and its
    /// dead-letter queue), at most `prefetch` deliveries unsettled at a time.
    async fn consume(
        &self,
        subscription: &SubscriptionConfig,
    ) -> Result<Box<dyn Consumer>, ConsumeError>;
    /// The oldest dead letters of `subscription` (at most [`DEAD_LETTER_BATCH`]), left where
    /// they are.
    async fn dead_letters(
        &self,
        subscription: &SubscriptionConfig,
    ) -> Result<Vec<DeadLetter>, ConsumeError>;
    /// Puts the dead letter `id` (or every one) back into the subscription's queue, its
    /// retry count reset; how many went back.
    async fn replay(
        &self,
        subscription: &SubscriptionConfig,
        id: Option<&str>,
    ) -> Result<usize, ConsumeError>;
}

/// The broker `[messaging]` names: RabbitMQ at its URL, else the embedded one with its
/// store at `embedded_store`. Says which.
pub async fn open(
    settings: &crate::config::MessagingConfig,
    subscriptions: &[SubscriptionConfig],
    embedded_store: &std::path::Path,
) -> Result<std::sync::Arc<dyn Broker>, OpenBrokerError> {
    Ok(match &settings.url {
        Some(url) => {
            tracing::info!(url = %crate::config::redact_url(url), "broker: RabbitMQ");
            std::sync::Arc::new(AmqpBroker::new(url, settings.exchanges.clone()))
        }
        None => {
            let broker =
                EmbeddedBroker::open(embedded_store, &settings.exchanges, subscriptions).await?;
            tracing::info!(file = %embedded_store.display(), "broker: embedded, unacknowledged messages kept on disk (set AMQP_URL or [messaging] url for RabbitMQ)");
            std::sync::Arc::new(broker)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_reason_is_cut_on_a_character_boundary() {
        assert_eq!(bounded_reason("short"), "short");
        let long = "é".repeat(MAX_DEAD_LETTER_REASON_BYTES);
        let cut = bounded_reason(&long);
        assert!(cut.len() <= MAX_DEAD_LETTER_REASON_BYTES);
        assert_eq!(cut.len(), MAX_DEAD_LETTER_REASON_BYTES, "é is two bytes");
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
