//! Per-service load shedding: at most `max_concurrent` calls of a service run at once, at
//! most `max_queued` more wait their turn (first come, first served), and none waits longer
//! than `queue_timeout`. Past that a call is refused at once, so a flood on one service
//! costs its own callers a fast 503, never the other services their instances or cores.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Why a call was refused before it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overloaded {
    #[error("{0} requests are already waiting")]
    QueueFull(usize),
    #[error("no turn within {0:?}")]
    QueueTimeout(Duration),
    /// A host resource the call needed (bcrypt's workers, say) is saturated.
    #[error("{0} is saturated")]
    Saturated(&'static str),
}

pub struct Admission {
    running: Semaphore,
    waiting: AtomicUsize,
    max_queued: usize,
    queue_timeout: Duration,
}

/// Counts a waiting call for as long as it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    pub fn new(max_concurrent: usize, max_queued: usize, queue_timeout: Duration) -> Admission {
        Admission {
            running: Semaphore::new(max_concurrent),
            waiting: AtomicUsize::new(0),
            max_queued,
            queue_timeout,
        }
    }

    /// A turn to run, held until the permit drops.
    pub async fn admit(&self) -> Result<SemaphorePermit<'_>, Overloaded> {
        if let Ok(permit) = self.running.try_acquire() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_queued {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(Overloaded::QueueFull(self.max_queued));
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.queue_timeout, self.running.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Overloaded::QueueTimeout(self.queue_timeout)),
        }
    }

    /// Calls running now.
    pub fn running(&self, max_concurrent: usize) -> usize {
        max_concurrent.saturating_sub(self.running.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_queue_calls_are_refused_at_once_and_waiters_time_out() {
        let admission = Admission::new(1, 1, Duration::from_millis(200));
        let first = admission.admit().await.unwrap();
        let waiter = admission.admit();
        tokio::pin!(waiter);
        // The waiter is queued (polled once), so the next call finds the queue full.
        assert!(futures::poll!(waiter.as_mut()).is_pending());
        assert_eq!(
            admission.admit().await.unwrap_err(),
            Overloaded::QueueFull(1)
        );
        assert_eq!(
            waiter.await.unwrap_err(),
            Overloaded::QueueTimeout(Duration::from_millis(200))
        );
        drop(first);
        assert!(admission.admit().await.is_ok());
    }

    #[tokio::test]
    async fn a_waiter_runs_when_a_turn_frees_up() {
        let admission = Admission::new(1, 4, Duration::from_secs(5));
        let first = admission.admit().await.unwrap();
        let waiter = admission.admit();
        tokio::pin!(waiter);
        assert!(futures::poll!(waiter.as_mut()).is_pending());
        drop(first);
        assert!(waiter.await.is_ok());
        assert_eq!(admission.running(1), 0);
    }
}
