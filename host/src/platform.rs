//! The composition root: backends -> capabilities -> registry -> ingress, from the
//! configuration. Nothing here decides how any of them works.

use crate::backends::broker::{self, Broker, OpenBrokerError};
use crate::backends::cache;
use crate::backends::database::{DatabaseServer, DatabaseSettings, OpenDatabaseError};
use crate::backends::fleet::{FleetError, FleetStore};
use crate::backends::http_client::{HttpClient, LocalService};
use crate::backends::identity::IdentityProvider;
use crate::backends::lease::{Leases, LocalLeases, PostgresLeases};
use crate::backends::token_validator::TokenValidator;
use crate::capabilities::{Backends, Grant, GrantError, ServiceCapabilities};
use crate::config::{Capability, PlatformConfig, ServiceConfig};
use crate::ingress::admin::{self, AdminApi, AdminBindError, AdminSettings};
use crate::ingress::http::{HttpSettings, ServiceHttp};
use crate::ingress::recent_errors::RecentErrors;
use crate::ingress::{fleet, schedules, server, subscriptions, ServiceEndpoint};
use crate::runtime::{Deployments, Fleet, Registry, Runtime, Service, StartServiceError};
use crate::state::{StateDir, StateError};
use crate::telemetry::{Telemetry, TelemetryError};
use std::net::SocketAddr;
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
    #[error("invalid database URL for schedule leases: {0}")]
    LeaseUrl(sqlx::Error),
    #[error("service `{service}`: {cause}")]
    Database {
        service: String,
        cause: OpenDatabaseError,
    },
    #[error("{0}")]
    Broker(OpenBrokerError),
    #[error(transparent)]
    Grant(GrantError),
    #[error(transparent)]
    Service(StartServiceError),
    #[error("state directory: {0}")]
    State(StateError),
    #[error("fleet `{fleet}`: {cause}")]
    Fleet { fleet: String, cause: FleetError },
    #[error(transparent)]
    Admin(AdminBindError),
    #[error(transparent)]
    Telemetry(TelemetryError),
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
    telemetry: Telemetry,
}

