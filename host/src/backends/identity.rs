//! What the `identity-provider` capability runs on: bcrypt password hashing on the
//! blocking pool, and HS256 JWTs signed with a secret only the host holds.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub struct IdentityProvider {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    token_lifetime: Duration,
    bcrypt_cost: u32,
    /// One bcrypt job per core at a time, first come first served. Without it a burst of
    /// logins shares the cores so evenly that all of them finish late (and time out)
    /// together; with it they finish one after the other.
    hashing: tokio::sync::Semaphore,
}

/// The claims of a token whose signature and expiry were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub subject: String,
    pub user_id: i64,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
}

/// Why a token could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Why a password could not be hashed or checked, or a token issued: host failures, not
/// answers about the password.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("bcrypt failed: {0}")]
    Bcrypt(#[from] bcrypt::BcryptError),
    #[error("signing the token failed: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
    #[error("the bcrypt job did not finish: {0}")]
    Job(String),
}

#[derive(Serialize, Deserialize)]
struct TokenClaims {
    sub: String,
    user_id: i64,
    exp: i64,
}

impl IdentityProvider {
    /// The provider `[identity]` configures, signing with `JWT_SECRET`, or with a random
    /// secret (and a warning) when none is set.
    pub fn from_config(settings: &crate::config::IdentityConfig) -> IdentityProvider {
        let secret = match &settings.jwt_secret {
            Some(secret) => secret.clone().into_bytes(),
            None => {
                tracing::warn!(
                    "JWT_SECRET is not set: signing tokens with a random secret; tokens will not survive a restart"
                );
                use rand::RngCore;
                let mut secret = vec![0u8; 32];
                rand::thread_rng().fill_bytes(&mut secret);
                secret
            }
        };
        IdentityProvider::new(
            &secret,
            Duration::from_secs(settings.access_token_expire_minutes * 60),
            settings.bcrypt_cost,
        )
    }

    pub fn new(secret: &[u8], token_lifetime: Duration, bcrypt_cost: u32) -> IdentityProvider {
        // Only HS256 is accepted: `alg: none` and algorithm-confusion tokens fail validation.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        IdentityProvider {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            token_lifetime,
            bcrypt_cost,
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
            ),
        }
    }

    /// Runs a bcrypt job on the blocking pool, in turn with the other ones.
    async fn bcrypt<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, IdentityError> {
        let _turn = self
            .hashing
            .acquire()
            .await
            .map_err(|error| IdentityError::Job(error.to_string()))?;
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|error| IdentityError::Job(error.to_string()))
    }

    /// A bcrypt hash of `password` at the configured cost.
    pub async fn hash_password(&self, password: String) -> Result<String, IdentityError> {
        let cost = self.bcrypt_cost;
        Ok(self.bcrypt(move || bcrypt::hash(password, cost)).await??)
    }

    /// Whether `password` matches `hash`; false for a malformed hash.
    pub async fn verify_password(
        &self,
        password: String,
        hash: String,
    ) -> Result<bool, IdentityError> {
        let verified = self.bcrypt(move || bcrypt::verify(password, &hash)).await?;
        Ok(verified.unwrap_or(false))
    }

    pub fn issue(&self, subject: &str, user_id: i64) -> Result<String, IdentityError> {
        let exp = chrono::Utc::now().timestamp() + self.token_lifetime.as_secs() as i64;
        let claims = TokenClaims {
            sub: subject.to_string(),
            user_id,
            exp,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    pub fn decode(&self, token: &str) -> Result<Claims, TokenError> {
        match jsonwebtoken::decode::<TokenClaims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(Claims {
                subject: data.claims.sub,
                user_id: data.claims.user_id,
                expires_at: data.claims.exp,
            }),
            Err(error) => match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Err(TokenError::Expired),
                _ => Err(TokenError::Invalid(error.to_string())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64_helpers::encode_segment;

    mod base64_helpers {
        /// Unpadded base64url, enough to forge test tokens by hand.
        pub fn encode_segment(bytes: &[u8]) -> String {
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..=chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }

    fn provider(secret: &[u8]) -> IdentityProvider {
        IdentityProvider::new(secret, Duration::from_secs(60), 4)
    }

    #[test]
    fn issued_tokens_decode_to_their_claims() {
        let provider = provider(b"secret");
        let token = provider.issue("alice", 7).unwrap();
        let claims = provider.decode(&token).unwrap();
        assert_eq!((claims.subject.as_str(), claims.user_id), ("alice", 7));
    }

    #[test]
    fn rejects_other_secrets_alg_none_expired_and_garbage() {
        let token = provider(b"other").issue("alice", 7).unwrap();
        assert!(matches!(
            provider(b"secret").decode(&token),
            Err(TokenError::Invalid(_))
        ));

        let exp = chrono::Utc::now().timestamp() + 600;
        let header = encode_segment(br#"{"alg":"none","typ":"JWT"}"#);
        let payload =
            encode_segment(format!(r#"{{"sub":"alice","user_id":7,"exp":{exp}}}"#).as_bytes());
        let unsigned = format!("{header}.{payload}.");
        assert!(matches!(
            provider(b"secret").decode(&unsigned),
            Err(TokenError::Invalid(_))
        ));

        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &TokenClaims {
                sub: "alice".into(),
                user_id: 7,
                exp: chrono::Utc::now().timestamp() - 5,
            },
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(matches!(
            provider(b"secret").decode(&expired),
            Err(TokenError::Expired)
        ));
        assert!(matches!(
            provider(b"secret").decode("garbage"),
            Err(TokenError::Invalid(_))
        ));
    }
}
