//! The admin API that `platform deploy`, `rollback`, `ps`, `versions` and `publish` talk
//! to, on its own listener (`[admin] bind`, loopback by default), and the web console at
//! `/console` is a client of. Every call needs `authorization: Bearer <admin token>`;
//! anything else gets 401 and changes nothing. The console's own files need none.
//!
//! ```text
//! GET  /v1/services                          every service: port, version, counters
//! GET  /v1/services/{service}/versions       the deploy history, newest first
//! GET  /v1/services/{service}/errors         its last warnings and errors, newest first
//! POST /v1/services/{service}/deploy         body: the component; ?source=deploy|watch,
//!                                            &strategy=all|rolling (a fleet's rollout)
//! POST /v1/services/{service}/rollback       body: {"to": "<digest prefix>",
//!                                            "strategy": "all|rolling"} or empty
//! POST /v1/services/{service}/rollout/promote  a rolling or canary deploy: every host,
//!                                              at once, now
//! POST /v1/services/{service}/rollout/abort    back to the version before the rollout
//! GET  /v1/fleet                             the fleet's desired versions and hosts
//! POST /v1/exchanges/{exchange}/messages     body: a PublishRequest; publishes through
//!                                            the platform's broker (RabbitMQ or embedded)
//! GET  /v1/queues/{queue}/dead-letters       a subscription's dead letters (by its queue
//!                                            or its dead-letter queue), oldest first
//! POST /v1/queues/{queue}/dead-letters/replay  body: {"id": "..."} or empty for all
//! ```
//!
//! Two answers need no token, for orchestrators' probes: `GET /health` (200 while the
//! host serves) and `GET /ready` (200 unless a service refused the fleet's desired version
//! on this host; 503 with the reasons then).

use super::console;
use super::recent_errors::RecentErrors;
use super::server::{json_response, Handler, HttpResponse};
use super::ServiceEndpoint;
use crate::admin_api;
use crate::backends::broker::{Broker, Message, PublishError};
use crate::backends::fleet::{FleetError, Strategy};
use crate::config::{AdminConfig, SubscriptionConfig};
use crate::runtime::{DeployComponentError, DeployOutcome, DeploymentsError, Registry, SyncState};
use crate::state::DeploySource;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Why the admin API could not listen.
#[derive(Debug, thiserror::Error)]
pub enum AdminBindError {
    #[error("admin.bind `{0}` is not a loopback address: set PLATFORM_ADMIN_TOKEN to expose the admin API")]
    Exposed(String),
    #[error("admin.bind `{0}` is not an address:port")]
    Address(String),
    #[error("cannot listen on admin.bind `{address}`: {cause}")]
    Bind {
        address: String,
        cause: std::io::Error,
    },
}

/// Binds the admin API's listener, refusing a non-loopback address unless a token was
/// configured (a generated token lives in a file only this machine can read).
pub async fn bind(config: &AdminConfig) -> Result<TcpListener, AdminBindError> {
    let bind = &config.bind;
    let address: std::net::SocketAddr = tokio::net::lookup_host(bind)
        .await
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| AdminBindError::Address(bind.clone()))?;
    if !address.ip().is_loopback() && config.token.is_none() {
        return Err(AdminBindError::Exposed(bind.clone()));
    }
    TcpListener::bind(address)
        .await
        .map_err(|cause| AdminBindError::Bind {
            address: bind.clone(),
            cause,
        })
}

/// Largest rollback request read.
const MAX_ROLLBACK_BYTES: usize = 64 * 1024;

/// The admin calls, by path; the method is checked by each.
#[derive(Clone, Copy)]
enum Call {
    Services,
    Versions,
    Errors,
    Deploy,
    Rollback,
    Publish,
    DeadLetters,
    Replay,
    Fleet,
    Promote,
    Abort,
}

