//! The deployment registry of a fleet: hosts that share a PostgreSQL server and a fleet
//! name keep every deployed version (its bytes and digest), the deploy history, each
//! service's desired version and rollout, and their own heartbeats there, in the schema
//! `platform_fleet` of the server's default database.
//!
//! A change of a desired version is announced with `NOTIFY platform_fleet, '<fleet>'`, in
//! the transaction that makes it, so a host that hears it reads the committed row. A host
//! that missed a notification (it was down, or its listening connection broke) catches up
//! by reading the rows on its next periodic reconcile: the rows are the truth, the
//! notifications only make hosts look sooner.
//!
//! The schema is PUBLIC-less: service roles (see `database::postgres`) can read none of it.

use crate::state::DeployRecord;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Row};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

/// The channel every host of every fleet listens on; the payload names the fleet.
const CHANNEL: &str = "platform_fleet";

/// Why the fleet's registry could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("invalid database URL: {0}")]
    Url(sqlx::Error),
    /// PostgreSQL did not answer: deploys wait, hosts keep serving what they have.
    #[error("the fleet registry is unavailable: {0}")]
    Unavailable(String),
    #[error("the fleet registry has no component {digest} of `{service}`")]
    MissingComponent { service: String, digest: String },
    #[error("the fleet registry holds an unreadable row: {0}")]
    Corrupt(String),
}

fn unavailable(error: sqlx::Error) -> FleetError {
    FleetError::Unavailable(error.to_string())
}

/// How a new desired version reaches the hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Strategy {
    /// Every host switches as soon as it hears of it.
    #[default]
    All,
    /// One host at a time, in the order of their names: a host switches once every live
    /// host before it serves the new version (each one's health check is the gate).
    Rolling,
    /// Every host serves the new version to this percentage of its HTTP requests beside
    /// the stable one, until the fleet's comparison of the two promotes or rolls it back.
    Canary(u8),
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Strategy::All => f.write_str("all"),
            Strategy::Rolling => f.write_str("rolling"),
            Strategy::Canary(percent) => write!(f, "canary:{percent}"),
        }
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(text: &str) -> Result<Strategy, String> {
        match text {
            "all" => Ok(Strategy::All),
            "rolling" => Ok(Strategy::Rolling),
            other => match other.strip_prefix("canary:").map(str::parse::<u8>) {
                Some(Ok(percent)) if (1..=99).contains(&percent) => Ok(Strategy::Canary(percent)),
                Some(_) => Err(format!(
                    "`{other}`: a canary's share is a percentage from 1 to 99"
                )),
                None => Err(format!(
                    "unknown strategy `{other}` (all | rolling | canary:<percent>)"
                )),
            },
        }
    }
}

impl TryFrom<String> for Strategy {
    type Error = String;
    fn try_from(text: String) -> Result<Strategy, String> {
        text.parse()
    }
}

impl From<Strategy> for String {
    fn from(strategy: Strategy) -> String {
        strategy.to_string()
    }
}

/// The version every host of the fleet should serve for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredVersion {
    pub digest: String,
    pub strategy: Strategy,
    /// What served before it: what `platform rollout abort` returns to.
    pub previous: Option<String>,
    pub since: DateTime<Utc>,
}

/// One service on one host, as its heartbeat reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    /// The digest serving on this host.
    pub serving: String,
    /// `serving`, `waiting for its turn`, `updating` or `refused: <why>`.
    pub state: String,
    /// A canary beside the serving version.
    #[serde(default)]
    pub canary: Option<CanaryReport>,
}

/// A canary on one host: how it and the stable version answered since it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryReport {
    pub digest: String,
    pub percent: u8,
    pub canary: TallyReport,
    pub stable: TallyReport,
}

/// Requests of one version since a canary rollout began, as heartbeats carry them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallyReport {
    pub requests: u64,
    pub errors: u64,
    /// Microseconds the requests took, summed.
    pub micros: u64,
}

