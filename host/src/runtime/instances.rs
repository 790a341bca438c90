//! Instances kept between a version's HTTP requests, for a service that opts in
//! (`[services.<name>.instances] reuse = true`). A request takes the instance used last
//! (its memory is warm), and gives it back once it answered. An instance is never given
//! back after a trap, a timeout, or with a transaction still open; it is dropped after
//! `max_requests` requests, after `idle_timeout_seconds` unused, and when its version
//! stops serving. Instances never cross versions, let alone services.

use super::invoke::HandleFunc;
use crate::capabilities::CallState;
use crate::config::InstancesConfig;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use wasmtime::Store;

/// An instance between two requests.
pub(super) struct Idle {
    pub store: Store<CallState>,
    /// Its `handle` export.
    pub handle: HandleFunc,
    /// Requests it has served.
    pub served: u32,
    since: Instant,
}

/// One version's idle instances, the one used last at the end.
type IdleList = Mutex<Vec<Idle>>;

pub(super) struct InstanceReuse {
    max_requests: u32,
    idle_timeout: Duration,
    /// At most this many idle: the service's `max_concurrent`, so that reuse never holds
    /// more of the engine's instance slots than the service's share.
    capacity: usize,
    idle: Arc<IdleList>,
}

impl InstanceReuse {
    /// `None` unless the service opted in. Starts the sweep that drops instances left idle
    /// too long; it ends with the version.
    pub fn new(config: &InstancesConfig, capacity: usize) -> Option<InstanceReuse> {
        if !config.reuse {
            return None;
        }
        let reuse = InstanceReuse {
            max_requests: config.max_requests,
            idle_timeout: Duration::from_secs(config.idle_timeout_seconds),
            capacity,
            idle: Arc::new(Mutex::new(Vec::new())),
        };
        tokio::spawn(sweep(Arc::downgrade(&reuse.idle), reuse.idle_timeout));
        Some(reuse)
    }

    /// The instance used last, unless it has been idle too long (then all are).
    pub fn take(&self) -> Option<Idle> {
        let mut idle = self.idle.lock().expect("idle instances");
        let last = idle.pop()?;
        if last.since.elapsed() < self.idle_timeout {
            return Some(last);
        }
        let expired = std::mem::take(&mut *idle);
        drop(idle);
        drop((last, expired));
        None
    }

    /// Keeps an instance that answered, unless it has served its share or the list is full.
    pub fn give_back(&self, store: Store<CallState>, handle: HandleFunc, served: u32) {
        if served >= self.max_requests {
            return;
        }
        let mut idle = self.idle.lock().expect("idle instances");
        if idle.len() < self.capacity {
            idle.push(Idle {
                store,
                handle,
                served,
                since: Instant::now(),
            });
        }
    }

    /// Drops every idle instance: the version no longer serves.
    pub fn clear(&self) {
        let dropped = std::mem::take(&mut *self.idle.lock().expect("idle instances"));
        drop(dropped);
    }
}

/// Every `idle_timeout`, drops the instances idle longer than that (outside the lock: a
/// store's drop resets its memory).
async fn sweep(idle: Weak<IdleList>, idle_timeout: Duration) {
    loop {
        tokio::time::sleep(idle_timeout).await;
        let Some(idle) = idle.upgrade() else {
            return;
        };
        let expired: Vec<Idle> = {
            let mut list = idle.lock().expect("idle instances");
            let fresh = list
                .iter()
                .position(|instance| instance.since.elapsed() < idle_timeout)
                .unwrap_or(list.len());
            list.drain(..fresh).collect()
        };
        drop(expired);
    }
}
