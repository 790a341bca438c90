//! The `config` interface: the service's `[services.<name>.config]` values.

use super::CallState;
use crate::bindings::config::Host;

impl Host for CallState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.capabilities.config.get(&key).cloned())
    }
}