impl TallyReport {
    pub fn plus(self, other: TallyReport) -> TallyReport {
        TallyReport {
            requests: self.requests + other.requests,
            errors: self.errors + other.errors,
            micros: self.micros + other.micros,
        }
    }

    pub fn error_rate(&self) -> f64 {
        self.errors as f64 / self.requests.max(1) as f64
    }

    pub fn mean_latency(&self) -> Duration {
        Duration::from_micros(self.micros / self.requests.max(1))
    }
}

/// A host's last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostReport {
    pub host: String,
    pub admin_url: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub services: BTreeMap<String, ServiceReport>,
}

pub struct FleetStore {
    pool: PgPool,
    fleet: String,
    history_limit: usize,
}

impl FleetStore {
    /// Connects to the server behind `server_url` and creates the registry's tables if they
    /// do not exist (under a lock: hosts starting together create them once).
    pub async fn open(
        server_url: &str,
        fleet: &str,
        history_limit: usize,
    ) -> Result<FleetStore, FleetError> {
        let server = PgConnectOptions::from_str(server_url)
            .map_err(FleetError::Url)?
            .application_name("platform-fleet");
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(server)
            .await
            .map_err(unavailable)?;
        let mut transaction = pool.begin().await.map_err(unavailable)?;
        for statement in [
            "SELECT pg_advisory_xact_lock(hashtext('platform_fleet schema'))",
            // "already exists, skipping" at every start says nothing.
            "SET LOCAL client_min_messages = warning",
        ]
        .iter()
        .chain(SCHEMA)
        {
            sqlx::query(statement)
                .execute(&mut *transaction)
                .await
                .map_err(unavailable)?;
        }
        transaction.commit().await.map_err(unavailable)?;
        Ok(FleetStore {
            pool,
            fleet: fleet.to_string(),
            history_limit,
        })
    }

    /// Whether the registry answers (within the pool's acquire timeout).
    pub async fn ping(&self) -> Result<(), FleetError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub fn fleet(&self) -> &str {
        &self.fleet
    }

    /// The newest `history_limit` deploys of `service`, oldest first.
    pub async fn history(&self, service: &str) -> Result<Vec<DeployRecord>, FleetError> {
        let rows = sqlx::query(
            "SELECT digest, deployed_at, source FROM ( \
               SELECT id, digest, deployed_at, source FROM platform_fleet.deploys \
               WHERE fleet = $1 AND service = $2 ORDER BY id DESC LIMIT $3) newest \
             ORDER BY id",
        )
        .bind(&self.fleet)
        .bind(service)
        .bind(self.history_limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.into_iter()
            .map(|row| {
                let source: String = row.get("source");
                Ok(DeployRecord {
                    digest: row.get("digest"),
                    deployed_at: row.get("deployed_at"),
                    source: serde_json::from_value(serde_json::Value::String(source.clone()))
                        .map_err(|_| FleetError::Corrupt(format!("deploy source `{source}`")))?,
                })
            })
            .collect()
    }

    /// The bytes of a version of `service`.
    pub async fn component(&self, service: &str, digest: &str) -> Result<Vec<u8>, FleetError> {
        sqlx::query_scalar(
            "SELECT bytes FROM platform_fleet.components \
             WHERE fleet = $1 AND service = $2 AND digest = $3",
        )
        .bind(&self.fleet)
        .bind(service)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| FleetError::MissingComponent {
            service: service.to_string(),
            digest: digest.to_string(),
        })
    }

