//! The product service: catalogue CRUD, cache-aside reads and atomic stock reservation.
//!
//! - [`routes`]: route table and HTTP <-> service mapping.
//! - [`service`]: business rules over a store and a cache.
//! - [`repository`]: all SQL.
//! - [`cache`]: the host cache behind the service's cache trait.
//! - [`model`]: domain types, input validation, JSON shapes.

pub mod cache;
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
            Outcome::DeadLetter("product consumes no messages".into())
        }
    }

    platform_guest::bindings::export_service!(Component);
}
