//! One call into a component: a turn from the service's admission, a fresh `Store` and
//! instance under the call's limits (memory in total across the component's memories,
//! tables, instances), and a deadline. A trap, a timeout or an exhausted limit fails this
//! call only. A service that opts in reuses instances between HTTP requests
//! ([`super::instances`]).

use super::component::PLATFORM_VERSION;
use super::instances::InstanceReuse;
use super::{ComponentVersion, Overloaded, Service};
use crate::backends::token_validator::ValidatedToken;
use crate::bindings::http_types::{Request, Response, Route};
use crate::bindings::messaging_types::{Delivery, Outcome};
use crate::capabilities::{CallState, Saturated};
use crate::config::ServiceConfig;
use crate::telemetry::{Attribute, Trace};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, Instance, Lift, Lower, TypedFunc,
};
use wasmtime::{ResourceLimiter, Store};

/// Core instances, tables and memories one call's store may hold: what a component of a
/// few modules needs, far below what would let one call take many pool slots.
pub const MAX_INSTANCES_PER_CALL: usize = 32;
pub const MAX_TABLES_PER_CALL: usize = 32;
pub const MAX_MEMORIES_PER_CALL: usize = 4;
/// Elements of one table.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The limits of one call's store: `memory_bytes` is the total of all its linear memories.
struct CallLimiter {
    memory_left: usize,
    memory_bytes: usize,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        if growth > self.memory_left {
            wasmtime::bail!(
                "the call's memory limit of {} MiB is reached",
                self.memory_bytes >> 20
            );
        }
        self.memory_left -= growth;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            wasmtime::bail!("a table may hold at most {MAX_TABLE_ELEMENTS} elements");
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES_PER_CALL
    }

    fn tables(&self) -> usize {
        MAX_TABLES_PER_CALL
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES_PER_CALL
    }
}

/// The exports a call enters, found by name once per version. [`ComponentVersion::load`]
/// reads the route table through the generated bindings, which check the type of every
/// export of the world, before the version serves any call; a call then takes its export
/// without checking it again (that check was a tenth of a fresh instance's cost). The types
/// of a component's exports are the same in every instance of it.
pub(super) struct Exports {
    handle: ComponentExportIndex,
    health: ComponentExportIndex,
    handle_message: ComponentExportIndex,
    run: ComponentExportIndex,
}

impl Exports {
    pub fn find(component: &Component) -> wasmtime::Result<Exports> {
        let export = |interface: &str, name: &str| {
            let interface = format!("platform:service/{interface}@{PLATFORM_VERSION}");
            component
                .get_export_index(None, &interface)
                .and_then(|instance| component.get_export_index(Some(&instance), name))
                .ok_or_else(|| wasmtime::format_err!("no export `{name}` in `{interface}`"))
        };
        Ok(Exports {
            handle: export("http-handler", "handle")?,
            health: export("http-handler", "health")?,
            handle_message: export("message-handler", "handle-message")?,
            run: export("scheduled-handler", "run")?,
        })
    }
}

/// The export `index` of `instance`, as a function of the given signature.
///
/// # Safety
/// The export's type must be `(Params) -> Return`: see [`Exports`].
unsafe fn export<Params, Return>(
    instance: &Instance,
    store: &mut Store<CallState>,
    index: &ComponentExportIndex,
) -> TypedFunc<Params, Return>
where
    Params: ComponentNamedList + Lower,
    Return: ComponentNamedList + Lift,
{
    let func = instance
        .get_func(&mut *store, index)
        .expect("the export was found in this component at load");
    // SAFETY: the caller's contract.
    unsafe { TypedFunc::new_unchecked(func) }
}

/// `handle`, the export that serves a request.
pub(super) type HandleFunc = TypedFunc<(Request,), (Response,)>;

/// Per-call limits of a service.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub memory_bytes: usize,
    pub timeout: Duration,
}

impl CallLimits {
    pub fn for_service(service: &ServiceConfig) -> CallLimits {
        CallLimits {
            memory_bytes: service.memory_limit_bytes(),
            timeout: service.request_timeout(),
        }
    }
}

