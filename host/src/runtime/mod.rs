//! Holds the compiled components and runs them: one engine and linker for the whole host,
//! one [`ComponentVersion`] per deployed component, a fresh `Store` and instance per call.

mod component;
mod deployed;
mod engine;
mod invoke;
mod registry;

pub use component::{digest, ComponentVersion, LoadComponentError};
pub use deployed::DeployedService;
pub use engine::{CompiledFrom, Runtime};
pub use invoke::{CallError, CallLimits};
pub use registry::{DeployComponentError, DeployOutcome, Registry};
