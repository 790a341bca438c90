//! The CLI's side of the admin API: where the host listens, the token, and errors that say
//! what to do.

use super::CommandError;
use crate::admin_api::ErrorBody;
use crate::backends::http_client::{HttpClient, HttpClientError};
use crate::config::PlatformConfig;
use crate::state::StateDir;
use bytes::Bytes;
use http_body_util::Full;
use serde::de::DeserializeOwned;

/// Longest an admin call may take: a cold deploy compiles the component first.
const ADMIN_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// Largest answer read from the admin API.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminCallError {
    #[error(
        "the platform host is not running at {address} ({cause}); start it with `platform up`"
    )]
    Unreachable { address: String, cause: String },
    #[error("{message}")]
    Refused { status: u16, message: String },
    #[error("unexpected answer from the host at {address}: {cause}")]
    Protocol { address: String, cause: String },
}

impl From<AdminCallError> for CommandError {
    fn from(error: AdminCallError) -> CommandError {
        let code = match error {
            AdminCallError::Unreachable { .. } => 3,
            AdminCallError::Refused { status: 404, .. } => 2,
            AdminCallError::Refused { .. } => 4,
            AdminCallError::Protocol { .. } => 1,
        };
        CommandError {
            code,
            error: error.into(),
        }
    }
}

/// `--admin` (or `PLATFORM_ADMIN_URL`): the admin API to call instead of `[admin] bind`.
pub static ADMIN_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub struct AdminClient {
    http: HttpClient,
    base: String,
    token: Option<String>,
}

impl AdminClient {
    /// The admin API at `--admin`, else that of the host that runs `config`: its address
    /// from `[admin] bind` (a wildcard address is reached on loopback); the token from
    /// `PLATFORM_ADMIN_TOKEN` or the state directory.
    pub fn new(config: &PlatformConfig) -> AdminClient {
        let base = match ADMIN_URL.get() {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!(
                "http://{}",
                config
                    .admin
                    .bind
                    .replace("0.0.0.0", "127.0.0.1")
                    .replace("[::]", "[::1]")
            ),
        };
        let token = config
            .admin
            .token
            .clone()
            .or_else(|| StateDir::existing_admin_token(&config.resolve(&config.state.dir)));
        AdminClient {
            http: HttpClient::new(),
            base,
            token,
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, AdminCallError> {
        self.call(http::Method::GET, path, Bytes::new(), "application/json")
            .await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<T, AdminCallError> {
        self.call(http::Method::POST, path, body, content_type)
            .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<T, AdminCallError> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, content_type);
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(body))
            .map_err(|error| AdminCallError::Protocol {
                address: self.base.clone(),
                cause: error.to_string(),
            })?;
        let response = self
            .http
            .send(request, ADMIN_CALL_TIMEOUT, MAX_ANSWER_BYTES)
            .await
            .map_err(|error| match error {
                HttpClientError::Unavailable(cause) => AdminCallError::Unreachable {
                    address: self.base.clone(),
                    cause,
                },
                other => AdminCallError::Protocol {
                    address: self.base.clone(),
                    cause: other.to_string(),
                },
            })?;
        let (status, body) = (response.status, response.body);
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|error| error.error)
                .unwrap_or_else(|_| format!("the host answered {status}"));
            return Err(AdminCallError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|error| AdminCallError::Protocol {
            address: self.base.clone(),
            cause: error.to_string(),
        })
    }
}

/// A current-thread runtime for one CLI call.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// `2026-11-26 07:36:36` in UTC, for tables.
pub fn short_time(time: &chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S").to_string()
}
