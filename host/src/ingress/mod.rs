//! What brings work in: one HTTP listener per service port, and one AMQP consumer per
//! subscription. Ingress routes and converts; it reaches backends only through the runtime.

pub mod amqp;
pub mod http;
pub mod metrics;
