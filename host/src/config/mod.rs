//! `platform.toml` -> typed configuration, with environment overrides.
//!
//! ```toml
//! [host]
//! bind = "127.0.0.1"            # address every service listener binds; env PLATFORM_BIND
//! cors_origins = ["*"]          # origins CORS allows ("*" = any)
//! max_body_bytes = 1048576      # larger request bodies get 413
//! [host.connections]            # every service listener ([admin.connections]: the admin API)
//! max_connections = 1024        # per listener; beyond: 503 and close (admin: 64)
//! header_timeout_seconds = 10   # a whole request head within this (also the idle keep-alive)
//! max_header_bytes = 16384      # request line + headers; beyond: 431
//! max_headers = 100             # beyond: 431
//! shutdown_drain_seconds = 10   # requests in progress at shutdown get this long
//!
//! # Without a url, a backend is embedded: SQLite files, an in-process cache and broker,
//! # all under [state] dir. Each backend is chosen on its own (mixed setups work).
//!
//! [database]
//! url = "postgres://postgres@127.0.0.1:5432/postgres"   # env DATABASE_URL; none = SQLite
//! max_connections = 10          # per service pool
//! acquire_timeout_seconds = 3   # then a call fails with `unavailable` (503)
//! migrations = "migrations"     # one folder per service inside
//! statement_timeout_ms = 5000   # a longer statement is cancelled (query-failed)
//! max_result_rows = 10000       # rows one query may return (query-failed beyond)
//! max_result_mb = 16            # bytes one query may return (query-failed beyond)
//!
//! [cache]
//! url = "redis://127.0.0.1:6379"   # env REDIS_URL; none = in-process (moka)
//! timeout_ms = 250                 # a slower call fails fast with `unavailable`
//! default_ttl_seconds = 300        # TTL when a component gives none
//! embedded_max_mb = 64             # size bound of the in-process cache
//!
//! [messaging]
//! url = "amqp://guest:guest@127.0.0.1:5672/%2f"   # env AMQP_URL; none = embedded broker
//! [[messaging.exchanges]]
//! name = "order_events"
//! kind = "topic"                   # topic | direct | fanout | headers (RabbitMQ only)
//!
//! [auth]
//! validate_url = "http://127.0.0.1:8001/validate-token"
//! timeout_ms = 5000
//!
//! [state]
//! dir = ".platform"                 # deployed versions, compiled code, the admin token;
//!                                   # env PLATFORM_STATE_DIR
//! history_limit = 10                # versions kept per service
//!
//! [fleet]                           # hosts sharing [database] url and a fleet name keep
//! name = "shop"                     # one deployment registry there; env PLATFORM_FLEET
//! host = "pod-1"                    # this host in the fleet; env PLATFORM_HOST_NAME
//!                                   # (default: the hostname, plus the bind address if not
//!                                   # a wildcard)
//! heartbeat_seconds = 2             # how often a host reports its versions
//! reconcile_seconds = 5             # how often a host compares itself with the registry
//!                                   # (notifications make it sooner)
//! host_timeout_seconds = 10         # a host silent this long counts as down
//! canary_window_seconds = 60        # a canary's requests over this long decide: promoted,
//!                                   # or rolled back on a higher 5xx rate or latency
//!
//! [admin]                           # the API `platform deploy / rollback / ps` talk to
//! bind = "127.0.0.1:9000"           # a non-loopback address needs PLATFORM_ADMIN_TOKEN
//! max_upload_mb = 64                # largest component a deploy may send
//!
//! [identity]                        # the identity-provider capability (user service)
//! access_token_expire_minutes = 30  # env ACCESS_TOKEN_EXPIRE_MINUTES
//! bcrypt_cost = 12
//! bcrypt_workers = 1                # jobs at once; default: cores - 1 (at least 1)
//! bcrypt_max_queued = 32            # waiting jobs; beyond: 503
//! # secret: env JWT_SECRET only
//!
//! [services.order]
//! port = 8003
//! component = "target/wasm32-wasip2/release/order.wasm"
//! build = "cargo build --release --target wasm32-wasip2 -p order"
//! watch = ["components/order", "components/guest"]   # `platform up --watch` rebuilds on change
//! database = "order_service"        # created if missing; migrations/<service>/ applied
//!                                   # (migrations/<service>/{postgres,sqlite}/ if the SQL differs)
//! grants = ["database", "messaging", "outgoing-http", "config", "logging"]
//! allowed_hosts = ["127.0.0.1:8002"]   # outgoing-http targets
//! publish_exchanges = ["order_events"] # messaging targets
//! cache_namespace = "order"            # key prefix (default: the service name)
//! memory_limit_mb = 64
//! request_timeout_ms = 15000
//! max_concurrent = 64                  # calls at once; more wait their turn
//! max_queued = 256                     # waiting requests; beyond: 503 with Retry-After
//! queue_timeout_ms = 2000              # longest wait for a turn; then 503
//! statement_timeout_ms = 2000          # instead of [database] statement_timeout_ms
//! [services.order.instances]           # opt-in: keep instances between HTTP requests
//! reuse = false                        # default: a fresh instance for every call
//! max_requests = 1000                  # requests one instance serves, then a fresh one
//! idle_timeout_seconds = 30            # an instance idle this long is dropped
//! [services.order.config]              # values for the config capability;
//! product_service_url = "http://127.0.0.1:8002"   # env PLATFORM_ORDER_PRODUCT_SERVICE_URL
//!
//! [[services.notification.subscriptions]]
//! queue = "order_notifications"
//! exchange = "order_events"
//! routing_keys = ["order.created", "order.cancelled"]
//! dead_letter_queue = "order_notifications.dlq"
//! prefetch = 16
//! max_retry_attempts = 3               # env MAX_RETRY_ATTEMPTS
//! retry_delay_ms = 2000                # before the first retry; doubling each time...
//! max_retry_delay_ms = 60000           # ...up to this; a waiting message holds no slot
//! ```
//!
//! Relative paths are resolved against the directory of the configuration file.

