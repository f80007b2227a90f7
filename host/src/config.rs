//! Host limits and defaults. Each default is a named constant with the
//! reason for its value; the CLI shows them in `--help`.

use std::path::PathBuf;
use std::time::Duration;

/// Linear memory one instance may use. Large enough for interpreters such
/// as CPython-on-wasm (~30 MiB at rest); small enough that a memory bomb
/// is stopped long before it hurts the machine.
pub const DEFAULT_MEMORY_LIMIT: usize = 256 << 20;

/// Wall-clock limit of one execution when the function sets none (as in
/// Modal, where a missing timeout is not "forever").
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest timeout a function may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Instances one function may run at once when it sets no
/// `max_instances`; beyond that, calls queue.
pub const DEFAULT_MAX_INSTANCES: u32 = 64;

/// How long an idle warm instance is kept before it is dropped (down to
/// the function's `min_warm`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a call waits for a free instance when all `max_instances` are
/// busy before it fails as overloaded.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// Captured stdout+stderr kept per execution; the rest is cut with a
/// marker, so a chatty guest cannot fill the host's memory.
pub const DEFAULT_LOG_LIMIT: usize = 64 << 10;

/// Largest request body a web function is given; a larger one is answered
/// 413 (before the guest runs when the client declares its length).
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 64 << 20;

/// Limit on `describe` and on the `enter`/`exit` hooks.
pub const DEFAULT_DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Interval of the engine's epoch ticker: the granularity of timeouts and
/// of the time slices in which a busy guest yields to other work.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// See [`PoolingLimits::decommit_batch`]: no batching, so the memory of a
/// dropped instance is returned at once (`cargo bench --bench memory`).
pub const DEFAULT_DECOMMIT_BATCH: usize = 1;

/// See [`PoolingLimits::table_keep_resident`]: 64 KiB covers the tables of
/// guests with up to 8,192 function references, and holds at most 64 MiB
/// across the 1,000 default slots. It saves 10–20 % of a cold call and a
/// third of the lateness of 10,000 schedules firing at once
/// (`cargo bench --bench core`, `--bench schedules`).
pub const DEFAULT_TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// Slots of wasmtime's pooling allocator: instances are placed into
/// pre-reserved slots, which makes instantiation ~2x faster than the
/// on-demand allocator. The totals bound the instances alive at once.
#[derive(Clone, Debug)]
pub struct PoolingLimits {
    /// Component instances alive at once across all apps.
    pub total_component_instances: u32,
    /// Core module instances alive at once (a component has several).
    pub total_core_instances: u32,
    /// Linear memories alive at once.
    pub total_memories: u32,
    /// Tables alive at once.
    pub total_tables: u32,
    /// Fiber stacks: executions in progress at once, and warm instances
    /// (each keeps the stack of its last call).
    pub total_stacks: u32,
    /// Memory regions of dropped instances returned to the kernel in one
    /// batch (1: each at once). A batch saves `madvise` calls (and their
    /// TLB shootdowns) on the cold path, but what waits in it stays
    /// resident until the batch fills: after a few memory bombs that is
    /// gigabytes held while the host idles.
    pub decommit_batch: usize,
    /// Bytes of each table slot that a dropped instance leaves resident,
    /// zeroed in place instead of returned to the kernel. Returning them
    /// costs an `madvise` whose TLB shootdown interrupts every core running
    /// the host, and the next instance faults them in again; tables are
    /// small (8 bytes per function reference), so this holds at most this
    /// many bytes per slot.
    pub table_keep_resident: usize,
}

impl PoolingLimits {
    /// Limits for `instances` instances alive at once, busy or warm, across
    /// all apps. Each also needs a fiber stack while warm (wasmtime keeps
    /// one per store for its next call), up to 10 core instances and a
    /// few tables (a Rust guest's component has 2), so those totals are
    /// sized to never bind first.
    ///
    /// Each memory slot reserves 4 GiB of address space (plus guards) so
    /// that bounds checks compile away: 1,000 slots use ~4 TiB of the
    /// 128 TiB a process can address, and no physical memory until used.
    pub fn for_instances(instances: u32) -> PoolingLimits {
        PoolingLimits {
            total_component_instances: instances,
            total_core_instances: instances.saturating_mul(10),
            total_memories: instances,
            total_tables: instances.saturating_mul(4),
            total_stacks: instances,
            decommit_batch: DEFAULT_DECOMMIT_BATCH,
            table_keep_resident: DEFAULT_TABLE_KEEP_RESIDENT,
        }
    }
}

impl Default for PoolingLimits {
    fn default() -> Self {
        PoolingLimits::for_instances(DEFAULT_INSTANCE_SLOTS)
    }
}

/// Instances alive at once by default (see [`PoolingLimits::for_instances`]).
pub const DEFAULT_INSTANCE_SLOTS: u32 = 1000;

/// Most instance slots a host accepts: 20,000 reserve ~79 TiB of the
/// 128 TiB a process can address (25,000, ~98 TiB, failed to map in one
/// piece on a test machine). Each warm instance also holds a few memory
/// mappings, counted against the kernel's `vm.max_map_count`.
pub const MAX_INSTANCE_SLOTS: u32 = 20_000;

/// How deeply calls between functions may nest by default (a root call
/// is depth 0; `f` calling `g` runs `g` at depth 1).
pub const DEFAULT_MAX_CALL_DEPTH: u32 = 8;

/// The default budget of warm instances' memory: half of the machine's
/// memory (`MemTotal`), so that instances kept warm for speed never push
/// the host into swap or the OOM killer: 1,000 warm interpreters of
/// ~30 MiB each would hold ~30 GiB. `None` where the machine's memory
/// cannot be read.
pub fn default_warm_memory() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: usize = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024) / 2)
}

/// Settings of a [`Host`](crate::Host). Start from `HostConfig::default()`.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Linear memory one instance may use, in bytes.
    pub memory_limit: usize,
    /// Timeout of functions that set none.
    pub default_timeout: Duration,
    /// `max_instances` of functions that set none.
    pub default_max_instances: u32,
    /// Idle time after which a warm instance is dropped.
    pub idle_timeout: Duration,
    /// Wait for a free instance before a call fails as overloaded.
    pub queue_timeout: Duration,
    /// Captured log bytes kept per execution.
    pub log_limit: usize,
    /// Limit on `describe` and lifecycle hooks.
    pub describe_timeout: Duration,
    /// Largest request body a web function is given, in bytes.
    pub max_request_body: u64,
    /// How deeply calls between functions may nest; past it a call fails
    /// as [`Error::DepthExceeded`](crate::Error::DepthExceeded).
    pub max_call_depth: u32,
    /// The pooling allocator's slots; `None` uses the on-demand allocator.
    pub pooling: Option<PoolingLimits>,
    /// Linear memory that warm (idle) instances may hold in all, in bytes;
    /// past it the least recently used are dropped. `None`: no limit.
    pub warm_memory: Option<usize>,
    /// Where compiled code is cached (by content hash and engine); `None`
    /// compiles every load.
    pub cache_dir: Option<PathBuf>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            memory_limit: DEFAULT_MEMORY_LIMIT,
            default_timeout: DEFAULT_TIMEOUT,
            default_max_instances: DEFAULT_MAX_INSTANCES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            log_limit: DEFAULT_LOG_LIMIT,
            describe_timeout: DEFAULT_DESCRIBE_TIMEOUT,
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            max_call_depth: DEFAULT_MAX_CALL_DEPTH,
            pooling: Some(PoolingLimits::default()),
            warm_memory: default_warm_memory(),
            cache_dir: None,
        }
    }
}