    /// Stores the version (if not stored yet), appends it to the history and makes it the
    /// desired version of `service`, then tells every host: one transaction. With
    /// `only_if_new`, nothing happens if the service already has a desired version (a
    /// host's first start must not replace what the fleet serves); the answer says whether
    /// the version was recorded.
    pub async fn record(
        &self,
        service: &str,
        bytes: &[u8],
        record: &DeployRecord,
        strategy: Strategy,
        only_if_new: bool,
    ) -> Result<bool, FleetError> {
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        // Deploys of one service are serialised across the fleet.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext('platform_fleet deploy ' || $1 || '/' || $2))",
        )
        .bind(&self.fleet)
        .bind(service)
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        let desired: Option<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT digest, strategy, previous FROM platform_fleet.desired \
             WHERE fleet = $1 AND service = $2",
        )
        .bind(&self.fleet)
        .bind(service)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(unavailable)?;
        if only_if_new && desired.is_some() {
            return Ok(false);
        }
        // What served before: during a canary rollout, its stable version, not the canary.
        let previous = desired.and_then(|(digest, strategy, stable)| match strategy.parse() {
            Ok(Strategy::Canary(_)) => stable,
            _ => Some(digest),
        });
        sqlx::query(
            "INSERT INTO platform_fleet.components (fleet, service, digest, bytes) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&self.fleet)
        .bind(service)
        .bind(&record.digest)
        .bind(bytes)
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO platform_fleet.deploys (fleet, service, digest, deployed_at, source) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&self.fleet)
        .bind(service)
        .bind(&record.digest)
        .bind(record.deployed_at)
        .bind(record.source.as_str())
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO platform_fleet.desired (fleet, service, digest, strategy, previous, since) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (fleet, service) DO UPDATE SET digest = $3, strategy = $4, \
               previous = $5, since = $6",
        )
        .bind(&self.fleet)
        .bind(service)
        .bind(&record.digest)
        .bind(strategy.to_string())
        .bind(previous.filter(|previous| *previous != record.digest))
        .bind(record.deployed_at)
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        // Components no kept record needs any more go: the newest `history_limit` deploys
        // and the desired versions are kept.
        sqlx::query(
            "DELETE FROM platform_fleet.components c WHERE c.fleet = $1 AND c.service = $2 \
             AND c.digest NOT IN (SELECT digest FROM platform_fleet.deploys \
               WHERE fleet = $1 AND service = $2 ORDER BY id DESC LIMIT $3) \
             AND c.digest NOT IN (SELECT digest FROM platform_fleet.desired \
               WHERE fleet = $1 AND service = $2) \
             AND c.digest NOT IN (SELECT previous FROM platform_fleet.desired \
               WHERE fleet = $1 AND service = $2 AND previous IS NOT NULL)",
        )
        .bind(&self.fleet)
        .bind(service)
        .bind(self.history_limit as i64)
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        self.notify(&mut transaction).await?;
        transaction.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn notify(&self, connection: &mut sqlx::PgConnection) -> Result<(), FleetError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&self.fleet)
            .execute(connection)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Tells every host to look at the registry now (a host finished a rolling step).
    pub async fn nudge(&self) -> Result<(), FleetError> {
        let mut connection = self.pool.acquire().await.map_err(unavailable)?;
        self.notify(&mut connection).await
    }

    /// Every service's desired version.
    pub async fn desired(&self) -> Result<BTreeMap<String, DesiredVersion>, FleetError> {
        let rows = sqlx::query(
            "SELECT service, digest, strategy, previous, since FROM platform_fleet.desired \
             WHERE fleet = $1",
        )
        .bind(&self.fleet)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.into_iter()
            .map(|row| {
                let strategy: String = row.get("strategy");
                Ok((
                    row.get("service"),
                    DesiredVersion {
                        digest: row.get("digest"),
                        strategy: strategy.parse().map_err(FleetError::Corrupt)?,
                        previous: row.get("previous"),
                        since: row.get("since"),
                    },
                ))
            })
            .collect()
    }

    /// Turns a rolling or canary deploy of `service` into an all-at-once one (`platform
    /// rollout promote`); `None` if it has none in progress.
    pub async fn promote(&self, service: &str) -> Result<Option<DesiredVersion>, FleetError> {
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        let promoted = sqlx::query(
            "UPDATE platform_fleet.desired SET strategy = 'all' \
             WHERE fleet = $1 AND service = $2 AND strategy <> 'all' \
             RETURNING digest, previous, since",
        )
        .bind(&self.fleet)
        .bind(service)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(unavailable)?;
        let Some(row) = promoted else {
            return Ok(None);
        };
        self.notify(&mut transaction).await?;
        transaction.commit().await.map_err(unavailable)?;
        Ok(Some(DesiredVersion {
            digest: row.get("digest"),
            strategy: Strategy::All,
            previous: row.get("previous"),
            since: row.get("since"),
        }))
    }

    /// Ends the canary rollout `desired` of `service`: promoted, every host switches to it;
    /// otherwise every host goes back to the stable version, recorded as a rollback. Only
    /// the first host to conclude a given rollout does (the others find it concluded):
    /// `false` then.
    pub async fn conclude_canary(
        &self,
        service: &str,
        desired: &DesiredVersion,
        promote: bool,
    ) -> Result<bool, FleetError> {
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        let still = "fleet = $1 AND service = $2 AND digest = $3 AND strategy = $4 AND since = $5";
        let statement = if promote {
            format!("UPDATE platform_fleet.desired SET strategy = 'all' WHERE {still}")
        } else {
            format!(
                "UPDATE platform_fleet.desired SET digest = previous, previous = digest, \
                 strategy = 'all', since = now() WHERE {still} AND previous IS NOT NULL"
            )
        };
        let concluded = sqlx::query(&statement)
            .bind(&self.fleet)
            .bind(service)
            .bind(&desired.digest)
            .bind(desired.strategy.to_string())
            .bind(desired.since)
            .execute(&mut *transaction)
            .await
            .map_err(unavailable)?
            .rows_affected()
            == 1;
        if !concluded {
            return Ok(false);
        }
        if let (false, Some(stable)) = (promote, &desired.previous) {
            sqlx::query(
                "INSERT INTO platform_fleet.deploys (fleet, service, digest, deployed_at, source) \
                 VALUES ($1, $2, $3, now(), 'rollback')",
            )
            .bind(&self.fleet)
            .bind(service)
            .bind(stable)
            .execute(&mut *transaction)
            .await
            .map_err(unavailable)?;
        }
        self.notify(&mut transaction).await?;
        transaction.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    /// Writes this host's heartbeat.
    pub async fn heartbeat(&self, report: &HostReport) -> Result<(), FleetError> {
        let services = serde_json::to_value(&report.services).expect("JSON of plain reports");
        sqlx::query(
            "INSERT INTO platform_fleet.hosts (fleet, host, admin_url, started_at, heartbeat_at, services) \
             VALUES ($1, $2, $3, $4, now(), $5) \
             ON CONFLICT (fleet, host) DO UPDATE SET admin_url = $3, started_at = $4, \
               heartbeat_at = now(), services = $5",
        )
        .bind(&self.fleet)
        .bind(&report.host)
        .bind(&report.admin_url)
        .bind(report.started_at)
        .bind(services)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    /// Every host's last heartbeat, by host name; and the server's clock, which the
    /// heartbeats' ages are measured on.
    pub async fn hosts(&self) -> Result<(Vec<HostReport>, DateTime<Utc>), FleetError> {
        let rows = sqlx::query(
            "SELECT host, admin_url, started_at, heartbeat_at, services, now() AS now \
             FROM platform_fleet.hosts WHERE fleet = $1 ORDER BY host",
        )
        .bind(&self.fleet)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let now = rows
            .first()
            .map(|row| row.get("now"))
            .unwrap_or_else(Utc::now);
        let hosts = rows
            .into_iter()
            .map(|row| {
                let services: serde_json::Value = row.get("services");
                Ok(HostReport {
                    host: row.get("host"),
                    admin_url: row.get("admin_url"),
                    started_at: row.get("started_at"),
                    heartbeat_at: row.get("heartbeat_at"),
                    services: serde_json::from_value(services)
                        .map_err(|error| FleetError::Corrupt(error.to_string()))?,
                })
            })
            .collect::<Result<Vec<_>, FleetError>>()?;
        Ok((hosts, now))
    }

    /// Forgets a host (it left the fleet for good: `platform fleet forget`).
    pub async fn forget(&self, host: &str) -> Result<bool, FleetError> {
        let deleted =
            sqlx::query("DELETE FROM platform_fleet.hosts WHERE fleet = $1 AND host = $2")
                .bind(&self.fleet)
                .bind(host)
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(deleted.rows_affected() > 0)
    }

    /// A connection that hears this fleet's announcements. It reconnects by itself after a
    /// broken connection; announcements made meanwhile are lost (the reconcile finds them).
    pub async fn listen(&self) -> Result<Announcements, FleetError> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(unavailable)?;
        listener.listen(CHANNEL).await.map_err(unavailable)?;
        Ok(Announcements {
            listener,
            fleet: self.fleet.clone(),
        })
    }

    /// A secret every host of the fleet shares, created by the first one: the service
    /// roles' passwords are derived from it, so one host's start never changes the
    /// password the others' pools log in with.
    pub async fn shared_secret(&self) -> Result<String, FleetError> {
        let secret = crate::state::random_token();
        sqlx::query(
            "INSERT INTO platform_fleet.secrets (fleet, secret) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&self.fleet)
        .bind(&secret)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        sqlx::query_scalar("SELECT secret FROM platform_fleet.secrets WHERE fleet = $1")
            .bind(&self.fleet)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)
    }
}

