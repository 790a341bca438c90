//! A key-value store with expiry shared by the services: Redis ([`redis`]) or an
//! in-process cache ([`memory`]). Keys arrive already namespaced by the `cache` capability.

mod memory;
mod redis;

pub use self::memory::MemoryCache;
pub use self::redis::RedisCache;

use async_trait::async_trait;
use std::time::Duration;

/// Why a cache call failed: the backend is unreachable or did not answer in time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cache unavailable: {0}")]
pub struct CacheError(pub String);

#[async_trait]
pub trait Cache: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;
    async fn delete(&self, key: &str) -> Result<bool, CacheError>;
}

/// The cache `[cache]` names: Redis at its URL, else the in-process one. Says which.
pub fn open(
    settings: &crate::config::CacheConfig,
) -> Result<std::sync::Arc<dyn Cache>, ::redis::RedisError> {
    Ok(match &settings.url {
        Some(url) => {
            let redis = RedisCache::new(url, Duration::from_millis(settings.timeout_ms))?;
            tracing::info!(url = %crate::config::redact_url(url), "cache: Redis");
            std::sync::Arc::new(redis)
        }
        None => {
            let max_mb = settings.embedded_max_mb;
            tracing::info!(
                max_mb,
                "cache: embedded, in process memory (set REDIS_URL or [cache] url for Redis)"
            );
            std::sync::Arc::new(MemoryCache::new(max_mb * 1024 * 1024))
        }
    })
}
