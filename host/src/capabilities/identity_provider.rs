//! The `identity-provider` interface (the user service only): bcrypt password hashing and
//! HS256 tokens signed with a secret only the host holds (see `backends::identity`).

use super::{
    ended, granted, CallState, Failure, Grant, GrantError, Saturated, ServiceCapabilities,
};
use crate::backends::identity as backend;
use crate::bindings::identity_provider::{Claims, Host, TokenError};
use crate::telemetry::Kind;

const INTERFACE: &str = "identity-provider";

pub(super) fn grant(grant: &Grant<'_>, into: &mut ServiceCapabilities) -> Result<(), GrantError> {
    into.identity = Some(grant.backend(&grant.backends.identity, INTERFACE)?);
    Ok(())
}

/// A token decoding's failure: a `token-error` for the guest, or a trap.
pub type TokenFailure = Failure<TokenError>;

impl From<backend::TokenError> for TokenFailure {
    fn from(error: backend::TokenError) -> Self {
        Failure::Error(match error {
            backend::TokenError::Expired => TokenError::Expired,
            backend::TokenError::Invalid(reason) => TokenError::Invalid(reason),
        })
    }
}

/// A saturated bcrypt pool ends the call as an overload (503 with `Retry-After`), not as a
/// failure of the component.
fn lowered(error: backend::IdentityError) -> wasmtime::Error {
    match error {
        backend::IdentityError::Busy(_)
        | backend::IdentityError::Expired
        | backend::IdentityError::TooLate(_) => wasmtime::Error::new(Saturated("bcrypt")),
        other => wasmtime::Error::new(other),
    }
}

impl Host for CallState {
    async fn hash_password(&mut self, password: String) -> wasmtime::Result<String> {
        let identity = granted(&self.capabilities.identity, INTERFACE, self)?;
        let span = self.span(|| "bcrypt hash".into(), Kind::Internal, Vec::new);
        let hashed = identity.hash_password(password, self.deadline).await;
        ended(span, hashed).map_err(lowered)
    }

    async fn verify_password(&mut self, password: String, hash: String) -> wasmtime::Result<bool> {
        let identity = granted(&self.capabilities.identity, INTERFACE, self)?;
        let span = self.span(|| "bcrypt verify".into(), Kind::Internal, Vec::new);
        let verified = identity
            .verify_password(password, hash, self.deadline)
            .await;
        ended(span, verified).map_err(lowered)
    }

    async fn issue_token(&mut self, subject: String, user_id: i64) -> wasmtime::Result<String> {
        let identity = granted(&self.capabilities.identity, INTERFACE, self)?;
        Ok(identity.issue(&subject, user_id)?)
    }

    async fn decode_token(&mut self, token: String) -> Result<Claims, TokenFailure> {
        let identity = granted(&self.capabilities.identity, INTERFACE, self)?;
        let claims = identity.decode(&token)?;
        Ok(Claims {
            subject: claims.subject,
            user_id: claims.user_id,
            expires_at: claims.expires_at,
        })
    }

    fn convert_token_error(&mut self, failure: TokenFailure) -> wasmtime::Result<TokenError> {
        failure.lower()
    }
}
