//! The engine (pooling allocator, epoch interruption) and linker, built once per host.

use super::invoke::{MAX_INSTANCES_PER_CALL, MAX_MEMORIES_PER_CALL, MAX_TABLES_PER_CALL};
use crate::bindings::Service;
use crate::capabilities::CallState;
use crate::state::{write_atomically, StateDir};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. Guests yield to the async scheduler at every tick, so a
/// guest stuck in a loop shares its thread instead of owning it until its deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of each linear memory, table and async stack kept resident between instances.
const KEEP_RESIDENT_MEMORY: usize = 256 * 1024;
const KEEP_RESIDENT_TABLE: usize = 64 * 1024;
const KEEP_RESIDENT_ASYNC_STACK: usize = 64 * 1024;

/// The wasmtime engine and the linker with WASI and every platform interface.
#[derive(Clone)]
pub struct Runtime {
    pub engine: Engine,
    pub linker: Arc<Linker<CallState>>,
    /// Where precompiled code is cached by digest (the state directory's `compiled/`).
    compiled: Option<Arc<StateDir>>,
    /// Identifies this engine build and configuration in cached file names: code compiled
    /// by another wasmtime version or with other settings is never loaded.
    engine_id: String,
}

/// How a component's machine code was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompiledFrom {
    Cache,
    Compiler,
}

impl Runtime {
    /// `max_memory_bytes` is the largest memory limit of any service: the pool's slots
    /// are sized for it. `instances` is the sum of every service's most concurrent calls:
    /// each service's admission keeps it within its share, so no service can take another's
    /// slots.
    pub fn new(
        max_memory_bytes: usize,
        instances: u32,
        compiled: Option<Arc<StateDir>>,
    ) -> wasmtime::Result<Runtime> {
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(8))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .total_stacks(instances)
            .max_core_instances_per_component(MAX_INSTANCES_PER_CALL as u32)
            .max_memories_per_component(MAX_MEMORIES_PER_CALL as u32)
            .max_tables_per_component(MAX_TABLES_PER_CALL as u32)
            .max_memory_size(max_memory_bytes);
        // A fresh instance per call must not pay for page faults: a request touches the
        // bottom of linear memory (the top of the guest stack, which our components keep at
        // 128 KiB, see .cargo/config.toml, then static data and the first heap pages) and the
        // top of its async stack. Resetting those with memset instead of madvise and faulting
        // them back in halves the per-call cost (benches/per_call.rs: 38.9 -> 17.2 µs).
        //
        // Without `pagemap_scan`, wasmtime resets all of the kept bytes after every instance,
        // written or not: 256 KiB of memset and copies from the image per request, a sixth
        // of the host's CPU on the empty route. With it (Linux 6.7 and later; elsewhere
        // `Auto` falls back to the full reset), one `PAGEMAP_SCAN` ioctl finds the pages the
        // slot has present and written, and only those are reset: the guest stack's untouched
        // bottom is never touched by the host either. README "Performance" has the figures.
        pooling
            .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
            .table_keep_resident(KEEP_RESIDENT_TABLE)
            .async_stack_keep_resident(KEEP_RESIDENT_ASYNC_STACK)
            .pagemap_scan(Enabled::Auto);
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

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_id = format!("{:016x}", hasher.finish());
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            compiled,
            engine_id,
        })
    }

    /// Compiles `bytes` (SHA-256 `digest`), or loads the code compiled for that digest
    /// earlier. Blocking: call it from the blocking pool.
    pub fn compile(
        &self,
        digest: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CompiledFrom)> {
        let Some(state) = &self.compiled else {
            return Ok((Component::new(&self.engine, bytes)?, CompiledFrom::Compiler));
        };
        let path = state.compiled_path(digest, &self.engine_id);
        if path.exists() {
            // SAFETY: the file was written by `Component::serialize` of an engine with the
            // same compatibility hash (it is in the name), into the host's own state
            // directory; wasmtime checks the header again. A file that fails to load is
            // compiled afresh below.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok((component, CompiledFrom::Cache)),
                Err(error) => {
                    tracing::warn!(%error, path = %path.display(), "ignoring unreadable compiled code")
                }
            }
        }
        let component = Component::new(&self.engine, bytes)?;
        match component.serialize() {
            Ok(code) => {
                if let Err(error) = write_atomically(&path, &code) {
                    tracing::warn!(%error, "could not cache compiled code");
                }
            }
            Err(error) => tracing::warn!(%error, "could not serialise compiled code"),
        }
        Ok((component, CompiledFrom::Compiler))
    }
}
