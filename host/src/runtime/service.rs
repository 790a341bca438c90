//! A service as the host runs it: its configuration, its capabilities and limits, and the
//! component version currently serving it.

use super::canary::Canary;
use super::{Admission, CallLimits, ComponentVersion};
use crate::capabilities::ServiceCapabilities;
use crate::config::ServiceConfig;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What every version of a service runs with.
pub struct Service {
    pub name: String,
    pub config: ServiceConfig,
    pub capabilities: Arc<ServiceCapabilities>,
    pub limits: CallLimits,
    /// The service's migrations folder, applied before a version first serves.
    pub migrations: PathBuf,
    /// The component `platform.toml` names (resolved): what a first start serves.
    pub artifact: PathBuf,
    /// Turns for its HTTP requests, whichever version serves them.
    pub admission: Admission,
}

impl Service {
    pub fn new(
        name: &str,
        config: ServiceConfig,
        capabilities: ServiceCapabilities,
        migrations: PathBuf,
        artifact: PathBuf,
    ) -> Service {
        Service {
            name: name.to_string(),
            limits: CallLimits::for_service(&config),
            admission: Admission::new(
                config.max_concurrent,
                config.max_queued,
                std::time::Duration::from_millis(config.queue_timeout_ms),
            ),
            config,
            capabilities: Arc::new(capabilities),
            migrations,
            artifact,
        }
    }
}

/// A service and the version serving it.
pub struct DeployedService {
    pub service: Service,
    /// The version new calls go to. A call loads it once and keeps that `Arc` to the end,
    /// so replacing it never disturbs calls already running; the old version is freed when
    /// its last call ends.
    pub current: ArcSwap<ComponentVersion>,
    /// In a fleet's canary rollout: the new version, which gets its share of the HTTP
    /// requests beside `current` (the stable one). Messages and schedules stay on `current`.
    pub canary: ArcSwapOption<Canary>,
    /// Held for the whole of a deploy or rollback, so two never interleave on one service.
    pub(super) deploy_lock: tokio::sync::Mutex<()>,
    /// In a fleet: how this host stands with the fleet's desired version.
    sync: std::sync::Mutex<SyncState>,
}

/// How a host stands with the fleet's desired version of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncState {
    /// Serving it (or, alone, whatever was deployed last).
    InSync,
    /// A rolling deploy has not reached this host's turn.
    Waiting,
    /// Loading and checking it.
    Updating,
    /// This host refused it, and keeps the version it had.
    Refused {
        digest: String,
        reason: String,
        at: std::time::Instant,
    },
}

impl SyncState {
    /// As `platform ps --fleet` shows it.
    pub fn describe(&self) -> String {
        match self {
            SyncState::InSync => "serving".into(),
            SyncState::Waiting => "waiting for its turn".into(),
            SyncState::Updating => "updating".into(),
            SyncState::Refused { reason, .. } => format!("refused: {reason}"),
        }
    }
}

impl DeployedService {
    pub(super) fn new(service: Service, version: ComponentVersion) -> DeployedService {
        DeployedService {
            service,
            current: ArcSwap::from_pointee(version),
            deploy_lock: tokio::sync::Mutex::new(()),
            sync: std::sync::Mutex::new(SyncState::InSync),
            canary: ArcSwapOption::empty(),
        }
    }

    /// The version one HTTP request runs on: the canary for its share of requests, else
    /// the current one.
    pub fn version_for_request(&self) -> Arc<ComponentVersion> {
        if let Some(canary) = &*self.canary.load() {
            if rand::random::<u8>() % 100 < canary.percent {
                return canary.version.clone();
            }
        }
        self.current.load_full()
    }

    /// Counts an answered request towards the canary comparison, if one runs.
    pub fn count_for_canary(&self, version: &ComponentVersion, failed: bool, took: Duration) {
        if let Some(canary) = &*self.canary.load() {
            let tally = if version.digest() == canary.version.digest() {
                &canary.canary
            } else {
                &canary.stable
            };
            tally.count(failed, took);
        }
    }

    pub fn sync(&self) -> SyncState {
        self.sync.lock().expect("sync state lock").clone()
    }

    pub(super) fn set_sync(&self, state: SyncState) {
        *self.sync.lock().expect("sync state lock") = state;
    }

    pub fn name(&self) -> &str {
        &self.service.name
    }
}