mod environment;
mod validation;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why `platform.toml` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    #[serde(default)]
    pub host: HostConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub messaging: MessagingConfig,
    pub auth: AuthConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub fleet: FleetConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub tracing: TracingConfig,
    pub services: BTreeMap<String, ServiceConfig>,
    /// Directory the relative paths are resolved against (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[tracing]`: OpenTelemetry traces by OTLP. Off unless an endpoint is set here or by
/// `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; the standard
/// `OTEL_*` variables override these values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The collector's base URL (`/v1/traces` is appended), e.g. `http://127.0.0.1:4318`.
    pub endpoint: Option<String>,
    /// The full traces URL, used as it is.
    pub traces_endpoint: Option<String>,
    /// `http/protobuf` (the default) or `http/json`.
    pub protocol: Option<String>,
    /// `parentbased_always_on` (the default), `always_on`, `always_off`, `traceidratio`,
    /// `parentbased_always_off`, `parentbased_traceidratio`.
    pub sampler: Option<String>,
    /// The ratio of the `*traceidratio` samplers, 0.0 to 1.0.
    pub sampler_arg: Option<f64>,
    /// Put before each service's name in `service.name` (e.g. `shop-`).
    pub service_name_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    pub bind: String,
    pub cors_origins: Vec<String>,
    pub max_body_bytes: usize,
    /// Limits of every service listener's connections.
    pub connections: ConnectionLimits,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            bind: "127.0.0.1".into(),
            cors_origins: vec!["*".into()],
            max_body_bytes: 1024 * 1024,
            connections: ConnectionLimits::default(),
        }
    }
}

