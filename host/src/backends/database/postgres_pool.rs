//! The connections a service's PostgreSQL database runs its statements on.
//!
//! sqlx 0.8's pool pings a connection (a round trip to the server) each time it hands one
//! out and again, from a task it spawns, each time one comes back: a call of one statement
//! cost three round trips, and every transaction two more than its statements. This pool takes its connections from sqlx's pool once and
//! keeps them checked out, so neither ping happens on the way. It pings only a connection
//! that sat idle longer than [`PING_AFTER_IDLE`] (the server may have closed it meanwhile),
//! and it never reuses a connection whose state it cannot vouch for: one whose statement was
//! cancelled midway (a call's deadline), one that failed as a connection, one that kept a
//! transaction open after its owner was dropped (rolled back first, then reused).

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Executor, PgConnection, PgPool, Postgres};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An idle connection used after this long is pinged first: one the server closed while
/// it sat idle (a restart, an idle timeout) then fails no statement. Under load a
/// connection is back in use within milliseconds and never pinged.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);
/// An idle connection unused for this long is closed, so a quiet service holds none.
const CLOSE_AFTER_IDLE: Duration = Duration::from_secs(300);

pub(super) struct PostgresPool {
    /// Opens the connections (with the role, the statement timeout and the bound on how
    /// many exist), and hands out none that this pool does not hold.
    opener: PgPool,
    /// One per connection that may be in use; a waiter gets one back in release order.
    permits: Arc<Semaphore>,
    /// Connections not in use, the most recently used last.
    idle: Mutex<Vec<(PoolConnection<Postgres>, Instant)>>,
    acquire_timeout: Duration,
}

/// Why no connection was leased.
#[derive(Debug, thiserror::Error)]
pub(super) enum AcquireError {
    #[error("no database connection became free within {0:?}")]
    TimedOut(Duration),
    #[error("cannot open a database connection: {0}")]
    Open(#[source] sqlx::Error),
}

impl PostgresPool {
    /// `opener` must allow `max_connections` connections, and nothing else may take them.
    pub(super) fn new(
        opener: PgPool,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Arc<PostgresPool> {
        Arc::new(PostgresPool {
            opener,
            permits: Arc::new(Semaphore::new(max_connections as usize)),
            idle: Mutex::new(Vec::new()),
            acquire_timeout,
        })
    }

    /// A connection of this pool's own, waiting at most the acquire timeout for one.
    pub(super) async fn acquire(self: &Arc<Self>) -> Result<Lease, AcquireError> {
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        let permit = tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| AcquireError::TimedOut(self.acquire_timeout))?
            .expect("the semaphore is never closed");
        loop {
            let next = self.idle.lock().expect("never poisoned").pop();
            let Some((mut connection, since)) = next else {
                break;
            };
            // Within the acquire timeout: a ping on a connection whose peer went silent (a
            // partition) would otherwise wait for ever.
            let alive = since.elapsed() < PING_AFTER_IDLE
                || matches!(
                    tokio::time::timeout_at(deadline, connection.ping()).await,
                    Ok(Ok(()))
                );
            if alive {
                return Ok(Lease::new(connection, permit, self));
            }
            drop(connection.detach());
        }
        // Below the bound (this lease's permit says so): sqlx opens one at once.
        let connection = tokio::time::timeout_at(deadline, self.opener.acquire())
            .await
            .map_err(|_| AcquireError::TimedOut(self.acquire_timeout))?
            .map_err(AcquireError::Open)?;
        Ok(Lease::new(connection, permit, self))
    }

    fn put_back(&self, connection: PoolConnection<Postgres>) {
        let mut idle = self.idle.lock().expect("never poisoned");
        // The longest idle is first: close it when the service has not needed it for long.
        if idle
            .first()
            .is_some_and(|(_, since)| since.elapsed() > CLOSE_AFTER_IDLE)
        {
            let (stale, _) = idle.remove(0);
            drop(stale.detach());
        }
        idle.push((connection, Instant::now()));
    }
}

/// A connection leased to one statement or one transaction; dropping it gives it back.
pub(super) struct Lease {
    connection: Option<PoolConnection<Postgres>>,
    /// Released after the connection is back in the pool, so that a waiter that gets it
    /// finds the connection there.
    permit: Option<OwnedSemaphorePermit>,
    pool: Arc<PostgresPool>,
    /// A statement started and has not ended: if the lease is dropped now, the
    /// connection is mid-statement.
    busy: bool,
    broken: bool,
    in_transaction: bool,
}

impl Lease {
    fn new(
        connection: PoolConnection<Postgres>,
        permit: OwnedSemaphorePermit,
        pool: &Arc<PostgresPool>,
    ) -> Lease {
        Lease {
            connection: Some(connection),
            permit: Some(permit),
            pool: pool.clone(),
            busy: false,
            broken: false,
            in_transaction: false,
        }
    }

    /// The connection for one statement; pass its result to [`Lease::settle`].
    pub(super) fn start(&mut self) -> &mut PgConnection {
        self.busy = true;
        self.connection.as_mut().expect("held until dropped")
    }

    /// Ends the statement [`Lease::start`] began; a connection that failed as a connection
    /// is closed when the lease ends.
    pub(super) fn settle<T, E>(
        &mut self,
        result: Result<T, E>,
        breaks_connection: impl FnOnce(&E) -> bool,
    ) -> Result<T, E> {
        self.busy = false;
        if let Err(error) = &result {
            self.broken |= breaks_connection(error);
        }
        result
    }

    /// Whether the connection has a transaction open, which dropping the lease rolls back.
    pub(super) fn set_in_transaction(&mut self, open: bool) {
        self.in_transaction = open;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut connection) = self.connection.take() else {
            return;
        };
        let permit = self.permit.take();
        if self.busy || self.broken {
            drop(connection.detach());
            return;
        }
        if !self.in_transaction {
            self.pool.put_back(connection);
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(connection.detach());
            return;
        };
        let pool = self.pool.clone();
        runtime.spawn(async move {
            // Bounded like an acquire: a silent peer must not keep the permit for ever.
            let rollback = (&mut *connection).execute("ROLLBACK");
            match tokio::time::timeout(pool.acquire_timeout, rollback).await {
                Ok(Ok(_)) => pool.put_back(connection),
                _ => drop(connection.detach()),
            }
            drop(permit);
        });
    }
}
