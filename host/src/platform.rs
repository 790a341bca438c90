//! Assembles a running platform from its configuration: backends, capabilities, the
//! services' components (the last deployed versions), HTTP listeners, message consumers and
//! the admin API.

use crate::capabilities::auth::TokenValidator;
use crate::capabilities::cache::{CacheBackend, EmbeddedCache, RedisCache, ServiceCache};
use crate::capabilities::database::{
    DatabaseBackend, MigrateDatabaseError, PostgresBackend, PostgresSetupError, SqliteBackend,
    SqliteSetupError,
};
use crate::capabilities::identity::IdentityProvider;
use crate::capabilities::messaging::embedded::OpenBrokerError;
use crate::capabilities::messaging::{
    AmqpPublisher, EmbeddedBroker, MessagePublisher, ServicePublisher,
};
use crate::capabilities::outgoing_http::{http_client, OutgoingHttp};
use crate::capabilities::ServiceCapabilities;
use crate::config::{Capability, PlatformConfig, ServiceConfig};
use crate::ingress::admin::AdminApi;
use crate::ingress::http::{HttpSettings, ServiceEndpoint};
use crate::ingress::metrics::ServiceMetrics;
use crate::ingress::subscriptions;
use crate::ingress::{admin, http};
use crate::runtime::{ComponentVersion, DeployedService, LoadComponentError, Registry, Runtime};
use crate::state::{DeploySource, StateDir, StateError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the platform could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the wasm runtime could not be created: {0:#}")]
    Runtime(wasmtime::Error),
    #[error("invalid cache URL: {0}")]
    CacheUrl(redis::RedisError),
    #[error("invalid auth.validate_url: {0}")]
    ValidateUrl(::http::uri::InvalidUri),
    #[error("service `{service}`: database: {cause}")]
    Database {
        service: String,
        cause: PostgresSetupError,
    },
    #[error("service `{service}`: {cause}")]
    EmbeddedDatabase {
        service: String,
        cause: SqliteSetupError,
    },
    #[error("{0}")]
    EmbeddedBroker(OpenBrokerError),
    #[error("service `{service}`: {cause}")]
    Migrations {
        service: String,
        cause: MigrateDatabaseError,
    },
    #[error("state directory: {0}")]
    State(StateError),
    #[error("admin.bind `{0}` is not a loopback address: set PLATFORM_ADMIN_TOKEN to expose the admin API")]
    AdminExposed(String),
    #[error("admin.bind `{0}` is not an address:port")]
    AdminAddress(String),
    #[error("service `{service}`: cannot read component {path}: {cause} (build it with `platform build {service}`)")]
    ComponentMissing {
        service: String,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("service `{service}`: component {path} refused: {cause}")]
    ComponentRefused {
        service: String,
        path: PathBuf,
        cause: LoadComponentError,
    },
    #[error("service `{service}`: cannot listen on {address}: {cause}")]
    Bind {
        service: String,
        address: String,
        cause: std::io::Error,
    },
}

/// A started platform: its services and the tasks serving them.
pub struct Platform {
    pub registry: Arc<Registry>,
    pub addresses: Vec<(String, SocketAddr)>,
    pub admin_address: SocketAddr,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// Backends shared by all services.
struct SharedBackends {
    http_client: crate::capabilities::outgoing_http::HttpClient,
    auth: Arc<TokenValidator>,
    cache: Option<Arc<dyn CacheBackend>>,
    publisher: Option<Arc<dyn MessagePublisher>>,
    /// Where subscriptions consume from (`None` if no service subscribes or publishes).
    broker: Option<Broker>,
    identity: Option<Arc<IdentityProvider>>,
}

enum Broker {
    Amqp { url: String },
    Embedded(Arc<EmbeddedBroker>),
}

impl Platform {
    /// Loads every service, binds every listener, then starts serving.
    pub async fn start(config: &PlatformConfig) -> Result<Platform, StartError> {
        let max_memory = config
            .services
            .values()
            .map(ServiceConfig::memory_limit_bytes)
            .max()
            .unwrap_or(64 << 20);
        // Refuse an exposed admin API before anything is created or loaded.
        let admin_listener = admin_listener(config).await?;
        let state = Arc::new(
            StateDir::open(
                &config.resolve(&config.state.dir),
                config.state.history_limit,
            )
            .map_err(StartError::State)?,
        );
        let runtime = Runtime::new(max_memory, Some(state.clone())).map_err(StartError::Runtime)?;
        let shared = SharedBackends::new(config, &state).await?;

        let loads = config
            .services
            .iter()
            .map(|(name, service)| load_service(&runtime, &state, config, &shared, name, service));
        let services = futures::future::try_join_all(loads).await?;

        let admin_token = match &config.admin.token {
            Some(token) => token.clone(),
            None => state.admin_token().map_err(StartError::State)?,
        };

        let settings = HttpSettings {
            cors_origins: config.host.cors_origins.clone(),
            max_body_bytes: config.host.max_body_bytes,
        };
        let mut listeners = Vec::new();
        for service in &services {
            let address = format!("{}:{}", config.host.bind, service.config.port);
            let listener = TcpListener::bind(&address)
                .await
                .map_err(|cause| StartError::Bind {
                    service: service.name.clone(),
                    address: address.clone(),
                    cause,
                })?;
            listeners.push(listener);
        }

        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut addresses = Vec::new();
        for (service, listener) in services.iter().zip(listeners) {
            let address = listener
                .local_addr()
                .expect("a bound listener has an address");
            addresses.push((service.name.clone(), address));
            let metrics = Arc::new(ServiceMetrics::new(&service.name));
            let endpoint = Arc::new(ServiceEndpoint {
                service: service.clone(),
                metrics: metrics.clone(),
                settings: settings.clone(),
            });
            tasks.spawn(http::serve(endpoint, listener, shutdown.clone()));
            for subscription in &service.config.subscriptions {
                match &shared.broker {
                    Some(Broker::Amqp { url }) => tasks.spawn(subscriptions::amqp::consume(
                        service.clone(),
                        metrics.clone(),
                        subscription.clone(),
                        url.clone(),
                        config.messaging.exchanges.clone(),
                        shutdown.clone(),
                    )),
                    Some(Broker::Embedded(broker)) => {
                        tasks.spawn(subscriptions::embedded::consume(
                            service.clone(),
                            metrics.clone(),
                            subscription.clone(),
                            broker.clone(),
                            shutdown.clone(),
                        ))
                    }
                    None => unreachable!("a broker is opened whenever a service subscribes"),
                };
            }
            tracing::info!(
                service = %service.name,
                %address,
                version = %service.current.load().short_digest(),
                "serving"
            );
        }
        let registry = Arc::new(Registry::new(runtime, state, services));
        let admin_address = admin_listener
            .local_addr()
            .expect("a bound listener has an address");
        let admin_api = Arc::new(AdminApi {
            registry: registry.clone(),
            token: admin_token,
            max_upload_bytes: config.admin.max_upload_bytes(),
            publisher: shared.publisher.clone(),
            exchanges: config
                .messaging
                .exchanges
                .iter()
                .map(|exchange| exchange.name.clone())
                .collect(),
        });
        tasks.spawn(admin::serve(admin_api, admin_listener, shutdown.clone()));
        tracing::info!(address = %admin_address, "admin API listening");
        tasks.close();
        Ok(Platform {
            registry,
            addresses,
            admin_address,
            shutdown,
            tasks,
        })
    }

    /// Cancelled when the platform shuts down: for tasks started beside it (`--watch`).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting work and waits for requests and messages in progress to finish.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.wait().await;
    }
}

/// Binds the admin API, refusing a non-loopback address unless a token was configured.
async fn admin_listener(config: &PlatformConfig) -> Result<TcpListener, StartError> {
    let bind = &config.admin.bind;
    let address: SocketAddr = tokio::net::lookup_host(bind)
        .await
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| StartError::AdminAddress(bind.clone()))?;
    if !address.ip().is_loopback() && config.admin.token.is_none() {
        return Err(StartError::AdminExposed(bind.clone()));
    }
    TcpListener::bind(address)
        .await
        .map_err(|cause| StartError::Bind {
            service: "admin API".into(),
            address: bind.clone(),
            cause,
        })
}

