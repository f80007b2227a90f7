//! The per-instance store data: a sandboxed WASI context (no files, no
//! sockets, outbound HTTP denied), captured logs, the memory limiter and
//! the execution deadline that the epoch callback enforces.

use crate::logs::LogCapture;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// What one instance's store holds.
pub(crate) struct Sandbox {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: DenyOutbound,
    pub(crate) memory: MemoryLimiter,
    /// When the current execution must stop; checked on every epoch tick.
    pub(crate) deadline: Instant,
    pub(crate) logs: LogCapture,
}

/// Limits linear memory and records whether the guest hit the limit, so a
/// failed allocation is reported as a memory-limit error, not a bare trap.
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Outbound HTTP is denied unless an app is granted it.
struct DenyOutbound;

impl WasiHttpHooks for DenyOutbound {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                )>,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Sandbox {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// A new store for one instance, with `env` as its environment.
pub(crate) fn new_store(
    engine: &wasmtime::Engine,
    env: &[(String, String)],
    memory_limit: usize,
    log_limit: usize,
) -> Store<Sandbox> {
    let logs = LogCapture::new(log_limit);
    let wasi = WasiCtx::builder()
        .envs(env)
        .stdout(logs.clone())
        .stderr(logs.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let sandbox = Sandbox {
        wasi,
        http: WasiHttpCtx::new(),
        table: ResourceTable::new(),
        hooks: DenyOutbound,
        memory: MemoryLimiter {
            limit: memory_limit,
            hit: false,
        },
        deadline: Instant::now(),
        logs,
    };
    let mut store = Store::new(engine, sandbox);
    store.limiter(|s| &mut s.memory);
    // Every epoch tick: trap once past the deadline, else yield so that a
    // busy guest shares the thread with other executions.
    store.epoch_deadline_callback(|state| {
        if Instant::now() >= state.data().deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.set_epoch_deadline(1);
    store
}
