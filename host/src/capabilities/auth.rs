//! The `auth` interface: a component asks whether a bearer token is valid. The identity
//! service (the user service's `POST /validate-token`) answers, through the host's
//! token validator; no other service ever holds the signing secret.

use super::{granted, CallState, Failure, Grant, GrantError, ServiceCapabilities};
use crate::backends::token_validator::ValidateTokenError;
use crate::bindings::auth::{AuthError, Host};
use crate::bindings::http_types::Identity;

const INTERFACE: &str = "auth";

pub(super) fn grant(grant: &Grant<'_>, into: &mut ServiceCapabilities) -> Result<(), GrantError> {
    into.auth = Some(grant.backends.token_validator.clone());
    Ok(())
}

/// A validation's failure: an `auth-error` for the guest, or a trap.
pub type AuthFailure = Failure<AuthError>;

impl From<ValidateTokenError> for AuthFailure {
    fn from(error: ValidateTokenError) -> Self {
        Failure::Error(match error {
            ValidateTokenError::Invalid(reason) => AuthError::Invalid(reason),
            ValidateTokenError::Unavailable(cause) => AuthError::Unavailable(cause),
        })
    }
}

impl Host for CallState {
    async fn validate_token(&mut self, token: String) -> Result<Identity, AuthFailure> {
        let validator = granted(&self.capabilities.auth, INTERFACE, self)?;
        let checked = self.validated_token.as_ref();
        let caller = match checked.and_then(|checked| checked.caller_of(&token)) {
            Some(caller) => caller.clone(),
            None => {
                validator
                    .validate(&token, &self.request_id, self.trace.as_ref())
                    .await?
            }
        };
        Ok(Identity {
            user_id: caller.user_id,
            username: caller.username,
        })
    }

    fn convert_auth_error(&mut self, failure: AuthFailure) -> wasmtime::Result<AuthError> {
        failure.lower()
    }
}
