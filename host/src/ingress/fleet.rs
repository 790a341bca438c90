//! In a fleet, deploys come in through the registry in PostgreSQL as well as through this
//! host's admin API: this task hears the registry's announcements (LISTEN), looks at the
//! registry every `reconcile_seconds` in any case (so a lost announcement, or a host that
//! was down, catches up), converges every service on its desired version, and writes this
//! host's heartbeat every `heartbeat_seconds`.
//!
//! When PostgreSQL is unreachable the host keeps serving what it has; it logs once per
//! outage and tries again at the next tick.

use crate::backends::fleet::{
    Announcements, CanaryReport, DesiredVersion, HostReport, ServiceReport, Strategy, TallyReport,
};
use crate::config::FleetConfig;
use crate::runtime::{judge, Converged, Fleet, Registry, Verdict};
use chrono::Utc;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Heartbeats older than this are removed from the registry by any host: a host that
/// crashed long ago should not clutter `platform ps --fleet` for ever.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

pub struct FollowSettings {
    heartbeat: Duration,
    reconcile: Duration,
    host_timeout: Duration,
    canary_window: Duration,
    admin_url: String,
}

impl FollowSettings {
    pub fn new(config: &FleetConfig, admin_address: SocketAddr) -> FollowSettings {
        FollowSettings {
            heartbeat: Duration::from_secs(config.heartbeat_seconds),
            reconcile: Duration::from_secs(config.reconcile_seconds),
            host_timeout: Duration::from_secs(config.host_timeout_seconds),
            canary_window: Duration::from_secs(config.canary_window_seconds),
            admin_url: format!("http://{admin_address}"),
        }
    }
}

/// Runs until `shutdown`; then removes this host's heartbeat (it left on purpose).
pub async fn follow(
    registry: Arc<Registry>,
    fleet: Arc<Fleet>,
    settings: FollowSettings,
    shutdown: CancellationToken,
) {
    let started_at = Utc::now();
    let report = {
        let registry = registry.clone();
        let fleet = fleet.clone();
        let admin_url = settings.admin_url.clone();
        move || HostReport {
            host: fleet.host.clone(),
            admin_url: admin_url.clone(),
            started_at,
            heartbeat_at: Utc::now(),
            services: registry
                .services()
                .map(|service| {
                    (
                        service.name().to_string(),
                        ServiceReport {
                            serving: service.current.load().digest().to_string(),
                            state: service.sync().describe(),
                            canary: service.canary.load().as_ref().map(|canary| CanaryReport {
                                digest: canary.version.digest().to_string(),
                                percent: canary.percent,
                                canary: canary.canary.read(),
                                stable: canary.stable.read(),
                            }),
                        },
                    )
                })
                .collect(),
        }
    };
    let heartbeats = {
        let fleet = fleet.clone();
        let report = report.clone();
        let shutdown = shutdown.clone();
        let every = settings.heartbeat;
        tokio::spawn(async move {
            let mut outage = Outage::default();
            let mut ticks = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                outage.note("heartbeat", fleet.store.heartbeat(&report()).await);
            }
        })
    };

    let mut announcements: Option<Announcements> = None;
    let mut outage = Outage::default();
    let mut ticks = tokio::time::interval(settings.reconcile);
    loop {
        if announcements.is_none() {
            announcements = fleet.store.listen().await.ok();
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
            heard = next(&mut announcements) => {
                if heard.is_err() {
                    announcements = None; // reconnect at the next turn of the loop
                    continue;
                }
            }
        }
        let swapped = reconcile(&registry, &fleet, &settings, &mut outage).await;
        if swapped {
            // Say so at once: in a rolling deploy, the next host waits for this heartbeat.
            outage.note("heartbeat", fleet.store.heartbeat(&report()).await);
            outage.note("announcement", fleet.store.nudge().await);
        }
    }
    let _ = heartbeats.await;
    if let Err(error) = fleet.store.forget(&fleet.host).await {
        tracing::warn!(%error, "could not remove this host's heartbeat from the fleet registry");
    }
}

async fn next(
    announcements: &mut Option<Announcements>,
) -> Result<(), crate::backends::fleet::FleetError> {
    match announcements {
        Some(announcements) => announcements.next().await,
        None => std::future::pending().await,
    }
}