/// What one listener accepts: `[host.connections]` for the service ports, `[admin.connections]`
/// for the admin API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Open connections per listener; beyond them a new connection gets 503 and is closed.
    pub max_connections: usize,
    /// A connection must send a whole request head within this time of connecting or of its
    /// previous response (so it is also how long an idle keep-alive connection stays open).
    pub header_timeout_seconds: u64,
    /// Largest request head (request line and headers) in bytes: beyond it, 431.
    pub max_header_bytes: usize,
    /// Most headers in one request: beyond them, 431.
    pub max_headers: usize,
    /// On shutdown, requests in progress get this long to finish.
    pub shutdown_drain_seconds: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            header_timeout_seconds: 10,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            shutdown_drain_seconds: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// PostgreSQL server; without one, each service gets an embedded SQLite file in the
    /// state directory.
    pub url: Option<String>,
    pub max_connections: u32,
    pub acquire_timeout_seconds: u64,
    pub migrations: PathBuf,
    /// A statement running longer is cancelled and the call gets `query-failed`.
    pub statement_timeout_ms: u64,
    /// Rows one query may return; past them the call gets `query-failed`.
    pub max_result_rows: usize,
    /// Bytes of values one query may return.
    pub max_result_mb: usize,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 10,
            acquire_timeout_seconds: 3,
            migrations: PathBuf::from("migrations"),
            statement_timeout_ms: 5_000,
            max_result_rows: 10_000,
            max_result_mb: 16,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Redis server; without one, the host keeps an in-process cache.
    pub url: Option<String>,
    pub timeout_ms: u64,
    pub default_ttl_seconds: u32,
    /// Size bound of the embedded cache (keys and values), when no `url` is set.
    pub embedded_max_mb: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            url: None,
            timeout_ms: 250,
            default_ttl_seconds: 300,
            embedded_max_mb: 64,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingConfig {
    /// RabbitMQ server; without one, the host runs an embedded broker whose messages are
    /// kept in the state directory.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub exchanges: Vec<ExchangeConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    pub name: String,
    #[serde(default = "default_exchange_kind")]
    pub kind: ExchangeKindConfig,
}

fn default_exchange_kind() -> ExchangeKindConfig {
    ExchangeKindConfig::Topic
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeKindConfig {
    Topic,
    Direct,
    Fanout,
    Headers,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub validate_url: String,
    #[serde(default = "default_auth_timeout")]
    pub timeout_ms: u64,
}

fn default_auth_timeout() -> u64 {
    5000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    pub access_token_expire_minutes: u64,
    pub bcrypt_cost: u32,
    /// bcrypt jobs hashing at once; default: one core fewer than the machine has (at least
    /// one), so the other services always keep a core.
    pub bcrypt_workers: Option<usize>,
    /// bcrypt jobs waiting for a worker; beyond them a login or registration gets 503.
    pub bcrypt_max_queued: usize,
    /// Only from the environment (`JWT_SECRET`), never from the file.
    #[serde(skip)]
    pub jwt_secret: Option<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            access_token_expire_minutes: 30,
            bcrypt_cost: 12,
            bcrypt_workers: None,
            bcrypt_max_queued: 32,
            jwt_secret: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub dir: PathBuf,
    pub history_limit: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from(".platform"),
            history_limit: 10,
        }
    }
}

/// Fleet mode: without a name, the host keeps its deployments in its state directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    pub name: Option<String>,
    pub host: Option<String>,
    pub heartbeat_seconds: u64,
    pub reconcile_seconds: u64,
    pub host_timeout_seconds: u64,
    pub canary_window_seconds: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            name: None,
            host: None,
            heartbeat_seconds: 2,
            reconcile_seconds: 5,
            host_timeout_seconds: 10,
            canary_window_seconds: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub bind: String,
    pub max_upload_mb: u64,
    pub connections: ConnectionLimits,
    /// Only from the environment (`PLATFORM_ADMIN_TOKEN`), never from the file.
    #[serde(skip)]
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            bind: "127.0.0.1:9000".into(),
            max_upload_mb: 64,
            connections: ConnectionLimits {
                max_connections: 64,
                ..ConnectionLimits::default()
            },
            token: None,
        }
    }
}

impl AdminConfig {
    pub fn max_upload_bytes(&self) -> usize {
        (self.max_upload_mb as usize) * 1024 * 1024
    }
}

/// The capabilities a service can be granted, by their name in `grants`; each is one WIT
/// interface of the same name, built as `capabilities::CAPABILITIES` says.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    Database,
    Cache,
    Messaging,
    Auth,
    IdentityProvider,
    OutgoingHttp,
    Config,
    Logging,
}

