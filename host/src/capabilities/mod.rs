//! What components may reach: one file per WIT interface, each implementing the generated
//! `Host` trait for [`CallState`], checking the grant, and lowering its backend's errors
//! into the interface's WIT errors.
//!
//! [`CAPABILITIES`] is the one table of them: the grant name (which is also the WIT
//! interface `platform:service/<name>`) and how a service's share is built from its
//! configuration and the backends. A [`ServiceCapabilities`] is built once per service at
//! start; every call gets a fresh [`CallState`] that only points at it.
//!
//! A call to a capability the service was not granted traps: a component importing it is
//! refused at load, so reaching one is a host bug, never an answer for the guest.

pub mod auth;
pub mod cache;
pub mod config;
pub mod database;
pub mod identity_provider;
pub mod logging;
pub mod messaging;
pub mod outgoing_http;

use crate::backends::broker::Broker;
use crate::backends::cache::Cache;
use crate::backends::database::Database;
use crate::backends::http_client::HttpClient;
use crate::backends::identity::IdentityProvider;
use crate::backends::token_validator::{TokenValidator, ValidatedToken};
use crate::config::{Capability, PlatformConfig, ServiceConfig};
use crate::telemetry::{Attribute, Kind, Trace};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// One row of [`CAPABILITIES`].
pub struct CapabilityRow {
    pub capability: Capability,
    /// The WIT interface, as a component imports it (`platform:service/<interface>@…`).
    pub interface: &'static str,
    /// Builds the service's share of the capability into its [`ServiceCapabilities`].
    pub grant: fn(&Grant<'_>, &mut ServiceCapabilities) -> Result<(), GrantError>,
}

/// Every capability the platform offers.
pub const CAPABILITIES: [CapabilityRow; 8] = [
    CapabilityRow {
        capability: Capability::Database,
        interface: "database",
        grant: database::grant,
    },
    CapabilityRow {
        capability: Capability::Cache,
        interface: "cache",
        grant: cache::grant,
    },
    CapabilityRow {
        capability: Capability::Messaging,
        interface: "messaging",
        grant: messaging::grant,
    },
    CapabilityRow {
        capability: Capability::Auth,
        interface: "auth",
        grant: auth::grant,
    },
    CapabilityRow {
        capability: Capability::IdentityProvider,
        interface: "identity-provider",
        grant: identity_provider::grant,
    },
    CapabilityRow {
        capability: Capability::OutgoingHttp,
        interface: "outgoing-http",
        grant: outgoing_http::grant,
    },
    CapabilityRow {
        capability: Capability::Config,
        interface: "config",
        grant: config::grant,
    },
    CapabilityRow {
        capability: Capability::Logging,
        interface: "logging",
        grant: logging::grant,
    },
];

/// Interfaces that only define types: importing them needs no grant.
pub const TYPE_INTERFACES: [&str; 2] = ["http-types", "messaging-types"];

/// The capability behind a WIT interface name, if there is one.
pub fn by_interface(interface: &str) -> Option<&'static CapabilityRow> {
    CAPABILITIES.iter().find(|row| row.interface == interface)
}

/// The backends a service's capabilities are built from: its own database, and what all
/// services share. `None` where no service needs that backend.
pub struct Backends {
    pub database: Option<Arc<dyn Database>>,
    pub cache: Option<Arc<dyn Cache>>,
    pub broker: Option<Arc<dyn Broker>>,
    pub http_client: HttpClient,
    pub token_validator: Arc<TokenValidator>,
    pub identity: Option<Arc<IdentityProvider>>,
}

/// What a capability's `grant` reads.
pub struct Grant<'a> {
    pub service: &'a str,
    pub config: &'a ServiceConfig,
    pub platform: &'a PlatformConfig,
    pub backends: &'a Backends,
}

/// Why a granted capability could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("service `{service}` is granted `{capability}`, but {reason}")]
pub struct GrantError {
    pub service: String,
    pub capability: &'static str,
    pub reason: String,
}

impl Grant<'_> {
    /// The shared backend `capability` runs on, or why it is missing.
    fn backend<T: Clone>(
        &self,
        backend: &Option<T>,
        capability: &'static str,
    ) -> Result<T, GrantError> {
        backend.clone().ok_or_else(|| GrantError {
            service: self.service.to_string(),
            capability,
            reason: "its backend was not opened".into(),
        })
    }
}

/// Everything a service's calls may use, shared by all of its calls. A capability the
/// service was not granted is `None`.
#[derive(Default)]
pub struct ServiceCapabilities {
    pub service: String,
    pub database: Option<Arc<dyn Database>>,
    pub cache: Option<cache::ServiceCache>,
    pub messaging: Option<messaging::ServicePublisher>,
    pub auth: Option<Arc<TokenValidator>>,
    pub identity: Option<Arc<IdentityProvider>>,
    pub outgoing_http: Option<outgoing_http::OutgoingHttp>,
    pub config: Option<config::ServiceValues>,
    pub logging: Option<logging::Logger>,
}

impl ServiceCapabilities {
    /// The capabilities `grant.config` names, each built by its row of [`CAPABILITIES`].
    pub fn build(grant: &Grant<'_>) -> Result<ServiceCapabilities, GrantError> {
        let mut capabilities = ServiceCapabilities {
            service: grant.service.to_string(),
            ..ServiceCapabilities::default()
        };
        for row in CAPABILITIES
            .iter()
            .filter(|row| grant.config.is_granted(row.capability))
        {
            (row.grant)(grant, &mut capabilities)?;
        }
        Ok(capabilities)
    }
}

