//! The notification service: consumes order events and records one notification per
//! event; `GET /notifications` lists the caller's.
//!
//! # Layout
//! - [`routes`]: the route table and the HTTP <-> service mapping.
//! - [`service`]: the rules (idempotency by `event_id`, ack / retry / dead-letter decisions).
//! - [`repository`]: all SQL, behind a trait the tests fake.
//! - [`model`]: the order event, its validation and the notification sentence.

pub mod model;
pub mod repository;
pub mod routes;
pub mod service;

use platform_guest::bindings::exports::platform::service::{http_handler, message_handler};
use platform_guest::http::{Request, Response, Route};
use platform_guest::messaging_types::{Delivery, Outcome};

/// The component; its exports exist only in the wasm build (native builds are for unit tests,
/// and export symbols such as `cabi_post_platform:service/...` do not link natively).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Component;

impl http_handler::Guest for Component {
    fn routes() -> Vec<Route> {
        routes::routes()
    }

    fn handle(request: Request) -> Response {
        routes::handle(&request)
    }

    fn health() -> Result<(), String> {
        platform_guest::database_health()
    }
}

impl message_handler::Guest for Component {
    fn handle_message(delivery: Delivery) -> Outcome {
        let handled = service::handle_event(
            &repository::Database,
            &delivery.message.payload,
            &delivery.message.headers,
        );
        if let Some((level, line)) = handled.log_record() {
            platform_guest::logging::log(level, &line);
        }
        handled.outcome()
    }
}

#[cfg(target_arch = "wasm32")]
platform_guest::bindings::export_service!(Component);
