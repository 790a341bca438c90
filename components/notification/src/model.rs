//! Domain types: the order events the service consumes, the notifications it records,
//! and the sentence each notification carries.

use platform_guest::money;
use serde::Serialize;
use serde_json::{Map, Value};

/// The order events the notification service understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Cancelled,
}

impl EventKind {
    /// The event name as it travels in the payload and is stored: `order.created`...
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "order.created",
            EventKind::Cancelled => "order.cancelled",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        match name {
            "order.created" => Some(EventKind::Created),
            "order.cancelled" => Some(EventKind::Cancelled),
            _ => None,
        }
    }

    /// The past participle the notification sentence uses.
    fn verb(self) -> &'static str {
        match self {
            EventKind::Created => "placed",
            EventKind::Cancelled => "cancelled",
        }
    }
}

/// An order event, reduced to what a notification needs.
///
/// Only `event`, `event_id`, `data.order_id` and `data.user_id` are required; the rest
/// only enrich the sentence, so an absent or malformed one is left out rather than
/// refusing the whole event.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderEvent {
    pub kind: EventKind,
    pub event_id: String,
    pub order_id: i64,
    pub user_id: i64,
    pub username: Option<String>,
    pub product_id: Option<i64>,
    pub product_name: Option<String>,
    pub quantity: Option<i64>,
    /// `data.total_price` in cents.
    pub total_cents: Option<i64>,
}

/// Why a payload can never become a notification (it goes to the dead-letter queue).
#[derive(Debug, Clone, PartialEq)]
pub enum EventError {
    /// The payload is not UTF-8 or not JSON at all.
    NotJson(String),
    /// Valid JSON, but not an object.
    NotAnObject,
    /// A required field is absent (dotted path, e.g. `data.order_id`).
    MissingField(&'static str),
    /// A required field is present but unusable.
    InvalidField(&'static str, String),
    /// An `event` this service does not know.
    UnknownEvent(String),
}

impl std::fmt::Display for EventError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventError::NotJson(cause) => write!(f, "not JSON: {cause}"),
            EventError::NotAnObject => {
                f.write_str("not an event: the payload is not a JSON object")
            }
            EventError::MissingField(field) => write!(f, "missing required field `{field}`"),
            EventError::InvalidField(field, why) => write!(f, "invalid field `{field}`: {why}"),
            EventError::UnknownEvent(name) => write!(f, "unknown event `{name}`"),
        }
    }
}

impl std::error::Error for EventError {}

/// The header older producers put the event id in when the body had none.
pub const EVENT_ID_HEADER: &str = "event_id";

impl OrderEvent {
    /// Parses a delivery's payload; `headers` supply `event_id` when the body lacks it.
    pub fn parse(payload: &[u8], headers: &[(String, String)]) -> Result<OrderEvent, EventError> {
        let text = std::str::from_utf8(payload)
            .map_err(|error| EventError::NotJson(format!("payload is not UTF-8 ({error})")))?;
        let value: Value =
            serde_json::from_str(text).map_err(|error| EventError::NotJson(error.to_string()))?;
        let Value::Object(body) = value else {
            return Err(EventError::NotAnObject);
        };

        let kind = match body.get("event") {
            None | Some(Value::Null) => return Err(EventError::MissingField("event")),
            Some(Value::String(name)) => EventKind::parse(name.trim())
                .ok_or_else(|| EventError::UnknownEvent(name.clone()))?,
            Some(other) => {
                return Err(EventError::InvalidField(
                    "event",
                    format!("expected a string, got {other}"),
                ))
            }
        };
        let event_id = event_id(&body, headers)?;
        let data = match body.get("data") {
            None | Some(Value::Null) => return Err(EventError::MissingField("data")),
            Some(Value::Object(data)) => data,
            Some(_) => {
                return Err(EventError::InvalidField(
                    "data",
                    "expected an object".into(),
                ))
            }
        };
        let order_id = required_id(data, "order_id", "data.order_id")?;
        let user_id = required_id(data, "user_id", "data.user_id")?;

        Ok(OrderEvent {
            kind,
            event_id,
            order_id,
            user_id,
            username: optional_text(data, "username"),
            product_id: data.get("product_id").and_then(positive_integer),
            product_name: optional_text(data, "product_name"),
            quantity: data.get("quantity").and_then(positive_integer),
            total_cents: data
                .get("total_price")
                .and_then(|total| money::parse_price(total, "total_price").ok()),
        })
    }

