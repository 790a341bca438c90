//! A pooled HTTP/1 client shared by the whole host (outgoing HTTP, token validation) and by
//! the CLI: buffered requests and responses, each bounded in time and size.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
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

/// Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
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
