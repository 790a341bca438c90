//! Where a host keeps its services' deployed versions and history: its own state
//! directory, or, in a fleet, the registry in PostgreSQL that every host of the fleet
//! shares (the state directory then keeps only the compiled-code cache).

use crate::backends::fleet::{DesiredVersion, FleetError, FleetStore, Strategy};
use crate::state::{DeployRecord, StateDir, StateError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why the deployments could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentsError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

/// A host's fleet: the shared registry, and this host's name in it.
pub struct Fleet {
    pub store: FleetStore,
    pub host: String,
}

pub enum Deployments {
    Local(Arc<StateDir>),
    Fleet(Arc<Fleet>),
}

impl Deployments {
    pub fn fleet(&self) -> Option<&Arc<Fleet>> {
        match self {
            Deployments::Local(_) => None,
            Deployments::Fleet(fleet) => Some(fleet),
        }
    }

    /// Fails fast, before a version is compiled and checked, when it could not be recorded:
    /// a fleet whose registry is unreachable takes no deploy (they wait; hosts serve on).
    pub async fn check_writable(&self) -> Result<(), DeploymentsError> {
        match self {
            Deployments::Local(_) => Ok(()),
            Deployments::Fleet(fleet) => Ok(fleet.store.ping().await?),
        }
    }

    /// The deploys of `service`, oldest first.
    pub async fn history(&self, service: &str) -> Result<Vec<DeployRecord>, DeploymentsError> {
        match self {
            Deployments::Local(state) => Ok(state.history(service)?),
            Deployments::Fleet(fleet) => Ok(fleet.store.history(service).await?),
        }
    }

    /// The bytes of a recorded version.
    pub async fn component(
        &self,
        service: &str,
        digest: &str,
    ) -> Result<Vec<u8>, DeploymentsError> {
        match self {
            Deployments::Local(state) => Ok(state.component(service, digest)?),
            Deployments::Fleet(fleet) => Ok(fleet.store.component(service, digest).await?),
        }
    }

    /// Every service's desired version: in a fleet, what the registry says; alone, none
    /// (the host's own history decides).
    pub async fn desired(&self) -> Result<BTreeMap<String, DesiredVersion>, DeploymentsError> {
        match self {
            Deployments::Local(_) => Ok(BTreeMap::new()),
            Deployments::Fleet(fleet) => Ok(fleet.store.desired().await?),
        }
    }

    /// Records a version that passed the load path. `first_start`: the version a host
    /// serves because nothing was recorded for it; a fleet that already has a desired
    /// version keeps it. Answers whether the version was recorded.
    pub async fn record(
        &self,
        service: &str,
        bytes: Arc<Vec<u8>>,
        record: DeployRecord,
        strategy: Strategy,
        first_start: bool,
    ) -> Result<bool, DeploymentsError> {
        match self {
            Deployments::Local(state) => {
                let state = state.clone();
                let service = service.to_string();
                tokio::task::spawn_blocking(move || state.record(&service, &bytes, record))
                    .await
                    .expect("recording a deploy does not panic")?;
                Ok(true)
            }
            Deployments::Fleet(fleet) => Ok(fleet
                .store
                .record(service, &bytes, &record, strategy, first_start)
                .await?),
        }
    }
}