impl Capability {
    /// How many there are; `capabilities::CAPABILITIES` has one row for each.
    pub const COUNT: usize = 8;
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub port: u16,
    pub component: PathBuf,
    #[serde(default)]
    pub build: Option<String>,
    /// Files or folders whose changes `platform up --watch` rebuilds and redeploys on.
    #[serde(default)]
    pub watch: Vec<PathBuf>,
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub grants: Vec<Capability>,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub publish_exchanges: Vec<String>,
    #[serde(default)]
    pub cache_namespace: Option<String>,
    #[serde(default = "default_memory_limit")]
    pub memory_limit_mb: u64,
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Calls of this service running at once (HTTP requests; message deliveries have their
    /// subscriptions' `prefetch`); more wait in a queue.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// Requests waiting for a turn; beyond them a request gets 503 at once.
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
    /// Longest a request waits for its turn before it gets 503.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout_ms: u64,
    /// This service's statement timeout, instead of `database.statement_timeout_ms`.
    #[serde(default)]
    pub statement_timeout_ms: Option<u64>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionConfig>,
    /// Periodic calls of the component's `scheduled-handler`.
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
    /// Whether HTTP requests may reuse instances (off by default).
    #[serde(default)]
    pub instances: InstancesConfig,
}

/// Instance reuse between a service's HTTP requests. Off, every call gets a fresh instance;
/// on, a request may get an instance an earlier request of the same service and version
/// left, with whatever that request left in its memory. Message deliveries, schedules and
/// health checks always get fresh ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstancesConfig {
    #[serde(default)]
    pub reuse: bool,
    /// Requests one instance serves before it is dropped.
    #[serde(default = "default_max_requests")]
    pub max_requests: u32,
    /// An instance unused this long is dropped.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
}

impl Default for InstancesConfig {
    fn default() -> Self {
        InstancesConfig {
            reuse: false,
            max_requests: default_max_requests(),
            idle_timeout_seconds: default_idle_timeout(),
        }
    }
}

fn default_max_requests() -> u32 {
    1000
}
fn default_idle_timeout() -> u64 {
    30
}

fn default_memory_limit() -> u64 {
    64
}
fn default_request_timeout() -> u64 {
    10_000
}
fn default_max_concurrent() -> usize {
    64
}
fn default_max_queued() -> usize {
    256
}
fn default_queue_timeout() -> u64 {
    2_000
}

