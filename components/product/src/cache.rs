//! The host's cache capability behind the service's `ProductCache` trait.

use crate::service::ProductCache;
use platform_guest::cache::{self, CacheError};

/// The service's namespace of the shared cache (the host prefixes the keys).
pub struct HostCache;

fn describe(error: CacheError) -> String {
    match error {
        CacheError::Unavailable(cause) => format!("unavailable: {cause}"),
        CacheError::Invalid(cause) => format!("invalid: {cause}"),
    }
}

impl ProductCache for HostCache {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        cache::get(key).map_err(describe)
    }

    fn set(&self, key: &str, value: &[u8], ttl_seconds: u32) -> Result<(), String> {
        cache::set(key, value, Some(ttl_seconds)).map_err(describe)
    }

    fn delete(&self, key: &str) -> Result<(), String> {
        cache::delete(key).map(|_existed| ()).map_err(describe)
    }
}
