//! Loading a component: compile, check its imports against the service's grants, check
//! its exports, pre-instantiate, and read its route table. All of this happens once per
//! deployed version, never per request.

use super::engine::CompiledFrom;
use super::invoke::{CallError, CallLimits};
use super::Runtime;
use crate::bindings::http_types::Route;
use crate::bindings::ServicePre;
use crate::capabilities::{CallState, ServiceCapabilities};
use crate::config::{Capability, ServiceConfig};
use crate::ingress::http::router::{RouteTable, RouteTableError};
use crate::state::{DeployRecord, DeploySource};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use wasmtime::component::Component;

/// The WIT package every platform interface belongs to.
const PLATFORM_PACKAGE: &str = "platform:service/";

/// Why a component was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadComponentError {
    #[error("not a valid component: {0:#}")]
    Compile(wasmtime::Error),
    #[error("the component imports `{interface}`, which this service was not granted (add \"{interface}\" to `grants` in platform.toml if it should be)")]
    UngrantedImport { interface: String },
    #[error("the component imports `{0}`, which the platform does not provide")]
    UnknownImport(String),
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
    pub routes: Vec<Route>,
    pub router: RouteTable,
    /// The OpenAPI document of this version, rendered once.
    pub openapi: bytes::Bytes,
    /// Whether the machine code came from the compiled-code cache.
    pub compiled_from: CompiledFrom,
    /// Requests this version answered, and how many of them with a 5xx.
    served: AtomicU64,
    errors: AtomicU64,
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
        service_name: &str,
        service: &ServiceConfig,
        capabilities: &Arc<ServiceCapabilities>,
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

        check_imports(runtime, &component, service)?;

        let instance_pre = runtime
            .linker
            .instantiate_pre(&component)
            .map_err(LoadComponentError::MissingExport)?;
        let pre = ServicePre::new(instance_pre).map_err(LoadComponentError::MissingExport)?;

        let mut version = ComponentVersion {
            record: DeployRecord {
                digest,
                deployed_at: chrono::Utc::now(),
                source,
            },
            pre,
            routes: Vec::new(),
            router: RouteTable::default(),
            openapi: bytes::Bytes::new(),
            compiled_from,
            served: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        };
        let limits = CallLimits::for_service(service);
        let routes = version
            .route_table(capabilities, &limits)
            .await
            .map_err(LoadComponentError::RouteTable)?;
        version.router = RouteTable::build(&routes).map_err(LoadComponentError::InvalidRoutes)?;
        let document =
            crate::ingress::http::openapi::document(service_name, version.short_digest(), &routes);
        version.openapi =
            bytes::Bytes::from(serde_json::to_vec_pretty(&document).expect("JSON of a JSON value"));
        version.routes = routes;
        Ok(version)
    }

    pub fn digest(&self) -> &str {
        &self.record.digest
    }

    /// The first 12 hex digits of the digest: the version shown in `/health` and `platform ps`.
    pub fn short_digest(&self) -> &str {
        &self.record.digest[..12]
    }

    /// Counts one answered request; `failed` for a 5xx.
    pub fn count_request(&self, failed: bool) {
        self.served.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests answered and 5xx among them since this version was deployed.
    pub fn request_counts(&self) -> (u64, u64) {
        (
            self.served.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
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
            // Type-only interfaces carry no capability.
            if matches!(interface, "http-types" | "messaging-types") {
                continue;
            }
            let granted = Capability::ALL
                .iter()
                .find(|capability| capability.interface() == interface)
                .is_some_and(|capability| service.is_granted(*capability));
            if !granted {
                return Err(LoadComponentError::UngrantedImport {
                    interface: interface.to_string(),
                });
            }
        } else if !name.starts_with("wasi:") {
            return Err(LoadComponentError::UnknownImport(name.to_string()));
        }
    }
    Ok(())
}