    /// The sentence stored with the notification, e.g.
    /// `Order #12 placed: 2 x Widget, total 39.98.`
    pub fn message(&self) -> String {
        let mut details = Vec::new();
        let product = match (&self.product_name, self.product_id) {
            (Some(name), _) => Some(name.clone()),
            (None, Some(id)) => Some(format!("product #{id}")),
            (None, None) => None,
        };
        match (self.quantity, product) {
            (Some(quantity), Some(product)) => details.push(format!("{quantity} x {product}")),
            (None, Some(product)) => details.push(product),
            (Some(quantity), None) => {
                let unit = if quantity == 1 { "item" } else { "items" };
                details.push(format!("{quantity} {unit}"));
            }
            (None, None) => {}
        }
        if let Some(cents) = self.total_cents {
            details.push(format!("total {}", format_cents(cents)));
        }
        let head = format!("Order #{} {}", self.order_id, self.kind.verb());
        if details.is_empty() {
            format!("{head}.")
        } else {
            format!("{head}: {}.", details.join(", "))
        }
    }

    /// The row to insert for this event.
    pub fn to_notification(&self) -> NewNotification {
        NewNotification {
            event_id: self.event_id.clone(),
            user_id: self.user_id,
            order_id: self.order_id,
            event: self.kind,
            message: self.message(),
        }
    }
}

/// `event_id` from the body, else from the `event_id` header (older producers).
fn event_id(body: &Map<String, Value>, headers: &[(String, String)]) -> Result<String, EventError> {
    match body.get("event_id") {
        Some(Value::String(id)) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        // An empty string or null is as good as absent: fall back to the header.
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(other) => {
            return Err(EventError::InvalidField(
                "event_id",
                format!("expected a string, got {other}"),
            ))
        }
    }
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(EVENT_ID_HEADER))
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
        .map(str::to_string)
        .ok_or(EventError::MissingField("event_id"))
}

fn required_id(
    data: &Map<String, Value>,
    name: &str,
    path: &'static str,
) -> Result<i64, EventError> {
    match data.get(name) {
        None | Some(Value::Null) => Err(EventError::MissingField(path)),
        Some(value) => positive_integer(value).ok_or_else(|| {
            EventError::InvalidField(path, format!("expected a positive integer, got {value}"))
        }),
    }
}

/// A positive integer from a JSON integer, a whole float or an integer string.
fn positive_integer(value: &Value) -> Option<i64> {
    let number = match value {
        Value::Number(number) => number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }?;
    (number > 0).then_some(number)
}

fn optional_text(data: &Map<String, Value>, name: &str) -> Option<String> {
    data.get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_string)
}

/// Cents as a two-decimal amount: 3998 -> `39.98`, 2000 -> `20.00`.
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

/// A notification about to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub event_id: String,
    pub user_id: i64,
    pub order_id: i64,
    pub event: EventKind,
    pub message: String,
}

