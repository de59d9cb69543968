//! The engines: at most two per host process, one for each [`EngineKind`],
//! each shared by every component of its kind. Pooling allocator (instances
//! come from pre-reserved slots, so creating one is a few microseconds),
//! epoch interruption for deadlines, and an on-disk cache of compiled code.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. A running guest yields to the host at each
/// tick, which is what lets a deadline stop a guest stuck in a loop.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of each memory and table kept mapped (reset in place) when a pool
/// slot is recycled.
const KEEP_RESIDENT: usize = 4 << 20;
const STACK_KEEP_RESIDENT: usize = 128 << 10;
/// Slots whose remaining pages are decommitted together, in one TLB flush.
const DECOMMIT_BATCH: usize = 32;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Cap on each linear memory of an instance, in bytes.
    pub max_instance_memory: usize,
    /// Component instances that may exist at once (pool slots).
    pub max_instances: u32,
    /// Name compiled guest functions in `/tmp/perf-<pid>.map`, for `perf`.
    pub perf_map: bool,
}

/// Which of the two engines a component runs on.
///
/// wasmtime's support for the component model's concurrency is a property of
/// the engine, and an engine that has it runs every call into a component
/// and every host call out of it as a task of that machinery, whether the
/// component is concurrent or not. A WASIp2 hello's request cost 262,000
/// instructions on such an engine and 230,000 on one without it
/// (docs/benchmarks.md). So components that use none of it get an engine of
/// their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// Components that use the component model's concurrency: async exports
    /// or imports, streams, futures (WASIp3, `spin-sdk` 7).
    P3,
    /// Every other component: WASIp2 and its release candidates, and core
    /// modules, which are componentized with the WASIp1 adapter (a WASIp2
    /// component).
    P2,
}

impl EngineKind {
    /// The kind `wasm` (a component or a core module) needs: [`Self::P3`]
    /// unless it validates without the component model's async feature.
    /// Only the structure is validated, where async types and canonical
    /// options live; function bodies are left to the compiler. A component
    /// that does not validate at all is P3's to compile, so the error it
    /// gets is the one with every feature on.
    pub fn of(wasm: &[u8]) -> Self {
        if !wasmparser::Parser::is_component(wasm) {
            return Self::P2;
        }
        let mut validator =
            wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::default() & !wasmparser::WasmFeatures::CM_ASYNC);
        for payload in wasmparser::Parser::new(0).parse_all(wasm) {
            let valid = payload.map_err(|_| ()).and_then(|payload| validator.payload(&payload).map_err(|_| ()));
            if valid.is_err() {
                return Self::P3;
            }
        }
        Self::P2
    }

    /// Fiber stacks the pool holds per instance slot. A WASIp3 instance runs
    /// each of its tasks that waits (the handler, a task still writing the
    /// body, a subtask) on a stack of its own: with one stack per slot, a busy
    /// HTTP component took every stack and the Redis trigger's next delivery
    /// failed with free slots left. A WASIp2 call runs on one stack from its
    /// start to its end.
    fn stacks_per_instance(self) -> u32 {
        match self {
            Self::P3 => 4,
            Self::P2 => 1,
        }
    }
}

pub fn new_engine(options: &EngineOptions, kind: EngineKind) -> Result<Engine> {
    let mut config = Config::new();
    match kind {
        EngineKind::P3 => config.wasm_component_model_async(true),
        EngineKind::P2 => config.concurrency_support(false),
    };
    config.epoch_interruption(true);
    if options.perf_map {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let mut pool = PoolingAllocationConfig::default();
    let instances = options.max_instances;
    pool.total_component_instances(instances)
        // A composed component (order + inventory) holds several core
        // instances and memories; leave room for that in every slot.
        .max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(16)
        .total_core_instances(instances * 16)
        .total_memories(instances * 4)
        .total_tables(instances * 8)
        .total_stacks(instances * kind.stacks_per_instance())
        .max_memory_size(options.max_instance_memory)
        // Recycling a slot is what a fresh instance per request costs. Reset
        // the pages a guest touched with memset (only those, where the kernel
        // can say which: PAGEMAP_SCAN) instead of madvise, which faults every
        // page in again on the next instance and flushes the TLB of every
        // core; and batch what must still be decommitted.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .async_stack_keep_resident(STACK_KEEP_RESIDENT)
        .pagemap_scan(wasmtime::Enabled::Auto)
        .decommit_batch_size(DECOMMIT_BATCH);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config)?;
    start_epoch_ticker(&engine);
    Ok(engine)
}

fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn epoch ticker");
}

/// Compiled components on disk, keyed by the source's bytes (a component, or
/// a core module componentized before compiling, so a warm start skips both
/// steps) and the engine's compatibility hash (so a different wasmtime or
/// config never reuses stale code). The cache holds native code that is loaded as is, so it lives only
/// in a directory of the user's own (created 0700), never in a shared one.
pub struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    /// `None` compiles at every start.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// `$WHARF_CACHE_DIR`, else `$XDG_CACHE_HOME/wharf`, else `~/.cache/wharf`;
    /// none when neither variable nor a home directory is set.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("WHARF_CACHE_DIR") {
            return Some(dir.into());
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("wharf"))
    }

    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> Result<Component> {
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut engine_hash);
        let mut key = Sha256::new();
        key.update(wasm);
        key.update(engine_hash.finish().to_le_bytes());
        let Some(dir) = &self.dir else {
            return compile(engine, wasm);
        };
        let path = dir.join(format!("{}.cwasm", hex::encode(key.finalize())));
        if path.exists() {
            // SAFETY: the file was written by `Component::serialize` of an
            // engine with the same compatibility hash; wasmtime re-checks the
            // header and refuses incompatible code, in which case we recompile.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(path = %path.display(), "ignoring unusable compiled-code cache entry: {e}"),
            }
        }
        let component = compile(engine, wasm)?;
        if let Err(e) = store(dir, &path, &component) {
            tracing::warn!(dir = %dir.display(), "cannot write compiled-code cache: {e:#}");
        }
        Ok(component)
    }
}

fn compile(engine: &Engine, wasm: &[u8]) -> Result<Component> {
    let component = crate::componentize::componentize_if_module(wasm)?;
    Ok(Component::new(engine, &component)?)
}

fn store(dir: &std::path::Path, path: &std::path::Path, component: &Component) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let bytes = component.serialize()?;
    // Write then rename, so a concurrent start never reads half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