impl ServiceConfig {
    pub fn is_granted(&self, capability: Capability) -> bool {
        self.grants.contains(&capability)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn memory_limit_bytes(&self) -> usize {
        (self.memory_limit_mb as usize) * 1024 * 1024
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    pub queue: String,
    pub exchange: String,
    pub routing_keys: Vec<String>,
    pub dead_letter_queue: String,
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    #[serde(default = "default_max_retry")]
    pub max_retry_attempts: u32,
    /// The pause before the first retry; each further retry waits twice as long, up to
    /// `max_retry_delay_ms`. A waiting message holds no delivery slot.
    #[serde(default = "default_retry_delay")]
    pub retry_delay_ms: u64,
    #[serde(default = "default_max_retry_delay")]
    pub max_retry_delay_ms: u64,
    /// How long a message may keep failing with `unavailable` (since its first failure)
    /// before it is dead-lettered.
    #[serde(default = "default_max_retry_age")]
    pub max_retry_age_seconds: u64,
}

impl SubscriptionConfig {
    /// How long a message that failed `retries` times before waits for its next delivery.
    pub fn retry_delay(&self, retries: u32) -> Duration {
        let doubled = self.retry_delay_ms.saturating_mul(1u64 << retries.min(32));
        Duration::from_millis(doubled.min(self.max_retry_delay_ms))
    }

    /// How long a message that has been unavailable for `failing` waits: as long again
    /// (so the pauses double over an outage), within `retry_delay_ms..=max_retry_delay_ms`.
    pub fn unavailable_delay(&self, failing: Duration) -> Duration {
        let millis = u64::try_from(failing.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(millis.clamp(
            self.retry_delay_ms,
            self.max_retry_delay_ms.max(self.retry_delay_ms),
        ))
    }

    pub fn max_retry_age(&self) -> Duration {
        Duration::from_secs(self.max_retry_age_seconds)
    }
}

/// `[[services.<name>.schedules]]`: one periodic call of the component's `run`, either
/// every so many seconds or on a cron expression (in UTC).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Passed to `run`; also the `schedule` label of `schedule_runs_total`.
    pub name: String,
    #[serde(default)]
    pub every_seconds: Option<u64>,
    /// Five fields (minute hour day-of-month month day-of-week) or six with seconds first.
    #[serde(default)]
    pub cron: Option<String>,
}

/// When a schedule runs.
#[derive(Debug, Clone)]
pub enum ScheduleTiming {
    Every(Duration),
    Cron(Box<croner::Cron>),
}

impl ScheduleConfig {
    /// The timing this schedule declares: exactly one of `every_seconds` (positive) and
    /// a valid `cron`.
    pub fn timing(&self) -> Result<ScheduleTiming, String> {
        match (self.every_seconds, &self.cron) {
            (Some(0), None) => Err("every_seconds must be positive".into()),
            (Some(seconds), None) => Ok(ScheduleTiming::Every(Duration::from_secs(seconds))),
            (None, Some(expression)) => croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Optional)
                .build()
                .parse(expression)
                .map(|cron| ScheduleTiming::Cron(Box::new(cron)))
                .map_err(|error| format!("cron `{expression}`: {error}")),
            _ => Err("set exactly one of every_seconds and cron".into()),
        }
    }
}

impl ScheduleTiming {
    /// How long from `now` until the next run.
    pub fn next_after(&self, now: chrono::DateTime<chrono::Utc>) -> Duration {
        match self {
            ScheduleTiming::Every(every) => *every,
            ScheduleTiming::Cron(cron) => cron
                .find_next_occurrence(&now, false)
                .ok()
                .and_then(|next| (next - now).to_std().ok())
                // A pattern with no future time (e.g. 30 February) waits a day, then checks again.
                .unwrap_or(Duration::from_secs(24 * 3600)),
        }
    }
}

fn default_prefetch() -> u16 {
    16
}
fn default_retry_delay() -> u64 {
    2_000
}
fn default_max_retry_delay() -> u64 {
    60_000
}
fn default_max_retry_age() -> u64 {
    3_600
}
fn default_max_retry() -> u32 {
    3
}

impl PlatformConfig {
    /// Reads `path`, applies environment overrides and checks the result.
    pub fn load(path: &Path) -> Result<PlatformConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: PlatformConfig =
            toml::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        config.base_dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// This host's name in its fleet: `[fleet] host`, else the machine's hostname, with the
    /// service bind address when it is not a wildcard (hosts of one machine on distinct
    /// loopback addresses need distinct names).
    pub fn fleet_host(&self) -> String {
        if let Some(host) = &self.fleet.host {
            return host.clone();
        }
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "host".into());
        match self.host.bind.as_str() {
            "0.0.0.0" | "::" | "[::]" => hostname,
            bind => format!("{hostname}@{bind}"),
        }
    }

    /// A path from the file, resolved against the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }
}

