//! What the `identity-provider` capability runs on: bcrypt password hashing on the
//! blocking pool, and HS256 JWTs signed with a secret only the host holds.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct IdentityProvider {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    token_lifetime: Duration,
    bcrypt_cost: u32,
    /// One bcrypt job per worker at a time, first come first served. Without it a burst of
    /// logins shares the cores so evenly that all of them finish late (and time out)
    /// together, and every other service starves; with it they finish one after the other
    /// on the cores left to them.
    hashing: Arc<tokio::sync::Semaphore>,
    /// Jobs waiting for a worker, at most `max_queued`.
    waiting: AtomicUsize,
    max_queued: usize,
    workers: usize,
    /// How long a job takes, a moving average in nanoseconds (0 until one has run): a job
    /// that would only get its turn after its caller's deadline is refused at once.
    job_nanos: Arc<AtomicU64>,
}

/// One job waiting for a worker, for as long as it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a bcrypt job may run.
#[derive(Debug, Clone, Copy)]
pub struct BcryptSettings {
    pub cost: u32,
    /// Jobs hashing at once.
    pub workers: usize,
    /// Jobs waiting for a worker; beyond them a job is refused at once.
    pub max_queued: usize,
}

impl BcryptSettings {
    /// `[identity]`'s settings; by default every core but one hashes (at least one).
    pub fn from_config(settings: &crate::config::IdentityConfig) -> BcryptSettings {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        BcryptSettings {
            cost: settings.bcrypt_cost,
            workers: settings
                .bcrypt_workers
                .unwrap_or(cores.saturating_sub(1).max(1)),
            max_queued: settings.bcrypt_max_queued,
        }
    }
}

