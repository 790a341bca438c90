//! The deployed services and the one path every version takes to serve, whether it comes
//! from the host's start, `platform deploy`, `platform rollback` or `platform up --watch`:
//!
//! 1. compile off the async threads (or load the cached code), check that the component
//!    targets the platform world and imports only what the service was granted, read its
//!    route table;
//! 2. apply the service's pending migrations;
//! 3. call the new version's `health` export on a fresh instance;
//! 4. record it (in the state directory, or in the fleet's registry), then serve it (at
//!    start) or switch to it with one atomic store.
//!
//! In a fleet, the host that receives a deploy runs steps 1 to 4 (so migrations run once,
//! under sqlx's advisory lock) and records the version as the service's desired one; every
//! host then [`converge`](Registry::converge)s on it by steps 1 and 3 of its own and the
//! switch, when the rollout strategy gives it its turn. A host whose health check refuses
//! the version keeps the old one and reports why.
//!
//! A failure at any step leaves the running version untouched. At start, a recorded
//! version that fails is reported by name and the service falls back to its previous good
//! version, then to the component `platform.toml` names. Calls already running finish on
//! the version they started on. Deploys of one service are serialised; deploys of
//! different services never wait for each other.

use super::canary::Canary;
use super::deployments::{Deployments, DeploymentsError};
use super::service::SyncState;
use super::{ComponentVersion, DeployedService, LoadComponentError, Runtime, Service};
use crate::backends::database::MigrateDatabaseError;
use crate::backends::fleet::{DesiredVersion, HostReport, Strategy};
use crate::state::{DeployRecord, DeploySource};
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
    Store(DeploymentsError),
    #[error("`{0}` rollouts need fleet mode ([fleet] name or PLATFORM_FLEET)")]
    NeedsFleet(String),
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
    /// From receiving the component to the switch (or to its recording, if this host
    /// waits for its turn).
    pub swap_time: Duration,
    pub routes: usize,
    /// How it reaches the other hosts of the fleet; `None` on a host alone.
    pub strategy: Option<Strategy>,
    /// Whether this host serves it already (a rolling deploy may give it a later turn).
    pub serving_here: bool,
}

/// What a host did when it compared a service with the fleet's desired version.
#[derive(Debug)]
pub enum Converged {
    InSync,
    /// A rolling deploy has not reached this host's turn.
    Waiting,
    Swapped(DeployOutcome),
    /// The version was refused here (recently: it is tried again later).
    Refused(String),
}

/// How long a host waits before trying again a version it refused.
const RETRY_REFUSED: Duration = Duration::from_secs(30);

pub struct Registry {
    pub runtime: Runtime,
    pub deployments: Deployments,
    services: BTreeMap<String, Arc<DeployedService>>,
}

/// A version a starting service may serve, in the order they are tried.
enum Candidate {
    /// A version from the service's history (or the fleet's desired version); `newest` if
    /// it is what the service should serve.
    Recorded { record: DeployRecord, newest: bool },
    /// The component `platform.toml` names.
    Configured,
}

impl Registry {
    /// Brings every service up through the load path, each with the newest version that
    /// passes it.
    pub async fn start(
        runtime: Runtime,
        deployments: Deployments,
        services: Vec<Service>,
    ) -> Result<Registry, StartServiceError> {
        let mut registry = Registry {
            runtime,
            deployments,
            services: BTreeMap::new(),
        };
        // Without the fleet's registry a host could only serve stale versions: it does not
        // start (its orchestrator retries), rather than serve them as if current.
        let desired = registry
            .deployments
            .desired()
            .await
            .map_err(|error| StartServiceError {
                service: "every service".into(),
                refused: vec![error.to_string()],
            })?;
        let started = futures::future::try_join_all(services.into_iter().map(|service| {
            let desired = desired.get(&service.name).cloned();
            registry.start_service(service, desired)
        }))
        .await?;
        registry.services = started
            .into_iter()
            .map(|service| (service.name().to_string(), Arc::new(service)))
            .collect();
        Ok(registry)
    }

