//! The order service as a platform component.
//!
//! Users place orders for products (the stock is reserved through the product service's
//! REST API), list, read, change the status of and delete their own orders; the service
//! publishes `order.created` and `order.cancelled` through a transactional outbox.
//!
//! Layout: `routes` (route table, HTTP <-> service), `service` (business rules over
//! ports), `repository` (SQL), `products` (product service client), `events` (event
//! messages and the broker), `model` (domain types and validation).

pub mod events;
mod log;
pub mod model;
pub mod products;
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
            crate::routes::routes()
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
            Outcome::DeadLetter("order consumes no messages".into())
        }
    }

    platform_guest::bindings::export_service!(Component);
}
