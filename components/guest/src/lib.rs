//! What every service component repeats, so that each component keeps only its domain.
//!
//! # Layout
//! - [`bindings`]: the one `wit_bindgen::generate!` for the `platform:service/service`
//!   world; components call [`export_service!`] on their type.
//! - [`http`]: route declaration, request accessors and response builders.
//! - [`errors`]: FastAPI-shaped error bodies (`{"detail": ...}`, 422 lists).
//! - [`money`]: exact prices in integer cents, parsed from JSON numbers or strings.
//! - [`pagination`]: `skip` / `limit` query parameters as the contract defines them.
//! - [`db`]: typed access to the rows the database capability returns.
//!
//! The helpers are plain Rust over the generated types, so components unit-test them
//! natively with `cargo test`; only calls into capabilities need a host.

pub mod bindings {
    wit_bindgen::generate!({
        world: "service",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_service",
        default_bindings_module: "platform_guest::bindings",
        generate_all,
    });
}

pub mod db;
pub mod errors;
pub mod http;
pub mod money;
pub mod pagination;

pub use bindings::platform::service::{
    auth, cache, config, database, http_types, identity_provider, logging, messaging,
    messaging_types, outgoing_http,
};

/// Logs through the host's `tracing` at info level.
pub fn log_info(message: &str) {
    logging::log(logging::Level::Info, message);
}

/// Logs through the host's `tracing` at warn level.
pub fn log_warn(message: &str) {
    logging::log(logging::Level::Warn, message);
}

/// Logs through the host's `tracing` at error level.
pub fn log_error(message: &str) {
    logging::log(logging::Level::Error, message);
}

/// The health check of a service that cannot work without its database: one `SELECT 1`.
pub fn database_health() -> Result<(), String> {
    database::query("SELECT 1", &[])
        .map(|_| ())
        .map_err(|error| format!("database: {error:?}"))
}
