//! The `cache` interface over the shared cache backend, with every key prefixed by the
//! service's namespace so services never see each other's keys.
//!
//! An invalidation must not be lost: a `delete` the backend did not confirm (Redis stalled
//! or down) is retried in the background until it is, and until then this host answers a
//! `get` of that key as a miss, so the service reads its database instead of the stale
//! entry. (A restart forgets the retries; hosts of a fleet do not share them.)

use super::{ended, granted, CallState, Failure, Grant, GrantError, ServiceCapabilities};
use crate::backends::cache::{self as backend, Cache};
use crate::bindings::cache::{CacheError, Host};
use crate::telemetry::{Attribute, Kind, Trace};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const INTERFACE: &str = "cache";

/// Longest key a component may use; keeps Redis memory and logs sane.
const MAX_KEY_BYTES: usize = 1024;
/// Largest value a component may store.
const MAX_VALUE_BYTES: usize = 1024 * 1024;

pub(super) fn grant(grant: &Grant<'_>, into: &mut ServiceCapabilities) -> Result<(), GrantError> {
    let backend = grant.backend(&grant.backends.cache, INTERFACE)?;
    into.cache = Some(ServiceCache::new(
        backend,
        grant
            .config
            .cache_namespace
            .as_deref()
            .unwrap_or(grant.service),
        Duration::from_secs(grant.platform.cache.default_ttl_seconds.into()),
    ));
    Ok(())
}

/// One service's view of the cache: its namespace and default TTL.
#[derive(Clone)]
pub struct ServiceCache {
    backend: Arc<dyn Cache>,
    namespace: String,
    default_ttl: Duration,
    unconfirmed: Arc<UnconfirmedDeletes>,
}

/// Keys whose invalidation the backend has not confirmed yet.
#[derive(Default)]
struct UnconfirmedDeletes {
    keys: Mutex<HashSet<String>>,
    /// How many: a `get` looks at the set only when it is not empty.
    count: AtomicUsize,
}

impl UnconfirmedDeletes {
    fn contains(&self, key: &str) -> bool {
        self.count.load(Ordering::Acquire) > 0
            && self.keys.lock().expect("never poisoned").contains(key)
    }

    /// Whether `key` was not pending yet.
    fn insert(&self, key: &str) -> bool {
        let inserted = self
            .keys
            .lock()
            .expect("never poisoned")
            .insert(key.to_string());
        if inserted {
            self.count.fetch_add(1, Ordering::Release);
        }
        inserted
    }

    fn remove(&self, key: &str) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        if self.keys.lock().expect("never poisoned").remove(key) {
            self.count.fetch_sub(1, Ordering::Release);
        }
    }
}

/// Pauses between retries of an unconfirmed delete.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LAST_RETRY: Duration = Duration::from_secs(10);

impl ServiceCache {
    pub fn new(backend: Arc<dyn Cache>, namespace: &str, default_ttl: Duration) -> ServiceCache {
        ServiceCache {
            backend,
            namespace: format!("{namespace}:"),
            default_ttl,
            unconfirmed: Arc::default(),
        }
    }

    /// Retries deleting `key` until the backend confirms it.
    fn retry_delete(&self, key: String) {
        if !self.unconfirmed.insert(&key) {
            return; // already being retried
        }
        let (backend, unconfirmed) = (self.backend.clone(), self.unconfirmed.clone());
        tokio::spawn(async move {
            let mut pause = FIRST_RETRY;
            loop {
                tokio::time::sleep(pause).await;
                if backend.delete(&key).await.is_ok() {
                    unconfirmed.remove(&key);
                    tracing::info!(key, "cache invalidation confirmed after a retry");
                    return;
                }
                pause = (pause * 2).min(LAST_RETRY);
            }
        });
    }

    /// The key as the backend stores it.
    fn key(&self, key: &str) -> Result<String, CacheFailure> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(Failure::Error(CacheError::Invalid(format!(
                "cache keys must be 1..={MAX_KEY_BYTES} bytes"
            ))));
        }
        Ok(format!("{}{key}", self.namespace))
    }
}

/// A cache call's failure: a `cache-error` for the guest, or a trap.
pub type CacheFailure = Failure<CacheError>;

impl From<backend::CacheError> for CacheFailure {
    fn from(error: backend::CacheError) -> Self {
        Failure::Error(CacheError::Unavailable(error.0))
    }
}

impl CallState {
    /// The span of one cache operation (the key is left out: it can name a user).
    fn cache_span(&self, operation: &'static str) -> Option<Trace> {
        self.span(
            || format!("cache {operation}"),
            Kind::Client,
            || {
                vec![
                    Attribute::new("db.system.name", "redis"),
                    Attribute::new("db.operation.name", operation),
                ]
            },
        )
    }
}

impl Host for CallState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, CacheFailure> {
        let cache = granted(&self.capabilities.cache, INTERFACE, self)?;
        let key = cache.key(&key)?;
        if cache.unconfirmed.contains(&key) {
            return Ok(None); // what the backend holds may be stale
        }
        let span = self.cache_span("get");
        let value = cache.backend.get(&key).await;
        if let (Some(span), Ok(value)) = (&span, &value) {
            span.set(Attribute::new("platform.cache.hit", value.is_some()));
        }
        Ok(ended(span, value)?)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u32>,
    ) -> Result<(), CacheFailure> {
        let cache = granted(&self.capabilities.cache, INTERFACE, self)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(Failure::Error(CacheError::Invalid(format!(
                "cache values must be at most {MAX_VALUE_BYTES} bytes"
            ))));
        }
        let ttl = match ttl_seconds {
            Some(0) => {
                return Err(Failure::Error(CacheError::Invalid(
                    "a TTL must be at least 1 second".into(),
                )))
            }
            Some(seconds) => Duration::from_secs(seconds.into()),
            None => cache.default_ttl,
        };
        let key = cache.key(&key)?;
        let span = self.cache_span("set");
        ended(span, cache.backend.set(&key, &value, ttl).await)?;
        // A fresh value replaced whatever a lost invalidation left behind.
        cache.unconfirmed.remove(&key);
        Ok(())
    }

    async fn delete(&mut self, key: String) -> Result<bool, CacheFailure> {
        let cache = granted(&self.capabilities.cache, INTERFACE, self)?;
        let key = cache.key(&key)?;
        let span = self.cache_span("delete");
        match ended(span, cache.backend.delete(&key).await) {
            Ok(existed) => Ok(existed),
            Err(error) => {
                cache.retry_delete(key);
                Err(error.into())
            }
        }
    }

    fn convert_cache_error(&mut self, failure: CacheFailure) -> wasmtime::Result<CacheError> {
        failure.lower()
    }
}
