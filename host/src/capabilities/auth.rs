//! The `auth` interface, also used by the HTTP ingress for routes that require
//! authentication: tokens are validated by asking the user service's
//! `POST /validate-token`, so no other service ever holds the signing secret.

use super::outgoing_http::HttpClient;
use super::CallState;
use crate::bindings::auth::{AuthError, Host};
use crate::bindings::http_types::Identity;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use std::time::Duration;

/// Validates bearer tokens against the identity service.
pub struct TokenValidator {
    client: HttpClient,
    validate_url: http::Uri,
    timeout: Duration,
}

#[derive(Deserialize)]
struct ValidateTokenAnswer {
    valid: bool,
    username: Option<String>,
    user_id: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

impl TokenValidator {
    pub fn new(
        client: HttpClient,
        validate_url: &str,
        timeout: Duration,
    ) -> Result<TokenValidator, http::uri::InvalidUri> {
        Ok(TokenValidator {
            client,
            validate_url: validate_url.parse()?,
            timeout,
        })
    }

    /// The identity behind `token`, `invalid` if the identity service refused it, or
    /// `unavailable` if it could not be asked.
    pub async fn validate(&self, token: &str) -> Result<Identity, AuthError> {
        let body =
            serde_json::to_vec(&serde_json::json!({ "token": token })).expect("JSON of a string");
        let request = http::Request::post(self.validate_url.clone())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| AuthError::Unavailable(error.to_string()))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| {
                AuthError::Unavailable(format!("identity service unreachable: {error}"))
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), 64 * 1024)
                .collect()
                .await
                .map_err(|error| AuthError::Unavailable(error.to_string()))?
                .to_bytes();
            if !status.is_success() {
                return Err(AuthError::Unavailable(format!(
                    "identity service answered {status}"
                )));
            }
            let answer: ValidateTokenAnswer = serde_json::from_slice(&body).map_err(|error| {
                AuthError::Unavailable(format!("identity service answer unreadable: {error}"))
            })?;
            match (answer.valid, answer.user_id, answer.username) {
                (true, Some(user_id), Some(username)) => Ok(Identity { user_id, username }),
                _ => Err(AuthError::Invalid(
                    answer.message.unwrap_or_else(|| "invalid token".into()),
                )),
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(AuthError::Unavailable(
                    "identity service did not answer in time".into(),
                ))
            })
    }
}

impl Host for CallState {
    async fn validate_token(
        &mut self,
        token: String,
    ) -> wasmtime::Result<Result<Identity, AuthError>> {
        Ok(self.capabilities.auth.validate(&token).await)
    }
}
