//! The `messaging` interface: confirmed, persistent publishing over a [`MessagePublisher`]
//! (RabbitMQ, or the embedded broker), limited to the exchanges a service was granted.

pub mod amqp;
pub mod embedded;

pub use amqp::AmqpPublisher;
pub use embedded::EmbeddedBroker;

use super::CallState;
use crate::bindings::messaging::{Host, PublishError};
use crate::bindings::messaging_types::Message;
use async_trait::async_trait;
use std::sync::Arc;

/// Publishes messages and waits for the broker's confirmation.
#[async_trait]
pub trait MessagePublisher: Send + Sync {
    async fn publish(&self, message: Message) -> Result<(), PublishError>;
}

/// One service's view of the publisher: the exchanges it may publish to.
#[derive(Clone)]
pub struct ServicePublisher {
    pub publisher: Arc<dyn MessagePublisher>,
    pub allowed_exchanges: Vec<String>,
}

impl Host for CallState {
    async fn publish(&mut self, message: Message) -> wasmtime::Result<Result<(), PublishError>> {
        let Some(messaging) = &self.capabilities.messaging else {
            return Ok(Err(PublishError::Unavailable(
                "no broker is configured for this service".into(),
            )));
        };
        if !messaging.allowed_exchanges.contains(&message.exchange) {
            return Ok(Err(PublishError::NotAllowed(format!(
                "exchange `{}` is not in this service's publish_exchanges",
                message.exchange
            ))));
        }
        Ok(messaging.publisher.publish(message).await)
    }
}
