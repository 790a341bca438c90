//! Business rules: one notification per order event, whatever the number of deliveries,
//! and each user reads only their own notifications.

use crate::model::{EventError, NewNotification, Notification, OrderEvent};
use crate::repository::{NotificationStore, Recorded, StoreError};
use platform_guest::logging::Level;
use platform_guest::messaging_types::Outcome;
use platform_guest::pagination::Page;

/// What handling one delivery came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    /// A new notification was recorded.
    Stored {
        notification: NewNotification,
        username: Option<String>,
    },
    /// The event was recorded by an earlier delivery.
    Duplicate { event_id: String },
    /// The payload can never become a notification.
    Rejected(EventError),
    /// The database failed; a later delivery may succeed.
    Failed { event_id: String, error: StoreError },
}

impl Handled {
    /// What the host should do with the delivery.
    pub fn outcome(&self) -> Outcome {
        match self {
            Handled::Stored { .. } | Handled::Duplicate { .. } => Outcome::Ack,
            Handled::Rejected(error) => Outcome::DeadLetter(error.to_string()),
            // A database that is down is waited out; any other failure counts as one.
            Handled::Failed {
                event_id,
                error: error @ StoreError::Unavailable(_),
            } => Outcome::Unavailable(format!("event {event_id}: {error}")),
            Handled::Failed { event_id, error } => {
                Outcome::Retry(format!("event {event_id}: {error}"))
            }
        }
    }

    /// The record the component logs itself; the host already logs the reason of a retry
    /// or a dead letter, so those need none.
    pub fn log_record(&self) -> Option<(Level, String)> {
        match self {
            Handled::Stored {
                notification,
                username,
            } => {
                let user = match username {
                    Some(name) => format!("user {} ({name})", notification.user_id),
                    None => format!("user {}", notification.user_id),
                };
                Some((
                    Level::Info,
                    format!(
                        "notification for {user}, {} event {}: {}",
                        notification.event.as_str(),
                        notification.event_id,
                        notification.message
                    ),
                ))
            }
            Handled::Duplicate { event_id } => Some((
                Level::Info,
                format!("event {event_id} already recorded; redelivery acknowledged"),
            )),
            Handled::Rejected(_) | Handled::Failed { .. } => None,
        }
    }
}

/// Records the notification for one delivered order event.
pub fn handle_event(
    store: &impl NotificationStore,
    payload: &[u8],
    headers: &[(String, String)],
) -> Handled {
    let event = match OrderEvent::parse(payload, headers) {
        Ok(event) => event,
        Err(error) => return Handled::Rejected(error),
    };
    let notification = event.to_notification();
    match store.record(&notification) {
        Ok(Recorded::Stored) => Handled::Stored {
            notification,
            username: event.username,
        },
        Ok(Recorded::AlreadyStored) => Handled::Duplicate {
            event_id: event.event_id,
        },
        Err(error) => Handled::Failed {
            event_id: event.event_id,
            error,
        },
    }
}

