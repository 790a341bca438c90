//! Assembles a running platform from its configuration: backends, capabilities, the
//! services' components, HTTP listeners and AMQP consumers.

use crate::capabilities::auth::TokenValidator;
use crate::capabilities::cache::{CacheBackend, RedisCache, ServiceCache};
use crate::capabilities::database::{DatabaseBackend, PostgresBackend, PostgresSetupError};
use crate::capabilities::identity::IdentityProvider;
use crate::capabilities::messaging::{AmqpPublisher, MessagePublisher, ServicePublisher};
use crate::capabilities::outgoing_http::{http_client, OutgoingHttp};
use crate::capabilities::ServiceCapabilities;
use crate::config::{Capability, PlatformConfig, ServiceConfig};
use crate::ingress::http::{HttpSettings, ServiceEndpoint};
use crate::ingress::metrics::ServiceMetrics;
use crate::ingress::{amqp, http};
use crate::runtime::{ComponentVersion, DeployedService, LoadComponentError, Runtime};
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
    pub services: Vec<Arc<DeployedService>>,
    pub addresses: Vec<(String, SocketAddr)>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// Backends shared by all services.
struct SharedBackends {
    http_client: crate::capabilities::outgoing_http::HttpClient,
    auth: Arc<TokenValidator>,
    cache: Option<Arc<dyn CacheBackend>>,
    publisher: Option<Arc<dyn MessagePublisher>>,
    identity: Option<Arc<IdentityProvider>>,
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
        let runtime = Runtime::new(max_memory).map_err(StartError::Runtime)?;
        let shared = SharedBackends::new(config)?;

        let loads = config
            .services
            .iter()
            .map(|(name, service)| load_service(&runtime, config, &shared, name, service));
        let services = futures::future::try_join_all(loads).await?;

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
                tasks.spawn(amqp::consume(
                    service.clone(),
                    metrics.clone(),
                    subscription.clone(),
                    config.messaging.url.clone(),
                    config.messaging.exchanges.clone(),
                    shutdown.clone(),
                ));
            }
            tracing::info!(
                service = %service.name,
                %address,
                version = %service.current.load().short_digest(),
                "serving"
            );
        }
        tasks.close();
        Ok(Platform {
            services,
            addresses,
            shutdown,
            tasks,
        })
    }

    /// Stops accepting work and waits for requests and messages in progress to finish.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.wait().await;
    }
}

impl SharedBackends {
    fn new(config: &PlatformConfig) -> Result<SharedBackends, StartError> {
        let granted = |capability| config.services.values().any(|s| s.is_granted(capability));
        let http_client = http_client();
        let auth = Arc::new(
            TokenValidator::new(
                http_client.clone(),
                &config.auth.validate_url,
                Duration::from_millis(config.auth.timeout_ms),
            )
            .map_err(StartError::ValidateUrl)?,
        );
        let cache: Option<Arc<dyn CacheBackend>> = if granted(Capability::Cache) {
            let redis = RedisCache::new(
                &config.cache.url,
                Duration::from_millis(config.cache.timeout_ms),
            )
            .map_err(StartError::CacheUrl)?;
            Some(Arc::new(redis))
        } else {
            None
        };
        let publisher: Option<Arc<dyn MessagePublisher>> =
            granted(Capability::Messaging).then(|| {
                Arc::new(AmqpPublisher::new(
                    &config.messaging.url,
                    config.messaging.exchanges.clone(),
                )) as _
            });
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
            identity,
        })
    }
}

async fn load_service(
    runtime: &Runtime,
    config: &PlatformConfig,
    shared: &SharedBackends,
    name: &str,
    service: &ServiceConfig,
) -> Result<Arc<DeployedService>, StartError> {
    let database: Option<Arc<dyn DatabaseBackend>> =
        match (&service.database, service.is_granted(Capability::Database)) {
            (Some(database), true) => {
                let migrations = config.resolve(&config.database.migrations).join(name);
                let backend = PostgresBackend::connect(
                    &config.database.url,
                    database,
                    &migrations,
                    config.database.max_connections,
                    Duration::from_secs(config.database.acquire_timeout_seconds),
                )
                .await
                .map_err(|cause| StartError::Database {
                    service: name.to_string(),
                    cause,
                })?;
                Some(Arc::new(backend))
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

    let path = config.resolve(&service.component);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|cause| StartError::ComponentMissing {
            service: name.to_string(),
            path: path.clone(),
            cause,
        })?;
    let version = ComponentVersion::load(runtime, name, service, &capabilities, bytes)
        .await
        .map_err(|cause| StartError::ComponentRefused {
            service: name.to_string(),
            path: path.clone(),
            cause,
        })?;
    tracing::info!(service = name, digest = %version.short_digest(), routes = version.routes.len(), "component loaded");
    Ok(Arc::new(DeployedService::new(
        name,
        service.clone(),
        capabilities,
        version,
    )))
}
