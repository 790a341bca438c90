//! The `config` interface: the service's `[services.<name>.config]` values.

use super::{granted, CallState, Grant, GrantError, ServiceCapabilities};
use crate::bindings::config::Host;
use std::collections::BTreeMap;

const INTERFACE: &str = "config";

/// A service's configuration values, environment overrides applied.
pub type ServiceValues = BTreeMap<String, String>;

pub(super) fn grant(grant: &Grant<'_>, into: &mut ServiceCapabilities) -> Result<(), GrantError> {
    into.config = Some(grant.config.config.clone());
    Ok(())
}

impl Host for CallState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        let values = granted(&self.capabilities.config, INTERFACE, self)?;
        Ok(values.get(&key).cloned())
    }
}