    async fn start_service(
        &self,
        service: Service,
        desired: Option<DesiredVersion>,
    ) -> Result<DeployedService, StartServiceError> {
        // A history that cannot be read costs this service its recorded versions, never
        // the host its start: it serves the configured component, loudly.
        let history = self
            .deployments
            .history(&service.name)
            .await
            .unwrap_or_else(|error| {
                tracing::error!(service = %service.name, %error, "the deploy history is unreadable; serving the configured component");
                Vec::new()
            });
        let in_fleet = self.deployments.fleet().is_some();
        let mut candidates: Vec<Candidate> = Vec::new();
        if let Some(desired) = &desired {
            // During a canary rollout a starting host serves the stable version; the
            // canary joins it when the host converges.
            let digest = match (desired.strategy, &desired.previous) {
                (Strategy::Canary(_), Some(stable)) => stable,
                _ => &desired.digest,
            };
            candidates.push(Candidate::Recorded {
                record: DeployRecord {
                    digest: digest.clone(),
                    deployed_at: desired.since,
                    source: history
                        .iter()
                        .rev()
                        .find(|record| record.digest == *digest)
                        .map_or(DeploySource::Deploy, |record| record.source),
                },
                newest: true,
            });
        }
        for (index, record) in history.iter().enumerate().rev() {
            let seen = candidates.iter().any(|candidate| {
                matches!(candidate, Candidate::Recorded { record: r, .. } if r.digest == record.digest)
            });
            if !seen {
                candidates.push(Candidate::Recorded {
                    record: record.clone(),
                    // In a fleet, the desired version (first above) is the one to serve.
                    newest: !in_fleet && index + 1 == history.len(),
                });
            }
        }
        candidates.push(Candidate::Configured);

        let mut refused = Vec::new();
        for candidate in candidates {
            let (bytes, label) = match &candidate {
                Candidate::Recorded { record, .. } => (
                    self.deployments
                        .component(&service.name, &record.digest)
                        .await
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
                        // A fleet's older version serves until this host can serve the
                        // desired one; the registry keeps saying what is desired.
                        Candidate::Recorded { record, .. } if in_fleet => version.record = record,
                        _ => {
                            self.deployments
                                .record(
                                    &service.name,
                                    bytes,
                                    version.record.clone(),
                                    Strategy::All,
                                    true,
                                )
                                .await
                                .map_err(|error| StartServiceError {
                                    service: service.name.clone(),
                                    refused: vec![error.to_string()],
                                })?;
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
                    let deployed = DeployedService::new(service, version);
                    if let (Some(desired), false) = (&desired, refused.is_empty()) {
                        deployed.set_sync(SyncState::Refused {
                            digest: desired.digest.clone(),
                            reason: refused.join("; "),
                            at: Instant::now(),
                        });
                    }
                    return Ok(deployed);
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
    pub async fn history(&self, service: &str) -> Result<Vec<DeployRecord>, DeployComponentError> {
        self.service(service)?;
        self.deployments
            .history(service)
            .await
            .map_err(DeployComponentError::Store)
    }

    /// Deploys `bytes` as the new version of `service`.
    pub async fn deploy(
        &self,
        service: &str,
        bytes: Vec<u8>,
        source: DeploySource,
        strategy: Strategy,
    ) -> Result<DeployOutcome, DeployComponentError> {
        let started = Instant::now();
        let service = self.service(service)?;
        self.check_strategy(strategy)?;
        let _serialised = service.deploy_lock.lock().await;
        self.swap_in(service, Arc::new(bytes), source, strategy, started)
            .await
    }

    fn check_strategy(&self, strategy: Strategy) -> Result<(), DeployComponentError> {
        match (strategy, self.deployments.fleet()) {
            (Strategy::All, _) | (_, Some(_)) => Ok(()),
            (other, None) => Err(DeployComponentError::NeedsFleet(other.to_string())),
        }
    }

    /// Deploys the version before the current one, or the one whose digest starts with `to`.
    pub async fn rollback(
        &self,
        service: &str,
        to: Option<&str>,
        strategy: Strategy,
    ) -> Result<DeployOutcome, DeployComponentError> {
        let started = Instant::now();
        let service = self.service(service)?;
        self.check_strategy(strategy)?;
        let _serialised = service.deploy_lock.lock().await;
        let name = service.name();
        let current = service.current.load().digest().to_string();
        let history = self
            .deployments
            .history(name)
            .await
            .map_err(DeployComponentError::Store)?;
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
            .deployments
            .component(name, &target)
            .await
            .map_err(DeployComponentError::Store)?;
        self.swap_in(
            service,
            Arc::new(bytes),
            DeploySource::Rollback,
            strategy,
            started,
        )
        .await
    }

    /// Brings `service` on this host to the fleet's `desired` version, if the rollout gives
    /// this host its turn: loads it (compiled code from the local cache when there is
    /// some), checks its health and switches. `hosts`: the fleet's last heartbeats, for
    /// the turn of a rolling deploy.
    pub async fn converge(
        &self,
        service: &DeployedService,
        desired: &DesiredVersion,
        hosts: &[HostReport],
        host_timeout: Duration,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Converged {
        if let Strategy::Canary(percent) = desired.strategy {
            return self.converge_canary(service, desired, percent).await;
        }
        let in_sync = |service: &DeployedService| service.current.load().digest() == desired.digest;
        // The canary's rollout ended: promoted, it becomes the current version at once
        // (it is loaded and checked already); otherwise it goes.
        if service.canary.load().is_some() {
            let _serialised = service.deploy_lock.lock().await;
            if let Some(canary) = service.canary.swap(None) {
                if canary.version.digest() == desired.digest && !in_sync(service) {
                    let outcome = self.switch(
                        service,
                        canary.version.clone(),
                        Some(desired.strategy),
                        Instant::now(),
                    );
                    service.set_sync(SyncState::InSync);
                    return Converged::Swapped(outcome);
                }
                canary.version.retire();
            }
        }
        if in_sync(service) {
            service.set_sync(SyncState::InSync);
            return Converged::InSync;
        }
        if let SyncState::Refused { digest, reason, at } = service.sync() {
            if digest == desired.digest && at.elapsed() < RETRY_REFUSED {
                return Converged::Refused(reason);
            }
        }
        let Some(fleet) = self.deployments.fleet() else {
            return Converged::InSync;
        };
        if desired.strategy == Strategy::Rolling
            && !has_turn(
                &fleet.host,
                service.name(),
                &desired.digest,
                hosts,
                host_timeout,
                now,
            )
        {
            service.set_sync(SyncState::Waiting);
            return Converged::Waiting;
        }
        let started = Instant::now();
        let _serialised = service.deploy_lock.lock().await;
        if in_sync(service) {
            return Converged::InSync; // a deploy through this host's admin API did it
        }
        service.set_sync(SyncState::Updating);
        let loaded = match self
            .deployments
            .component(service.name(), &desired.digest)
            .await
        {
            Ok(bytes) => {
                self.prepare(&service.service, Arc::new(bytes), DeploySource::Deploy)
                    .await
            }
            Err(error) => Err(DeployComponentError::Store(error)),
        };
        match loaded {
            Ok(mut version) => {
                version.record.deployed_at = desired.since;
                version.record.source = self.recorded_source(service.name(), &desired.digest).await;
                let outcome =
                    self.switch(service, Arc::new(version), Some(desired.strategy), started);
                service.set_sync(SyncState::InSync);
                Converged::Swapped(outcome)
            }
            Err(error) => {
                tracing::error!(service = %service.name(), version = %&desired.digest[..12.min(desired.digest.len())], %error, "the fleet's desired version was refused on this host; the running one keeps serving");
                service.set_sync(SyncState::Refused {
                    digest: desired.digest.clone(),
                    reason: error.to_string(),
                    at: Instant::now(),
                });
                Converged::Refused(error.to_string())
            }
        }
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

    /// How the registry recorded `digest` last, so that a fleet's rollback shows as one on
    /// every host.
    async fn recorded_source(&self, service: &str, digest: &str) -> DeploySource {
        self.deployments
            .history(service)
            .await
            .ok()
            .and_then(|history| {
                history
                    .iter()
                    .rev()
                    .find(|record| record.digest == digest)
                    .map(|record| record.source)
            })
            .unwrap_or(DeploySource::Deploy)
    }

    /// A canary rollout: the stable version stays current, the new one serves `percent`
    /// of the requests beside it.
    async fn converge_canary(
        &self,
        service: &DeployedService,
        desired: &DesiredVersion,
        percent: u8,
    ) -> Converged {
        let running = service.canary.load_full();
        if let Some(canary) = &running {
            if canary.version.digest() == desired.digest && canary.percent == percent {
                service.set_sync(SyncState::InSync);
                return Converged::InSync;
            }
        }
        if let SyncState::Refused { digest, reason, at } = service.sync() {
            if digest == desired.digest && at.elapsed() < RETRY_REFUSED {
                return Converged::Refused(reason);
            }
        }
        let started = Instant::now();
        let _serialised = service.deploy_lock.lock().await;
        let version = match running.filter(|canary| canary.version.digest() == desired.digest) {
            // Only its share changed.
            Some(canary) => Ok(canary.version.clone()),
            None => {
                service.set_sync(SyncState::Updating);
                match self
                    .deployments
                    .component(service.name(), &desired.digest)
                    .await
                {
                    Ok(bytes) => self
                        .prepare(&service.service, Arc::new(bytes), DeploySource::Deploy)
                        .await
                        .map(Arc::new),
                    Err(error) => Err(DeployComponentError::Store(error)),
                }
            }
        };
        match version {
            Ok(version) => {
                let outcome = self.start_canary(service, version, percent, started);
                Converged::Swapped(outcome)
            }
            Err(error) => {
                tracing::error!(service = %service.name(), version = %&desired.digest[..12.min(desired.digest.len())], %error, "the fleet's canary was refused on this host; the stable version serves every request");
                service.set_sync(SyncState::Refused {
                    digest: desired.digest.clone(),
                    reason: error.to_string(),
                    at: Instant::now(),
                });
                Converged::Refused(error.to_string())
            }
        }
    }

    fn start_canary(
        &self,
        service: &DeployedService,
        version: Arc<ComponentVersion>,
        percent: u8,
        started: Instant,
    ) -> DeployOutcome {
        let outcome = DeployOutcome {
            service: service.name().to_string(),
            digest: version.digest().to_string(),
            previous: service.current.load().digest().to_string(),
            swap_time: started.elapsed(),
            routes: version.routes.len(),
            strategy: Some(Strategy::Canary(percent)),
            serving_here: true,
        };
        tracing::info!(service = %service.name(), canary = %version.short_digest(), stable = %service.current.load().short_digest(), percent, "canary serving beside the stable version");
        service
            .canary
            .store(Some(Arc::new(Canary::new(version, percent))));
        service.set_sync(SyncState::InSync);
        outcome
    }

    async fn swap_in(
        &self,
        service: &DeployedService,
        bytes: Arc<Vec<u8>>,
        source: DeploySource,
        strategy: Strategy,
        started: Instant,
    ) -> Result<DeployOutcome, DeployComponentError> {
        self.deployments
            .check_writable()
            .await
            .map_err(DeployComponentError::Store)?;
        let version = self
            .prepare(&service.service, bytes.clone(), source)
            .await?;
        self.deployments
            .record(
                service.name(),
                bytes,
                version.record.clone(),
                strategy,
                false,
            )
            .await
            .map_err(DeployComponentError::Store)?;
        let fleet_strategy = self.deployments.fleet().map(|_| strategy);
        if let Strategy::Canary(percent) = strategy {
            return Ok(self.start_canary(service, Arc::new(version), percent, started));
        }
        if strategy == Strategy::Rolling {
            // Every host, this one included, takes its turn through `converge`.
            service.set_sync(SyncState::Waiting);
            return Ok(DeployOutcome {
                service: service.name().to_string(),
                digest: version.digest().to_string(),
                previous: service.current.load().digest().to_string(),
                swap_time: started.elapsed(),
                routes: version.routes.len(),
                strategy: fleet_strategy,
                serving_here: false,
            });
        }
        let outcome = self.switch(service, Arc::new(version), fleet_strategy, started);
        service.set_sync(SyncState::InSync);
        Ok(outcome)
    }

    /// The atomic switch to a version that passed the load path.
    fn switch(
        &self,
        service: &DeployedService,
        version: Arc<ComponentVersion>,
        strategy: Option<Strategy>,
        started: Instant,
    ) -> DeployOutcome {
        let source = version.record.source;
        let digest = version.digest().to_string();
        let routes = version.routes.len();
        let previous = service.current.swap(version);
        previous.retire();
        // A deploy of any kind ends a canary rollout on this host.
        if let Some(canary) = service.canary.swap(None) {
            if canary.version.digest() != digest {
                canary.version.retire();
            }
        }
        let swap_time = started.elapsed();
        tracing::info!(
            service = %service.name(),
            version = %&digest[..12],
            previous = %previous.short_digest(),
            source = source.as_str(),
            ?swap_time,
            "new version serving"
        );
        DeployOutcome {
            service: service.name().to_string(),
            digest,
            previous: previous.digest().to_string(),
            swap_time,
            routes,
            strategy,
            serving_here: true,
        }
    }
}

/// Whether `host` may switch `service` to `digest` in a rolling deploy: every live host
/// whose name sorts before it serves `digest` already. A host silent for `host_timeout`
/// is not waited for; a host that refused the version stops the rollout there.
fn has_turn(
    host: &str,
    service: &str,
    digest: &str,
    hosts: &[HostReport],
    host_timeout: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let timeout = chrono::Duration::from_std(host_timeout).unwrap_or(chrono::Duration::MAX);
    hosts
        .iter()
        .filter(|other| other.host.as_str() < host)
        .filter(|other| now - other.heartbeat_at < timeout)
        .filter(|other| other.services.contains_key(service))
        .all(|other| other.services[service].serving == digest)
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

#[cfg(test)]
mod tests {
    use super::has_turn;
    use crate::backends::fleet::{HostReport, ServiceReport};
    use chrono::{DateTime, Utc};
    use std::time::Duration;

    fn host(name: &str, serving: &str, heard: DateTime<Utc>) -> HostReport {
        HostReport {
            host: name.into(),
            admin_url: String::new(),
            started_at: heard,
            heartbeat_at: heard,
            services: [(
                "shop".to_string(),
                ServiceReport {
                    serving: serving.into(),
                    state: "serving".into(),
                    canary: None,
                },
            )]
            .into(),
        }
    }

    #[test]
    fn a_rolling_deploy_gives_hosts_their_turn_in_name_order() {
        let now = Utc::now();
        let timeout = Duration::from_secs(10);
        let fleet = [
            host("a", "old", now),
            host("b", "old", now),
            host("c", "old", now),
        ];
        let turn =
            |me: &str, hosts: &[HostReport]| has_turn(me, "shop", "new", hosts, timeout, now);
        assert!(turn("a", &fleet), "the first host goes first");
        assert!(!turn("b", &fleet) && !turn("c", &fleet));
        let fleet = [
            host("a", "new", now),
            host("b", "old", now),
            host("c", "old", now),
        ];
        assert!(turn("b", &fleet) && !turn("c", &fleet));
        // A host silent past the timeout is not waited for; a live one that has not
        // switched (it refused the version, say) stops the rollout there.
        let silent = now - chrono::Duration::seconds(11);
        let fleet = [
            host("a", "new", now),
            host("b", "old", silent),
            host("c", "old", now),
        ];
        assert!(turn("c", &fleet));
        let fleet = [host("a", "old", now), host("b", "new", now)];
        assert!(!turn("c", &fleet));
    }
}
