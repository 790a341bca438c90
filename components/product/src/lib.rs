//! The product service: catalogue CRUD, cache-aside reads and atomic stock reservation.
//!
//! - [`routes`]: route table and HTTP <-> service mapping.
//! - [`service`]: business rules over a store and a cache.
//! - [`repository`]: all SQL.
//! - [`schedules`]: periodic work (forgetting old idempotency keys).
//! - [`cache`]: the host cache behind the service's cache trait.
//! - [`model`]: domain types, input validation, JSON shapes.

pub mod cache;
pub mod model;
pub mod repository;
pub mod routes;
pub mod schedules;
pub mod service;

platform_guest::export_component! {
    routes: crate::routes::ROUTES,
    health: platform_guest::database_health,
    schedules: crate::schedules::run,
}
