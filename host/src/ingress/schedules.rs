//! One timer per schedule: at each of its times the host checks that it holds the
//! schedule's lease (one host of those sharing a database server runs it), then calls the
//! component's `run` on a fresh instance of the service's current version.
//!
//! Runs of one schedule never overlap: the next time is reckoned from the end of a run, so
//! a run that outlasts its interval skips the times it missed instead of queueing them.

use super::metrics::ScheduleOutcome;
use super::ServiceEndpoint;
use crate::backends::lease::Leases;
use crate::config::ScheduleConfig;
use crate::runtime::CallError;
use crate::telemetry::{Attribute, Trace};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Runs `schedule` for the endpoint's service until `shutdown`; a run in progress finishes.
pub async fn run(
    endpoint: Arc<ServiceEndpoint>,
    schedule: ScheduleConfig,
    leases: Arc<dyn Leases>,
    shutdown: CancellationToken,
) {
    let timing = schedule
        .timing()
        .expect("schedules are validated when the config is loaded");
    let service = endpoint.service.name().to_string();
    let lease = lease_name(&endpoint, &schedule.name);
    let mut standing_by = false;
    loop {
        let wait = timing.next_after(chrono::Utc::now());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        let outcome = match leases.hold(&lease).await {
            Ok(true) => {
                if standing_by {
                    tracing::info!(service, schedule = %schedule.name, "took over the schedule");
                    standing_by = false;
                }
                tick(&endpoint, &schedule.name).await
            }
            Ok(false) => {
                if !standing_by {
                    tracing::info!(service, schedule = %schedule.name, "another host runs this schedule; standing by");
                    standing_by = true;
                }
                ScheduleOutcome::Standby
            }
            Err(error) => {
                tracing::warn!(service, schedule = %schedule.name, %error, "schedule skipped: cannot tell which host runs it");
                ScheduleOutcome::Standby
            }
        };
        endpoint.metrics.observe_schedule(&schedule.name, outcome);
    }
}

/// One run of the schedule on the current version.
async fn tick(endpoint: &ServiceEndpoint, name: &str) -> ScheduleOutcome {
    let service = endpoint.service.name();
    let version = endpoint.service.current.load_full();
    let trace = endpoint.tracer.scheduled(name, || {
        vec![Attribute::new(
            "service.version",
            version.short_digest().to_string(),
        )]
    });
    let log_span = trace
        .as_ref()
        .map_or_else(tracing::Span::none, Trace::log_span);
    let ran = version
        .run_schedule(&endpoint.service.service, name, trace.clone())
        .instrument(log_span.clone())
        .await;
    let outcome = log_span.in_scope(|| match &ran {
        Ok(Ok(())) => {
            tracing::debug!(service, schedule = name, "schedule ran");
            ScheduleOutcome::Ok
        }
        Ok(Err(reason)) => {
            tracing::warn!(service, schedule = name, %reason, "schedule failed");
            ScheduleOutcome::Error
        }
        Err(CallError::Timeout(limit)) => {
            tracing::warn!(service, schedule = name, ?limit, "schedule timed out");
            ScheduleOutcome::Timeout
        }
        Err(CallError::Overloaded(overloaded)) => {
            tracing::warn!(service, schedule = name, %overloaded, "schedule skipped: the service is at its limits");
            ScheduleOutcome::Shed
        }
        Err(error) => {
            tracing::warn!(service, schedule = name, %error, "schedule failed");
            ScheduleOutcome::Error
        }
    });
    if let Some(trace) = trace {
        match ran {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => trace.fail(reason),
            Err(error) => trace.fail(error.to_string()),
        }
        trace.end();
    }
    outcome
}

/// The lease of a schedule: named after the service's database, which is what the hosts
/// that must not run it twice share.
fn lease_name(endpoint: &ServiceEndpoint, schedule: &str) -> String {
    let config = &endpoint.service.service.config;
    let database = config
        .database
        .as_deref()
        .unwrap_or(endpoint.service.name());
    format!("platform schedule {database}/{schedule}")
}