impl SharedBackends {
    /// Opens the backends the services need: each one named by a URL, or embedded in the
    /// state directory if none is. Says once which it is.
    async fn new(config: &PlatformConfig, state: &StateDir) -> Result<SharedBackends, StartError> {
        let granted = |capability| config.services.values().any(|s| s.is_granted(capability));
        let embedded_dir = |name: &str| {
            let dir = state.root().join(name);
            std::path::absolute(&dir).unwrap_or(dir)
        };
        if granted(Capability::Database) {
            match &config.database.url {
                Some(url) => {
                    tracing::info!(url = %crate::config::redact_url(url), "database: PostgreSQL, a database per service")
                }
                None => {
                    tracing::info!(files = %embedded_dir("databases").display(), "database: embedded SQLite, a file per service (set DATABASE_URL or [database] url for PostgreSQL)")
                }
            }
        }
        let http_client = http_client();
        let auth = Arc::new(
            TokenValidator::new(
                http_client.clone(),
                &config.auth.validate_url,
                Duration::from_millis(config.auth.timeout_ms),
            )
            .map_err(StartError::ValidateUrl)?,
        );
        let cache: Option<Arc<dyn CacheBackend>> = match &config.cache.url {
            _ if !granted(Capability::Cache) => None,
            Some(url) => {
                let redis = RedisCache::new(url, Duration::from_millis(config.cache.timeout_ms))
                    .map_err(StartError::CacheUrl)?;
                tracing::info!(url = %crate::config::redact_url(url), "cache: Redis");
                Some(Arc::new(redis))
            }
            None => {
                let max_mb = config.cache.embedded_max_mb;
                tracing::info!(
                    max_mb,
                    "cache: embedded, in process memory (set REDIS_URL or [cache] url for Redis)"
                );
                Some(Arc::new(EmbeddedCache::new(max_mb * 1024 * 1024)))
            }
        };
        let subscriptions: Vec<_> = config
            .services
            .values()
            .flat_map(|service| service.subscriptions.iter().cloned())
            .collect();
        let needs_broker = granted(Capability::Messaging) || !subscriptions.is_empty();
        let (publisher, broker): (Option<Arc<dyn MessagePublisher>>, _) = match &config
            .messaging
            .url
        {
            _ if !needs_broker => (None, None),
            Some(url) => {
                tracing::info!(url = %crate::config::redact_url(url), "broker: RabbitMQ");
                let publisher = AmqpPublisher::new(url, config.messaging.exchanges.clone());
                (
                    Some(Arc::new(publisher) as _),
                    Some(Broker::Amqp { url: url.clone() }),
                )
            }
            None => {
                let path = embedded_dir("broker").join("messages.sqlite");
                let broker = Arc::new(
                    EmbeddedBroker::open(&path, &config.messaging.exchanges, &subscriptions)
                        .await
                        .map_err(StartError::EmbeddedBroker)?,
                );
                tracing::info!(file = %path.display(), "broker: embedded, unacknowledged messages kept on disk (set AMQP_URL or [messaging] url for RabbitMQ)");
                (Some(broker.clone() as _), Some(Broker::Embedded(broker)))
            }
        };
        let identity = granted(Capability::IdentityProvider).then(|| {
            let secret = match &config.identity.jwt_secret {
                Some(secret) => secret.clone().into_bytes(),
                None => {
                    tracing::warn!(
                        "JWT_SECRET is not set: signing tokens with a random secret; tokens will not survive a restart"
                    );
                    use rand::RngCore;
                    let mut secret = vec![0u8; 32];
                    rand::thread_rng().fill_bytes(&mut secret);
                    secret
                }
            };
            Arc::new(IdentityProvider::new(
                &secret,
                Duration::from_secs(config.identity.access_token_expire_minutes * 60),
                config.identity.bcrypt_cost,
            ))
        });
        Ok(SharedBackends {
            http_client,
            auth,
            cache,
            publisher,
            broker,
            identity,
        })
    }
}

