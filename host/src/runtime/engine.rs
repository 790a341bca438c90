//! The engine (pooling allocator, epoch interruption) and linker, built once per host.

use crate::bindings::Service;
use crate::capabilities::CallState;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. Guests yield to the async scheduler at every tick, so a
/// guest stuck in a loop shares its thread instead of owning it until its deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasmtime engine and the linker with WASI and every platform interface.
#[derive(Clone)]
pub struct Runtime {
    pub engine: Engine,
    pub linker: Arc<Linker<CallState>>,
}

impl Runtime {
    /// `max_memory_bytes` is the largest memory limit of any service: the pool's slots
    /// are sized for it.
    pub fn new(max_memory_bytes: usize) -> wasmtime::Result<Runtime> {
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(1000)
            .total_core_instances(4000)
            .total_memories(2000)
            .total_tables(2000)
            .total_stacks(1000)
            .max_memory_size(max_memory_bytes);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        let engine = Engine::new(&config)?;

        let mut linker = Linker::<CallState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Service::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)?;

        // One ticker for the engine; a ticker per call would cost every request a timer.
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;

        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
        })
    }
}