pub struct AdminApi {
    registry: Arc<Registry>,
    /// Every service's endpoint, for the counters and consumer state of `platform ps`.
    endpoints: BTreeMap<String, Arc<ServiceEndpoint>>,
    token: String,
    max_upload_bytes: usize,
    /// The platform's broker, if any service publishes or subscribes.
    broker: Option<Arc<dyn Broker>>,
    /// The exchanges of `[[messaging.exchanges]]`.
    exchanges: Vec<String>,
    /// Every service's subscriptions, for their dead letters.
    subscriptions: Vec<SubscriptionConfig>,
    recent_errors: Arc<RecentErrors>,
    /// A host silent this long counts as down in `GET /v1/fleet`.
    host_timeout: std::time::Duration,
    calls: matchit::Router<Call>,
}

/// What the admin API is built from.
pub struct AdminSettings {
    pub token: String,
    pub max_upload_bytes: usize,
    pub broker: Option<Arc<dyn Broker>>,
    pub exchanges: Vec<String>,
    pub subscriptions: Vec<SubscriptionConfig>,
    pub recent_errors: Arc<RecentErrors>,
    pub host_timeout: std::time::Duration,
}

impl AdminApi {
    pub fn new(
        registry: Arc<Registry>,
        endpoints: &[Arc<ServiceEndpoint>],
        settings: AdminSettings,
    ) -> AdminApi {
        let mut calls = matchit::Router::new();
        for (path, call) in [
            ("/v1/services", Call::Services),
            ("/v1/services/{service}/versions", Call::Versions),
            ("/v1/services/{service}/errors", Call::Errors),
            ("/v1/services/{service}/deploy", Call::Deploy),
            ("/v1/services/{service}/rollback", Call::Rollback),
            ("/v1/exchanges/{exchange}/messages", Call::Publish),
            ("/v1/queues/{queue}/dead-letters", Call::DeadLetters),
            ("/v1/queues/{queue}/dead-letters/replay", Call::Replay),
            ("/v1/fleet", Call::Fleet),
            ("/v1/services/{service}/rollout/promote", Call::Promote),
            ("/v1/services/{service}/rollout/abort", Call::Abort),
        ] {
            calls
                .insert(path, call)
                .expect("the admin paths are distinct");
        }
        AdminApi {
            registry,
            endpoints: endpoints
                .iter()
                .map(|endpoint| (endpoint.service.name().to_string(), endpoint.clone()))
                .collect(),
            token: settings.token,
            max_upload_bytes: settings.max_upload_bytes,
            broker: settings.broker,
            exchanges: settings.exchanges,
            subscriptions: settings.subscriptions,
            recent_errors: settings.recent_errors,
            host_timeout: settings.host_timeout,
            calls,
        }
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    json_response(
        status,
        &admin_api::ErrorBody {
            error: message.into(),
        },
    )
}

/// Compares in time independent of where the strings differ.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl Handler for AdminApi {
    async fn handle(&self, request: http::Request<Incoming>) -> HttpResponse {
        if console::serves(request.uri().path()) {
            return console::respond(request.method(), request.uri().path());
        }
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/health") => return plain(StatusCode::OK, "serving\n".into()),
            (&Method::GET, "/ready") => return self.readiness(),
            _ => {}
        }
        if !self.authorised(&request) {
            // Answered before the body is read: an unauthenticated upload costs the host
            // nothing but this answer, and the connection closes behind it.
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong admin token (PLATFORM_ADMIN_TOKEN, or the state directory's admin-token)",
            );
            let headers = response.headers_mut();
            headers.insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        let path = request.uri().path().to_string();
        let Ok(matched) = self.calls.at(&path) else {
            return error(StatusCode::NOT_FOUND, format!("no admin call at {path}"));
        };
        let call = *matched.value;
        let param = |name| matched.params.get(name).unwrap_or_default().to_string();
        let method = request.method().clone();
        match (call, &method) {
            (Call::Services, &Method::GET) => json_response(StatusCode::OK, &self.statuses()),
            (Call::Versions, &Method::GET) => match self.versions(&param("service")).await {
                Ok(entries) => json_response(StatusCode::OK, &entries),
                Err(refused) => deploy_error(refused),
            },
            (Call::Errors, &Method::GET) => match self.registry.service(&param("service")) {
                Ok(service) => {
                    json_response(StatusCode::OK, &self.recent_errors.of(service.name()))
                }
                Err(refused) => deploy_error(refused),
            },
            (Call::Deploy, &Method::POST) => self.deploy(param("service"), request).await,
            (Call::Rollback, &Method::POST) => self.rollback(param("service"), request).await,
            (Call::Publish, &Method::POST) => self.publish(param("exchange"), request).await,
            (Call::DeadLetters, &Method::GET) => self.dead_letters(&param("queue")).await,
            (Call::Replay, &Method::POST) => self.replay(&param("queue"), request).await,
            (Call::Fleet, &Method::GET) => self.fleet().await,
            (Call::Promote, &Method::POST) => self.promote(&param("service")).await,
            (Call::Abort, &Method::POST) => self.abort(&param("service")).await,
            _ => error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} {path} is not an admin call"),
            ),
        }
    }
}

