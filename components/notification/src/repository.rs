//! All SQL of the notification service, behind [`NotificationStore`] so that the service
//! layer can be unit-tested natively with an in-memory fake.

use crate::model::{NewNotification, Notification};
use platform_guest::database::{self, DatabaseError, Value};
use platform_guest::db::{rows, Row};
use platform_guest::pagination::Page;

/// The unique constraint that makes recording an event idempotent.
pub const EVENT_ID_CONSTRAINT: &str = "notifications_event_id_key";

pub use platform_guest::db::StoreError;

/// What recording a notification did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new row was written.
    Stored,
    /// A notification for this `event_id` already existed; nothing was written.
    AlreadyStored,
}

/// The notifications table.
pub trait NotificationStore {
    /// Records `notification` unless one with the same `event_id` exists.
    fn record(&self, notification: &NewNotification) -> Result<Recorded, StoreError>;
    /// One page of a user's notifications, newest first.
    fn list_for_user(&self, user_id: i64, page: Page) -> Result<Vec<Notification>, StoreError>;
}

/// The store over the service's database capability.
pub struct Database;

const INSERT: &str = "INSERT INTO notifications (event_id, user_id, order_id, event, message) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING";

const LIST_FOR_USER: &str = "SELECT id, user_id, order_id, event, message, created_at \
     FROM notifications WHERE user_id = $1 \
     ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3";

impl NotificationStore for Database {
    fn record(&self, notification: &NewNotification) -> Result<Recorded, StoreError> {
        let params = [
            Value::Text(notification.event_id.clone()),
            Value::Int(notification.user_id),
            Value::Int(notification.order_id),
            Value::Text(notification.event.as_str().to_string()),
            Value::Text(notification.message.clone()),
        ];
        match database::execute(INSERT, &params) {
            Ok(0) => Ok(Recorded::AlreadyStored),
            Ok(_) => Ok(Recorded::Stored),
            // ON CONFLICT makes this unreachable on PostgreSQL; a backend that reports the
            // duplicate instead still means "already recorded".
            Err(DatabaseError::UniqueViolation(constraint))
                if constraint == EVENT_ID_CONSTRAINT =>
            {
                Ok(Recorded::AlreadyStored)
            }
            Err(error) => Err(error.into()),
        }
    }

    fn list_for_user(&self, user_id: i64, page: Page) -> Result<Vec<Notification>, StoreError> {
        let result = database::query(
            LIST_FOR_USER,
            &[
                Value::Int(user_id),
                Value::Int(page.limit),
                Value::Int(page.skip),
            ],
        )
        .map_err(StoreError::from)?;
        rows(&result).map(|row| notification(&row)).collect()
    }
}

fn notification(row: &Row<'_>) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: row.int("id")?,
        user_id: row.int("user_id")?,
        order_id: row.int("order_id")?,
        event: row.text("event")?,
        message: row.text("message")?,
        created_at: row.timestamp("created_at")?,
    })
}
