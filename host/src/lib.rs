//! The platform host: runs services as Wasm components and gives them capabilities.
//!
//! # Layout
//! - [`config`]: `platform.toml` -> typed configuration, with environment overrides.
//! - [`bindings`]: the one `bindgen!` of the `platform:service/service` world.
//! - [`build`]: running a service's build command.
//! - [`runtime`]: engine and linker, component versions (compile, grant check, route
//!   table), and one fresh instance per call under memory and time limits.
//! - [`capabilities`]: one module per WIT interface, each over a backend trait
//!   (database, cache, messaging, auth, identity-provider, outgoing-http, config, logging);
//!   a server's backend where a URL is configured, an embedded one otherwise.
//! - [`ingress`]: what brings work in: HTTP listeners (one per service port) and message
//!   consumers (one per subscription, on RabbitMQ or the embedded broker), the admin API,
//!   and `--watch`.
//! - [`state`]: the state directory: deployed versions, compiled code, the admin token.
//! - [`platform`]: assembles all of the above from a configuration.
//! - [`cli`]: the `platform` command's subcommands.

pub mod bindings;
pub mod build;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod ingress;
pub mod platform;
pub mod runtime;
pub mod state;