impl AdminApi {
    fn authorised(&self, request: &http::Request<Incoming>) -> bool {
        request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|token| same_token(token.trim().as_bytes(), self.token.as_bytes()))
    }

    /// The body, up to `limit` bytes; `None` beyond.
    async fn body(request: http::Request<Incoming>, limit: usize) -> Option<Bytes> {
        let announced = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if announced.is_some_and(|length| length > limit as u64) {
            return None;
        }
        Limited::new(request.into_body(), limit)
            .collect()
            .await
            .ok()
            .map(|body| body.to_bytes())
    }

    async fn deploy(&self, service: String, request: http::Request<Incoming>) -> HttpResponse {
        let query = request.uri().query().unwrap_or_default().to_string();
        let source = match query_value(&query, "source") {
            Some("watch") => DeploySource::Watch,
            _ => DeploySource::Deploy,
        };
        let strategy = match query_value(&query, "strategy").map(str::parse).transpose() {
            Ok(strategy) => strategy.unwrap_or_default(),
            Err(refused) => return error(StatusCode::UNPROCESSABLE_ENTITY, refused),
        };
        if let Err(refused) = self.registry.service(&service) {
            return deploy_error(refused);
        }
        let Some(bytes) = Self::body(request, self.max_upload_bytes).await else {
            let mut response = error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the component is larger than admin.max_upload_mb ({} bytes)",
                    self.max_upload_bytes
                ),
            );
            // The body was not read, so the connection cannot carry another request.
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        };
        deployed(
            self.registry
                .deploy(&service, bytes.to_vec(), source, strategy)
                .await,
        )
    }

    async fn rollback(&self, service: String, request: http::Request<Incoming>) -> HttpResponse {
        let Some(body) = Self::body(request, MAX_ROLLBACK_BYTES).await else {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "rollback request too large");
        };
        let rollback: admin_api::RollbackRequest = if body.is_empty() {
            admin_api::RollbackRequest::default()
        } else {
            match serde_json::from_slice(&body) {
                Ok(rollback) => rollback,
                Err(cause) => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("invalid rollback request: {cause}"),
                    )
                }
            }
        };
        deployed(
            self.registry
                .rollback(&service, rollback.to.as_deref(), rollback.strategy)
                .await,
        )
    }

    /// 200 unless a service refused the fleet's desired version here: then 503, so an
    /// orchestrator sends this host no traffic while the others serve the desired one.
    fn readiness(&self) -> HttpResponse {
        let refused: Vec<String> = self
            .registry
            .services()
            .filter_map(|service| match service.sync() {
                SyncState::Refused { digest, reason, .. } => Some(format!(
                    "{}: refused {}: {reason}",
                    service.name(),
                    &digest[..12.min(digest.len())]
                )),
                _ => None,
            })
            .collect();
        if refused.is_empty() {
            plain(StatusCode::OK, "ready\n".into())
        } else {
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{}\n", refused.join("\n")),
            )
        }
    }

    async fn fleet(&self) -> HttpResponse {
        let Some(fleet) = self.registry.deployments.fleet() else {
            return error(
                StatusCode::CONFLICT,
                "this host is not in a fleet ([fleet] name or PLATFORM_FLEET)",
            );
        };
        let read = async {
            let desired = fleet.store.desired().await?;
            let (hosts, now) = fleet.store.hosts().await?;
            Ok::<_, FleetError>((desired, hosts, now))
        };
        match read.await {
            Ok((desired, hosts, now)) => json_response(
                StatusCode::OK,
                &admin_api::FleetStatus {
                    fleet: fleet.store.fleet().to_string(),
                    host: fleet.host.clone(),
                    desired,
                    hosts: hosts
                        .into_iter()
                        .map(|report| {
                            let silent = (now - report.heartbeat_at).to_std().unwrap_or_default();
                            admin_api::FleetHost {
                                alive: silent < self.host_timeout,
                                silent_seconds: silent.as_secs_f64(),
                                report,
                            }
                        })
                        .collect(),
                },
            ),
            Err(cause) => fleet_unavailable(cause),
        }
    }

    /// A rolling or canary deploy goes to every host at once.
    async fn promote(&self, service: &str) -> HttpResponse {
        let Some(fleet) = self.registry.deployments.fleet() else {
            return deploy_error(DeployComponentError::NeedsFleet("rollout".into()));
        };
        if let Err(refused) = self.registry.service(service) {
            return deploy_error(refused);
        }
        match fleet.store.promote(service).await {
            Ok(Some(desired)) => json_response(StatusCode::OK, &desired),
            Ok(None) => error(
                StatusCode::CONFLICT,
                format!("`{service}` has no rolling or canary deploy in progress"),
            ),
            Err(cause) => fleet_unavailable(cause),
        }
    }

    /// Back to the version that served before the rollout, on every host at once.
    async fn abort(&self, service: &str) -> HttpResponse {
        let Some(fleet) = self.registry.deployments.fleet() else {
            return deploy_error(DeployComponentError::NeedsFleet("rollout".into()));
        };
        if let Err(refused) = self.registry.service(service) {
            return deploy_error(refused);
        }
        let previous = match fleet.store.desired().await {
            Ok(desired) => desired
                .get(service)
                .and_then(|desired| desired.previous.clone()),
            Err(cause) => return fleet_unavailable(cause),
        };
        let Some(previous) = previous else {
            return deploy_error(DeployComponentError::NothingToRollBackTo(service.into()));
        };
        deployed(
            self.registry
                .rollback(service, Some(&previous), Strategy::All)
                .await,
        )
    }

    /// Publishes a message through the platform's broker, with the platform's own right to
    /// every declared exchange (services are limited to their `publish_exchanges`).
    async fn publish(&self, exchange: String, request: http::Request<Incoming>) -> HttpResponse {
        let Some(broker) = &self.broker else {
            return error(
                StatusCode::CONFLICT,
                "no broker is open: no service publishes or subscribes",
            );
        };
        if !self.exchanges.contains(&exchange) {
            return error(
                StatusCode::NOT_FOUND,
                format!("no exchange `{exchange}` in [[messaging.exchanges]]"),
            );
        }
        let Some(body) = Self::body(request, self.max_upload_bytes).await else {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "message too large");
        };
        let message: admin_api::PublishRequest = match serde_json::from_slice(&body) {
            Ok(message) => message,
            Err(cause) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("invalid publish request: {cause}"),
                )
            }
        };
        if let Some(name) = message
            .headers
            .keys()
            .find(|name| name.to_ascii_lowercase().starts_with("x-"))
        {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("header `{name}`: headers starting with `x-` are the platform's"),
            );
        }
        let routing_key = message.routing_key.clone();
        let published = broker
            .publish(Message {
                exchange: exchange.clone(),
                routing_key: message.routing_key,
                payload: message.payload.into_bytes(),
                content_type: message.content_type,
                headers: message.headers.into_iter().collect(),
            })
            .await;
        match published {
            Ok(()) => json_response(
                StatusCode::OK,
                &admin_api::Published {
                    exchange,
                    routing_key,
                },
            ),
            Err(unavailable @ PublishError::Unavailable(_)) => {
                error(StatusCode::SERVICE_UNAVAILABLE, unavailable.to_string())
            }
            Err(rejected @ PublishError::Rejected(_)) => {
                error(StatusCode::BAD_GATEWAY, rejected.to_string())
            }
        }
    }

    /// The broker and the subscription `queue` names (its queue or its dead-letter queue).
    fn subscription(
        &self,
        queue: &str,
    ) -> Result<(&Arc<dyn Broker>, &SubscriptionConfig), HttpResponse> {
        let Some(broker) = &self.broker else {
            return Err(error(
                StatusCode::CONFLICT,
                "no broker is open: no service publishes or subscribes",
            ));
        };
        self.subscriptions
            .iter()
            .find(|s| s.queue == queue || s.dead_letter_queue == queue)
            .map(|subscription| (broker, subscription))
            .ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    format!("no subscription has the queue or dead-letter queue `{queue}`"),
                )
            })
    }

    async fn dead_letters(&self, queue: &str) -> HttpResponse {
        let (broker, subscription) = match self.subscription(queue) {
            Ok(found) => found,
            Err(response) => return response,
        };
        match broker.dead_letters(subscription).await {
            Ok(dead) => json_response(
                StatusCode::OK,
                &dead
                    .into_iter()
                    .map(|dead| admin_api::DeadLetterEntry {
                        id: dead.id,
                        exchange: dead.message.exchange,
                        routing_key: dead.message.routing_key,
                        retries: dead.retries,
                        reason: dead.reason,
                        payload: String::from_utf8_lossy(&dead.message.payload).into_owned(),
                        headers: dead.message.headers.into_iter().collect(),
                    })
                    .collect::<Vec<_>>(),
            ),
            Err(cause) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the broker is unavailable: {cause}"),
            ),
        }
    }

    async fn replay(&self, queue: &str, request: http::Request<Incoming>) -> HttpResponse {
        let (broker, subscription) = match self.subscription(queue) {
            Ok(found) => found,
            Err(response) => return response,
        };
        let Some(body) = Self::body(request, MAX_ROLLBACK_BYTES).await else {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "replay request too large");
        };
        let replay: admin_api::ReplayRequest = if body.is_empty() {
            admin_api::ReplayRequest::default()
        } else {
            match serde_json::from_slice(&body) {
                Ok(replay) => replay,
                Err(cause) => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("invalid replay request: {cause}"),
                    )
                }
            }
        };
        match broker.replay(subscription, replay.id.as_deref()).await {
            Ok(0) if replay.id.is_some() => error(
                StatusCode::NOT_FOUND,
                format!(
                    "`{}` holds no dead letter `{}` (see `platform dlq list {}`)",
                    subscription.dead_letter_queue,
                    replay.id.unwrap_or_default(),
                    subscription.queue
                ),
            ),
            Ok(replayed) => json_response(
                StatusCode::OK,
                &admin_api::Replayed {
                    queue: subscription.queue.clone(),
                    replayed,
                },
            ),
            Err(cause) => error(StatusCode::SERVICE_UNAVAILABLE, cause.to_string()),
        }
    }

    fn statuses(&self) -> Vec<admin_api::ServiceStatus> {
        self.endpoints
            .values()
            .map(|endpoint| {
                let service = &endpoint.service;
                let version = service.current.load();
                let (requests, errors) = endpoint.metrics.request_counts(version.digest());
                let broker_down = endpoint.consumers.any() && !endpoint.consumers.all_connected();
                admin_api::ServiceStatus {
                    name: service.name().to_string(),
                    port: service.service.config.port,
                    version: version.short_digest().to_string(),
                    digest: version.digest().to_string(),
                    deployed_at: version.record.deployed_at,
                    source: version.record.source,
                    state: if broker_down {
                        "serving, broker unavailable"
                    } else {
                        "serving"
                    }
                    .to_string(),
                    requests,
                    errors,
                    shed: endpoint.metrics.shed_total(),
                    instances_in_use: service
                        .service
                        .admission
                        .running(service.service.config.max_concurrent),
                    max_concurrent: service.service.config.max_concurrent,
                    subscriptions: service
                        .service
                        .config
                        .subscriptions
                        .iter()
                        .map(|subscription| admin_api::SubscriptionStatus {
                            queue: subscription.queue.clone(),
                            dead_letter_queue: subscription.dead_letter_queue.clone(),
                        })
                        .collect(),
                }
            })
            .collect()
    }

    async fn versions(
        &self,
        service: &str,
    ) -> Result<Vec<admin_api::VersionEntry>, DeployComponentError> {
        let current = self
            .registry
            .service(service)?
            .current
            .load()
            .digest()
            .to_string();
        let history = self.registry.history(service).await?;
        let newest = history.len().saturating_sub(1);
        Ok(history
            .iter()
            .enumerate()
            .rev()
            .map(|(index, record)| admin_api::VersionEntry {
                version: record.digest[..12].to_string(),
                digest: record.digest.clone(),
                deployed_at: record.deployed_at,
                source: record.source,
                // The newest record is the current version (a record is written just
                // before its version takes over).
                current: index == newest && record.digest == current,
            })
            .collect())
    }
}

