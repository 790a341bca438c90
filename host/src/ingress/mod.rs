//! What brings work in: one HTTP listener per service port, one consumer per subscription
//! (RabbitMQ or the embedded broker), the admin API and `--watch` (new versions). Ingress routes and converts;
//! it reaches backends only through the runtime.

pub mod admin;
pub mod http;
pub mod metrics;
pub mod subscriptions;
pub mod watch;