/// One comparison of every service with the registry; whether any service switched.
async fn reconcile(
    registry: &Registry,
    fleet: &Fleet,
    settings: &FollowSettings,
    outage: &mut Outage,
) -> bool {
    let read = async {
        let desired = fleet.store.desired().await?;
        let (hosts, now) = fleet.store.hosts().await?;
        Ok((desired, hosts, now))
    };
    let Some((desired, hosts, now)) = outage.note("reconcile", read.await) else {
        return false;
    };
    let forget_after = chrono::Duration::from_std(FORGET_AFTER).expect("an hour fits");
    for gone in hosts
        .iter()
        .filter(|host| now - host.heartbeat_at > forget_after)
    {
        let _ = fleet.store.forget(&gone.host).await;
    }
    let mut swapped = false;
    for service in registry.services() {
        let Some(desired) = desired.get(service.name()) else {
            continue;
        };
        match registry
            .converge(service, desired, &hosts, settings.host_timeout, now)
            .await
        {
            Converged::Swapped(outcome) => {
                tracing::info!(service = %outcome.service, version = %&outcome.digest[..12], swap_time = ?outcome.swap_time, "converged on the fleet's desired version");
                swapped = true;
            }
            Converged::InSync | Converged::Waiting | Converged::Refused(_) => {}
        }
        if let Strategy::Canary(_) = desired.strategy {
            conclude_canary(fleet, service.name(), desired, &hosts, settings, now).await;
        }
    }
    swapped
}

/// Once a canary's window has passed, sums both versions' tallies over the live hosts
/// and promotes or rolls back the canary fleet-wide (the first host to get there does).
async fn conclude_canary(
    fleet: &Fleet,
    service: &str,
    desired: &DesiredVersion,
    hosts: &[HostReport],
    settings: &FollowSettings,
    now: chrono::DateTime<Utc>,
) {
    let window =
        chrono::Duration::from_std(settings.canary_window).unwrap_or(chrono::Duration::MAX);
    if now - desired.since < window {
        return;
    }
    let timeout =
        chrono::Duration::from_std(settings.host_timeout).unwrap_or(chrono::Duration::MAX);
    let (canary, stable) = hosts
        .iter()
        .filter(|host| now - host.heartbeat_at < timeout)
        .filter_map(|host| host.services.get(service)?.canary.as_ref())
        .filter(|report| report.digest == desired.digest)
        .fold(
            (TallyReport::default(), TallyReport::default()),
            |(canary, stable), report| (canary.plus(report.canary), stable.plus(report.stable)),
        );
    let (promote, reason) = match judge(canary, stable) {
        Verdict::Wait => return,
        Verdict::Promote => (true, String::new()),
        Verdict::RollBack(reason) => (false, reason),
    };
    match fleet.store.conclude_canary(service, desired, promote).await {
        Ok(true) if promote => {
            tracing::info!(service, canary = %&desired.digest[..12.min(desired.digest.len())], ?canary, ?stable, "canary promoted: every host switches to it")
        }
        Ok(true) => {
            tracing::warn!(service, canary = %&desired.digest[..12.min(desired.digest.len())], %reason, "canary rolled back: every host returns to the stable version")
        }
        Ok(false) => {} // another host concluded it
        Err(error) => {
            tracing::warn!(service, %error, "could not conclude the canary; trying again")
        }
    }
}

/// Logs the first failure of an outage and its end, not every failed tick.
#[derive(Default)]
struct Outage {
    since: Option<std::time::Instant>,
}

impl Outage {
    fn note<T>(
        &mut self,
        what: &str,
        result: Result<T, crate::backends::fleet::FleetError>,
    ) -> Option<T> {
        match result {
            Ok(value) => {
                if let Some(since) = self.since.take() {
                    tracing::info!(what, after = ?since.elapsed(), "the fleet registry is reachable again");
                }
                Some(value)
            }
            Err(error) => {
                if self.since.is_none() {
                    self.since = Some(std::time::Instant::now());
                    tracing::warn!(what, %error, "the fleet registry is unreachable; serving the versions this host has");
                }
                None
            }
        }
    }
}
