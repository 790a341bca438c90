//! A service as the host runs it: its configuration, capabilities, limits and the
//! component version currently serving it.

use super::{CallLimits, ComponentVersion};
use crate::capabilities::ServiceCapabilities;
use crate::config::ServiceConfig;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub struct DeployedService {
    pub name: String,
    pub config: ServiceConfig,
    pub capabilities: Arc<ServiceCapabilities>,
    pub limits: CallLimits,
    /// The service's migrations folder, applied at start and before each new version serves.
    pub migrations: PathBuf,
    /// The version new calls go to. A call loads it once and keeps that `Arc` to the end,
    /// so replacing it never disturbs calls already running; the old version is freed when
    /// its last call ends.
    pub current: ArcSwap<ComponentVersion>,
    /// Held for the whole of a deploy or rollback, so two never interleave on one service.
    pub(super) deploy_lock: tokio::sync::Mutex<()>,
    /// Whether every consumer of the service's subscriptions is connected to the broker.
    pub broker_connected: AtomicBool,
}

impl DeployedService {
    pub fn new(
        name: &str,
        config: ServiceConfig,
        capabilities: Arc<ServiceCapabilities>,
        migrations: PathBuf,
        version: ComponentVersion,
    ) -> DeployedService {
        DeployedService {
            name: name.to_string(),
            limits: CallLimits::for_service(&config),
            config,
            capabilities,
            migrations,
            current: ArcSwap::from_pointee(version),
            deploy_lock: tokio::sync::Mutex::new(()),
            broker_connected: AtomicBool::new(false),
        }
    }
}