/// The caller's notifications, newest first.
pub fn list_notifications(
    store: &impl NotificationStore,
    user_id: i64,
    page: Page,
) -> Result<Vec<Notification>, StoreError> {
    store.list_for_user(user_id, page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventKind;
    use serde_json::{json, Value};
    use std::cell::{Cell, RefCell};

    /// An in-memory notifications table with the same uniqueness rule.
    #[derive(Default)]
    struct FakeStore {
        rows: RefCell<Vec<Notification>>,
        failure: Option<StoreError>,
        calls: Cell<usize>,
    }

    impl FakeStore {
        fn failing(error: StoreError) -> Self {
            FakeStore {
                failure: Some(error),
                ..Default::default()
            }
        }
    }

    impl NotificationStore for FakeStore {
        fn record(&self, notification: &NewNotification) -> Result<Recorded, StoreError> {
            self.calls.set(self.calls.get() + 1);
            if let Some(error) = &self.failure {
                return Err(error.clone());
            }
            let mut rows = self.rows.borrow_mut();
            // The fake keeps the event id in `created_at`'s place to check uniqueness.
            if rows
                .iter()
                .any(|row| row.created_at == notification.event_id)
            {
                return Ok(Recorded::AlreadyStored);
            }
            let id = rows.len() as i64 + 1;
            rows.push(Notification {
                id,
                user_id: notification.user_id,
                order_id: notification.order_id,
                event: notification.event.as_str().to_string(),
                message: notification.message.clone(),
                created_at: notification.event_id.clone(),
            });
            Ok(Recorded::Stored)
        }

        fn list_for_user(&self, user_id: i64, page: Page) -> Result<Vec<Notification>, StoreError> {
            if let Some(error) = &self.failure {
                return Err(error.clone());
            }
            let mut mine: Vec<_> = self
                .rows
                .borrow()
                .iter()
                .filter(|row| row.user_id == user_id)
                .cloned()
                .collect();
            mine.sort_by_key(|row| std::cmp::Reverse(row.id));
            Ok(mine
                .into_iter()
                .skip(page.skip as usize)
                .take(page.limit as usize)
                .collect())
        }
    }

    fn event(name: &str, event_id: &str, order_id: i64, user_id: i64) -> Vec<u8> {
        let value: Value = json!({
            "event": name,
            "event_id": event_id,
            "occurred_at": "2026-11-25T10:00:00Z",
            "data": {
                "order_id": order_id, "user_id": user_id, "username": "alice",
                "product_id": 3, "product_name": "Widget", "quantity": 2,
                "unit_price": "19.99", "total_price": "39.98",
                "status": "pending", "created_at": "2026-11-25T10:00:00Z"
            }
        });
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn a_valid_event_is_stored_and_acknowledged() {
        let store = FakeStore::default();
        let handled = handle_event(&store, &event("order.created", "e1", 12, 7), &[]);
        assert!(matches!(handled.outcome(), Outcome::Ack));
        let Handled::Stored {
            notification,
            username,
        } = &handled
        else {
            panic!("expected Stored, got {handled:?}");
        };
        assert_eq!(notification.event, EventKind::Created);
        assert_eq!(
            notification.message,
            "Order #12 placed: 2 x Widget, total 39.98."
        );
        assert_eq!(username.as_deref(), Some("alice"));
        let (level, line) = handled.log_record().unwrap();
        assert!(matches!(level, Level::Info));
        assert!(
            line.contains("user 7 (alice)") && line.contains("Order #12 placed"),
            "{line}"
        );
        assert_eq!(store.rows.borrow().len(), 1);
    }

    #[test]
    fn a_redelivered_event_is_acknowledged_without_a_second_notification() {
        let store = FakeStore::default();
        let payload = event("order.cancelled", "e1", 12, 7);
        assert!(matches!(
            handle_event(&store, &payload, &[]),
            Handled::Stored { .. }
        ));
        let again = handle_event(&store, &payload, &[]);
        assert_eq!(
            again,
            Handled::Duplicate {
                event_id: "e1".into()
            }
        );
        assert!(matches!(again.outcome(), Outcome::Ack));
        assert!(again.log_record().is_some());
        assert_eq!(store.rows.borrow().len(), 1);
        assert_eq!(
            store.rows.borrow()[0].message,
            "Order #12 cancelled: 2 x Widget, total 39.98."
        );
    }

    #[test]
    fn malformed_payloads_are_dead_lettered_without_touching_the_database() {
        let store = FakeStore::default();
        let outcome = handle_event(&store, b"hello", &[]).outcome();
        assert!(
            matches!(&outcome, Outcome::DeadLetter(reason) if reason.starts_with("not JSON: "))
        );
        let outcome = handle_event(&store, &[0xc3, 0x28], &[]).outcome();
        assert!(
            matches!(&outcome, Outcome::DeadLetter(reason) if reason.starts_with("not JSON: "))
        );
        let outcome = handle_event(&store, &event("order.shipped", "e1", 1, 1), &[]).outcome();
        assert!(
            matches!(&outcome, Outcome::DeadLetter(reason) if reason.contains("order.shipped"))
        );
        let missing = br#"{"event": "order.created", "data": {"order_id": 1, "user_id": 1}}"#;
        let handled = handle_event(&store, missing, &[]);
        assert!(handled.log_record().is_none());
        assert!(
            matches!(&handled.outcome(), Outcome::DeadLetter(reason) if reason.contains("event_id"))
        );
        let no_user = br#"{"event": "order.created", "event_id": "x", "data": {"order_id": 1}}"#;
        let outcome = handle_event(&store, no_user, &[]).outcome();
        assert!(matches!(&outcome, Outcome::DeadLetter(reason) if reason.contains("data.user_id")));
        assert_eq!(store.calls.get(), 0);
    }

    #[test]
    fn the_event_id_header_serves_older_producers() {
        let store = FakeStore::default();
        let payload = br#"{"event": "order.created", "data": {"order_id": 4, "user_id": 2}}"#;
        let headers = [("event_id".to_string(), "legacy-1".to_string())];
        let handled = handle_event(&store, payload, &headers);
        assert!(matches!(handled.outcome(), Outcome::Ack));
        assert_eq!(store.rows.borrow()[0].created_at, "legacy-1");
    }

    #[test]
    fn a_database_that_is_down_is_waited_out_and_other_failures_are_retried() {
        let store = FakeStore::failing(StoreError::Unavailable("connection refused".into()));
        let handled = handle_event(&store, &event("order.created", "e9", 1, 1), &[]);
        assert!(handled.log_record().is_none());
        match handled.outcome() {
            Outcome::Unavailable(reason) => {
                assert!(
                    reason.starts_with("event e9: database unavailable"),
                    "{reason}"
                )
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let store = FakeStore::failing(StoreError::Internal("deadlock detected".into()));
        let handled = handle_event(&store, &event("order.created", "e9", 1, 1), &[]);
        match handled.outcome() {
            Outcome::Retry(reason) => {
                assert!(reason.starts_with("event e9: database error"), "{reason}")
            }
            other => panic!("expected Retry, got {other:?}"),
        }
    }

    #[test]
    fn users_list_only_their_own_notifications_newest_first() {
        let store = FakeStore::default();
        for (id, user) in [("a", 1), ("b", 2), ("c", 1), ("d", 1)] {
            handle_event(&store, &event("order.created", id, 10, user), &[]);
        }
        let page = Page {
            skip: 0,
            limit: 100,
        };
        let ids: Vec<_> = list_notifications(&store, 1, page)
            .unwrap()
            .iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ids, [4, 3, 1]);
        let page = Page { skip: 1, limit: 1 };
        let ids: Vec<_> = list_notifications(&store, 1, page)
            .unwrap()
            .iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ids, [3]);
        assert!(list_notifications(&store, 3, Page { skip: 0, limit: 10 })
            .unwrap()
            .is_empty());
    }
}
