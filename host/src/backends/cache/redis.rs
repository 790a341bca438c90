//! Redis behind a multiplexed, self-reconnecting connection.

use super::{Cache, CacheError};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
            return Err(CacheError("redis is unreachable".into()));
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
                Ok(Err(error)) => Err(CacheError(error.to_string())),
                Err(_) => Err(CacheError("redis connection timed out".into())),
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
            Ok(Err(error)) => Err(CacheError(error.to_string())),
            Err(_) => Err(CacheError("redis did not answer in time".into())),
        }
    }
}

#[async_trait]
impl Cache for RedisCache {
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
