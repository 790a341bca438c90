//! What the capabilities run on, each with its own types and errors (no WIT types here):
//! a server's backend where a URL is configured, an embedded one otherwise.
//!
//! - [`database`]: PostgreSQL or a SQLite file per service, and their migrations.
//! - [`cache`]: Redis or an in-process cache.
//! - [`broker`]: RabbitMQ or the embedded broker, publishing and consuming.
//! - [`http_client`]: the pooled HTTP client.
//! - [`token_validator`]: asks the identity service whether a bearer token is valid.
//! - [`identity`]: bcrypt and JWT signing for the identity provider.
//! - [`lease`]: which host runs a schedule when several share a PostgreSQL server.
//! - [`fleet`]: a fleet's deployment registry and heartbeats, in PostgreSQL.

pub mod broker;
pub mod cache;
pub mod database;
pub mod fleet;
pub mod http_client;
pub mod identity;
pub mod lease;
pub mod token_validator;
