//! The order events (`order.created`, `order.cancelled`) and their broker messages.
//!
//! Building an event is pure (id and time are passed in) so its JSON is unit-tested; the
//! service stores it in the outbox in the same transaction as the order change, and
//! [`Broker`] publishes it after commit (see `service::OrderService::publish_pending`).

use crate::model::Order;
use crate::service::EventBus;
use platform_guest::messaging;
use platform_guest::messaging_types::Message;
use platform_guest::money;
use serde_json::json;

/// The events the order service publishes; the name is also the routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Cancelled,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Created => "order.created",
            EventKind::Cancelled => "order.cancelled",
        }
    }
}

/// A serialised event, as an outbox row holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub exchange: String,
    pub routing_key: String,
    pub event_id: String,
    /// The JSON body, serialised once when the event is written.
    pub payload: String,
}

/// Builds the event `kind` about `order`, done by `username`.
///
/// Body: `{"event", "event_id", "occurred_at", "data": {"order_id", "user_id", "username",
/// "product_id", "product_name", "quantity", "unit_price", "total_price", "status",
/// "created_at"}}` with prices as JSON numbers of exact cents.
pub fn build_event(
    kind: EventKind,
    order: &Order,
    username: &str,
    exchange: &str,
    event_id: &str,
    occurred_at: &str,
) -> OutboxEvent {
    let body = json!({
        "event": kind.name(),
        "event_id": event_id,
        "occurred_at": occurred_at,
        "data": {
            "order_id": order.id,
            "user_id": order.user_id,
            "username": username,
            "product_id": order.product_id,
            "product_name": order.product_name,
            "quantity": order.quantity,
            "unit_price": money::to_json(order.unit_price_cents),
            "total_price": money::to_json(order.total_price_cents),
            "status": order.status.as_str(),
            "created_at": order.created_at,
        },
    });
    OutboxEvent {
        exchange: exchange.to_string(),
        routing_key: kind.name().to_string(),
        event_id: event_id.to_string(),
        payload: body.to_string(),
    }
}

/// [`build_event`] with a fresh UUID v4 and the current time (RFC 3339, UTC, `Z`).
pub fn new_event(kind: EventKind, order: &Order, username: &str, exchange: &str) -> OutboxEvent {
    let event_id = uuid::Uuid::new_v4().to_string();
    let occurred_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    build_event(kind, order, username, exchange, &event_id, &occurred_at)
}

impl OutboxEvent {
    /// The broker message: routing key = event name, JSON content type, `event_id` header.
    pub fn to_message(&self) -> Message {
        Message {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            payload: self.payload.clone().into_bytes(),
            content_type: Some("application/json".to_string()),
            headers: vec![("event_id".to_string(), self.event_id.clone())],
        }
    }
}

/// Publishes through the host's messaging capability (waits for the broker's confirm).
pub struct Broker;

impl EventBus for Broker {
    fn publish(&self, event: &OutboxEvent) -> Result<(), String> {
        messaging::publish(&event.to_message()).map_err(|error| format!("{error:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::order;
    use crate::model::OrderStatus;
    use serde_json::Value;

    #[test]
    fn created_event_has_every_field() {
        let mut placed = order(12, 3, OrderStatus::Pending);
        placed.unit_price_cents = 1999;
        placed.total_price_cents = 5997;
        let event = build_event(
            EventKind::Created,
            &placed,
            "alice",
            "order_events",
            "6f1c1b8e-5b7a-4c1e-9a55-0d3c2b1a0f9e",
            "2026-11-25T10:00:01.000000Z",
        );
        assert_eq!(event.exchange, "order_events");
        assert_eq!(event.routing_key, "order.created");
        assert_eq!(event.event_id, "6f1c1b8e-5b7a-4c1e-9a55-0d3c2b1a0f9e");
        let body: Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!(
            body,
            json!({
                "event": "order.created",
                "event_id": "6f1c1b8e-5b7a-4c1e-9a55-0d3c2b1a0f9e",
                "occurred_at": "2026-11-25T10:00:01.000000Z",
                "data": {
                    "order_id": 12,
                    "user_id": 3,
                    "username": "alice",
                    "product_id": 7,
                    "product_name": "Widget",
                    "quantity": 3,
                    "unit_price": 19.99,
                    "total_price": 59.97,
                    "status": "pending",
                    "created_at": "2026-11-25T10:00:00.123456Z"
                }
            })
        );
        assert!(event.payload.contains("\"total_price\":59.97"));
    }

    #[test]
    fn cancelled_event_uses_its_routing_key_and_status() {
        let cancelled = order(4, 3, OrderStatus::Cancelled);
        let event = build_event(EventKind::Cancelled, &cancelled, "bob", "ex", "id-1", "t");
        assert_eq!(event.routing_key, "order.cancelled");
        let body: Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!(body["event"], "order.cancelled");
        assert_eq!(body["data"]["status"], "cancelled");
        assert_eq!(body["data"]["total_price"].to_string(), "0.3");
    }

    #[test]
    fn new_events_get_a_uuid_v4_and_utc_time() {
        let event = new_event(
            EventKind::Created,
            &order(1, 1, OrderStatus::Pending),
            "a",
            "ex",
        );
        let id = uuid::Uuid::parse_str(&event.event_id).unwrap();
        assert_eq!(id.get_version_num(), 4);
        let body: Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!(body["event_id"], event.event_id.as_str());
        let occurred = body["occurred_at"].as_str().unwrap();
        assert!(occurred.ends_with('Z'));
        assert!(chrono::DateTime::parse_from_rfc3339(occurred).is_ok());
        let other = new_event(
            EventKind::Created,
            &order(1, 1, OrderStatus::Pending),
            "a",
            "ex",
        );
        assert_ne!(other.event_id, event.event_id);
    }

    #[test]
    fn message_carries_json_content_type_and_event_id_header() {
        let event = build_event(
            EventKind::Created,
            &order(1, 1, OrderStatus::Pending),
            "a",
            "order_events",
            "id-9",
            "t",
        );
        let message = event.to_message();
        assert_eq!(message.exchange, "order_events");
        assert_eq!(message.routing_key, "order.created");
        assert_eq!(message.content_type.as_deref(), Some("application/json"));
        assert_eq!(message.headers, vec![("event_id".into(), "id-9".into())]);
        assert_eq!(message.payload, event.payload.as_bytes());
    }
}
