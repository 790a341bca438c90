//! The product service's schedules (`[[services.product.schedules]]` in platform.toml).
//!
//! `prune_keys` forgets keyed stock changes past their retention, a bounded batch per run,
//! so the `stock_operations` table stays as small as the keys clients may still repeat.

use crate::routes::service;

/// How long a keyed stock change is answered again: far longer than any client retries.
pub const KEY_RETENTION_SECONDS: i64 = 7 * 24 * 3600;

/// Keys forgotten per run at most.
const PRUNE_BATCH: i64 = 1000;

/// Runs the schedule `name` once.
pub fn run(name: String) -> Result<(), String> {
    match name.as_str() {
        "prune_keys" => {
            let pruned = service()
                .prune_keys(KEY_RETENTION_SECONDS, PRUNE_BATCH)
                .map_err(|error| format!("pruning failed: {error}"))?;
            if pruned > 0 {
                platform_guest::log_info(&format!("forgot {pruned} idempotency key(s)"));
            }
            Ok(())
        }
        other => Err(format!("the product service has no schedule `{other}`")),
    }
}
