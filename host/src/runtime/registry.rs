//! The deployed services and the one path every new version takes, whether it comes from
//! `platform deploy`, `platform rollback` or `platform up --watch`:
//!
//! 1. compile off the async threads (or load the cached code), check that the component
//!    targets the platform world and imports only what the service was granted, read its
//!    route table;
//! 2. apply the service's pending migrations;
//! 3. call the new version's `health` export on a fresh instance;
//! 4. record it in the state directory, then switch with one atomic store.
//!
//! A failure at any step leaves the running version untouched. Calls already running
//! finish on the version they started on. Deploys of one service are serialised; deploys
//! of different services never wait for each other.

use super::{ComponentVersion, DeployedService, LoadComponentError, Runtime};
use crate::capabilities::database::MigrateDatabaseError;
use crate::state::{DeployRecord, DeploySource, StateDir, StateError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a deploy or rollback did not happen; the running version keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum DeployComponentError {
    #[error("unknown service `{0}`")]
    UnknownService(String),
    #[error("component refused: {0}")]
    Refused(LoadComponentError),
    #[error("migrations failed: {0}")]
    Migrations(MigrateDatabaseError),
    #[error("health check failed: {0}")]
    Unhealthy(String),
    #[error("the deploy could not be recorded: {0}")]
    State(StateError),
    #[error(
        "`{service}` has no version `{version}` in its history (see `platform versions {service}`)"
    )]
    UnknownVersion { service: String, version: String },
    #[error("`{0}` matches several versions; give more digits")]
    AmbiguousVersion(String),
    #[error("`{0}` has no earlier version to roll back to")]
    NothingToRollBackTo(String),
}

/// A version that now serves.
#[derive(Debug, Clone)]
pub struct DeployOutcome {
    pub service: String,
    pub digest: String,
    /// The digest of the version it replaced.
    pub previous: String,
    /// From receiving the component to the switch.
    pub swap_time: Duration,
    pub routes: usize,
}

pub struct Registry {
    pub runtime: Runtime,
    pub state: Arc<StateDir>,
    services: BTreeMap<String, Arc<DeployedService>>,
}

impl Registry {
    pub fn new(
        runtime: Runtime,
        state: Arc<StateDir>,
        services: Vec<Arc<DeployedService>>,
    ) -> Registry {
        Registry {
            runtime,
            state,
            services: services.into_iter().map(|s| (s.name.clone(), s)).collect(),
        }
    }

    pub fn service(&self, name: &str) -> Result<&Arc<DeployedService>, DeployComponentError> {
        self.services
            .get(name)
            .ok_or_else(|| DeployComponentError::UnknownService(name.to_string()))
    }

    pub fn services(&self) -> impl Iterator<Item = &Arc<DeployedService>> {
        self.services.values()
    }

    /// The deploys of `service`, oldest first.
    pub fn history(&self, service: &str) -> Result<Vec<DeployRecord>, DeployComponentError> {
        self.service(service)?;
        self.state
            .history(service)
            .map_err(DeployComponentError::State)
    }

    /// Deploys `bytes` as the new version of `service`.
    pub async fn deploy(
        &self,
        service: &str,
        bytes: Vec<u8>,
        source: DeploySource,
    ) -> Result<DeployOutcome, DeployComponentError> {
        let service = self.service(service)?;
        let _serialised = service.deploy_lock.lock().await;
        self.swap_in(service, Arc::new(bytes), source, Instant::now())
            .await
    }

    /// Deploys the version before the current one, or the one whose digest starts with `to`.
    pub async fn rollback(
        &self,
        service: &str,
        to: Option<&str>,
    ) -> Result<DeployOutcome, DeployComponentError> {
        let started = Instant::now();
        let service = self.service(service)?;
        let _serialised = service.deploy_lock.lock().await;
        let current = service.current.load().digest().to_string();
        let history = self
            .state
            .history(&service.name)
            .map_err(DeployComponentError::State)?;
        let target = match to {
            Some(prefix) => {
                let matches: std::collections::BTreeSet<&str> = history
                    .iter()
                    .map(|record| record.digest.as_str())
                    .filter(|digest| digest.starts_with(prefix))
                    .collect();
                match Vec::from_iter(matches).as_slice() {
                    [] => {
                        return Err(DeployComponentError::UnknownVersion {
                            service: service.name.clone(),
                            version: prefix.to_string(),
                        })
                    }
                    [digest] => digest.to_string(),
                    _ => return Err(DeployComponentError::AmbiguousVersion(prefix.to_string())),
                }
            }
            // The newest deploy of another version than the current one.
            None => history
                .iter()
                .rev()
                .map(|record| record.digest.as_str())
                .find(|digest| *digest != current)
                .ok_or_else(|| DeployComponentError::NothingToRollBackTo(service.name.clone()))?
                .to_string(),
        };
        let bytes = self
            .state
            .component(&service.name, &target)
            .map_err(DeployComponentError::State)?;
        self.swap_in(service, Arc::new(bytes), DeploySource::Rollback, started)
            .await
    }

    async fn swap_in(
        &self,
        service: &DeployedService,
        bytes: Arc<Vec<u8>>,
        source: DeploySource,
        started: Instant,
    ) -> Result<DeployOutcome, DeployComponentError> {
        let version = ComponentVersion::load(
            &self.runtime,
            &service.name,
            &service.config,
            &service.capabilities,
            bytes.clone(),
            source,
        )
        .await
        .map_err(DeployComponentError::Refused)?;
        if let Some(database) = &service.capabilities.database {
            database
                .migrate(&service.migrations)
                .await
                .map_err(DeployComponentError::Migrations)?;
        }
        match version.health(&service.capabilities, &service.limits).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(DeployComponentError::Unhealthy(reason)),
            Err(error) => return Err(DeployComponentError::Unhealthy(error.to_string())),
        }
        let record = version.record.clone();
        let state = self.state.clone();
        let name = service.name.clone();
        tokio::task::spawn_blocking(move || state.record(&name, &bytes, record))
            .await
            .expect("recording a deploy does not panic")
            .map_err(DeployComponentError::State)?;

        let outcome = DeployOutcome {
            service: service.name.clone(),
            digest: version.digest().to_string(),
            previous: String::new(),
            swap_time: Duration::ZERO,
            routes: version.routes.len(),
        };
        let previous = service.current.swap(Arc::new(version));
        let swap_time = started.elapsed();
        tracing::info!(
            service = %service.name,
            version = %&outcome.digest[..12],
            previous = %previous.short_digest(),
            source = source.as_str(),
            ?swap_time,
            "new version serving"
        );
        Ok(DeployOutcome {
            previous: previous.digest().to_string(),
            swap_time,
            ..outcome
        })
    }
}
