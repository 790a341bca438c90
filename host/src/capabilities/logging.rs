//! The `logging` interface: component log records into the host's `tracing`, tagged with
//! the service and the request id (and, inside a traced call, the trace and span ids of the
//! `tracing` span the call runs in); and the call's trace context for the component.

use super::{granted, CallState, Grant, GrantError, ServiceCapabilities};
use crate::bindings::logging::{Host, Level, TraceContext};
use crate::telemetry::logs::cut_to;
use crate::telemetry::Attribute;

const INTERFACE: &str = "logging";

/// A service's right to log; its records carry the service's name and the request id.
pub struct Logger;

pub(super) fn grant(_: &Grant<'_>, into: &mut ServiceCapabilities) -> Result<(), GrantError> {
    into.logging = Some(Logger);
    Ok(())
}

/// Longest log message kept; a component cannot flood the host's log with one call.
const MAX_MESSAGE_BYTES: usize = 8 * 1024;
/// Longest span attribute key and value a component may set.
const MAX_ATTRIBUTE_KEY_BYTES: usize = 128;
const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;
/// Attribute namespaces the platform's own spans use: a component cannot overwrite what
/// the host recorded (a route, a status, a version).
const RESERVED_PREFIXES: &[&str] = &[
    "http.",
    "url.",
    "server.",
    "client.",
    "network.",
    "db.",
    "messaging.",
    "rpc.",
    "service.",
    "error.",
    "otel.",
    "platform.",
];

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
        let message = cut_to(message, MAX_MESSAGE_BYTES);
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

    async fn current_trace(&mut self) -> wasmtime::Result<Option<TraceContext>> {
        granted(&self.capabilities.logging, INTERFACE, self)?;
        Ok(self.trace.as_ref().map(|trace| {
            let context = trace.w3c();
            TraceContext {
                trace_id: context.trace_id,
                span_id: context.span_id,
                traceparent: context.traceparent,
                tracestate: context.tracestate,
                sampled: context.sampled,
            }
        }))
    }

    async fn set_span_attribute(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        granted(&self.capabilities.logging, INTERFACE, self)?;
        let Some(trace) = &self.trace else {
            return Ok(());
        };
        let lowercase = key.to_ascii_lowercase();
        let reserved = RESERVED_PREFIXES
            .iter()
            .any(|prefix| lowercase.starts_with(prefix));
        if self.span_attribute_budget == 0
            || reserved
            || key.is_empty()
            || key.len() > MAX_ATTRIBUTE_KEY_BYTES
        {
            return Ok(());
        }
        self.span_attribute_budget -= 1;
        trace.set(Attribute::new(
            key,
            cut_to(value, MAX_ATTRIBUTE_VALUE_BYTES),
        ));
        Ok(())
    }
}
