//! A canary rollout on one host: the new version beside the stable one, each request's
//! pick between them, the tallies of both, and the verdict the fleet draws from the tallies
//! of every host once the window has passed.

use super::ComponentVersion;
use crate::backends::fleet::TallyReport;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A canary version on this host and how both versions have answered since it came.
pub struct Canary {
    pub version: Arc<ComponentVersion>,
    pub percent: u8,
    pub canary: Tally,
    pub stable: Tally,
}

impl Canary {
    pub fn new(version: Arc<ComponentVersion>, percent: u8) -> Canary {
        Canary {
            version,
            percent,
            canary: Tally::default(),
            stable: Tally::default(),
        }
    }
}

/// Requests, 5xx answers and the time they took.
#[derive(Default)]
pub struct Tally {
    requests: AtomicU64,
    errors: AtomicU64,
    micros: AtomicU64,
}

impl Tally {
    pub(super) fn count(&self, failed: bool, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn read(&self) -> TallyReport {
        TallyReport {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            micros: self.micros.load(Ordering::Relaxed),
        }
    }
}

/// Fewer canary requests than this over the whole fleet say too little: the verdict waits.
const MIN_CANARY_REQUESTS: u64 = 20;
/// How much higher than the stable version's a canary's 5xx rate may be.
const MAX_ERROR_RATE_INCREASE: f64 = 0.05;
/// A canary slower than twice the stable version's mean, plus this, is rolled back.
const LATENCY_ALLOWANCE: Duration = Duration::from_millis(50);

/// What the fleet does with a canary whose window has passed.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not enough canary traffic yet.
    Wait,
    Promote,
    RollBack(String),
}

/// Compares the canary's answers with the stable version's, summed over the fleet.
pub fn judge(canary: TallyReport, stable: TallyReport) -> Verdict {
    if canary.requests < MIN_CANARY_REQUESTS {
        return Verdict::Wait;
    }
    let (canary_rate, stable_rate) = (canary.error_rate(), stable.error_rate());
    if canary_rate > stable_rate + MAX_ERROR_RATE_INCREASE {
        return Verdict::RollBack(format!(
            "5xx on {:.1}% of {} canary requests against {:.1}% of {} stable ones",
            canary_rate * 100.0,
            canary.requests,
            stable_rate * 100.0,
            stable.requests
        ));
    }
    let (canary_mean, stable_mean) = (canary.mean_latency(), stable.mean_latency());
    if stable.requests >= MIN_CANARY_REQUESTS && canary_mean > stable_mean * 2 + LATENCY_ALLOWANCE {
        return Verdict::RollBack(format!(
            "mean latency {canary_mean:?} against the stable version's {stable_mean:?}"
        ));
    }
    Verdict::Promote
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(requests: u64, errors: u64, millis: u64) -> TallyReport {
        TallyReport {
            requests,
            errors,
            micros: requests * millis * 1000,
        }
    }

    #[test]
    fn a_canary_is_promoted_only_when_it_answers_as_well_as_the_stable_version() {
        assert_eq!(judge(tally(5, 0, 1), tally(500, 0, 1)), Verdict::Wait);
        assert_eq!(judge(tally(100, 1, 1), tally(900, 5, 1)), Verdict::Promote);
        assert!(matches!(
            judge(tally(100, 50, 1), tally(900, 0, 1)),
            Verdict::RollBack(reason) if reason.contains("50.0%")
        ));
        assert!(matches!(
            judge(tally(100, 0, 300), tally(900, 0, 10)),
            Verdict::RollBack(reason) if reason.contains("latency")
        ));
        // A stable version that fails as often is no reason to roll back.
        assert_eq!(
            judge(tally(100, 50, 1), tally(900, 430, 1)),
            Verdict::Promote
        );
    }
}
