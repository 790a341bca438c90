//! The broker adapter: publishes order events through the host's messaging capability.
//!
//! The events themselves (`EventKind`, `OutboxEvent`, their JSON) are domain types in
//! `model`; this module only turns one into a broker message and sends it.

use crate::model::OutboxEvent;
use crate::ports::EventBus;
use platform_guest::messaging_types::Message;
use platform_guest::{logging, messaging};

// The message format is the broker's business, so the mapping lives with the broker
// adapter rather than with the domain type.
impl OutboxEvent {
    /// The broker message: routing key = event name, JSON content type, `event_id` header,
    /// and the `traceparent` of the request that wrote the event, which the host continues.
    pub fn to_message(&self) -> Message {
        let mut headers = vec![("event_id".to_string(), self.event_id.clone())];
        if let Some(traceparent) = &self.traceparent {
            headers.push(("traceparent".to_string(), traceparent.clone()));
        }
        Message {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            payload: self.payload.clone().into_bytes(),
            content_type: Some("application/json".to_string()),
            headers,
        }
    }
}

/// Publishes through the host's messaging capability (waits for the broker's confirm).
pub struct Broker;

impl EventBus for Broker {
    fn publish(&self, event: &OutboxEvent) -> Result<(), String> {
        messaging::publish(&event.to_message()).map_err(|error| format!("{error:?}"))
    }

    fn traceparent(&self) -> Option<String> {
        logging::current_trace().map(|context| context.traceparent)
    }
}

#[cfg(test)]
mod tests {
    use crate::model::tests::order;
    use crate::model::{build_event, EventKind, OrderStatus, OutboxEvent};

    /// An `order.created` event with the id `id-9`, as the service writes it.
    fn created() -> OutboxEvent {
        build_event(
            EventKind::Created,
            &order(1, 1, OrderStatus::Pending),
            "a",
            "order_events",
            "id-9",
            "t",
        )
    }

    #[test]
    fn message_carries_json_content_type_and_event_id_header() {
        let event = created();
        let message = event.to_message();
        assert_eq!(message.exchange, "order_events");
        assert_eq!(message.routing_key, "order.created");
        assert_eq!(message.content_type.as_deref(), Some("application/json"));
        assert_eq!(message.headers, vec![("event_id".into(), "id-9".into())]);
        assert_eq!(message.payload, event.payload.as_bytes());
    }

    #[test]
    fn an_event_written_in_a_traced_request_carries_its_traceparent() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut event = created();
        event.traceparent = Some(traceparent.to_string());
        assert_eq!(
            event.to_message().headers,
            vec![
                ("event_id".into(), "id-9".into()),
                ("traceparent".into(), traceparent.into())
            ]
        );
    }
}
