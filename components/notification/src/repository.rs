//! All SQL of the notification service, behind [`NotificationStore`] so that the service
//! layer can be unit-tested natively with an in-memory fake.

use crate::model::{NewNotification, Notification};
use platform_guest::database::{self, DatabaseError, Value};
use platform_guest::db::{rows, ColumnError, Row};
use platform_guest::pagination::Page;

/// The unique constraint that makes recording an event idempotent.
pub const EVENT_ID_CONSTRAINT: &str = "notifications_event_id_key";

/// Why the store could not answer.
#[derive(Debug, Clone, PartialEq)]
pub enum RepositoryError {
    /// The database is unreachable (503 over HTTP, retry for a message).
    Unavailable(String),
    /// Any other failure: a bad statement, an unexpected column...
    Failed(String),
}

impl std::fmt::Display for RepositoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepositoryError::Unavailable(cause) => write!(f, "database unavailable: {cause}"),
            RepositoryError::Failed(cause) => write!(f, "database error: {cause}"),
        }
    }
}

impl std::error::Error for RepositoryError {}

impl From<ColumnError> for RepositoryError {
    fn from(error: ColumnError) -> Self {
        RepositoryError::Failed(error.0)
    }
}

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
    fn record(&self, notification: &NewNotification) -> Result<Recorded, RepositoryError>;
    /// One page of a user's notifications, newest first.
    fn list_for_user(&self, user_id: i64, page: Page)
        -> Result<Vec<Notification>, RepositoryError>;
}

/// The store over the service's database capability.
pub struct Database;

const INSERT: &str = "INSERT INTO notifications (event_id, user_id, order_id, event, message) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING";

const LIST_FOR_USER: &str = "SELECT id, user_id, order_id, event, message, created_at \
     FROM notifications WHERE user_id = $1 \
     ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3";

impl NotificationStore for Database {
    fn record(&self, notification: &NewNotification) -> Result<Recorded, RepositoryError> {
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
            Err(error) => Err(map_error(error)),
        }
    }

    fn list_for_user(
        &self,
        user_id: i64,
        page: Page,
    ) -> Result<Vec<Notification>, RepositoryError> {
        let result = database::query(
            LIST_FOR_USER,
            &[
                Value::Int(user_id),
                Value::Int(page.limit),
                Value::Int(page.skip),
            ],
        )
        .map_err(map_error)?;
        rows(&result).map(|row| notification(&row)).collect()
    }
}

fn notification(row: &Row<'_>) -> Result<Notification, RepositoryError> {
    Ok(Notification {
        id: row.int("id")?,
        user_id: row.int("user_id")?,
        order_id: row.int("order_id")?,
        event: row.text("event")?,
        message: row.text("message")?,
        created_at: row.timestamp("created_at")?,
    })
}

fn map_error(error: DatabaseError) -> RepositoryError {
    match error {
        DatabaseError::Unavailable(cause) => RepositoryError::Unavailable(cause),
        DatabaseError::UniqueViolation(constraint) => {
            RepositoryError::Failed(format!("unique violation on {constraint}"))
        }
        DatabaseError::ForeignKeyViolation(constraint) => {
            RepositoryError::Failed(format!("foreign key violation on {constraint}"))
        }
        DatabaseError::CheckViolation(constraint) => {
            RepositoryError::Failed(format!("check violation on {constraint}"))
        }
        DatabaseError::QueryFailed(cause) => RepositoryError::Failed(cause),
        DatabaseError::InvalidState(cause) => {
            RepositoryError::Failed(format!("invalid state: {cause}"))
        }
    }
}
