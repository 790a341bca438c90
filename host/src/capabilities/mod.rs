//! What components may reach: one module per WIT interface, each implementing the
//! generated `Host` trait for [`CallState`] over a backend.
//!
//! A [`ServiceCapabilities`] is built once per service at start (pools, clients, grants,
//! config); every call gets a fresh [`CallState`] that only points at it.

pub mod auth;
pub mod cache;
pub mod config;
pub mod database;
pub mod identity;
pub mod logging;
pub mod messaging;
pub mod outgoing_http;

use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::StoreLimits;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Everything a service's calls may use, shared by all of its calls.
pub struct ServiceCapabilities {
    pub service: String,
    pub database: Option<Arc<dyn database::DatabaseBackend>>,
    pub cache: Option<cache::ServiceCache>,
    pub messaging: Option<messaging::ServicePublisher>,
    pub auth: Arc<auth::TokenValidator>,
    pub identity: Option<Arc<identity::IdentityProvider>>,
    pub outgoing_http: outgoing_http::OutgoingHttp,
    pub config: BTreeMap<String, String>,
}

/// The data of one call's `Store`: WASI with nothing granted, a resource table for
/// transactions, memory limits, and the service's capabilities.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: StoreLimits,
    pub capabilities: Arc<ServiceCapabilities>,
    /// Tags this call's log records.
    pub request_id: String,
}

impl CallState {
    pub fn new(
        capabilities: Arc<ServiceCapabilities>,
        limits: StoreLimits,
        request_id: String,
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
            limits,
            capabilities,
            request_id,
        }
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