fn deployed(outcome: Result<DeployOutcome, DeployComponentError>) -> HttpResponse {
    match outcome {
        Ok(outcome) => json_response(
            StatusCode::OK,
            &admin_api::Deployed {
                service: outcome.service,
                version: outcome.digest[..12].to_string(),
                digest: outcome.digest,
                previous: outcome.previous,
                swap_ms: outcome.swap_time.as_secs_f64() * 1000.0,
                routes: outcome.routes,
                strategy: outcome.strategy,
                serving_here: outcome.serving_here,
            },
        ),
        Err(refused) => deploy_error(refused),
    }
}

fn deploy_error(refused: DeployComponentError) -> HttpResponse {
    let status = match &refused {
        DeployComponentError::UnknownService(_) | DeployComponentError::UnknownVersion { .. } => {
            StatusCode::NOT_FOUND
        }
        DeployComponentError::AmbiguousVersion(_)
        | DeployComponentError::NothingToRollBackTo(_) => StatusCode::CONFLICT,
        DeployComponentError::Refused(_)
        | DeployComponentError::Migrations(_)
        | DeployComponentError::Unhealthy(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DeployComponentError::NeedsFleet(_) => StatusCode::CONFLICT,
        DeployComponentError::Store(DeploymentsError::Fleet(FleetError::Unavailable(_))) => {
            return fleet_unavailable(FleetError::Unavailable(refused.to_string()));
        }
        DeployComponentError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() || status == StatusCode::UNPROCESSABLE_ENTITY {
        tracing::warn!(error = %refused, "deploy refused");
    }
    error(status, refused.to_string())
}

/// PostgreSQL is unreachable: the hosts keep serving, and deploys wait for it.
fn fleet_unavailable(cause: FleetError) -> HttpResponse {
    tracing::warn!(error = %cause, "fleet call refused");
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{cause}; the hosts keep serving their versions, try the deploy again later"),
    );
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

fn plain(status: StatusCode, body: String) -> HttpResponse {
    let mut response = http::Response::new(http_body_util::Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The value of `name` in a query string (values here are plain words: no decoding).
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::{query_value, same_token};

    #[test]
    fn query_values_are_found_by_exact_name() {
        assert_eq!(
            query_value("source=watch&strategy=rolling", "strategy"),
            Some("rolling")
        );
        assert_eq!(query_value("xstrategy=all", "strategy"), None);
        assert_eq!(query_value("", "source"), None);
    }

    #[test]
    fn tokens_must_match_exactly() {
        assert!(same_token(b"abc", b"abc"));
        assert!(!same_token(b"abd", b"abc"));
        assert!(!same_token(b"ab", b"abc"));
        assert!(!same_token(b"", b"abc"));
    }
}
