//! The `cache` interface over the shared cache backend, with every key prefixed by the
//! service's namespace so services never see each other's keys.

use super::{granted, CallState, Failure, Grant, GrantError, ServiceCapabilities};
use crate::backends::cache::{self as backend, Cache};
use crate::bindings::cache::{CacheError, Host};
use std::sync::Arc;
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
}

impl ServiceCache {
    pub fn new(backend: Arc<dyn Cache>, namespace: &str, default_ttl: Duration) -> ServiceCache {
        ServiceCache {
            backend,
            namespace: format!("{namespace}:"),
            default_ttl,
        }
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

impl Host for CallState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, CacheFailure> {
        let cache = granted(&self.capabilities.cache, INTERFACE, self)?;
        Ok(cache.backend.get(&cache.key(&key)?).await?)
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
        Ok(cache.backend.set(&cache.key(&key)?, &value, ttl).await?)
    }

    async fn delete(&mut self, key: String) -> Result<bool, CacheFailure> {
        let cache = granted(&self.capabilities.cache, INTERFACE, self)?;
        Ok(cache.backend.delete(&cache.key(&key)?).await?)
    }

    fn convert_cache_error(&mut self, failure: CacheFailure) -> wasmtime::Result<CacheError> {
        failure.lower()
    }
}