/// A backend URL without its password, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r##"
        [database]
        url = "postgres://localhost/postgres"
        [cache]
        url = "redis://localhost"
        [messaging]
        url = "amqp://localhost"
        [[messaging.exchanges]]
        name = "events"
        [auth]
        validate_url = "http://127.0.0.1:8001/validate-token"
        [services.shop]
        port = 9001
        component = "shop.wasm"
        database = "shop_db"
        grants = ["database", "outgoing-http"]
        [services.shop.config]
        api-url = "http://a"
        [[services.shop.subscriptions]]
        queue = "q"
        exchange = "events"
        routing_keys = ["#"]
        dead_letter_queue = "q.dlq"
    "##;

    fn parse(text: &str) -> Result<PlatformConfig, ConfigError> {
        let config: PlatformConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: "test".into(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn parses_with_defaults() {
        let config = parse(MINIMAL).unwrap();
        let shop = &config.services["shop"];
        assert_eq!(
            shop.grants,
            vec![Capability::Database, Capability::OutgoingHttp]
        );
        assert_eq!(shop.memory_limit_mb, 64);
        assert_eq!(config.host.max_body_bytes, 1024 * 1024);
        assert_eq!(shop.subscriptions[0].max_retry_attempts, 3);
    }

    #[test]
    fn environment_overrides_urls_secrets_and_service_values() {
        let mut config = parse(MINIMAL).unwrap();
        config
            .apply_env(|name| match name {
                "DATABASE_URL" => Some("postgres://db/x".into()),
                "JWT_SECRET" => Some("s3cret".into()),
                "MAX_RETRY_ATTEMPTS" => Some("5".into()),
                "PLATFORM_SHOP_API_URL" => Some("http://b".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.database.url.as_deref(), Some("postgres://db/x"));
        assert_eq!(config.identity.jwt_secret.as_deref(), Some("s3cret"));
        assert_eq!(
            config.services["shop"].subscriptions[0].max_retry_attempts,
            5
        );
        assert_eq!(config.services["shop"].config["api-url"], "http://b");
    }

    #[test]
    fn without_urls_every_backend_is_embedded() {
        let text = MINIMAL
            .replace("url = \"postgres://localhost/postgres\"", "")
            .replace("url = \"redis://localhost\"", "")
            .replace("url = \"amqp://localhost\"", "");
        let mut config = parse(&text).unwrap();
        assert_eq!(config.database.url, None);
        assert_eq!(config.cache.url, None);
        assert_eq!(config.messaging.url, None);
        assert_eq!(config.cache.embedded_max_mb, 64);
        // An empty variable keeps a backend embedded; a set one switches it to the server.
        config
            .apply_env(|name| match name {
                "DATABASE_URL" => Some("".into()),
                "AMQP_URL" => Some("amqp://broker".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.database.url, None);
        assert_eq!(config.messaging.url.as_deref(), Some("amqp://broker"));
        // The embedded broker routes topic, direct and fanout exchanges, not headers ones.
        assert!(matches!(
            parse(&text.replace("name = \"events\"", "name = \"events\"\nkind = \"headers\"")),
            Err(ConfigError::Invalid(message)) if message.contains("headers")
        ));
    }

    #[test]
    fn fleet_mode_is_named_in_the_file_or_the_environment_and_needs_postgres() {
        let mut config = parse(MINIMAL).unwrap();
        assert_eq!(config.fleet.name, None);
        config
            .apply_env(|name| match name {
                "PLATFORM_FLEET" => Some("shop".into()),
                "PLATFORM_HOST_NAME" => Some("pod-7".into()),
                "PLATFORM_STATE_DIR" => Some("/var/lib/platform".into()),
                "PLATFORM_BIND" => Some("127.0.0.12".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.fleet.name.as_deref(), Some("shop"));
        assert_eq!(config.fleet_host(), "pod-7");
        assert_eq!(config.state.dir, Path::new("/var/lib/platform"));
        config.fleet.host = None;
        assert!(
            config.fleet_host().ends_with("@127.0.0.12"),
            "hosts of one machine differ by address: {}",
            config.fleet_host()
        );
        let in_file = MINIMAL.to_string() + "\n[fleet]\nname = \"shop\"\n";
        assert_eq!(parse(&in_file).unwrap().fleet.name.as_deref(), Some("shop"));
        assert!(matches!(
            parse(&in_file.replace("url = \"postgres://localhost/postgres\"", "")),
            Err(ConfigError::Invalid(message)) if message.contains("PostgreSQL")
        ));
        assert!(matches!(
            parse(&in_file.replace("name = \"shop\"", "name = \"Shop Fleet\"")),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn logged_urls_hide_their_password() {
        assert_eq!(
            redact_url("amqp://guest:s3cret@broker:5672/%2f"),
            "amqp://guest:***@broker:5672/%2f"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn rejects_unknown_keys_and_undeclared_exchanges() {
        assert!(matches!(
            parse(&MINIMAL.replace("port = 9001", "port = 9001\nprot = 1")),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            parse(&MINIMAL.replace("exchange = \"events\"", "exchange = \"nope\"")),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            parse(&MINIMAL.replace("grants = [\"database\"", "grants = [\"telepathy\"")),
            Err(ConfigError::Parse { .. })
        ));
    }
}
