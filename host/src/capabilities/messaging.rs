//! The `messaging` interface: confirmed, persistent publishing through the platform's
//! broker, limited to the exchanges a service was granted (`publish_exchanges`).

use super::{ended, granted, CallState, Failure, Grant, GrantError, ServiceCapabilities};
use crate::backends::broker::{self as backend, Broker};
use crate::bindings::messaging::{Host, PublishError};
use crate::bindings::messaging_types::Message;
use crate::telemetry::{Attribute, Kind};
use std::sync::Arc;

const INTERFACE: &str = "messaging";

pub(super) fn grant(grant: &Grant<'_>, into: &mut ServiceCapabilities) -> Result<(), GrantError> {
    into.messaging = Some(ServicePublisher {
        broker: grant.backend(&grant.backends.broker, INTERFACE)?,
        allowed_exchanges: grant.config.publish_exchanges.clone(),
    });
    Ok(())
}

/// One service's view of the broker: the exchanges it may publish to.
#[derive(Clone)]
pub struct ServicePublisher {
    pub broker: Arc<dyn Broker>,
    pub allowed_exchanges: Vec<String>,
}

/// A publish's failure: a `publish-error` for the guest, or a trap.
pub type PublishFailure = Failure<PublishError>;

impl From<backend::PublishError> for PublishFailure {
    fn from(error: backend::PublishError) -> Self {
        Failure::Error(match error {
            backend::PublishError::Unavailable(cause) => PublishError::Unavailable(cause),
            backend::PublishError::Rejected(cause) => PublishError::Rejected(cause),
        })
    }
}

impl Host for CallState {
    async fn publish(&mut self, message: Message) -> Result<(), PublishFailure> {
        let messaging = granted(&self.capabilities.messaging, INTERFACE, self)?;
        if let Some((name, _)) = message
            .headers
            .iter()
            .find(|(name, _)| name.to_ascii_lowercase().starts_with("x-"))
        {
            // The broker's bookkeeping (`x-retry-count`, the original routing): a component
            // that could set it could dead-letter its consumers' messages at will.
            return Err(Failure::Error(PublishError::NotAllowed(format!(
                "header `{name}`: headers starting with `x-` are the platform's"
            ))));
        }
        if !messaging.allowed_exchanges.contains(&message.exchange) {
            return Err(Failure::Error(PublishError::NotAllowed(format!(
                "exchange `{}` is not in this service's publish_exchanges",
                message.exchange
            ))));
        }
        let mut headers = message.headers;
        // A `traceparent` the component sets (one kept with an outbox row) is the trace
        // the message continues; else the call's.
        let span = self.trace.as_ref().map(|trace| {
            trace.child_for_message(
                &headers,
                format!("publish {}", message.exchange),
                Kind::Producer,
                vec![
                    Attribute::new("messaging.system", "rabbitmq"),
                    Attribute::new("messaging.operation.type", "send"),
                    Attribute::new("messaging.destination.name", message.exchange.clone()),
                    Attribute::new(
                        "messaging.rabbitmq.destination.routing_key",
                        message.routing_key.clone(),
                    ),
                ],
            )
        });
        // The consumer's span continues this one (on either broker, the header travels
        // with the message).
        if let Some(span) = &span {
            span.inject_message(&mut headers);
        }
        let published = messaging
            .broker
            .publish(backend::Message {
                exchange: message.exchange,
                routing_key: message.routing_key,
                payload: message.payload,
                content_type: message.content_type,
                headers,
            })
            .await;
        Ok(ended(span, published)?)
    }

    fn convert_publish_error(&mut self, failure: PublishFailure) -> wasmtime::Result<PublishError> {
        failure.lower()
    }
}
