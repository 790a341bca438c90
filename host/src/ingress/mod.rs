//! What brings work in: one HTTP listener per service port ([`http`]), one consumer per
//! subscription ([`subscriptions`]), one timer per schedule ([`schedules`]), the admin API
//! ([`admin`], with the [`console`] and each service's [`recent_errors`]), a fleet's
//! registry ([`fleet`]) and `--watch` ([`watch`]),
//! all served by one accept loop ([`server`]). Ingress routes and converts; components run
//! through the runtime.

pub mod admin;
pub mod console;
pub mod fleet;
pub mod http;
pub mod metrics;
pub mod recent_errors;
pub mod schedules;
pub mod server;
pub mod subscriptions;
pub mod watch;

use crate::runtime::DeployedService;
use crate::telemetry::{ServiceTracer, Telemetry, TelemetryError};
use metrics::ServiceMetrics;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A service as the ingress sees it: the deployed service, its metrics, and whether its
/// consumers are connected. Shared by its listener, its consumers and the admin API.
pub struct ServiceEndpoint {
    pub service: Arc<DeployedService>,
    pub metrics: ServiceMetrics,
    pub consumers: ConsumerStatus,
    /// Starts the spans of its requests and deliveries (empty when tracing is off).
    pub tracer: ServiceTracer,
}

impl ServiceEndpoint {
    pub fn new(
        service: Arc<DeployedService>,
        telemetry: &Telemetry,
    ) -> Result<ServiceEndpoint, TelemetryError> {
        let subscriptions = service.service.config.subscriptions.len();
        let metrics = ServiceMetrics::new(service.name());
        let tracer = telemetry.tracer(service.name(), metrics.spans_dropped.clone())?;
        Ok(ServiceEndpoint {
            metrics,
            consumers: ConsumerStatus::new(subscriptions),
            tracer,
            service,
        })
    }
}

/// How many of a service's consumers are connected to the broker.
pub struct ConsumerStatus {
    subscriptions: usize,
    connected: AtomicUsize,
}

impl ConsumerStatus {
    fn new(subscriptions: usize) -> ConsumerStatus {
        ConsumerStatus {
            subscriptions,
            connected: AtomicUsize::new(0),
        }
    }

    /// Whether the service consumes at all.
    pub fn any(&self) -> bool {
        self.subscriptions > 0
    }

    /// Whether every subscription's consumer is connected.
    pub fn all_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed) >= self.subscriptions
    }

    fn connected(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
    }

    fn disconnected(&self) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
    }
}
