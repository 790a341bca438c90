//! What every service component repeats, so that each component keeps only its domain.
//!
//! # Layout
//! - [`bindings`]: the one `wit_bindgen::generate!` for the `platform:service/service`
//!   world; components call [`export_service!`] on their type.
//! - [`http`]: route declaration, request accessors and response builders.
//! - [`dispatch`]: a service's route table, declared once as (route, handler) pairs;
//!   [`export_component!`] exports it with the health check and the message handler.
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
pub mod dispatch;
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

/// The answer of a service that subscribes to no queue, should a message reach it.
pub fn no_subscriptions(delivery: messaging_types::Delivery) -> messaging_types::Outcome {
    messaging_types::Outcome::DeadLetter(format!(
        "this service consumes no messages (from `{}`)",
        delivery.queue
    ))
}

/// The answer of a service that declares no schedule, should the host run one.
pub fn no_schedules(name: String) -> Result<(), String> {
    Err(format!("this service has no schedule `{name}`"))
}

/// Exports a service component: its [`dispatch::RouteTable`], its health check (called on a
/// fresh instance before a version takes traffic) and, for a service with subscriptions or
/// schedules, its message handler and its schedule runner. Paths are absolute (`crate::...`). The exports exist only in the
/// wasm build: native builds are for unit tests, and export symbols such as
/// `cabi_post_platform:service/...` do not link natively.
///
/// ```ignore
/// platform_guest::export_component! {
///     routes: crate::routes::ROUTES,
///     health: platform_guest::database_health,
///     messages: crate::events::handle_message,
///     schedules: crate::maintenance::run,
/// }
/// ```
#[macro_export]
macro_rules! export_component {
    (
        routes: $routes:path,
        health: $health:path
        $(, messages: $messages:path)?
        $(, schedules: $schedules:path)?
        $(,)?
    ) => {
        #[cfg(target_arch = "wasm32")]
        mod exported_component {
            use $crate::bindings::exports::platform::service::{
                http_handler, message_handler, scheduled_handler,
            };
            use $crate::http::{Request, Response, Route};
            use $crate::messaging_types::{Delivery, Outcome};

            struct Component;

            impl http_handler::Guest for Component {
                fn routes() -> Vec<Route> {
                    $routes.routes()
                }

                fn handle(request: Request) -> Response {
                    $routes.handle(&request)
                }

                fn health() -> Result<(), String> {
                    $health()
                }
            }

            impl message_handler::Guest for Component {
                fn handle_message(delivery: Delivery) -> Outcome {
                    $crate::export_component!(@messages delivery $(, $messages)?)
                }
            }

            impl scheduled_handler::Guest for Component {
                fn run(name: String) -> Result<(), String> {
                    $crate::export_component!(@schedules name $(, $schedules)?)
                }
            }

            $crate::bindings::export_service!(Component);
        }
    };
    (@schedules $name:ident) => {
        $crate::no_schedules($name)
    };
    (@schedules $name:ident, $schedules:path) => {
        $schedules($name)
    };
    (@messages $delivery:ident) => {
        $crate::no_subscriptions($delivery)
    };
    (@messages $delivery:ident, $messages:path) => {
        $messages($delivery)
    };
}