/// Folds one job's duration into the moving average (an eighth of the new sample).
fn record_job_time(average: &AtomicU64, took: Duration) {
    let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
    let old = average.load(Ordering::Relaxed);
    let new = if old == 0 {
        sample
    } else {
        old - old / 8 + sample / 8
    };
    average.store(new, Ordering::Relaxed);
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
    /// Every worker is busy and the queue is full: refused at once.
    #[error("all bcrypt workers are busy and {0} jobs are waiting")]
    Busy(usize),
    /// The job's caller gave up (its deadline passed) before a worker took it.
    #[error("the caller's deadline passed before a bcrypt worker was free")]
    Expired,
    /// The jobs ahead of it would take past its caller's deadline: refused at once.
    #[error("the {0} bcrypt jobs ahead would not be done before the caller's deadline")]
    TooLate(usize),
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
            BcryptSettings::from_config(settings),
        )
    }

    pub fn new(
        secret: &[u8],
        token_lifetime: Duration,
        bcrypt: BcryptSettings,
    ) -> IdentityProvider {
        // Only HS256 is accepted: `alg: none` and algorithm-confusion tokens fail validation.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        IdentityProvider {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            token_lifetime,
            bcrypt_cost: bcrypt.cost,
            hashing: Arc::new(tokio::sync::Semaphore::new(bcrypt.workers)),
            waiting: AtomicUsize::new(0),
            max_queued: bcrypt.max_queued,
            workers: bcrypt.workers.max(1),
            job_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Runs a bcrypt job on the blocking pool, in turn with the other ones, if a worker
    /// takes it before `deadline`. The worker stays taken until the job ends, even when
    /// its caller stopped waiting: the cores it may use are never oversubscribed.
    async fn bcrypt<T: Send + 'static>(
        &self,
        deadline: Instant,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, IdentityError> {
        let turn = match self.hashing.clone().try_acquire_owned() {
            Ok(turn) => turn,
            Err(_) => {
                let ahead = self.waiting.fetch_add(1, Ordering::Relaxed);
                if ahead >= self.max_queued {
                    self.waiting.fetch_sub(1, Ordering::Relaxed);
                    return Err(IdentityError::Busy(self.max_queued));
                }
                // Queued behind `ahead` jobs and the ones running, this job would start
                // after about (ahead / workers + 1) job times. If it could not finish by
                // its deadline, queueing it only makes a job that can finish wait longer:
                // under a storm every queued caller would give up before its turn.
                if let Some(job) = self.job_time() {
                    let turns = u32::try_from(ahead / self.workers + 2).unwrap_or(u32::MAX);
                    if Instant::now() + job.saturating_mul(turns) > deadline {
                        self.waiting.fetch_sub(1, Ordering::Relaxed);
                        return Err(IdentityError::TooLate(ahead));
                    }
                }
                // Counted out again however the wait ends, the caller giving up included.
                let _waiting = Waiting(&self.waiting);
                self.hashing
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|error| IdentityError::Job(error.to_string()))?
            }
        };
        let job_nanos = self.job_nanos.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let started = Instant::now();
            if started >= deadline {
                return Err(IdentityError::Expired);
            }
            let output = job();
            record_job_time(&job_nanos, started.elapsed());
            Ok(output)
        })
        .await
        .map_err(|error| IdentityError::Job(error.to_string()))?
    }

    /// How long a job takes, once one has run.
    fn job_time(&self) -> Option<Duration> {
        match self.job_nanos.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// A bcrypt hash of `password` at the configured cost.
    pub async fn hash_password(
        &self,
        password: String,
        deadline: Instant,
    ) -> Result<String, IdentityError> {
        let cost = self.bcrypt_cost;
        Ok(self
            .bcrypt(deadline, move || bcrypt::hash(password, cost))
            .await??)
    }

    /// Whether `password` matches `hash`; false for a malformed hash.
    pub async fn verify_password(
        &self,
        password: String,
        hash: String,
        deadline: Instant,
    ) -> Result<bool, IdentityError> {
        let verified = self
            .bcrypt(deadline, move || bcrypt::verify(password, &hash))
            .await?;
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
        IdentityProvider::new(
            secret,
            Duration::from_secs(60),
            BcryptSettings {
                cost: 4,
                workers: 1,
                max_queued: 1,
            },
        )
    }

    #[tokio::test]
    async fn a_full_bcrypt_queue_refuses_at_once_and_late_jobs_never_run() {
        let provider = Arc::new(provider(b"secret"));
        let later = Instant::now() + Duration::from_secs(30);
        // One worker busy, one job waiting: the next is refused without waiting.
        let busy = {
            let provider = provider.clone();
            tokio::spawn(async move { provider.hash_password("a".into(), later).await })
        };
        let waiting = {
            let provider = provider.clone();
            tokio::spawn(async move { provider.hash_password("b".into(), later).await })
        };
        while provider.waiting.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            provider.hash_password("c".into(), later).await,
            Err(IdentityError::Busy(1))
        ));
        assert!(busy.await.unwrap().is_ok());
        assert!(waiting.await.unwrap().is_ok());
        // A job whose caller's deadline has passed is not hashed.
        assert!(matches!(
            provider.hash_password("d".into(), Instant::now()).await,
            Err(IdentityError::Expired)
        ));
    }

    #[tokio::test]
    async fn a_job_that_would_wait_past_its_deadline_is_refused_at_once() {
        let provider = Arc::new(IdentityProvider::new(
            b"secret",
            Duration::from_secs(60),
            BcryptSettings {
                cost: 10,
                workers: 1,
                max_queued: 8,
            },
        ));
        let later = Instant::now() + Duration::from_secs(60);
        // One job teaches the provider how long a job takes.
        provider.hash_password("a".into(), later).await.unwrap();
        let job = provider.job_time().expect("a job was timed");
        // The worker is busy: a job due before two job times cannot finish, so it is refused
        // without being queued; one with time enough waits its turn and runs.
        let busy = {
            let provider = provider.clone();
            tokio::spawn(async move { provider.hash_password("b".into(), later).await })
        };
        while provider.hashing.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let soon = Instant::now() + job;
        assert!(matches!(
            provider.hash_password("c".into(), soon).await,
            Err(IdentityError::TooLate(0))
        ));
        assert_eq!(provider.waiting.load(Ordering::Relaxed), 0);
        assert!(provider.hash_password("d".into(), later).await.is_ok());
        assert!(busy.await.unwrap().is_ok());
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
