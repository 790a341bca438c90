//! The admin API that `platform deploy`, `rollback`, `ps` and `versions` talk to, on its
//! own listener (`[admin] bind`, loopback by default). Every call needs
//! `authorization: Bearer <admin token>`; anything else gets 401 and changes nothing.
//!
//! ```text
//! GET  /v1/services                          every service: port, version, counters
//! GET  /v1/services/{service}/versions       the deploy history, newest first
//! POST /v1/services/{service}/deploy         body: the component; ?source=deploy|watch
//! POST /v1/services/{service}/rollback       body: {"to": "<digest prefix>"} or empty
//! POST /v1/exchanges/{exchange}/messages      body: a PublishRequest; publishes through
//!                                            the platform's broker (RabbitMQ or embedded)
//! ```

use crate::bindings::messaging::PublishError;
use crate::bindings::messaging_types::Message;
use crate::capabilities::messaging::MessagePublisher;
use crate::runtime::{DeployComponentError, DeployOutcome, Registry};
use crate::state::DeploySource;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The JSON documents of the admin API, shared with the CLI.
pub mod api {
    use super::*;

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
    }

    /// Every error: what went wrong, in a sentence that names the fix where there is one.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct ErrorBody {
        pub error: String,
    }
}

pub struct AdminApi {
    pub registry: Arc<Registry>,
    pub token: String,
    pub max_upload_bytes: usize,
    /// The platform's broker, if any service publishes or subscribes.
    pub publisher: Option<Arc<dyn MessagePublisher>>,
    /// The exchanges of `[[messaging.exchanges]]`.
    pub exchanges: Vec<String>,
}

type AdminResponse = http::Response<Full<Bytes>>;

/// Serves the admin API on `listener` until `shutdown`.
pub async fn serve(api: Arc<AdminApi>, listener: TcpListener, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let api = api.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let api = api.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&api, request).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    connections.close();
    connections.wait().await;
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> AdminResponse {
    let mut response = http::Response::new(Full::new(Bytes::from(
        serde_json::to_vec(body).expect("JSON of plain records"),
    )));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> AdminResponse {
    json(
        status,
        &api::ErrorBody {
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

fn authorised(api: &AdminApi, request: &http::Request<Incoming>) -> bool {
    request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| same_token(token.trim().as_bytes(), api.token.as_bytes()))
}

async fn handle(api: &AdminApi, request: http::Request<Incoming>) -> AdminResponse {
    if !authorised(api, &request) {
        // Read (and drop) what the client is sending, up to the upload limit, so that it
        // gets this answer instead of a broken connection in the middle of its upload.
        let _ = Limited::new(request.into_body(), api.max_upload_bytes)
            .collect()
            .await;
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token (PLATFORM_ADMIN_TOKEN, or the state directory's admin-token)",
        );
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (request.method(), segments.as_slice()) {
        (&Method::GET, ["v1", "services"]) => json(StatusCode::OK, &statuses(&api.registry)),
        (&Method::GET, ["v1", "services", service, "versions"]) => {
            match versions(&api.registry, service) {
                Ok(entries) => json(StatusCode::OK, &entries),
                Err(refused) => deploy_error(refused),
            }
        }
        (&Method::POST, ["v1", "services", service, "deploy"]) => {
            let service = service.to_string();
            let source = match request.uri().query() {
                Some(query) if query.contains("source=watch") => DeploySource::Watch,
                _ => DeploySource::Deploy,
            };
            if let Err(refused) = api.registry.service(&service) {
                return deploy_error(refused);
            }
            let too_large = || {
                let mut response = error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the component is larger than admin.max_upload_mb ({} bytes)",
                        api.max_upload_bytes
                    ),
                );
                // The body was not read, so the connection cannot carry another request.
                response
                    .headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                response
            };
            let announced = request
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
            if announced.is_some_and(|length| length > api.max_upload_bytes as u64) {
                return too_large();
            }
            let bytes = match Limited::new(request.into_body(), api.max_upload_bytes)
                .collect()
                .await
            {
                Ok(body) => body.to_bytes(),
                Err(_) => return too_large(),
            };
            deployed(api.registry.deploy(&service, bytes.to_vec(), source).await)
        }
        (&Method::POST, ["v1", "services", service, "rollback"]) => {
            let service = service.to_string();
            let body = match Limited::new(request.into_body(), 64 * 1024).collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => {
                    return error(StatusCode::PAYLOAD_TOO_LARGE, "rollback request too large")
                }
            };
            let rollback: api::RollbackRequest = if body.is_empty() {
                api::RollbackRequest::default()
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
                api.registry
                    .rollback(&service, rollback.to.as_deref())
                    .await,
            )
        }
        (&Method::POST, ["v1", "exchanges", exchange, "messages"]) => {
            let exchange = exchange.to_string();
            publish(api, exchange, request).await
        }
        (_, ["v1", "services", ..] | ["v1", "exchanges", ..]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} {path} is not an admin call", request.method()),
        ),
        _ => error(StatusCode::NOT_FOUND, format!("no admin call at {path}")),
    }
}

