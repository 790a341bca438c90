//! The `cache` interface over a [`CacheBackend`] (Redis, or an in-process cache), with every
//! key prefixed by the service's namespace so services never see each other's keys.

use super::CallState;
use crate::bindings::cache::{CacheError, Host};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A key-value store with expiry shared by the services (keys arrive already namespaced).
#[async_trait]
pub trait CacheBackend: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;
    async fn delete(&self, key: &str) -> Result<bool, CacheError>;
}

/// One service's view of the cache: its namespace and default TTL.
#[derive(Clone)]
pub struct ServiceCache {
    backend: Arc<dyn CacheBackend>,
    namespace: String,
    default_ttl: Duration,
}

/// Longest key a component may use; keeps Redis memory and logs sane.
const MAX_KEY_BYTES: usize = 1024;
/// Largest value a component may store.
const MAX_VALUE_BYTES: usize = 1024 * 1024;

impl ServiceCache {
    pub fn new(
        backend: Arc<dyn CacheBackend>,
        namespace: &str,
        default_ttl: Duration,
    ) -> ServiceCache {
        ServiceCache {
            backend,
            namespace: format!("{namespace}:"),
            default_ttl,
        }
    }

    fn key(&self, key: &str) -> Result<String, CacheError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(CacheError::Invalid(format!(
                "cache keys must be 1..={MAX_KEY_BYTES} bytes"
            )));
        }
        Ok(format!("{}{key}", self.namespace))
    }
}

impl Host for CallState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, CacheError>> {
        let Some(cache) = &self.capabilities.cache else {
            return Ok(Err(not_configured()));
        };
        Ok(match cache.key(&key) {
            Ok(key) => cache.backend.get(&key).await,
            Err(error) => Err(error),
        })
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<(), CacheError>> {
        let Some(cache) = &self.capabilities.cache else {
            return Ok(Err(not_configured()));
        };
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(CacheError::Invalid(format!(
                "cache values must be at most {MAX_VALUE_BYTES} bytes"
            ))));
        }
        let ttl = match ttl_seconds {
            Some(0) => {
                return Ok(Err(CacheError::Invalid(
                    "a TTL must be at least 1 second".into(),
                )))
            }
            Some(seconds) => Duration::from_secs(seconds.into()),
            None => cache.default_ttl,
        };
        Ok(match cache.key(&key) {
            Ok(key) => cache.backend.set(&key, &value, ttl).await,
            Err(error) => Err(error),
        })
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, CacheError>> {
        let Some(cache) = &self.capabilities.cache else {
            return Ok(Err(not_configured()));
        };
        Ok(match cache.key(&key) {
            Ok(key) => cache.backend.delete(&key).await,
            Err(error) => Err(error),
        })
    }
}

fn not_configured() -> CacheError {
    CacheError::Unavailable("no cache is configured for this service".into())
}

/// Redis behind a multiplexed, self-reconnecting connection. Every call is bounded by a
/// short timeout: a cache that is down must cost a request milliseconds, not seconds.
pub struct RedisCache {
    client: redis::Client,
    /// Set by the first successful connection and kept: the manager reconnects by itself,
    /// so after that a call only clones it (no lock on the request path).
    connection: tokio::sync::OnceCell<ConnectionManager>,
    timeout: Duration,
    /// Milliseconds since `started` of the last failed connection attempt; while Redis is
    /// down, calls fail at once instead of each paying a connection timeout.
    last_failure_ms: AtomicU64,
    started: Instant,
}

/// Pause between connection attempts while Redis is down.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

