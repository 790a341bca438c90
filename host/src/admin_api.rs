//! The JSON documents of the admin API: what the host answers and the CLI reads.

pub use crate::backends::fleet::{DesiredVersion, HostReport, ServiceReport, Strategy};
use crate::state::DeploySource;
use serde::{Deserialize, Serialize};

/// One line of `platform ps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub port: u16,
    /// The digest's first 12 hex digits.
    pub version: String,
    pub digest: String,
    pub deployed_at: chrono::DateTime<chrono::Utc>,
    pub source: DeploySource,
    /// `serving`, or `serving, broker unavailable` for a consumer that lost its broker.
    pub state: String,
    /// Requests the current version answered, and 5xx among them.
    pub requests: u64,
    pub errors: u64,
    /// Requests refused with a 503 since the host started (a full queue, no turn in time,
    /// a saturated host resource), whichever version was serving.
    #[serde(default)]
    pub shed: u64,
    /// Instances running a request or a schedule now, against `max_concurrent`.
    #[serde(default)]
    pub instances_in_use: usize,
    #[serde(default)]
    pub max_concurrent: usize,
    /// The service's subscriptions, for their dead letters.
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionStatus>,
}

/// A subscription of a service, as `platform ps --json` and the console show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionStatus {
    pub queue: String,
    pub dead_letter_queue: String,
}

/// One of a service's last warnings and errors, from the host's own bounded ring
/// (`platform errors`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecentError {
    pub at: chrono::DateTime<chrono::Utc>,
    /// `warn` or `error`.
    pub level: String,
    pub message: String,
    #[serde(default)]
    pub request_id: Option<String>,
    /// The event's other fields (`route`, `error`, `message_id`...), as text.
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, String>,
}

/// One line of `platform versions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionEntry {
    pub version: String,
    pub digest: String,
    pub deployed_at: chrono::DateTime<chrono::Utc>,
    pub source: DeploySource,
    pub current: bool,
}

/// The answer of a deploy or rollback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployed {
    pub service: String,
    pub version: String,
    pub digest: String,
    pub previous: String,
    pub swap_ms: f64,
    pub routes: usize,
    /// In a fleet: how the version reaches the other hosts.
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// Whether the host that answered serves it already (a rolling deploy gives every
    /// host its turn in order).
    #[serde(default = "serving_here")]
    pub serving_here: bool,
}

fn serving_here() -> bool {
    true
}

/// A message to publish (`platform publish`): to replay a dead letter or inject an
/// event by hand. The payload is text (JSON, usually).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub routing_key: String,
    pub payload: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// The answer of a publish: the broker confirmed it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    pub exchange: String,
    pub routing_key: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RollbackRequest {
    #[serde(default)]
    pub to: Option<String>,
    /// In a fleet: how the rollback reaches the other hosts.
    #[serde(default)]
    pub strategy: Strategy,
}

/// `platform ps --fleet` and `platform rollout status`: the fleet's desired versions and
/// every host's last heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetStatus {
    pub fleet: String,
    /// The host that answered.
    pub host: String,
    pub desired: std::collections::BTreeMap<String, DesiredVersion>,
    pub hosts: Vec<FleetHost>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetHost {
    #[serde(flatten)]
    pub report: HostReport,
    /// Whether its last heartbeat is younger than `[fleet] host_timeout_seconds`.
    pub alive: bool,
    /// Seconds since its last heartbeat, on the database server's clock.
    pub silent_seconds: f64,
}

/// Every error: what went wrong, in a sentence that names the fix where there is one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// One line of `platform dlq list`: a message in a dead-letter queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetterEntry {
    /// What `platform dlq replay --id` takes.
    pub id: String,
    pub exchange: String,
    pub routing_key: String,
    /// Failed deliveries before it was dead-lettered.
    pub retries: u32,
    /// Why the platform dead-lettered it (none for what RabbitMQ dead-lettered itself).
    #[serde(default)]
    pub reason: Option<String>,
    /// The payload as text (invalid UTF-8 shown replaced).
    pub payload: String,
    pub headers: std::collections::BTreeMap<String, String>,
}

/// `platform dlq replay`: one dead letter by id, or every one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[serde(default)]
    pub id: Option<String>,
}

/// The answer of a replay.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replayed {
    /// The subscription's queue the dead letters went back to.
    pub queue: String,
    pub replayed: usize,
}
