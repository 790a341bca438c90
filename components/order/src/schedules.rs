//! The order service's schedules (`[[services.order.schedules]]` in platform.toml).
//!
//! `maintenance` settles what requests left behind: stock changes whose answer was lost
//! and outbox events whose publish failed (see `service`), so neither waits for the next
//! order write.

use crate::log;
use crate::routes::wired_service;

/// Runs the schedule `name` once.
pub fn run(name: String) -> Result<(), String> {
    match name.as_str() {
        "maintenance" => {
            let settled = wired_service(None)
                .settle()
                .map_err(|error| format!("settling failed: {error:?}"))?;
            if settled != Default::default() {
                log::info(&format!(
                    "maintenance: {} stock change(s) settled, {} pending, {} event(s) published",
                    settled.stock_changes, settled.pending, settled.events
                ));
            }
            Ok(())
        }
        other => Err(format!("the order service has no schedule `{other}`")),
    }
}
