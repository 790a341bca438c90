//! Domain types of the order service: statuses and their rules, validated inputs, prices
//! in integer cents, the order's JSON shape and the events about orders.

use platform_guest::errors::{fields, FieldError, Validation};
use platform_guest::money;
use serde_json::{json, Map, Value};

/// The life cycle of an order. `Cancelled` is terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

/// The accepted statuses as pydantic lists them in an `enum` validation error.
pub const STATUS_CHOICES: &str = "'pending', 'confirmed', 'shipped', 'delivered' or 'cancelled'";

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    /// The status as stored and sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// The status named exactly `text` (case-sensitive, like the FastAPI `str` enum).
    pub fn parse(text: &str) -> Option<OrderStatus> {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// Whether an order in this status may be given status `next`.
    ///
    /// The contract has a single rule: a cancelled order is final, so any change of a
    /// cancelled order (even to `cancelled` again) is a conflict. Every other change is
    /// allowed, as in the FastAPI design (an operator may correct a status by hand).
    pub fn check_change(self, _next: OrderStatus) -> Result<(), TransitionError> {
        match self {
            OrderStatus::Cancelled => Err(TransitionError::AlreadyCancelled),
            _ => Ok(()),
        }
    }

    /// Whether changing from `self` to `next` gives the reserved stock back.
    pub fn releases_stock(self, next: OrderStatus) -> bool {
        next == OrderStatus::Cancelled && self != OrderStatus::Cancelled
    }
}

/// A status change the rules forbid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionError {
    AlreadyCancelled,
}

/// The authenticated caller, as the host reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: i64,
    pub username: String,
}

/// The validated body of `POST /orders`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewOrder {
    pub product_id: i64,
    pub quantity: i64,
}

impl NewOrder {
    /// Validates `{"product_id", "quantity"}`: both integers > 0; every error at once.
    pub fn from_body(body: &Map<String, Value>) -> Result<NewOrder, Vec<FieldError>> {
        let mut validation = Validation::new();
        let product_id = validation.check(fields::integer(body, "product_id", 1));
        let quantity = validation.check(fields::integer(body, "quantity", 1));
        match (product_id, quantity) {
            (Some(product_id), Some(quantity)) => Ok(NewOrder {
                product_id,
                quantity,
            }),
            _ => Err(validation.finish().expect_err("a field failed")),
        }
    }
}

/// Reads the `status` field of `PUT /orders/{order_id}`, with pydantic's `enum` error.
pub fn status_from_body(body: &Map<String, Value>) -> Result<OrderStatus, Vec<FieldError>> {
    let Some(value) = body.get("status") else {
        return Err(vec![FieldError::missing(
            &["body", "status"],
            Value::Object(body.clone()),
        )]);
    };
    value.as_str().and_then(OrderStatus::parse).ok_or_else(|| {
        vec![FieldError::new(
            "enum",
            &["body", "status"],
            format!("Input should be {STATUS_CHOICES}"),
            value.clone(),
        )
        .with_ctx(json!({ "expected": STATUS_CHOICES }))]
    })
}

/// `unit_cents x quantity`, exactly, or `None` when the total would exceed the largest
/// amount the contract allows (99 999 999.99) or overflow.
pub fn total_cents(unit_cents: i64, quantity: i64) -> Option<i64> {
    unit_cents
        .checked_mul(quantity)
        .filter(|total| (1..=money::MAX_CENTS).contains(total))
}

/// What is stored when an order is placed; the database adds id and timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDraft {
    pub user_id: i64,
    pub product_id: i64,
    pub product_name: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
    pub total_price_cents: i64,
    pub status: OrderStatus,
    /// The key its stock was reserved under at the product service.
    pub reservation_id: String,
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: i64,
    pub user_id: i64,
    pub product_id: i64,
    pub product_name: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
    pub total_price_cents: i64,
    pub status: OrderStatus,
    /// RFC 3339 UTC, as the database returned it.
    pub created_at: String,
    pub updated_at: String,
    /// The key its stock was reserved under; `None` for orders placed before reservations
    /// had keys. Not part of the API's order shape.
    pub reservation_id: Option<String>,
}

impl Order {
    /// The `Idempotency-Key` that gives this order's stock back: its reservation's key (the
    /// product service releases that reservation once), or, for an order placed before
    /// reservations had keys, one derived from the order.
    pub fn release_key(&self) -> String {
        self.reservation_id
            .clone()
            .unwrap_or_else(|| format!("order-{}-release", self.id))
    }

