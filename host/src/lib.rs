//! The platform host: runs services as Wasm components and gives them capabilities.
//!
//! # Layout
//! Imports point one way: [`cli`] -> [`ingress`] -> [`runtime`] -> [`capabilities`] ->
//! [`backends`]; [`config`], [`state`] and [`bindings`] are read by all of them.
//! - [`config`]: `platform.toml` -> typed configuration, with environment overrides.
//! - [`bindings`]: the one `bindgen!` of the `platform:service/service` world.
//! - [`backends`]: what the capabilities run on, with their own types and errors:
//!   database (PostgreSQL | SQLite), cache (Redis | in process), broker (RabbitMQ |
//!   embedded; publish and consume), the HTTP client, token validation, bcrypt and JWTs,
//!   schedule leases and a fleet's deployment registry.
//! - [`capabilities`]: one file per WIT interface (the `Host` impl, its grant, the
//!   lowering of backend errors into WIT) and the one table of capabilities.
//! - [`runtime`]: engine and linker, component versions (compile, import check, route
//!   table), per-service admission (load shedding), a fresh instance per call under memory
//!   and time limits, and the registry: the one load path for start, deploy and rollback,
//!   which keeps its versions in the state directory or a fleet's registry, and canaries.
//! - [`ingress`]: what brings work in: the accept loop, HTTP listeners (one per service
//!   port), message consumers (one per subscription), the admin API, a fleet's
//!   announcements and heartbeats, `--watch`, metrics.
//! - [`admin_api`]: the documents the admin API and the CLI share.
//! - [`state`]: the state directory: deployed versions, compiled code, the admin token.
//! - [`build`]: running a service's build command.
//! - [`platform`]: the composition root.
//! - [`cli`]: the `platform` command's subcommands.

pub mod admin_api;
pub mod backends;
pub mod bindings;
pub mod build;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod ingress;
pub mod platform;
pub mod runtime;
pub mod state;
pub mod telemetry;