/// Publishes a message through the platform's broker, with the platform's own right to
/// every declared exchange (services are limited to their `publish_exchanges`).
async fn publish(
    api: &AdminApi,
    exchange: String,
    request: http::Request<Incoming>,
) -> AdminResponse {
    let Some(publisher) = &api.publisher else {
        return error(
            StatusCode::CONFLICT,
            "no broker is open: no service publishes or subscribes",
        );
    };
    if !api.exchanges.contains(&exchange) {
        return error(
            StatusCode::NOT_FOUND,
            format!("no exchange `{exchange}` in [[messaging.exchanges]]"),
        );
    }
    let body = match Limited::new(request.into_body(), api.max_upload_bytes)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "message too large"),
    };
    let message: api::PublishRequest = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(cause) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("invalid publish request: {cause}"),
            )
        }
    };
    let routing_key = message.routing_key.clone();
    let published = publisher
        .publish(Message {
            exchange: exchange.clone(),
            routing_key: message.routing_key,
            payload: message.payload.into_bytes(),
            content_type: message.content_type,
            headers: message.headers.into_iter().collect(),
        })
        .await;
    match published {
        Ok(()) => json(
            StatusCode::OK,
            &api::Published {
                exchange,
                routing_key,
            },
        ),
        Err(PublishError::Unavailable(cause)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the broker is unavailable: {cause}"),
        ),
        Err(PublishError::Rejected(cause)) | Err(PublishError::NotAllowed(cause)) => error(
            StatusCode::BAD_GATEWAY,
            format!("the broker refused the message: {cause}"),
        ),
    }
}

fn statuses(registry: &Registry) -> Vec<api::ServiceStatus> {
    registry
        .services()
        .map(|service| {
            let version = service.current.load();
            let (requests, errors) = version.request_counts();
            let broker_down = !service.config.subscriptions.is_empty()
                && !service
                    .broker_connected
                    .load(std::sync::atomic::Ordering::Relaxed);
            api::ServiceStatus {
                name: service.name.clone(),
                port: service.config.port,
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
            }
        })
        .collect()
}

fn versions(
    registry: &Registry,
    service: &str,
) -> Result<Vec<api::VersionEntry>, DeployComponentError> {
    let current = registry
        .service(service)?
        .current
        .load()
        .digest()
        .to_string();
    let history = registry.history(service)?;
    let newest = history.len().saturating_sub(1);
    Ok(history
        .iter()
        .enumerate()
        .rev()
        .map(|(index, record)| api::VersionEntry {
            version: record.digest[..12].to_string(),
            digest: record.digest.clone(),
            deployed_at: record.deployed_at,
            source: record.source,
            // The newest record is the current version (a record is written just before
            // its version takes over).
            current: index == newest && record.digest == current,
        })
        .collect())
}

fn deployed(outcome: Result<DeployOutcome, DeployComponentError>) -> AdminResponse {
    match outcome {
        Ok(outcome) => json(
            StatusCode::OK,
            &api::Deployed {
                service: outcome.service,
                version: outcome.digest[..12].to_string(),
                digest: outcome.digest,
                previous: outcome.previous,
                swap_ms: outcome.swap_time.as_secs_f64() * 1000.0,
                routes: outcome.routes,
            },
        ),
        Err(refused) => deploy_error(refused),
    }
}

fn deploy_error(refused: DeployComponentError) -> AdminResponse {
    let status = match &refused {
        DeployComponentError::UnknownService(_) | DeployComponentError::UnknownVersion { .. } => {
            StatusCode::NOT_FOUND
        }
        DeployComponentError::AmbiguousVersion(_)
        | DeployComponentError::NothingToRollBackTo(_) => StatusCode::CONFLICT,
        DeployComponentError::Refused(_)
        | DeployComponentError::Migrations(_)
        | DeployComponentError::Unhealthy(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DeployComponentError::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() || status == StatusCode::UNPROCESSABLE_ENTITY {
        tracing::warn!(error = %refused, "deploy refused");
    }
    error(status, refused.to_string())
}

#[cfg(test)]
mod tests {
    use super::same_token;

    #[test]
    fn tokens_must_match_exactly() {
        assert!(same_token(b"abc", b"abc"));
        assert!(!same_token(b"abd", b"abc"));
        assert!(!same_token(b"ab", b"abc"));
        assert!(!same_token(b"", b"abc"));
    }
}