    /// The order as the API returns it; prices are JSON numbers with two decimals.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "user_id": self.user_id,
            "product_id": self.product_id,
            "product_name": self.product_name,
            "quantity": self.quantity,
            "unit_price": money::to_json(self.unit_price_cents),
            "total_price": money::to_json(self.total_price_cents),
            "status": self.status.as_str(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }
}

/// A fresh reservation id: the `Idempotency-Key` of one order's reservation.
pub fn new_reservation_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// What a stock change asks of the product service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockAction {
    Reserve,
    Release,
}

impl StockAction {
    pub fn as_str(self) -> &'static str {
        match self {
            StockAction::Reserve => "reserve",
            StockAction::Release => "release",
        }
    }

    pub fn parse(text: &str) -> Option<StockAction> {
        match text {
            "reserve" => Some(StockAction::Reserve),
            "release" => Some(StockAction::Release),
            _ => None,
        }
    }
}

/// A stock change the order service owes the product service, written down before it is
/// made (a `stock_changes` row) and forgotten once it is settled; see the module comment
/// of `service` for what each row means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockChange {
    /// The row id (0 for a change that is not stored).
    pub id: i64,
    /// The `Idempotency-Key` sent to the product service.
    pub key: String,
    pub action: StockAction,
    pub product_id: i64,
    pub quantity: i64,
    /// The caller's `authorization` header, forwarded when the change is settled later.
    pub authorization: Option<String>,
}

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

/// A serialised event, as an outbox row holds it: the service writes it in the same
/// transaction as the order change, and the broker publishes it after commit (see
/// `service::OrderService::publish_events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub exchange: String,
    pub routing_key: String,
    pub event_id: String,
    /// The JSON body, serialised once when the event is written.
    pub payload: String,
    /// The W3C `traceparent` of the request that wrote the event (none when the host does
    /// not trace): its message continues that request's trace, whichever request or
    /// scheduled run publishes it.
    pub traceparent: Option<String>,
}

/// Builds the event `kind` about `order`, done by `username`.
///
/// Body: `{"event", "event_id", "occurred_at", "data": {"order_id", "user_id", "username",
/// "product_id", "product_name", "quantity", "unit_price", "total_price", "status",
/// "created_at"}}` with prices as JSON numbers of exact cents. Pure (id and time are passed
/// in) so that the JSON is unit-tested; [`new_event`] supplies them.
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
        traceparent: None,
    }
}

