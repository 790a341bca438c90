//! One call into a component: a fresh `Store` and instance, the service's memory limit,
//! and a deadline. A trap, a timeout or an exhausted memory fails this call only.

use super::{ComponentVersion, Service};
use crate::bindings::http_types::{Request, Response, Route};
use crate::bindings::messaging_types::{Delivery, Outcome};
use crate::capabilities::CallState;
use crate::config::ServiceConfig;
use std::future::Future;
use std::time::Duration;
use wasmtime::{Store, StoreLimitsBuilder};

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
}

impl ComponentVersion {
    /// Runs `call` on a fresh instance under the limits, ending it at the deadline.
    async fn with_instance<T, F, Fut>(
        &self,
        service: &Service,
        request_id: &str,
        call: F,
    ) -> Result<T, CallError>
    where
        F: FnOnce(crate::bindings::Service, Store<CallState>) -> Fut,
        Fut: Future<Output = wasmtime::Result<T>>,
    {
        let limits = &service.limits;
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        let state = CallState::new(
            service.capabilities.clone(),
            store_limits,
            request_id.to_string(),
        );
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        // Yield to the scheduler at every epoch tick; the timeout below ends the call.
        store.epoch_deadline_async_yield_and_update(1);
        let work = async {
            let instance = self
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(CallError::Instantiate)?;
            call(instance, store).await.map_err(CallError::Trap)
        };
        match tokio::time::timeout(limits.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout(limits.timeout)),
        }
    }

    pub async fn handle_request(
        &self,
        service: &Service,
        request: Request,
    ) -> Result<Response, CallError> {
        let request_id = request.request_id.clone();
        self.with_instance(service, &request_id, |instance, mut store| async move {
            instance
                .platform_service_http_handler()
                .call_handle(&mut store, &request)
                .await
        })
        .await
    }

    pub async fn handle_message(
        &self,
        service: &Service,
        message_id: &str,
        delivery: Delivery,
    ) -> Result<Outcome, CallError> {
        self.with_instance(service, message_id, |instance, mut store| async move {
            instance
                .platform_service_message_handler()
                .call_handle_message(&mut store, &delivery)
                .await
        })
        .await
    }

    /// Calls the `health` export on a fresh instance: `Ok(Err(reason))` when the component
    /// says it cannot serve.
    pub async fn health(&self, service: &Service) -> Result<Result<(), String>, CallError> {
        self.with_instance(service, "health", |instance, mut store| async move {
            instance
                .platform_service_http_handler()
                .call_health(&mut store)
                .await
        })
        .await
    }

    pub(super) async fn declared_routes(&self, service: &Service) -> Result<Vec<Route>, CallError> {
        self.with_instance(service, "load", |instance, mut store| async move {
            instance
                .platform_service_http_handler()
                .call_routes(&mut store)
                .await
        })
        .await
    }
}
