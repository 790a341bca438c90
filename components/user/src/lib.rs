//! The user service: registration, login (OAuth2 password flow), bearer-token validation
//! for the whole platform, and the current user.
//!
//! Passwords are hashed and verified, and tokens issued and decoded, by the host's
//! `identity-provider` capability: neither bcrypt's work nor the JWT signing secret live in
//! the component. The host authenticates every service's protected routes by calling this
//! service's `POST /validate-token`.
//!
//! # Layout
//! - [`routes`]: the route table and the HTTP <-> service mapping.
//! - [`service`]: the rules (unique usernames, login, token validation) over two ports,
//!   unit-tested with in-memory fakes.
//! - [`repository`]: all SQL, over the database capability.
//! - [`identity`]: the host's identity provider behind the service's port.
//! - [`model`]: domain types, input validation (JSON, form and multipart), JSON shapes.

pub mod identity;
mod log;
pub mod model;
pub mod repository;
pub mod routes;
pub mod service;

platform_guest::export_component! {
    routes: crate::routes::ROUTES,
    health: platform_guest::database_health,
}
