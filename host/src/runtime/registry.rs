//! The deployed services and the one path every version takes to serve, whether it comes
//! from the host's start, `platform deploy`, `platform rollback` or `platform up --watch`:
//!
//! 1. compile off the async threads (or load the cached code), check that the component
//!    targets the platform world and imports only what the service was granted, read its
//!    route table;
//! 2. apply the service's pending migrations;
//! 3. call the new version's `health` export on a fresh instance;
//! 4. record it in the state directory, then serve it (at start) or switch to it with one
//!    atomic store.
//!
//! A failure at any step leaves the running version untouched. At start, a recorded
//! version that fails is reported by name and the service falls back to its previous good
//! version, then to the component `platform.toml` names. Calls already running finish on
//! the version they started on. Deploys of one service are serialised; deploys of
//! different services never wait for each other.

use super::{ComponentVersion, DeployedService, LoadComponentError, Runtime, Service};
use crate::backends::database::MigrateDatabaseError;
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

/// Why a service could not start: every version it could serve was refused.
#[derive(Debug, thiserror::Error)]
#[error("service `{service}`: no version could serve: {}", .refused.join("; "))]
pub struct StartServiceError {
    pub service: String,
    /// Each version tried, newest first, and why it was refused.
    pub refused: Vec<String>,
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

/// A version a starting service may serve, in the order they are tried.
enum Candidate {
    /// A version from the service's history; `newest` if it is the last one recorded.
    Recorded { record: DeployRecord, newest: bool },
    /// The component `platform.toml` names.
    Configured,
}

impl Registry {
    /// Brings every service up through the load path, each with the newest version that
    /// passes it.
    pub async fn start(
        runtime: Runtime,
        state: Arc<StateDir>,
        services: Vec<Service>,
    ) -> Result<Registry, StartServiceError> {
        let mut registry = Registry {
            runtime,
            state,
            services: BTreeMap::new(),
        };
        let started = futures::future::try_join_all(
            services
                .into_iter()
                .map(|service| registry.start_service(service)),
        )
        .await?;
        registry.services = started
            .into_iter()
            .map(|service| (service.name().to_string(), Arc::new(service)))
            .collect();
        Ok(registry)
    }

    async fn start_service(&self, service: Service) -> Result<DeployedService, StartServiceError> {
        // A history that cannot be read costs this service its recorded versions, never
        // the host its start: it serves the configured component, loudly.
        let history = self.state.history(&service.name).unwrap_or_else(|error| {
            tracing::error!(service = %service.name, %error, "the deploy history is unreadable; serving the configured component");
            Vec::new()
        });
        let mut candidates: Vec<Candidate> = Vec::new();
        for (index, record) in history.iter().enumerate().rev() {
            let seen = candidates.iter().any(|candidate| {
                matches!(candidate, Candidate::Recorded { record: r, .. } if r.digest == record.digest)
            });
            if !seen {
                candidates.push(Candidate::Recorded {
                    record: record.clone(),
                    newest: index + 1 == history.len(),
                });
            }
        }
        candidates.push(Candidate::Configured);

        let mut refused = Vec::new();
        for candidate in candidates {
            let (bytes, label) = match &candidate {
                Candidate::Recorded { record, .. } => (
                    self.state
                        .component(&service.name, &record.digest)
                        .map_err(|error| error.to_string()),
                    format!("recorded version {}", &record.digest[..12]),
                ),
                Candidate::Configured => (
                    std::fs::read(&service.artifact).map_err(|error| {
                        format!("{error} (build it with `platform build {}`)", service.name)
                    }),
                    format!("component {}", service.artifact.display()),
                ),
            };
            let bytes = match bytes {
                Ok(bytes) => Arc::new(bytes),
                Err(cause) => {
                    refused.push(format!("{label}: {cause}"));
                    continue;
                }
            };
            if let Candidate::Configured = candidate {
                let digest = super::digest(&bytes);
                if history.iter().any(|record| record.digest == digest) {
                    continue; // tried already, as a recorded version
                }
            }
            match self
                .prepare(&service, bytes.clone(), DeploySource::Up)
                .await
            {
                Ok(mut version) => {
                    match candidate {
                        Candidate::Recorded {
                            record,
                            newest: true,
                        } => {
                            version.record = record;
                            note_newer_artifact(&service, &version);
                        }
                        _ => {
                            self.record(&service.name, bytes, &version)
                                .await
                                .map_err(|error| StartServiceError {
                                    service: service.name.clone(),
                                    refused: vec![error.to_string()],
                                })?
                        }
                    }
                    if !refused.is_empty() {
                        tracing::warn!(service = %service.name, serving = %version.short_digest(), refused = %refused.join("; "), "serving an earlier version: the newer ones were refused");
                    }
                    tracing::info!(
                        service = %service.name,
                        version = %version.short_digest(),
                        deployed_at = %version.record.deployed_at,
                        compiled = ?version.compiled_from,
                        routes = version.routes.len(),
                        "component loaded"
                    );
                    return Ok(DeployedService::new(service, version));
                }
                Err(error) => {
                    tracing::error!(service = %service.name, version = %label, %error, "refused at start");
                    refused.push(format!("{label}: {error}"));
                }
            }
        }
        Err(StartServiceError {
            service: service.name.clone(),
            refused,
        })
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
        let started = Instant::now();
        let service = self.service(service)?;
        let _serialised = service.deploy_lock.lock().await;
        self.swap_in(service, Arc::new(bytes), source, started)
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
        let name = service.name();
        let current = service.current.load().digest().to_string();
        let history = self
            .state
            .history(name)
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
                            service: name.to_string(),
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
                .ok_or_else(|| DeployComponentError::NothingToRollBackTo(name.to_string()))?
                .to_string(),
        };
        let bytes = self
            .state
            .component(name, &target)
            .map_err(DeployComponentError::State)?;
        self.swap_in(service, Arc::new(bytes), DeploySource::Rollback, started)
            .await
    }

