//! The message handler: a delivery of the service's subscription -> the service's rules ->
//! ack, retry or dead-letter.

use crate::repository::Database;
use crate::service;
use platform_guest::messaging_types::{Delivery, Outcome};

/// Records the notification an order event calls for, once per `event_id`.
pub fn handle_message(delivery: Delivery) -> Outcome {
    let handled = service::handle_event(
        &Database,
        &delivery.message.payload,
        &delivery.message.headers,
    );
    if let Some((level, line)) = handled.log_record() {
        platform_guest::logging::log(level, &line);
    }
    handled.outcome()
}