/// The service's database: on the PostgreSQL server if one is configured, else its own
/// SQLite file in the state directory.
async fn open_database(
    config: &PlatformConfig,
    state: &StateDir,
    service: &str,
    database: &str,
) -> Result<Arc<dyn DatabaseBackend>, StartError> {
    let acquire_timeout = Duration::from_secs(config.database.acquire_timeout_seconds);
    match &config.database.url {
        Some(url) => {
            let backend = PostgresBackend::connect(
                url,
                database,
                config.database.max_connections,
                acquire_timeout,
            )
            .await
            .map_err(|cause| StartError::Database {
                service: service.to_string(),
                cause,
            })?;
            Ok(Arc::new(backend))
        }
        None => {
            let path = state
                .root()
                .join("databases")
                .join(format!("{database}.sqlite"));
            let backend =
                SqliteBackend::open(&path, config.database.max_connections, acquire_timeout)
                    .await
                    .map_err(|cause| StartError::EmbeddedDatabase {
                        service: service.to_string(),
                        cause,
                    })?;
            Ok(Arc::new(backend))
        }
    }
}

async fn load_service(
    runtime: &Runtime,
    state: &StateDir,
    config: &PlatformConfig,
    shared: &SharedBackends,
    name: &str,
    service: &ServiceConfig,
) -> Result<Arc<DeployedService>, StartError> {
    let migrations = config.resolve(&config.database.migrations).join(name);
    let database: Option<Arc<dyn DatabaseBackend>> =
        match (&service.database, service.is_granted(Capability::Database)) {
            (Some(database), true) => {
                let backend = open_database(config, state, name, database).await?;
                backend
                    .migrate(&migrations)
                    .await
                    .map_err(|cause| StartError::Migrations {
                        service: name.to_string(),
                        cause,
                    })?;
                Some(backend)
            }
            _ => None,
        };
    let capabilities = Arc::new(ServiceCapabilities {
        service: name.to_string(),
        database,
        cache: service
            .is_granted(Capability::Cache)
            .then(|| shared.cache.clone())
            .flatten()
            .map(|backend| {
                ServiceCache::new(
                    backend,
                    service.cache_namespace.as_deref().unwrap_or(name),
                    Duration::from_secs(config.cache.default_ttl_seconds.into()),
                )
            }),
        messaging: service
            .is_granted(Capability::Messaging)
            .then(|| shared.publisher.clone())
            .flatten()
            .map(|publisher| ServicePublisher {
                publisher,
                allowed_exchanges: service.publish_exchanges.clone(),
            }),
        auth: shared.auth.clone(),
        identity: service
            .is_granted(Capability::IdentityProvider)
            .then(|| shared.identity.clone())
            .flatten(),
        outgoing_http: OutgoingHttp {
            client: shared.http_client.clone(),
            allowed_hosts: if service.is_granted(Capability::OutgoingHttp) {
                service.allowed_hosts.clone()
            } else {
                Vec::new()
            },
        },
        config: service.config.clone().into_iter().collect(),
    });

    // A restart comes back with the last deployed version; the first start takes the
    // component `platform.toml` names and records it.
    let history = state.history(name).map_err(StartError::State)?;
    let (bytes, restored, origin) = match history.last() {
        Some(last) => {
            let bytes = state
                .component(name, &last.digest)
                .map_err(StartError::State)?;
            let origin = state
                .root()
                .join("services")
                .join(name)
                .join(format!("{}.wasm", last.digest));
            let artifact = config.resolve(&service.component);
            if let Ok(built) = tokio::fs::read(&artifact).await {
                if crate::runtime::digest(&built) != last.digest {
                    tracing::info!(
                        service = name,
                        artifact = %artifact.display(),
                        "serving the last deployed version; the artifact differs (`platform deploy {name}` to switch)"
                    );
                }
            }
            (bytes, Some(last.clone()), origin)
        }
        None => {
            let path = config.resolve(&service.component);
            let bytes =
                tokio::fs::read(&path)
                    .await
                    .map_err(|cause| StartError::ComponentMissing {
                        service: name.to_string(),
                        path: path.clone(),
                        cause,
                    })?;
            (bytes, None, path)
        }
    };
    let bytes = Arc::new(bytes);
    let mut version = ComponentVersion::load(
        runtime,
        name,
        service,
        &capabilities,
        bytes.clone(),
        DeploySource::Up,
    )
    .await
    .map_err(|cause| StartError::ComponentRefused {
        service: name.to_string(),
        path: origin,
        cause,
    })?;
    match restored {
        Some(record) => version.record = record,
        None => state
            .record(name, &bytes, version.record.clone())
            .map_err(StartError::State)?,
    }
    tracing::info!(
        service = name,
        version = %version.short_digest(),
        deployed_at = %version.record.deployed_at,
        compiled = ?version.compiled_from,
        routes = version.routes.len(),
        "component loaded"
    );
    Ok(Arc::new(DeployedService::new(
        name,
        service.clone(),
        capabilities,
        migrations,
        version,
    )))
}