impl Platform {
    /// Opens the backends, brings every service up through the registry's load path,
    /// binds every listener, then starts serving.
    /// `recent_errors` is the ring the log's `tracing` layer fills, for the admin API.
    pub async fn start(
        config: &PlatformConfig,
        recent_errors: Arc<RecentErrors>,
    ) -> Result<Platform, StartError> {
        // Refuse an exposed admin API before anything is created or loaded.
        let admin_listener = admin::bind(&config.admin)
            .await
            .map_err(StartError::Admin)?;
        let telemetry = Telemetry::new(&config.tracing, |name| std::env::var(name).ok())
            .map_err(StartError::Telemetry)?;
        let state = Arc::new(
            StateDir::open(
                &config.resolve(&config.state.dir),
                config.state.history_limit,
            )
            .map_err(StartError::State)?,
        );
        let max_memory = config
            .services
            .values()
            .map(|service| service.memory_limit_bytes())
            .max()
            .unwrap_or(64 << 20);
        let runtime = Runtime::new(max_memory, instance_budget(config), Some(state.clone()))
            .map_err(StartError::Runtime)?;

        let fleet = match (&config.fleet.name, &config.database.url) {
            (Some(name), Some(url)) => {
                let fleet_error = |cause| StartError::Fleet {
                    fleet: name.clone(),
                    cause,
                };
                let store = FleetStore::open(url, name, config.state.history_limit)
                    .await
                    .map_err(fleet_error)?;
                let role_secret = store.shared_secret().await.map_err(fleet_error)?;
                let host = config.fleet_host();
                tracing::info!(fleet = %name, %host, "fleet mode: deployments are kept in PostgreSQL");
                Some((Arc::new(Fleet { store, host }), role_secret))
            }
            _ => None,
        };
        let shared = SharedBackends::open(config, &state).await?;
        let database_server = shared.needs_database.then(|| {
            DatabaseServer::from_config(
                &config.database,
                state.databases_dir(),
                fleet.as_ref().map(|(_, secret)| secret.clone()),
            )
        });
        let mut services = Vec::new();
        for (name, service) in &config.services {
            let database = match (&database_server, &service.database) {
                (Some(server), Some(database)) if service.is_granted(Capability::Database) => Some(
                    server
                        .open(database, database_settings(config, service))
                        .await
                        .map_err(|cause| StartError::Database {
                            service: name.clone(),
                            cause,
                        })?,
                ),
                _ => None,
            };
            let backends = shared.for_service(database);
            let grant = Grant {
                service: name,
                config: service,
                platform: config,
                backends: &backends,
            };
            let capabilities = ServiceCapabilities::build(&grant).map_err(StartError::Grant)?;
            services.push(Service::new(
                name,
                service.clone(),
                capabilities,
                config.resolve(&config.database.migrations).join(name),
                config.resolve(&service.component),
            ));
        }
        let deployments = match &fleet {
            Some((fleet, _)) => Deployments::Fleet(fleet.clone()),
            None => Deployments::Local(state.clone()),
        };
        let registry = Arc::new(
            Registry::start(runtime, deployments, services)
                .await
                .map_err(StartError::Service)?,
        );

        let mut listeners = Vec::new();
        for service in registry.services() {
            let address = format!("{}:{}", config.host.bind, service.service.config.port);
            let listener = TcpListener::bind(&address)
                .await
                .map_err(|cause| StartError::Bind {
                    service: service.name().to_string(),
                    address: address.clone(),
                    cause,
                })?;
            let endpoint =
                ServiceEndpoint::new(service.clone(), &telemetry).map_err(StartError::Telemetry)?;
            listeners.push((endpoint, listener));
        }

        let settings = HttpSettings {
            cors_origins: config.host.cors_origins.clone(),
            max_body_bytes: config.host.max_body_bytes,
        };
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut addresses = Vec::new();
        let mut endpoints = Vec::new();
        let mut local_services = Vec::new();
        for (endpoint, listener) in listeners {
            let endpoint = Arc::new(endpoint);
            let name = endpoint.service.name().to_string();
            let address = listener
                .local_addr()
                .expect("a bound listener has an address");
            addresses.push((name.clone(), address));
            let http = Arc::new(ServiceHttp::new(
                endpoint.clone(),
                settings.clone(),
                shared.token_validator.clone(),
            ));
            local_services.push((address.port(), http.clone() as Arc<dyn LocalService>));
            tasks.spawn(server::serve(
                name.clone(),
                http,
                listener,
                config.host.connections.clone(),
                shutdown.clone(),
            ));
            for subscription in &endpoint.service.service.config.subscriptions {
                let broker = shared
                    .broker
                    .clone()
                    .expect("a broker is opened whenever a service subscribes");
                tasks.spawn(subscriptions::consume(
                    endpoint.clone(),
                    subscription.clone(),
                    broker,
                    shutdown.clone(),
                ));
            }
            for schedule in &endpoint.service.service.config.schedules {
                tasks.spawn(schedules::run(
                    endpoint.clone(),
                    schedule.clone(),
                    shared.leases.clone(),
                    shutdown.clone(),
                ));
            }
            tracing::info!(
                service = %name,
                %address,
                version = %endpoint.service.current.load().short_digest(),
                "serving"
            );
            endpoints.push(endpoint);
        }

        // Services calling one another on this host skip the loopback socket.
        shared
            .http_client
            .answer_locally(&config.host.bind, local_services);

        let admin_token = match &config.admin.token {
            Some(token) => token.clone(),
            None => state.admin_token().map_err(StartError::State)?,
        };
        let admin_address = admin_listener
            .local_addr()
            .expect("a bound listener has an address");
        let admin_api = AdminApi::new(
            registry.clone(),
            &endpoints,
            AdminSettings {
                token: admin_token,
                max_upload_bytes: config.admin.max_upload_bytes(),
                broker: shared.broker.clone(),
                exchanges: config
                    .messaging
                    .exchanges
                    .iter()
                    .map(|exchange| exchange.name.clone())
                    .collect(),
                subscriptions: config
                    .services
                    .values()
                    .flat_map(|service| service.subscriptions.iter().cloned())
                    .collect(),
                recent_errors,
                host_timeout: Duration::from_secs(config.fleet.host_timeout_seconds),
            },
        );
        tasks.spawn(server::serve(
            "admin API".into(),
            Arc::new(admin_api),
            admin_listener,
            config.admin.connections.clone(),
            shutdown.clone(),
        ));
        tracing::info!(address = %admin_address, "admin API listening");
        if let Some((fleet, _)) = fleet {
            tasks.spawn(fleet::follow(
                registry.clone(),
                fleet,
                fleet::FollowSettings::new(&config.fleet, admin_address),
                shutdown.clone(),
            ));
        }
        tasks.close();
        Ok(Platform {
            registry,
            addresses,
            admin_address,
            shutdown,
            tasks,
            telemetry,
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
        // The spans of the last requests, if the collector takes them in time.
        self.telemetry.flush(Duration::from_secs(5)).await;
    }
}

/// The database settings of `service`: the `[database]` ones, its own statement timeout
/// where it names one.
fn database_settings(config: &PlatformConfig, service: &ServiceConfig) -> DatabaseSettings {
    let mut settings = DatabaseSettings::from(&config.database);
    if let Some(timeout) = service.statement_timeout_ms {
        settings.statement_timeout = Duration::from_millis(timeout);
    }
    settings
}

/// Instances that can exist at once: per service its concurrent requests, its consumers'
/// deliveries in flight, and a deploy's route-table and health calls.
fn instance_budget(config: &PlatformConfig) -> u32 {
    const DEPLOY_CALLS: usize = 2;
    let total: usize = config
        .services
        .values()
        .map(|service| {
            let deliveries: usize = service
                .subscriptions
                .iter()
                .map(|subscription| usize::from(subscription.prefetch))
                .sum();
            service.max_concurrent + deliveries + DEPLOY_CALLS
        })
        .sum();
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// The backends all services share, each opened only if some service needs it.
struct SharedBackends {
    needs_database: bool,
    cache: Option<Arc<dyn cache::Cache>>,
    broker: Option<Arc<dyn Broker>>,
    http_client: HttpClient,
    token_validator: Arc<TokenValidator>,
    identity: Option<Arc<IdentityProvider>>,
    /// Which schedules this host runs.
    leases: Arc<dyn Leases>,
}

impl SharedBackends {
    async fn open(config: &PlatformConfig, state: &StateDir) -> Result<SharedBackends, StartError> {
        let granted = |capability| config.services.values().any(|s| s.is_granted(capability));
        let http_client = HttpClient::new();
        let token_validator = Arc::new(
            TokenValidator::new(
                http_client.clone(),
                &config.auth.validate_url,
                Duration::from_millis(config.auth.timeout_ms),
            )
            .map_err(StartError::ValidateUrl)?,
        );
        let cache = match granted(Capability::Cache) {
            true => Some(cache::open(&config.cache).map_err(StartError::CacheUrl)?),
            false => None,
        };
        let subscriptions: Vec<_> = config
            .services
            .values()
            .flat_map(|service| service.subscriptions.iter().cloned())
            .collect();
        let broker = match granted(Capability::Messaging) || !subscriptions.is_empty() {
            true => Some(
                broker::open(&config.messaging, &subscriptions, &state.broker_file())
                    .await
                    .map_err(StartError::Broker)?,
            ),
            false => None,
        };
        let identity = granted(Capability::IdentityProvider)
            .then(|| Arc::new(IdentityProvider::from_config(&config.identity)));
        let leases: Arc<dyn Leases> = match &config.database.url {
            Some(url) => Arc::new(PostgresLeases::new(url).map_err(StartError::LeaseUrl)?),
            None => Arc::new(LocalLeases),
        };
        Ok(SharedBackends {
            leases,
            needs_database: granted(Capability::Database),
            cache,
            broker,
            http_client,
            token_validator,
            identity,
        })
    }

    fn for_service(
        &self,
        database: Option<Arc<dyn crate::backends::database::Database>>,
    ) -> Backends {
        Backends {
            database,
            cache: self.cache.clone(),
            broker: self.broker.clone(),
            http_client: self.http_client.clone(),
            token_validator: self.token_validator.clone(),
            identity: self.identity.clone(),
        }
    }
}
