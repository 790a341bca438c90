//! Loading a component: compile, check its imports against the service's grants, check
//! its exports, pre-instantiate, and read its route table. All of this happens once per
//! deployed version, never per request.

use super::engine::CompiledFrom;
use super::instances::InstanceReuse;
use super::invoke::{CallError, Exports};
use super::routes::{RouteTable, RouteTableError};
use super::{Runtime, Service};
use crate::bindings::http_types::Route;
use crate::bindings::ServicePre;
use crate::capabilities::{self, CallState};
use crate::config::ServiceConfig;
use crate::state::{DeployRecord, DeploySource};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use wasmtime::component::Component;

/// The WIT package every platform interface belongs to.
const PLATFORM_PACKAGE: &str = "platform:service/";

/// The version of that package this host implements (`wit/world.wit`).
pub const PLATFORM_VERSION: &str = "0.2.0";

/// Why a component was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadComponentError {
    #[error("not a valid component: {0:#}")]
    Compile(wasmtime::Error),
    #[error("the component imports `{interface}`, which this service was not granted (add \"{interface}\" to `grants` in platform.toml if it should be)")]
    UngrantedImport { interface: String },
    #[error("the component imports `{0}`, which the platform does not provide")]
    UnknownImport(String),
    #[error("the component was built against platform:service@{found}, this host provides @{PLATFORM_VERSION}: rebuild it against this release's wit/")]
    WitVersion { found: String },
    #[error("the component does not target the platform:service/service world: {0:#}")]
    MissingExport(wasmtime::Error),
    #[error("reading the route table failed: {0}")]
    RouteTable(CallError),
    #[error("invalid route table: {0}")]
    InvalidRoutes(RouteTableError),
}

/// One compiled, checked and pre-instantiated version of a service's component.
pub struct ComponentVersion {
    /// The deploy that brought this version in (its digest, when, by which command).
    pub record: DeployRecord,
    pub(super) pre: ServicePre<CallState>,
    /// The exports calls enter.
    pub(super) exports: Exports,
    /// The routes the component declared, in its order (a request names one by index).
    pub routes: Vec<Route>,
    /// The same routes, for matching requests.
    pub route_table: RouteTable,
    /// Whether the machine code came from the compiled-code cache.
    pub compiled_from: CompiledFrom,
    /// Idle instances, when the service reuses them.
    pub(super) reuse: Option<InstanceReuse>,
}

/// SHA-256 of a component's bytes, hex: the identity of a version.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ComponentVersion {
    /// Compiles (or loads from the compiled-code cache) and checks `bytes` for `service`:
    /// imports against the grants, exports against the world, the route table. Compilation
    /// runs on the blocking pool.
    pub async fn load(
        runtime: &Runtime,
        service: &Service,
        bytes: Arc<Vec<u8>>,
        source: DeploySource,
    ) -> Result<ComponentVersion, LoadComponentError> {
        let digest = digest(&bytes);
        let compiler = runtime.clone();
        let key = digest.clone();
        let (component, compiled_from) =
            tokio::task::spawn_blocking(move || compiler.compile(&key, &bytes))
                .await
                .map_err(|join| {
                    LoadComponentError::Compile(wasmtime::Error::msg(join.to_string()))
                })?
                .map_err(LoadComponentError::Compile)?;

        check_wit_version(&runtime.engine, &component)?;
        check_imports(runtime, &component, &service.config)?;

        let instance_pre = runtime
            .linker
            .instantiate_pre(&component)
            .map_err(LoadComponentError::MissingExport)?;
        let pre = ServicePre::new(instance_pre).map_err(LoadComponentError::MissingExport)?;
        let exports = Exports::find(&component).map_err(LoadComponentError::MissingExport)?;

        let mut version = ComponentVersion {
            record: DeployRecord {
                digest,
                deployed_at: chrono::Utc::now(),
                source,
            },
            pre,
            exports,
            routes: Vec::new(),
            route_table: RouteTable::default(),
            compiled_from,
            reuse: InstanceReuse::new(&service.config.instances, service.config.max_concurrent),
        };
        let routes = version
            .declared_routes(service)
            .await
            .map_err(LoadComponentError::RouteTable)?;
        version.route_table =
            RouteTable::build(&routes).map_err(LoadComponentError::InvalidRoutes)?;
        version.routes = routes;
        Ok(version)
    }

    pub fn digest(&self) -> &str {
        &self.record.digest
    }

    /// This version stopped serving: its idle instances go now, not with its last call.
    pub(super) fn retire(&self) {
        if let Some(reuse) = &self.reuse {
            reuse.clear();
        }
    }

    /// The first 12 hex digits of the digest: the version shown in `/health` and `platform ps`.
    pub fn short_digest(&self) -> &str {
        &self.record.digest[..12]
    }
}