/// A failed capability call: an error the guest receives as the interface's WIT error, or
/// a trap that ends the call.
#[derive(Debug)]
pub enum Failure<E> {
    Error(E),
    Trap(wasmtime::Error),
}

impl<E> Failure<E> {
    /// What the generated bindings do with it.
    fn lower(self) -> wasmtime::Result<E> {
        match self {
            Failure::Error(error) => Ok(error),
            Failure::Trap(trap) => Err(trap),
        }
    }
}

impl<E> From<wasmtime::Error> for Failure<E> {
    fn from(trap: wasmtime::Error) -> Self {
        Failure::Trap(trap)
    }
}

impl<E> From<wasmtime::component::ResourceTableError> for Failure<E> {
    fn from(error: wasmtime::component::ResourceTableError) -> Self {
        Failure::Trap(error.into())
    }
}

/// The trap a host function raises when a resource the call needs is saturated (bcrypt's
/// workers, say): the runtime answers it as an overload, not a component failure.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("{0} is saturated")]
pub struct Saturated(pub &'static str);

/// Ends `span`, if there is one, marked failed when `result` is an error (with no detail: a
/// database's message can quote the values of a row).
pub(crate) fn ended<T, E>(span: Option<Trace>, result: Result<T, E>) -> Result<T, E> {
    if let Some(span) = span {
        if result.is_err() {
            span.fail("failed");
        }
        span.end();
    }
    result
}

/// The service's share of a capability, or a trap naming it.
fn granted<'a, T>(
    share: &'a Option<T>,
    interface: &str,
    state: &CallState,
) -> wasmtime::Result<&'a T> {
    share.as_ref().ok_or_else(|| {
        wasmtime::format_err!(
            "`{interface}` is not granted to service `{}`",
            state.capabilities.service
        )
    })
}

/// The data of one call's `Store`: WASI with nothing granted, a resource table for
/// transactions, the limits on what the guest may allocate, the call's deadline and the
/// service's capabilities.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: Box<dyn ResourceLimiter + Send>,
    pub capabilities: Arc<ServiceCapabilities>,
    /// Tags this call's log records.
    pub request_id: String,
    /// When the call ends, answered or not: host work for it (a bcrypt job) not started by
    /// then is not started at all.
    pub deadline: Instant,
    /// Log records this call may still write.
    pub(crate) log_budget: u32,
    /// Transactions this call holds open.
    pub(crate) open_transactions: u32,
    /// The span the call runs in, when tracing is on: each capability call is a child.
    pub trace: Option<Trace>,
    /// Attributes the component may still add to that span.
    pub(crate) span_attribute_budget: u32,
    /// The bearer token the host validated for the request this call serves, if any: the
    /// call's own checks of it, and its in-process calls that carry it, need no new check.
    pub validated_token: Option<Arc<ValidatedToken>>,
}

/// Log records one call may write; the rest are dropped, with one warning.
pub const LOG_RECORDS_PER_CALL: u32 = 256;
/// Attributes one call may add to its span.
pub const SPAN_ATTRIBUTES_PER_CALL: u32 = 32;
/// Transactions one call may hold open at once.
pub const OPEN_TRANSACTIONS_PER_CALL: u32 = 8;

impl CallState {
    pub fn new(
        capabilities: Arc<ServiceCapabilities>,
        limiter: Box<dyn ResourceLimiter + Send>,
        request_id: String,
        deadline: Instant,
    ) -> CallState {
        // No preopened directories, no environment, no arguments, no network: a component
        // reaches the outside only through the platform's own interfaces. stderr is kept so
        // that a guest panic's message reaches the host's log.
        let wasi = WasiCtx::builder()
            .inherit_stderr()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        CallState {
            wasi,
            table: ResourceTable::new(),
            limiter,
            capabilities,
            request_id,
            deadline,
            log_budget: LOG_RECORDS_PER_CALL,
            open_transactions: 0,
            trace: None,
            span_attribute_budget: SPAN_ATTRIBUTES_PER_CALL,
            validated_token: None,
        }
    }

    /// A child span of the call's, for one capability call; `None` when tracing is off, so
    /// `attributes` is never built then.
    pub(crate) fn span(
        &self,
        name: impl FnOnce() -> String,
        kind: Kind,
        attributes: impl FnOnce() -> Vec<Attribute>,
    ) -> Option<Trace> {
        let trace = self.trace.as_ref()?;
        if !trace.is_recording() {
            return Some(trace.clone());
        }
        Some(trace.child(name(), kind, attributes()))
    }

    /// Readies a reused instance's state for its next call.
    pub fn begin_call(&mut self, request_id: &str, deadline: Instant) {
        request_id.clone_into(&mut self.request_id);
        self.deadline = deadline;
        self.log_budget = LOG_RECORDS_PER_CALL;
        self.span_attribute_budget = SPAN_ATTRIBUTES_PER_CALL;
        self.validated_token = None;
    }

    /// Transactions the call left open: an instance holding one is not reused.
    pub fn open_transactions(&self) -> u32 {
        self.open_transactions
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

// Interfaces that only define types still get (empty) generated host traits.
impl crate::bindings::http_types::Host for CallState {}
impl crate::bindings::messaging_types::Host for CallState {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_capability_has_one_row_named_as_in_platform_toml() {
        for row in &CAPABILITIES {
            let parsed: Capability =
                serde_json::from_value(serde_json::json!(row.interface)).unwrap();
            assert_eq!(parsed, row.capability, "row `{}`", row.interface);
            assert_eq!(
                CAPABILITIES
                    .iter()
                    .filter(|other| other.capability == row.capability)
                    .count(),
                1
            );
        }
        assert_eq!(CAPABILITIES.len(), Capability::COUNT);
    }
}
