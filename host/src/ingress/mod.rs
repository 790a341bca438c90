//! What brings work in: one HTTP listener per service port, one AMQP consumer per
//! subscription, the admin API and `--watch` (new versions). Ingress routes and converts;
//! it reaches backends only through the runtime.

pub mod admin;
pub mod amqp;
pub mod http;
pub mod metrics;
pub mod watch;
