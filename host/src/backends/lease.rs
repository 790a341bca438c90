//! Which host runs a schedule when several share one PostgreSQL server.
//!
//! A lease is a PostgreSQL session-level advisory lock, held on one connection of its own
//! for as long as the host lives: the host that takes it runs the schedule at every tick,
//! the others find it taken and stand by. When the holder stops, or its connection breaks,
//! the server frees the lock and the next host to try takes over. Without PostgreSQL the
//! databases are this host's own SQLite files, so this host always holds every lease.

use async_trait::async_trait;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why it is unknown whether this host holds a lease (it then does not run).
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease server unreachable: {0}")]
    Unavailable(String),
}

/// Exclusive leases by name across the hosts that share a database server.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Whether this host holds the lease `name`, taking it if it is free.
    async fn hold(&self, name: &str) -> Result<bool, LeaseError>;
}

/// Every lease, always: the host is alone with its databases.
pub struct LocalLeases;

#[async_trait]
impl Leases for LocalLeases {
    async fn hold(&self, _name: &str) -> Result<bool, LeaseError> {
        Ok(true)
    }
}

/// Leases as advisory locks on a PostgreSQL server.
pub struct PostgresLeases {
    server: PgConnectOptions,
    session: tokio::sync::Mutex<Session>,
}

/// The connection the locks live on, and the locks taken on it.
#[derive(Default)]
struct Session {
    connection: Option<PgConnection>,
    held: HashSet<i64>,
}

impl PostgresLeases {
    /// Leases on the server behind `server_url` (connected on first use).
    pub fn new(server_url: &str) -> Result<PostgresLeases, sqlx::Error> {
        Ok(PostgresLeases {
            server: PgConnectOptions::from_str(server_url)?.application_name("platform-leases"),
            session: tokio::sync::Mutex::new(Session::default()),
        })
    }
}

#[async_trait]
impl Leases for PostgresLeases {
    async fn hold(&self, name: &str) -> Result<bool, LeaseError> {
        let key = lock_key(name);
        let mut session = self.session.lock().await;
        if session.connection.is_none() {
            let connection = tokio::time::timeout(CONNECT_TIMEOUT, self.server.connect())
                .await
                .map_err(|_| LeaseError::Unavailable("connect timed out".into()))?
                .map_err(|error| LeaseError::Unavailable(error.to_string()))?;
            session.connection = Some(connection);
            session.held.clear();
        }
        let Session { connection, held } = &mut *session;
        let connection = connection.as_mut().expect("connected above");
        let answer = if held.contains(&key) {
            // Still ours while the session lives; a broken session freed it on the server.
            tokio::time::timeout(CONNECT_TIMEOUT, connection.ping())
                .await
                .map_err(|_| "ping timed out".to_string())
                .and_then(|result| result.map_err(|error| error.to_string()))
                .map(|()| true)
        } else {
            tokio::time::timeout(
                CONNECT_TIMEOUT,
                sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                    .bind(key)
                    .fetch_one(&mut *connection),
            )
            .await
            .map_err(|_| "lock timed out".to_string())
            .and_then(|result| result.map_err(|error| error.to_string()))
        };
        match answer {
            Ok(taken) => {
                if taken {
                    held.insert(key);
                }
                Ok(taken)
            }
            Err(cause) => {
                // The session is unusable; its locks are gone with it. Start afresh next time.
                session.connection = None;
                session.held.clear();
                Err(LeaseError::Unavailable(cause))
            }
        }
    }
}

/// The advisory lock key of a lease: 64-bit FNV-1a of its name, stable across hosts and
/// releases.
fn lock_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        // Hosts of different builds must agree on the key: it is fixed by the algorithm.
        assert_eq!(lock_key(""), 0xcbf2_9ce4_8422_2325_u64 as i64);
        assert_eq!(lock_key("a"), 0xaf63_dc4c_8601_ec8c_u64 as i64);
        assert_ne!(
            lock_key("schedule order_service/settle"),
            lock_key("schedule order_service/prune")
        );
    }
}
