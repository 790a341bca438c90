//! A service as the host runs it: its configuration, capabilities, limits and the
//! component version currently serving it.

use super::{CallLimits, ComponentVersion};
use crate::capabilities::ServiceCapabilities;
use crate::config::ServiceConfig;
use arc_swap::ArcSwap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub struct DeployedService {
    pub name: String,
    pub config: ServiceConfig,
    pub capabilities: Arc<ServiceCapabilities>,
    pub limits: CallLimits,
    /// The version new calls go to. A call loads it once and keeps that `Arc` to the end,
    /// so replacing it never disturbs calls already running.
    pub current: ArcSwap<ComponentVersion>,
    /// Whether every consumer of the service's subscriptions is connected to the broker.
    pub broker_connected: AtomicBool,
}

impl DeployedService {
    pub fn new(
        name: &str,
        config: ServiceConfig,
        capabilities: Arc<ServiceCapabilities>,
        version: ComponentVersion,
    ) -> DeployedService {
        DeployedService {
            name: name.to_string(),
            limits: CallLimits::for_service(&config),
            config,
            capabilities,
            current: ArcSwap::from_pointee(version),
            broker_connected: AtomicBool::new(false),
        }
    }
}
