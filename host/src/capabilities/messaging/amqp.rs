//! RabbitMQ through lapin: connections, the declared exchanges, and confirmed publishing.

use super::MessagePublisher;
use crate::bindings::messaging::PublishError;
use crate::bindings::messaging_types::Message;
use crate::config::{ExchangeConfig, ExchangeKindConfig};
use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::time::Duration;
use tokio::sync::Mutex;

/// Opens a connection to the broker with the platform's executor and reactor.
pub async fn connect(url: &str, timeout: Duration) -> Result<Connection, String> {
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    match tokio::time::timeout(timeout, Connection::connect(url, properties)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("connection to the broker timed out".into()),
    }
}

/// Declares the exchanges of `platform.toml` (durable) on `channel`.
pub async fn declare_exchanges(
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

/// Turns string headers into an AMQP field table.
pub fn field_table(headers: &[(String, String)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in headers {
        table.insert(
            ShortString::from(name.clone()),
            AMQPValue::LongString(LongString::from(value.clone())),
        );
    }
    table
}

/// RabbitMQ publisher: one connection and one confirm-mode channel, opened lazily and
/// reopened after the broker went away.
pub struct AmqpPublisher {
    url: String,
    exchanges: Vec<ExchangeConfig>,
    channel: Mutex<Option<(Connection, Channel)>>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

impl AmqpPublisher {
    pub fn new(url: &str, exchanges: Vec<ExchangeConfig>) -> AmqpPublisher {
        AmqpPublisher {
            url: url.to_string(),
            exchanges,
            channel: Mutex::new(None),
        }
    }

    async fn channel(&self) -> Result<Channel, PublishError> {
        let mut slot = self.channel.lock().await;
        if let Some((connection, channel)) = slot.as_ref() {
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        *slot = None;
        let connection = connect(&self.url, CONNECT_TIMEOUT)
            .await
            .map_err(PublishError::Unavailable)?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|error| PublishError::Unavailable(error.to_string()))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|error| PublishError::Unavailable(error.to_string()))?;
        declare_exchanges(&channel, &self.exchanges)
            .await
            .map_err(|error| PublishError::Unavailable(error.to_string()))?;
        *slot = Some((connection, channel.clone()));
        Ok(channel)
    }
}

#[async_trait]
impl MessagePublisher for AmqpPublisher {
    async fn publish(&self, message: Message) -> Result<(), PublishError> {
        let channel = self.channel().await?;
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
                    BasicPublishOptions::default(),
                    &message.payload,
                    properties,
                )
                .await?;
            confirm.await
        };
        match tokio::time::timeout(CONFIRM_TIMEOUT, publish).await {
            Ok(Ok(Confirmation::Ack(_))) | Ok(Ok(Confirmation::NotRequested)) => Ok(()),
            Ok(Ok(Confirmation::Nack(_))) => Err(PublishError::Rejected(
                "the broker did not confirm the message".into(),
            )),
            Ok(Err(lapin::Error::ProtocolError(error))) => {
                Err(PublishError::Rejected(error.to_string()))
            }
            Ok(Err(error)) => {
                *self.channel.lock().await = None;
                Err(PublishError::Unavailable(error.to_string()))
            }
            Err(_) => {
                *self.channel.lock().await = None;
                Err(PublishError::Unavailable(
                    "the broker did not confirm in time".into(),
                ))
            }
        }
    }
}