/// [`build_event`] with a fresh UUID v4 and the current time (RFC 3339, UTC, `Z`).
pub fn new_event(
    kind: EventKind,
    order: &Order,
    username: &str,
    exchange: &str,
    traceparent: Option<String>,
) -> OutboxEvent {
    let event_id = uuid::Uuid::new_v4().to_string();
    let occurred_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    OutboxEvent {
        traceparent,
        ..build_event(kind, order, username, exchange, &event_id, &occurred_at)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn order(id: i64, user_id: i64, status: OrderStatus) -> Order {
        Order {
            id,
            user_id,
            product_id: 7,
            product_name: "Widget".into(),
            quantity: 3,
            unit_price_cents: 10,
            total_price_cents: 30,
            status,
            created_at: "2026-11-25T10:00:00.123456Z".into(),
            updated_at: "2026-11-25T10:00:00.123456Z".into(),
            reservation_id: Some(format!("reservation-{id}")),
        }
    }

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn new_order_accepts_positive_integers() {
        assert_eq!(
            NewOrder::from_body(&body(json!({"product_id": 4, "quantity": 2}))),
            Ok(NewOrder {
                product_id: 4,
                quantity: 2
            })
        );
        // pydantic's lax mode: whole floats and numeric strings are integers too.
        assert_eq!(
            NewOrder::from_body(&body(json!({"product_id": "4", "quantity": 2.0}))),
            Ok(NewOrder {
                product_id: 4,
                quantity: 2
            })
        );
    }

    #[test]
    fn new_order_reports_every_error_at_once() {
        let errors = NewOrder::from_body(&body(json!({}))).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].kind, "missing");
        assert_eq!(errors[0].loc, vec![json!("body"), json!("product_id")]);
        assert_eq!(errors[1].loc, vec![json!("body"), json!("quantity")]);

        let errors =
            NewOrder::from_body(&body(json!({"product_id": 0, "quantity": -3}))).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors.iter().all(|e| e.kind == "greater_than"));
        assert_eq!(errors[0].msg, "Input should be greater than 0");
        assert_eq!(errors[0].ctx, Some(json!({"gt": 0})));

        let errors =
            NewOrder::from_body(&body(json!({"product_id": "x", "quantity": 1.5}))).unwrap_err();
        assert_eq!(errors[0].kind, "int_parsing");
        assert_eq!(errors[1].kind, "int_from_float");

        let errors =
            NewOrder::from_body(&body(json!({"product_id": 1, "quantity": null}))).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].kind, "int_type");
    }

    #[test]
    fn status_parsing_is_exact() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(OrderStatus::parse("Cancelled"), None);
        assert_eq!(OrderStatus::parse(" pending"), None);
        assert_eq!(OrderStatus::parse("refunded"), None);
    }

    #[test]
    fn status_body_errors_have_pydantic_enum_shape() {
        assert_eq!(
            status_from_body(&body(json!({"status": "shipped"}))),
            Ok(OrderStatus::Shipped)
        );
        let errors = status_from_body(&body(json!({"status": "lost"}))).unwrap_err();
        assert_eq!(
            errors[0].to_json(),
            json!({
                "type": "enum",
                "loc": ["body", "status"],
                "msg": "Input should be 'pending', 'confirmed', 'shipped', 'delivered' or 'cancelled'",
                "input": "lost",
                "ctx": {"expected": "'pending', 'confirmed', 'shipped', 'delivered' or 'cancelled'"}
            })
        );
        let errors = status_from_body(&body(json!({"status": 3}))).unwrap_err();
        assert_eq!(errors[0].kind, "enum");
        assert_eq!(errors[0].input, json!(3));
        let errors = status_from_body(&body(json!({"state": "pending"}))).unwrap_err();
        assert_eq!(errors[0].kind, "missing");
        assert_eq!(errors[0].loc, vec![json!("body"), json!("status")]);
    }

    #[test]
    fn cancelled_is_final_and_only_cancelling_releases_stock() {
        use OrderStatus::*;
        for from in [Pending, Confirmed, Shipped, Delivered] {
            for to in OrderStatus::ALL {
                assert_eq!(from.check_change(to), Ok(()));
                assert_eq!(from.releases_stock(to), to == Cancelled);
            }
        }
        for to in OrderStatus::ALL {
            assert_eq!(
                Cancelled.check_change(to),
                Err(TransitionError::AlreadyCancelled)
            );
            assert!(!Cancelled.releases_stock(to));
        }
    }

    #[test]
    fn totals_are_exact_cents() {
        // 3 x 0.10 is 0.30 exactly, not 0.30000000000000004.
        assert_eq!(total_cents(10, 3), Some(30));
        assert_eq!(
            money::to_json(total_cents(10, 3).unwrap()).to_string(),
            "0.3"
        );
        assert_eq!(total_cents(1999, 7), Some(13993));
        assert_eq!(money::to_json(13993).to_string(), "139.93");
        assert_eq!(total_cents(money::MAX_CENTS, 1), Some(money::MAX_CENTS));
        assert_eq!(total_cents(money::MAX_CENTS, 2), None);
        assert_eq!(total_cents(5_000_000_000, 2), None);
        assert_eq!(total_cents(4_999_999_999, 2), Some(9_999_999_998));
        assert_eq!(total_cents(2, i64::MAX), None);
        assert_eq!(total_cents(0, 1), None);
    }

    #[test]
    fn order_json_has_the_contract_fields() {
        let value = order(5, 9, OrderStatus::Pending).to_json();
        assert_eq!(
            value,
            json!({
                "id": 5,
                "user_id": 9,
                "product_id": 7,
                "product_name": "Widget",
                "quantity": 3,
                "unit_price": 0.1,
                "total_price": 0.3,
                "status": "pending",
                "created_at": "2026-11-25T10:00:00.123456Z",
                "updated_at": "2026-11-25T10:00:00.123456Z"
            })
        );
        assert_eq!(value["total_price"].to_string(), "0.3");
    }

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
            None,
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
            None,
        );
        assert_ne!(other.event_id, event.event_id);
    }
}
