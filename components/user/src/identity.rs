//! The host's identity provider (bcrypt and JWT) behind the service's
//! [`IdentityProvider`] trait. The signing secret and the bcrypt work stay in the host.

use crate::service::{Claims, DecodeError, IdentityProvider};
use platform_guest::identity_provider::{self, TokenError};

/// The `identity-provider` capability granted to the user service.
pub struct HostIdentity;

impl IdentityProvider for HostIdentity {
    fn hash_password(&self, password: &str) -> String {
        identity_provider::hash_password(password)
    }

    fn verify_password(&self, password: &str, hash: &str) -> bool {
        identity_provider::verify_password(password, hash)
    }

    fn issue_token(&self, subject: &str, user_id: i64) -> String {
        identity_provider::issue_token(subject, user_id)
    }

    fn decode_token(&self, token: &str) -> Result<Claims, DecodeError> {
        identity_provider::decode_token(token)
            .map(|claims| Claims {
                subject: claims.subject,
                user_id: claims.user_id,
                expires_at: claims.expires_at,
            })
            .map_err(|error| match error {
                TokenError::Expired => DecodeError::Expired,
                TokenError::Invalid(cause) => DecodeError::Invalid(cause),
            })
    }
}
