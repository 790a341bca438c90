//! The notification service: consumes order events and records one notification per
//! event; `GET /notifications` lists the caller's.
//!
//! # Layout
//! - [`routes`]: the route table and the HTTP <-> service mapping.
//! - [`subscriptions`]: the message handler: a delivery -> the service -> its outcome.
//! - [`service`]: the rules (idempotency by `event_id`, ack / retry / dead-letter decisions).
//! - [`repository`]: all SQL, behind a trait the tests fake.
//! - [`model`]: the order event, its validation and the notification sentence.

pub mod model;
pub mod repository;
pub mod routes;
pub mod service;
pub mod subscriptions;

platform_guest::export_component! {
    routes: crate::routes::ROUTES,
    health: platform_guest::database_health,
    messages: crate::subscriptions::handle_message,
}
