//! The `logging` interface: component log records into the host's `tracing`, tagged with
//! the service and the request id.

use super::{granted, CallState, Grant, GrantError, ServiceCapabilities};
use crate::bindings::logging::{Host, Level};

const INTERFACE: &str = "logging";

/// A service's right to log; its records carry the service's name and the request id.
pub struct Logger;

pub(super) fn grant(_: &Grant<'_>, into: &mut ServiceCapabilities) -> Result<(), GrantError> {
    into.logging = Some(Logger);
    Ok(())
}

/// Longest log message kept; a component cannot flood the host's log with one call.
const MAX_MESSAGE_BYTES: usize = 8 * 1024;

impl Host for CallState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        granted(&self.capabilities.logging, INTERFACE, self)?;
        match self.log_budget {
            0 => return Ok(()),
            1 => {
                self.log_budget = 0;
                tracing::warn!(target: "component", service = %self.capabilities.service, request_id = %self.request_id, "log records over {} in one call are dropped", super::LOG_RECORDS_PER_CALL);
                return Ok(());
            }
            _ => self.log_budget -= 1,
        }
        let mut message = message;
        if message.len() > MAX_MESSAGE_BYTES {
            let mut end = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        let service = self.capabilities.service.as_str();
        let request_id = self.request_id.as_str();
        match level {
            Level::Trace => tracing::trace!(target: "component", service, request_id, "{message}"),
            Level::Debug => tracing::debug!(target: "component", service, request_id, "{message}"),
            Level::Info => tracing::info!(target: "component", service, request_id, "{message}"),
            Level::Warn => tracing::warn!(target: "component", service, request_id, "{message}"),
            Level::Error => tracing::error!(target: "component", service, request_id, "{message}"),
        }
        Ok(())
    }
}
