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

/// The exported component. Only built for Wasm: the export symbols' names (`pkg:iface#fn`)
/// are not valid in a native shared library's version script, so native `cargo test`
/// builds everything else.
#[cfg(target_arch = "wasm32")]
mod component {
    use platform_guest::bindings::exports::platform::service::{http_handler, message_handler};
    use platform_guest::http::{Request, Response, Route};
    use platform_guest::messaging_types::{Delivery, Outcome};

    struct Component;

    impl http_handler::Guest for Component {
        fn routes() -> Vec<Route> {
            crate::routes::table()
        }

        fn handle(request: Request) -> Response {
            crate::routes::handle(request)
        }

        fn health() -> Result<(), String> {
            platform_guest::database_health()
        }
    }

    impl message_handler::Guest for Component {
        fn handle_message(_delivery: Delivery) -> Outcome {
            Outcome::DeadLetter("user consumes no messages".into())
        }
    }

    platform_guest::bindings::export_service!(Component);
}