    /// Steps 1 to 3 of the load path: a version ready to serve, not yet recorded.
    async fn prepare(
        &self,
        service: &Service,
        bytes: Arc<Vec<u8>>,
        source: DeploySource,
    ) -> Result<ComponentVersion, DeployComponentError> {
        let version = ComponentVersion::load(&self.runtime, service, bytes, source)
            .await
            .map_err(DeployComponentError::Refused)?;
        if let Some(database) = &service.capabilities.database {
            database
                .migrate(&service.migrations)
                .await
                .map_err(DeployComponentError::Migrations)?;
        }
        match version.health(service).await {
            Ok(Ok(())) => Ok(version),
            Ok(Err(reason)) => Err(DeployComponentError::Unhealthy(reason)),
            Err(error) => Err(DeployComponentError::Unhealthy(error.to_string())),
        }
    }

    /// Step 4, first half: the version goes into the state directory.
    async fn record(
        &self,
        service: &str,
        bytes: Arc<Vec<u8>>,
        version: &ComponentVersion,
    ) -> Result<(), DeployComponentError> {
        let record = version.record.clone();
        let state = self.state.clone();
        let name = service.to_string();
        tokio::task::spawn_blocking(move || state.record(&name, &bytes, record))
            .await
            .expect("recording a deploy does not panic")
            .map_err(DeployComponentError::State)
    }

    async fn swap_in(
        &self,
        service: &DeployedService,
        bytes: Arc<Vec<u8>>,
        source: DeploySource,
        started: Instant,
    ) -> Result<DeployOutcome, DeployComponentError> {
        let version = self
            .prepare(&service.service, bytes.clone(), source)
            .await?;
        self.record(service.name(), bytes, &version).await?;
        let digest = version.digest().to_string();
        let routes = version.routes.len();
        let previous = service.current.swap(Arc::new(version));
        previous.retire();
        let swap_time = started.elapsed();
        tracing::info!(
            service = %service.name(),
            version = %&digest[..12],
            previous = %previous.short_digest(),
            source = source.as_str(),
            ?swap_time,
            "new version serving"
        );
        Ok(DeployOutcome {
            service: service.name().to_string(),
            digest,
            previous: previous.digest().to_string(),
            swap_time,
            routes,
        })
    }
}

/// A restart serves the last deployed version even when the configured component was
/// rebuilt since: say so, once.
fn note_newer_artifact(service: &Service, version: &ComponentVersion) {
    if let Ok(built) = std::fs::read(&service.artifact) {
        if super::digest(&built) != version.digest() {
            tracing::info!(
                service = %service.name,
                artifact = %service.artifact.display(),
                "serving the last deployed version; the artifact differs (`platform deploy {}` to switch)",
                service.name
            );
        }
    }
}