/// Why a call produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No instance slot or memory was available (the host is at capacity).
    #[error("could not instantiate the component: {0:#}")]
    Instantiate(wasmtime::Error),
    /// The guest trapped: a panic, an out-of-bounds access, memory over its limit...
    #[error("the component trapped: {0:#}")]
    Trap(wasmtime::Error),
    #[error("the component did not answer within {0:?}")]
    Timeout(Duration),
    /// The service (or a host resource the call needed) is at its limit: retry later.
    #[error("overloaded: {0}")]
    Overloaded(Overloaded),
}

/// A trap raised by a host function because a resource was saturated is an overload, not
/// a failure of the component.
fn trap_or_overload(error: wasmtime::Error) -> CallError {
    match error.downcast_ref::<Saturated>() {
        Some(Saturated(resource)) => CallError::Overloaded(Overloaded::Saturated(resource)),
        None => CallError::Trap(error),
    }
}

impl ComponentVersion {
    /// A store for one call of `service`, under its limits.
    fn new_store(&self, service: &Service, call_id: &str) -> Store<CallState> {
        let limits = &service.limits;
        let limiter = CallLimiter {
            memory_left: limits.memory_bytes,
            memory_bytes: limits.memory_bytes,
        };
        let state = CallState::new(
            service.capabilities.clone(),
            Box::new(limiter),
            call_id.to_string(),
            Instant::now() + limits.timeout,
        );
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| state.limiter.as_mut());
        // Yield to the scheduler at every epoch tick; the caller's timeout ends the call.
        store.epoch_deadline_async_yield_and_update(1);
        store
    }

    /// A fresh instance in `store`; a traced call records how long it took to make.
    async fn instantiate(&self, store: &mut Store<CallState>) -> Result<Instance, CallError> {
        let started = store.data().trace.is_some().then(Instant::now);
        let instance = self
            .pre
            .instance_pre()
            .instantiate_async(&mut *store)
            .await
            .map_err(CallError::Instantiate)?;
        if let (Some(trace), Some(started)) = (&store.data().trace, started) {
            trace.set(Attribute::new(
                "platform.instantiation.duration_us",
                started.elapsed().as_micros() as i64,
            ));
        }
        Ok(instance)
    }

    /// Runs `call` on a fresh instance under the limits, ending it at the deadline.
    async fn with_instance<T, F, Fut>(
        &self,
        service: &Service,
        call_id: &str,
        trace: Option<Trace>,
        call: F,
    ) -> Result<T, CallError>
    where
        F: FnOnce(Instance, Store<CallState>) -> Fut,
        Fut: Future<Output = wasmtime::Result<T>>,
    {
        let timeout = service.limits.timeout;
        let mut store = self.new_store(service, call_id);
        store.data_mut().trace = trace;
        let work = async {
            let instance = self.instantiate(&mut store).await?;
            call(instance, store).await.map_err(trap_or_overload)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout(timeout)),
        }
    }

    /// Serves `request`, whose bearer token the ingress checked (`validated_token`, if it
    /// carried one); the capability calls it makes are spans under `trace`.
    pub async fn handle_request(
        &self,
        service: &Service,
        request: Request,
        validated_token: Option<Arc<ValidatedToken>>,
        trace: Option<Trace>,
    ) -> Result<Response, CallError> {
        let _turn = service
            .admission
            .admit()
            .await
            .map_err(CallError::Overloaded)?;
        // A fresh instance, unless the service reuses them and one is idle.
        let timeout = service.limits.timeout;
        let (mut store, reused, served) = match self.reuse.as_ref().and_then(InstanceReuse::take) {
            Some(idle) => {
                let mut store = idle.store;
                store
                    .data_mut()
                    .begin_call(&request.request_id, Instant::now() + timeout);
                store.epoch_deadline_async_yield_and_update(1);
                (store, Some(idle.handle), idle.served)
            }
            None => (self.new_store(service, &request.request_id), None, 0),
        };
        store.data_mut().trace = trace;
        store.data_mut().validated_token = validated_token;
        let work = async {
            let handle = match reused {
                Some(handle) => {
                    if let Some(trace) = &store.data().trace {
                        trace.set(Attribute::new("platform.instance.reused", true));
                    }
                    handle
                }
                None => {
                    let instance = self.instantiate(&mut store).await?;
                    // SAFETY: see `Exports`.
                    unsafe { export(&instance, &mut store, &self.exports.handle) }
                }
            };
            let (response,) = handle
                .call_async(&mut store, (request,))
                .await
                .map_err(trap_or_overload)?;
            Ok((handle, response))
        };
        // A trap or a timeout drops the store here, and the instance with it.
        let (handle, response) = match tokio::time::timeout(timeout, work).await {
            Ok(result) => result?,
            Err(_) => return Err(CallError::Timeout(timeout)),
        };
        store.data_mut().trace = None;
        store.data_mut().validated_token = None;
        if let (Some(reuse), 0) = (&self.reuse, store.data().open_transactions()) {
            reuse.give_back(store, handle, served + 1);
        }
        Ok(response)
    }

    pub async fn handle_message(
        &self,
        service: &Service,
        message_id: &str,
        delivery: Delivery,
        trace: Option<Trace>,
    ) -> Result<Outcome, CallError> {
        self.with_instance(
            service,
            message_id,
            trace,
            |instance, mut store| async move {
                // SAFETY: see `Exports`.
                let handle_message: TypedFunc<(&Delivery,), (Outcome,)> =
                    unsafe { export(&instance, &mut store, &self.exports.handle_message) };
                let (outcome,) = handle_message.call_async(&mut store, (&delivery,)).await?;
                Ok(outcome)
            },
        )
        .await
    }

    /// Runs the schedule `name` on a fresh instance, with a turn of the service's admission
    /// like a request: `Ok(Err(reason))` when the component reports a failure.
    pub async fn run_schedule(
        &self,
        service: &Service,
        name: &str,
        trace: Option<Trace>,
    ) -> Result<Result<(), String>, CallError> {
        let _turn = service
            .admission
            .admit()
            .await
            .map_err(CallError::Overloaded)?;
        let call_id = format!("schedule:{name}");
        self.with_instance(service, &call_id, trace, |instance, mut store| async move {
            // SAFETY: see `Exports`.
            let run: TypedFunc<(&str,), (Result<(), String>,)> =
                unsafe { export(&instance, &mut store, &self.exports.run) };
            let (result,) = run.call_async(&mut store, (name,)).await?;
            Ok(result)
        })
        .await
    }

    /// Calls the `health` export on a fresh instance: `Ok(Err(reason))` when the component
    /// says it cannot serve.
    pub async fn health(&self, service: &Service) -> Result<Result<(), String>, CallError> {
        self.with_instance(service, "health", None, |instance, mut store| async move {
            // SAFETY: see `Exports`.
            let health: TypedFunc<(), (Result<(), String>,)> =
                unsafe { export(&instance, &mut store, &self.exports.health) };
            let (result,) = health.call_async(&mut store, ()).await?;
            Ok(result)
        })
        .await
    }

    /// The route table, read through the generated bindings, which check the type of every
    /// export of the world: the check [`Exports`] relies on.
    pub(super) async fn declared_routes(&self, service: &Service) -> Result<Vec<Route>, CallError> {
        self.with_instance(service, "load", None, |instance, mut store| async move {
            let checked = crate::bindings::Service::new(&mut store, &instance)?;
            checked
                .platform_service_http_handler()
                .call_routes(&mut store)
                .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_limit_is_the_total_of_every_memory() {
        let mut limiter = CallLimiter {
            memory_left: 10 << 20,
            memory_bytes: 10 << 20,
        };
        // Two memories of 4 MiB each fit; a third does not, nor does growing one past the rest.
        assert!(limiter.memory_growing(0, 4 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, 4 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, 4 << 20, None).is_err());
        assert!(limiter.memory_growing(4 << 20, 7 << 20, None).is_err());
        assert!(limiter.memory_growing(4 << 20, 6 << 20, None).unwrap());
        assert!(limiter
            .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
            .is_err());
    }
}