/// A component built against another version of the platform's WIT package cannot link;
/// say so, rather than naming the first interface that does not match.
fn check_wit_version(
    engine: &wasmtime::Engine,
    component: &Component,
) -> Result<(), LoadComponentError> {
    let component_type = component.component_type();
    let names = component_type
        .imports(engine)
        .map(|(name, _)| name)
        .chain(component_type.exports(engine).map(|(name, _)| name));
    for name in names {
        let Some(interface) = name.strip_prefix(PLATFORM_PACKAGE) else {
            continue;
        };
        if let Some((_, found)) = interface.split_once('@') {
            if found != PLATFORM_VERSION {
                return Err(LoadComponentError::WitVersion {
                    found: found.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Every `platform:service/*` import must be granted; WASI is always linked (with nothing
/// in it granted); anything else cannot be satisfied.
fn check_imports(
    runtime: &Runtime,
    component: &Component,
    service: &ServiceConfig,
) -> Result<(), LoadComponentError> {
    for (name, _) in component.component_type().imports(&runtime.engine) {
        if let Some(interface) = name.strip_prefix(PLATFORM_PACKAGE) {
            let interface = interface.split('@').next().unwrap_or(interface);
            if capabilities::TYPE_INTERFACES.contains(&interface) {
                continue;
            }
            match capabilities::by_interface(interface) {
                Some(row) if service.is_granted(row.capability) => {}
                Some(_) => {
                    return Err(LoadComponentError::UngrantedImport {
                        interface: interface.to_string(),
                    })
                }
                None => return Err(LoadComponentError::UnknownImport(name.to_string())),
            }
        } else if !name.starts_with("wasi:") {
            return Err(LoadComponentError::UnknownImport(name.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(engine: &wasmtime::Engine, wat: &str) -> Component {
        Component::new(engine, wat::parse_str(wat).unwrap()).unwrap()
    }

    #[test]
    fn a_component_built_against_another_wit_version_is_refused_by_name() {
        let engine = wasmtime::Engine::default();
        let old = component(
            &engine,
            r#"(component (import "platform:service/logging@0.1.0" (instance)))"#,
        );
        let error = check_wit_version(&engine, &old).unwrap_err();
        assert!(
            error.to_string().contains("platform:service@0.1.0")
                && error.to_string().contains(PLATFORM_VERSION),
            "{error}"
        );
        let current = component(
            &engine,
            &format!(
                r#"(component (import "platform:service/logging@{PLATFORM_VERSION}" (instance)) (import "wasi:io/error@0.2.6" (instance)))"#
            ),
        );
        assert!(check_wit_version(&engine, &current).is_ok());
    }

    #[test]
    fn the_wit_version_is_the_package_s() {
        let world = include_str!("../../../wit/world.wit");
        assert!(
            world.starts_with(&format!(
                "package platform:service@{};",
                super::PLATFORM_VERSION
            )),
            "wit/world.wit declares another version than PLATFORM_VERSION"
        );
    }
}
