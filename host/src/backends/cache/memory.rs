//! The in-process cache (moka) used when no Redis is configured.

use super::{Cache, CacheError};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The in-process cache used when no Redis is configured: expiry per key like `SET EX`,
/// and a bound on the bytes held (keys and values), evicting the least useful entries.
pub struct MemoryCache {
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

impl MemoryCache {
    pub fn new(max_bytes: u64) -> MemoryCache {
        MemoryCache {
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
impl Cache for MemoryCache {
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
        let cache = MemoryCache::new(1 << 20);
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
        let cache = MemoryCache::new(1 << 20);
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
        let cache = MemoryCache::new(bound);
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