/// Announcements of changes to a fleet's desired versions.
pub struct Announcements {
    listener: PgListener,
    fleet: String,
}

impl Announcements {
    /// Waits for the next announcement for this fleet. An error means the connection broke;
    /// the next call reconnects.
    pub async fn next(&mut self) -> Result<(), FleetError> {
        loop {
            let notification = self.listener.recv().await.map_err(unavailable)?;
            if notification.payload() == self.fleet {
                return Ok(());
            }
        }
    }
}

/// Created once per server, idempotently.
const SCHEMA: &[&str] = &[
    "CREATE SCHEMA IF NOT EXISTS platform_fleet",
    "REVOKE ALL ON SCHEMA platform_fleet FROM PUBLIC",
    "CREATE TABLE IF NOT EXISTS platform_fleet.components ( \
       fleet text NOT NULL, service text NOT NULL, digest text NOT NULL, \
       bytes bytea NOT NULL, stored_at timestamptz NOT NULL DEFAULT now(), \
       PRIMARY KEY (fleet, service, digest))",
    "CREATE TABLE IF NOT EXISTS platform_fleet.deploys ( \
       id bigserial PRIMARY KEY, fleet text NOT NULL, service text NOT NULL, \
       digest text NOT NULL, deployed_at timestamptz NOT NULL, source text NOT NULL)",
    "CREATE INDEX IF NOT EXISTS deploys_by_service ON platform_fleet.deploys (fleet, service, id)",
    "CREATE TABLE IF NOT EXISTS platform_fleet.desired ( \
       fleet text NOT NULL, service text NOT NULL, digest text NOT NULL, \
       strategy text NOT NULL, previous text, since timestamptz NOT NULL, \
       PRIMARY KEY (fleet, service))",
    "CREATE TABLE IF NOT EXISTS platform_fleet.hosts ( \
       fleet text NOT NULL, host text NOT NULL, admin_url text NOT NULL, \
       started_at timestamptz NOT NULL, heartbeat_at timestamptz NOT NULL, \
       services jsonb NOT NULL, PRIMARY KEY (fleet, host))",
    "CREATE TABLE IF NOT EXISTS platform_fleet.secrets ( \
       fleet text PRIMARY KEY, secret text NOT NULL)",
];
