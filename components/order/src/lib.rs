//! The order service as a platform component.
//!
//! Users place orders for products (the stock is reserved through the product service's
//! REST API), list, read, change the status of and delete their own orders; the service
//! publishes `order.created` and `order.cancelled` through a transactional outbox.
//!
//! Layout: `routes` (route table, HTTP <-> service), `schedules` (periodic settling),
//! `service` (business rules over ports), `ports` (the traits the service needs and the data they carry), `adapters`
//! (the ports over the host: `repository` SQL, `products` product service client, `events`
//! the broker), `model` (domain types, validation and events), `testing` (in-memory fakes
//! for unit tests).

pub mod adapters;
mod log;
pub mod model;
pub mod ports;
pub mod routes;
pub mod schedules;
pub mod service;
#[cfg(test)]
mod testing;

platform_guest::export_component! {
    routes: crate::routes::ROUTES,
    health: platform_guest::database_health,
    schedules: crate::schedules::run,
}
