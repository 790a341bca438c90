//! A pooled HTTP/1 client shared by the whole host (outgoing HTTP, token validation) and by
//! the CLI: buffered requests and responses, each bounded in time and size.
//!
//! A request to a service of this same host is answered in process: the ingress registers
//! every service listener ([`HttpClient::answer_locally`]), and a request to one of their
//! addresses goes straight to that service's handler (the same routing, limits, metrics
//! and request id as from the network) without a loopback socket. Any other address,
//! another host's included, goes over the network.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Why a request got no complete response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HttpClientError {
    /// No connection, or it broke before the response was complete.
    #[error("{0}")]
    Unavailable(String),
    #[error("the response body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("no response in time")]
    Timeout,
}

/// A response read to its end.
#[derive(Debug, Clone)]
pub struct BufferedResponse {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// A service of this host that answers requests in process.
pub trait LocalService: Send + Sync + 'static {
    /// Answers `request` as the service's listener would answer it from the network.
    fn answer(
        self: Arc<Self>,
        request: http::Request<Full<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = http::Response<Full<Bytes>>> + Send>>;
}

/// The services of this host, by the port they listen on.
struct LocalServices {
    /// The address every service listener binds.
    bind: String,
    by_port: HashMap<u16, Arc<dyn LocalService>>,
}

impl LocalServices {
    /// The service listening where `uri` points, if it is one of this host's.
    fn target(&self, uri: &http::Uri) -> Option<Arc<dyn LocalService>> {
        if uri.scheme_str() != Some("http") {
            return None;
        }
        let service = self.by_port.get(&uri.port_u16().unwrap_or(80))?;
        same_listener(uri.host()?, &self.bind).then(|| service.clone())
    }
}

/// Whether a connection to `host` reaches a listener bound to `bind`: the same address, a
/// name for loopback when the listener is on loopback, or any loopback address when it
/// listens on all of them. (Another host on another loopback address is not this one.)
fn same_listener(host: &str, bind: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == bind {
        return true;
    }
    let Ok(bound) = bind.parse::<IpAddr>() else {
        return false;
    };
    let host_ip = host.parse::<IpAddr>().ok();
    if bound.is_unspecified() {
        return host == "localhost" || host_ip.is_some_and(|ip| ip.is_loopback());
    }
    match host_ip {
        Some(ip) => ip == bound,
        // `localhost` resolves to 127.0.0.1 or ::1, not to the rest of 127.0.0.0/8.
        None => {
            host == "localhost"
                && (bound == IpAddr::from([127, 0, 0, 1])
                    || bound == IpAddr::from(std::net::Ipv6Addr::LOCALHOST))
        }
    }
}

/// Cheap to clone: clones share the connection pool and the local services.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    local: Arc<OnceLock<LocalServices>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}

impl HttpClient {
    pub fn new() -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        connector.set_nodelay(true);
        HttpClient {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            local: Arc::new(OnceLock::new()),
        }
    }

    /// From now on, requests to `bind:<port>` of one of `services` are answered in process.
    /// Set once, when the host's listeners are bound.
    pub fn answer_locally(&self, bind: &str, services: Vec<(u16, Arc<dyn LocalService>)>) {
        let services = LocalServices {
            bind: bind.to_string(),
            by_port: services.into_iter().collect(),
        };
        if self.local.set(services).is_err() {
            tracing::warn!("the host's local services were registered twice; keeping the first");
        }
    }

    /// Sends `request` and reads the whole response, at most `max_body` bytes of it, all
    /// within `timeout`.
    pub async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<BufferedResponse, HttpClientError> {
        if let Some(service) = self
            .local
            .get()
            .and_then(|local| local.target(request.uri()))
        {
            return send_locally(service, request, timeout, max_body).await;
        }
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| HttpClientError::Unavailable(innermost_cause(&error)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, max_body)
                .collect()
                .await
                .map_err(|error| {
                    if error
                        .downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        HttpClientError::TooLarge(max_body)
                    } else {
                        HttpClientError::Unavailable(error.to_string())
                    }
                })?
                .to_bytes();
            Ok(BufferedResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(HttpClientError::Timeout))
    }
}

/// Has a service of this host answer `request`. The answer is awaited for at most
/// `timeout`, but the service finishes the request whatever the caller does, as it would
/// for a client that went away over the network.
async fn send_locally(
    service: Arc<dyn LocalService>,
    request: http::Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
) -> Result<BufferedResponse, HttpClientError> {
    let answer = tokio::spawn(service.answer(request));
    let response = match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(response)) => response,
        Ok(Err(join)) => return Err(HttpClientError::Unavailable(join.to_string())),
        Err(_) => return Err(HttpClientError::Timeout),
    };
    let (parts, body) = response.into_parts();
    let Ok(body) = body.collect().await;
    let body = body.to_bytes();
    if body.len() > max_body {
        return Err(HttpClientError::TooLarge(max_body));
    }
    Ok(BufferedResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// `connection refused` rather than hyper's outer "client error (Connect)".
fn innermost_cause(error: &dyn std::error::Error) -> String {
    let mut innermost = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        innermost = cause.to_string();
        source = cause.source();
    }
    innermost
}

#[cfg(test)]
mod tests {
    use super::same_listener;

    #[test]
    fn only_addresses_that_reach_the_listener_are_local() {
        assert!(same_listener("127.0.0.1", "127.0.0.1"));
        assert!(same_listener("localhost", "127.0.0.1"));
        assert!(same_listener("[::1]", "::1"));
        assert!(same_listener("127.0.0.12", "0.0.0.0"));
        assert!(same_listener("localhost", "0.0.0.0"));
        // Another host of a fleet on its own loopback address.
        assert!(!same_listener("127.0.0.12", "127.0.0.11"));
        assert!(!same_listener("localhost", "127.0.0.11"));
        assert!(!same_listener("127.0.0.1", "10.1.2.3"));
        assert!(!same_listener("product.internal", "0.0.0.0"));
    }
}
