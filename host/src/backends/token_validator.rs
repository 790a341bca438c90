//! Validates bearer tokens by asking the identity service (the user service's
//! `POST /validate-token`), so no other service ever holds the signing secret. Used by the
//! `auth` capability and by the HTTP ingress for routes that require authentication.

use super::http_client::HttpClient;
use crate::telemetry::{Attribute, Kind, Trace};
use bytes::Bytes;
use http_body_util::Full;
use serde::Deserialize;
use std::time::Duration;

/// Largest answer read from the identity service.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Who a valid token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: i64,
    pub username: String,
}

/// The token of an `authorization: Bearer <token>` header.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A bearer token this host validated for the request it is serving, and whose it is.
///
/// A call from that request to another service of this host (its outgoing HTTP, in process)
/// that carries the same token carries this as a request extension, which never leaves the
/// process: the callee takes the check made at the start of the same request instead of
/// asking the identity service again. Only the host sets it, and only for the very token it
/// checked; any other token, and every request from the network, is validated as usual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedToken {
    pub token: String,
    pub caller: Caller,
}

impl ValidatedToken {
    /// The caller, if `token` is the one validated.
    pub fn caller_of(&self, token: &str) -> Option<&Caller> {
        (self.token == token).then_some(&self.caller)
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidateTokenError {
    /// Invalid, expired, or its user is gone or inactive.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The identity service could not be asked.
    #[error("identity service unavailable: {0}")]
    Unavailable(String),
}

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

    /// Asks the identity service about `token`, for the request `request_id` (sent along,
    /// so the identity service logs the same id), as a child span of `trace`.
    pub async fn validate(
        &self,
        token: &str,
        request_id: &str,
        trace: Option<&Trace>,
    ) -> Result<Caller, ValidateTokenError> {
        let span = trace.map(|trace| {
            trace.child(
                "token validation",
                Kind::Client,
                vec![
                    Attribute::new("http.request.method", "POST"),
                    Attribute::new("url.full", self.validate_url.to_string()),
                ],
            )
        });
        let validated = self.ask(token, request_id, span.as_ref()).await;
        if let Some(span) = span {
            if let Err(ValidateTokenError::Unavailable(cause)) = &validated {
                span.fail(cause.clone());
            }
            span.set(Attribute::new("platform.token.valid", validated.is_ok()));
            span.end();
        }
        validated
    }

    async fn ask(
        &self,
        token: &str,
        request_id: &str,
        span: Option<&Trace>,
    ) -> Result<Caller, ValidateTokenError> {
        let body =
            serde_json::to_vec(&serde_json::json!({ "token": token })).expect("JSON of a string");
        let mut request = http::Request::post(self.validate_url.clone())
            .header("content-type", "application/json");
        if let Ok(id) = http::HeaderValue::from_str(request_id) {
            request = request.header("x-request-id", id);
        }
        let mut request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| ValidateTokenError::Unavailable(error.to_string()))?;
        if let Some(span) = span {
            span.inject_http(request.headers_mut());
        }
        let response = self
            .client
            .send(request, self.timeout, MAX_ANSWER_BYTES)
            .await
            .map_err(|error| ValidateTokenError::Unavailable(error.to_string()))?;
        if !response.status.is_success() {
            return Err(ValidateTokenError::Unavailable(format!(
                "identity service answered {}",
                response.status
            )));
        }
        let answer: ValidateTokenAnswer =
            serde_json::from_slice(&response.body).map_err(|error| {
                ValidateTokenError::Unavailable(format!(
                    "identity service answer unreadable: {error}"
                ))
            })?;
        match (answer.valid, answer.user_id, answer.username) {
            (true, Some(user_id), Some(username)) => Ok(Caller { user_id, username }),
            _ => Err(ValidateTokenError::Invalid(
                answer.message.unwrap_or_else(|| "invalid token".into()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn bearer_tokens_need_the_scheme() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
        headers.insert("authorization", HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn a_validated_token_answers_for_itself_only() {
        let validated = ValidatedToken {
            token: "abc".into(),
            caller: Caller {
                user_id: 7,
                username: "alice".into(),
            },
        };
        assert_eq!(validated.caller_of("abc"), Some(&validated.caller));
        assert_eq!(validated.caller_of("abd"), None);
        assert_eq!(validated.caller_of(""), None);
    }
}
