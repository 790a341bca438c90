//! Holds the compiled components and runs them: one engine and linker for the whole host,
//! one [`ComponentVersion`] per loaded component with its route table, a fresh `Store` and
//! instance per call (or, opted in, one reused between HTTP requests), and the [`Registry`]: the one path every version takes to serve.

mod admission;
pub mod canary;
mod component;
pub mod deployments;
mod engine;
mod instances;
mod invoke;
mod registry;
pub mod routes;
mod service;

pub use admission::{Admission, Overloaded};
pub use canary::{judge, Canary, Verdict};
pub use component::{digest, ComponentVersion, LoadComponentError};
pub use deployments::{Deployments, DeploymentsError, Fleet};
pub use engine::{CompiledFrom, Runtime};
pub use invoke::{CallError, CallLimits};
pub use registry::{Converged, DeployComponentError, DeployOutcome, Registry, StartServiceError};
pub use service::{DeployedService, Service, SyncState};