/// A recorded notification, as `GET /notifications` returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub id: i64,
    pub user_id: i64,
    pub order_id: i64,
    pub event: String,
    pub message: String,
    /// RFC 3339 in UTC, as the database produced it.
    pub created_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    fn created() -> Value {
        json!({
            "event": "order.created",
            "event_id": "3f0e1c9a-8a4b-4f7e-9d55-0c3b7a1e2d10",
            "occurred_at": "2026-11-25T10:00:00Z",
            "data": {
                "order_id": 12,
                "user_id": 7,
                "username": "alice",
                "product_id": 3,
                "product_name": "Widget",
                "quantity": 2,
                "unit_price": 19.99,
                "total_price": 39.98,
                "status": "pending",
                "created_at": "2026-11-25T10:00:00Z"
            }
        })
    }

    fn parse(value: Value) -> Result<OrderEvent, EventError> {
        OrderEvent::parse(&payload(value), &[])
    }

    #[test]
    fn parses_a_created_event() {
        let event = parse(created()).unwrap();
        assert_eq!(
            event,
            OrderEvent {
                kind: EventKind::Created,
                event_id: "3f0e1c9a-8a4b-4f7e-9d55-0c3b7a1e2d10".into(),
                order_id: 12,
                user_id: 7,
                username: Some("alice".into()),
                product_id: Some(3),
                product_name: Some("Widget".into()),
                quantity: Some(2),
                total_cents: Some(3998),
            }
        );
        assert_eq!(
            event.message(),
            "Order #12 placed: 2 x Widget, total 39.98."
        );
    }

    #[test]
    fn parses_a_cancelled_event() {
        let mut value = created();
        value["event"] = json!("order.cancelled");
        value["data"]["status"] = json!("cancelled");
        let event = parse(value).unwrap();
        assert_eq!(event.kind, EventKind::Cancelled);
        assert_eq!(
            event.message(),
            "Order #12 cancelled: 2 x Widget, total 39.98."
        );
        let row = event.to_notification();
        assert_eq!(row.event.as_str(), "order.cancelled");
        assert_eq!((row.user_id, row.order_id), (7, 12));
        assert_eq!(row.event_id, "3f0e1c9a-8a4b-4f7e-9d55-0c3b7a1e2d10");
    }

    #[test]
    fn totals_may_be_strings_or_numbers() {
        for total in [json!("39.98"), json!(39.98), json!(" 39.980 ")] {
            let mut value = created();
            value["data"]["total_price"] = total;
            assert_eq!(
                parse(value).unwrap().message(),
                "Order #12 placed: 2 x Widget, total 39.98."
            );
        }
        let mut value = created();
        value["data"]["total_price"] = json!(20);
        assert_eq!(
            parse(value).unwrap().message(),
            "Order #12 placed: 2 x Widget, total 20.00."
        );
        let mut value = created();
        value["data"]["total_price"] = json!("0.3");
        assert_eq!(parse(value).unwrap().total_cents, Some(30));
        // The seed design's binary floats, rounded by nobody: still not a reason to fail.
        let mut value = created();
        value["data"]["total_price"] = json!(0.30000000000000004);
        assert_eq!(
            parse(value).unwrap().message(),
            "Order #12 placed: 2 x Widget."
        );
    }

    #[test]
    fn a_missing_or_invalid_total_is_left_out() {
        let mut value = created();
        value["data"].as_object_mut().unwrap().remove("total_price");
        assert_eq!(
            parse(value).unwrap().message(),
            "Order #12 placed: 2 x Widget."
        );
        for bad in [json!("abc"), json!(null), json!(-1), json!(true)] {
            let mut value = created();
            value["data"]["total_price"] = bad;
            let event = parse(value).unwrap();
            assert_eq!(event.total_cents, None);
            assert_eq!(event.message(), "Order #12 placed: 2 x Widget.");
        }
    }

    #[test]
    fn sparse_events_still_make_a_sentence() {
        let minimal = json!({"event": "order.created", "event_id": "e1", "data": {"order_id": 5, "user_id": 1}});
        assert_eq!(parse(minimal).unwrap().message(), "Order #5 placed.");
        let by_id = json!({"event": "order.cancelled", "event_id": "e2",
            "data": {"order_id": 5, "user_id": 1, "product_id": 9, "total_price": "10"}});
        assert_eq!(
            parse(by_id).unwrap().message(),
            "Order #5 cancelled: product #9, total 10.00."
        );
        let no_quantity = json!({"event": "order.created", "event_id": "e3",
            "data": {"order_id": 5, "user_id": 1, "product_name": "Gadget", "quantity": "x"}});
        assert_eq!(
            parse(no_quantity).unwrap().message(),
            "Order #5 placed: Gadget."
        );
        let one_item = json!({"event": "order.created", "event_id": "e4",
            "data": {"order_id": 5, "user_id": 1, "quantity": 1}});
        assert_eq!(
            parse(one_item).unwrap().message(),
            "Order #5 placed: 1 item."
        );
    }

    #[test]
    fn ids_may_be_numeric_strings() {
        let mut value = created();
        value["data"]["order_id"] = json!("12");
        value["data"]["user_id"] = json!(7.0);
        let event = parse(value).unwrap();
        assert_eq!((event.order_id, event.user_id), (12, 7));
    }

    #[test]
    fn required_fields_are_required() {
        let without = |path: &[&str]| {
            let mut value = created();
            let (last, parents) = path.split_last().unwrap();
            let mut target = &mut value;
            for parent in parents {
                target = &mut target[*parent];
            }
            target.as_object_mut().unwrap().remove(*last);
            parse(value).unwrap_err()
        };
        assert_eq!(without(&["event"]), EventError::MissingField("event"));
        assert_eq!(without(&["event_id"]), EventError::MissingField("event_id"));
        assert_eq!(without(&["data"]), EventError::MissingField("data"));
        assert_eq!(
            without(&["data", "order_id"]),
            EventError::MissingField("data.order_id")
        );
        assert_eq!(
            without(&["data", "user_id"]),
            EventError::MissingField("data.user_id")
        );
        assert_eq!(
            without(&["data", "user_id"]).to_string(),
            "missing required field `data.user_id`"
        );
    }

    #[test]
    fn unusable_required_fields_are_rejected() {
        let with = |path: &[&str], bad: Value| {
            let mut value = created();
            let mut target = &mut value;
            for part in path {
                target = &mut target[*part];
            }
            *target = bad;
            parse(value).unwrap_err()
        };
        assert_eq!(
            with(&["event"], json!("order.shipped")),
            EventError::UnknownEvent("order.shipped".into())
        );
        assert!(matches!(
            with(&["event"], json!(3)),
            EventError::InvalidField("event", _)
        ));
        assert!(matches!(
            with(&["event_id"], json!(42)),
            EventError::InvalidField("event_id", _)
        ));
        assert_eq!(
            with(&["event_id"], json!("  ")),
            EventError::MissingField("event_id")
        );
        assert!(matches!(
            with(&["data"], json!([1])),
            EventError::InvalidField("data", _)
        ));
        assert!(matches!(
            with(&["data", "order_id"], json!("twelve")),
            EventError::InvalidField("data.order_id", _)
        ));
        assert!(matches!(
            with(&["data", "user_id"], json!(0)),
            EventError::InvalidField("data.user_id", _)
        ));
        assert!(matches!(
            with(&["data", "user_id"], json!(1.5)),
            EventError::InvalidField("data.user_id", _)
        ));
    }

    #[test]
    fn non_json_and_non_objects_are_rejected() {
        let error = OrderEvent::parse(b"{not json", &[]).unwrap_err();
        assert!(matches!(error, EventError::NotJson(_)));
        assert!(error.to_string().starts_with("not JSON: "));
        let error = OrderEvent::parse(&[0xff, 0xfe, b'{', b'}'], &[]).unwrap_err();
        assert!(matches!(error, EventError::NotJson(_)));
        assert!(error
            .to_string()
            .starts_with("not JSON: payload is not UTF-8"));
        assert!(matches!(
            OrderEvent::parse(b"", &[]).unwrap_err(),
            EventError::NotJson(_)
        ));
        assert_eq!(
            OrderEvent::parse(b"[1, 2]", &[]).unwrap_err(),
            EventError::NotAnObject
        );
        assert_eq!(
            OrderEvent::parse(b"\"order.created\"", &[]).unwrap_err(),
            EventError::NotAnObject
        );
    }

    #[test]
    fn event_id_falls_back_to_the_header() {
        let mut value = created();
        value.as_object_mut().unwrap().remove("event_id");
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("event_id".to_string(), "from-header".to_string()),
        ];
        let event = OrderEvent::parse(&payload(value.clone()), &headers).unwrap();
        assert_eq!(event.event_id, "from-header");

        let upper = vec![("Event_ID".to_string(), " abc ".to_string())];
        assert_eq!(
            OrderEvent::parse(&payload(value.clone()), &upper)
                .unwrap()
                .event_id,
            "abc"
        );

        let empty = vec![("event_id".to_string(), "".to_string())];
        assert_eq!(
            OrderEvent::parse(&payload(value.clone()), &empty).unwrap_err(),
            EventError::MissingField("event_id")
        );
        let other = vec![("x-event-id".to_string(), "nope".to_string())];
        assert_eq!(
            OrderEvent::parse(&payload(value.clone()), &other).unwrap_err(),
            EventError::MissingField("event_id")
        );

        // The body wins over the header.
        let mut with_body = value;
        with_body["event_id"] = json!("from-body");
        assert_eq!(
            OrderEvent::parse(&payload(with_body), &headers)
                .unwrap()
                .event_id,
            "from-body"
        );
    }

    #[test]
    fn formats_cents_with_two_decimals() {
        assert_eq!(format_cents(3998), "39.98");
        assert_eq!(format_cents(2000), "20.00");
        assert_eq!(format_cents(5), "0.05");
        assert_eq!(format_cents(money::MAX_CENTS), "99999999.99");
    }

    #[test]
    fn notification_json_shape() {
        let notification = Notification {
            id: 1,
            user_id: 7,
            order_id: 12,
            event: "order.created".into(),
            message: "Order #12 placed: 2 x Widget, total 39.98.".into(),
            created_at: "2026-11-25T10:00:00.123456Z".into(),
        };
        assert_eq!(
            serde_json::to_value(&notification).unwrap(),
            json!({"id": 1, "user_id": 7, "order_id": 12, "event": "order.created",
                   "message": "Order #12 placed: 2 x Widget, total 39.98.",
                   "created_at": "2026-11-25T10:00:00.123456Z"})
        );
    }
}