impl RedisCache {
    pub fn new(url: &str, timeout: Duration) -> Result<RedisCache, redis::RedisError> {
        Ok(RedisCache {
            client: redis::Client::open(url)?,
            connection: tokio::sync::OnceCell::new(),
            timeout,
            last_failure_ms: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, CacheError> {
        if let Some(connection) = self.connection.get() {
            return Ok(connection.clone());
        }
        let now = self.started.elapsed().as_millis() as u64;
        let last_failure = self.last_failure_ms.load(Ordering::Relaxed);
        if last_failure != 0
            && now.saturating_sub(last_failure) < RECONNECT_PAUSE.as_millis() as u64
        {
            return Err(CacheError::Unavailable("redis is unreachable".into()));
        }
        let connect = || async {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(self.timeout)
                .set_response_timeout(self.timeout)
                .set_number_of_retries(1);
            match tokio::time::timeout(
                self.timeout * 2,
                ConnectionManager::new_with_config(self.client.clone(), config),
            )
            .await
            {
                Ok(Ok(connection)) => Ok(connection),
                Ok(Err(error)) => Err(CacheError::Unavailable(error.to_string())),
                Err(_) => Err(CacheError::Unavailable("redis connection timed out".into())),
            }
        };
        match self.connection.get_or_try_init(connect).await {
            Ok(connection) => Ok(connection.clone()),
            Err(error) => {
                self.last_failure_ms.store(now.max(1), Ordering::Relaxed);
                Err(error)
            }
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, CacheError> {
        let mut connection = self.connection().await?;
        match tokio::time::timeout(self.timeout, command.query_async::<T>(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(CacheError::Unavailable(error.to_string())),
            Err(_) => Err(CacheError::Unavailable(
                "redis did not answer in time".into(),
            )),
        }
    }
}

#[async_trait]
impl CacheBackend for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.run(redis::Cmd::get(key)).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        self.run(redis::Cmd::set_ex(key, value, ttl.as_secs().max(1)))
            .await
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let removed: u64 = self.run(redis::Cmd::del(key)).await?;
        Ok(removed > 0)
    }
}

/// The in-process cache used when no Redis is configured: expiry per key like `SET EX`,
/// and a bound on the bytes held (keys and values), evicting the least useful entries.
pub struct EmbeddedCache {
    entries: moka::future::Cache<String, CachedValue>,
}

#[derive(Clone)]
struct CachedValue {
    bytes: Arc<[u8]>,
    ttl: Duration,
}

/// Each entry lives for the TTL it was set with; setting it again restarts the clock.
struct SetTtl;

impl moka::Expiry<String, CachedValue> for SetTtl {
    fn expire_after_create(&self, _: &String, value: &CachedValue, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &CachedValue,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl EmbeddedCache {
    pub fn new(max_bytes: u64) -> EmbeddedCache {
        EmbeddedCache {
            entries: moka::future::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &String, value: &CachedValue| {
                    u32::try_from(key.len() + value.bytes.len()).unwrap_or(u32::MAX)
                })
                .expire_after(SetTtl)
                .build(),
        }
    }
}

#[async_trait]
impl CacheBackend for EmbeddedCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self
            .entries
            .get(key)
            .await
            .map(|value| value.bytes.to_vec()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let value = CachedValue {
            bytes: value.into(),
            ttl,
        };
        self.entries.insert(key.to_string(), value).await;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        Ok(self.entries.remove(key).await.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn embedded_entries_expire_after_their_ttl() {
        let cache = EmbeddedCache::new(1 << 20);
        cache
            .set("short", b"1", Duration::from_millis(300))
            .await
            .unwrap();
        cache
            .set("long", b"2", Duration::from_secs(300))
            .await
            .unwrap();
        assert_eq!(
            cache.get("short").await.unwrap().as_deref(),
            Some(&b"1"[..])
        );
        let set_at = Instant::now();
        // Poll until the short entry is gone; it must not outlive its TTL by much.
        while cache.get("short").await.unwrap().is_some() {
            assert!(set_at.elapsed() < Duration::from_secs(5), "never expired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            set_at.elapsed() >= Duration::from_millis(250),
            "expired early"
        );
        assert_eq!(cache.get("long").await.unwrap().as_deref(), Some(&b"2"[..]));
    }

    #[tokio::test]
    async fn embedded_set_replaces_and_delete_invalidates() {
        let cache = EmbeddedCache::new(1 << 20);
        cache
            .set("k", b"old", Duration::from_secs(60))
            .await
            .unwrap();
        cache
            .set("k", b"new", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"new"[..]));
        assert!(cache.delete("k").await.unwrap());
        assert_eq!(cache.get("k").await.unwrap(), None);
        assert!(!cache.delete("k").await.unwrap());
    }

    #[tokio::test]
    async fn embedded_cache_stays_within_its_size_bound() {
        let bound = 256 * 1024;
        let cache = EmbeddedCache::new(bound);
        let value = vec![7u8; 1000];
        // Forty times the bound, written through the same interface components use.
        for index in 0..10_000 {
            let key = format!("product:{index}");
            cache
                .set(&key, &value, Duration::from_secs(300))
                .await
                .unwrap();
        }
        cache.entries.run_pending_tasks().await;
        let held = cache.entries.weighted_size();
        assert!(held <= bound, "holds {held} bytes, bound {bound}");
        assert!(
            held > bound / 2,
            "evicted far more than needed: {held} bytes left"
        );
        let mut present = 0;
        for index in 0..10_000 {
            if cache
                .get(&format!("product:{index}"))
                .await
                .unwrap()
                .is_some()
            {
                present += 1;
            }
        }
        assert!(
            present > 0 && present <= (bound / 1000) as usize,
            "{present} entries present"
        );
    }
}
