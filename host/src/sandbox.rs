//! The per-instance store data: a sandboxed WASI context (no files, no
//! sockets, outbound HTTP denied), captured logs, the memory limiter and
//! the execution deadline that the epoch callback enforces.

use crate::logs::LogCapture;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// What one instance's store holds.
pub(crate) struct Sandbox {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    hooks: Outbound,
    pub(crate) memory: MemoryLimiter,
    /// When the current execution must stop; checked on every epoch tick.
    pub(crate) deadline: Instant,
    pub(crate) logs: LogCapture,
    /// The execution in progress: who it is, for `context` and for the
    /// calls it makes to other functions.
    pub(crate) frame: Frame,
    /// The app's key-value state.
    pub(crate) kv: crate::kv::Access,
}

/// The execution an instance is running; empty between executions.
#[derive(Default)]
pub(crate) struct Frame {
    /// The version it runs on.
    pub(crate) app: Option<crate::LoadedApp>,
    /// The scheduled run, for `context.run-id`.
    pub(crate) run_id: Option<String>,
    /// Its call id; created at its first call to another function when it
    /// has none (a web request, a scheduled run).
    pub(crate) call_id: Option<String>,
    /// The call id of the root of its tree of calls; `None` for a root.
    pub(crate) root_call_id: Option<String>,
    /// How deeply it is nested.
    pub(crate) depth: u32,
}

/// Limits linear memory and records whether the guest hit the limit, so a
/// failed allocation is reported as a memory-limit error, not a bare trap.
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
    pub(crate) hit: bool,
    /// Bytes of linear memory the instance has grown to (memory never
    /// shrinks, so this is also its peak).
    pub(crate) size: usize,
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
        self.size = desired;
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

/// Where an app may send HTTP requests: `host` (any port) or `host:port`
/// grants, given at deploy. Everything else gets the standard
/// `HTTP-request-denied` error.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outbound {
    grants: Arc<[(String, Option<u16>)]>,
}

impl Outbound {
    /// Parses grants such as `api.example.com` or `127.0.0.1:8080`.
    pub(crate) fn parse(grants: &[String]) -> Result<Outbound, String> {
        let parsed = grants
            .iter()
            .map(|g| {
                let (host, port) = match g.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(']') || g.starts_with('[') => {
                        let port = p
                            .parse::<u16>()
                            .map_err(|_| format!("invalid port in `{g}`"))?;
                        (h, Some(port))
                    }
                    _ => (g.as_str(), None),
                };
                let host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase();
                let valid = !host.is_empty()
                    && host.len() <= 253
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
                if !valid {
                    return Err(format!("`{g}` is not HOST or HOST:PORT"));
                }
                Ok((host, port))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Outbound {
            grants: parsed.into(),
        })
    }

    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        self.grants
            .iter()
            .any(|(h, p)| *h == host && p.is_none_or(|p| p == port))
    }
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
)>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        if !self.allows(request.uri()) {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            let io: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send> =
                Box::new(io);
            Ok((response.map(BodyExt::boxed_unsync), io))
        })
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

/// Bytes one `wasi:http` fields resource (a header map) may hold in host
/// memory: wasmtime-wasi-http's default limit.
pub(crate) const FIELD_SIZE_LIMIT: usize = 128 << 10;

/// Fewest host resources (streams, pollables, header maps, ...) an
/// instance may hold, whatever its memory limit.
const MIN_RESOURCES: usize = 256;

/// How many host resources an instance may hold at once. Resources live in
/// host memory, outside the guest's linear memory; the cap keeps what one
/// instance can hold there (at most [`FIELD_SIZE_LIMIT`] per header map)
/// within half its memory limit. Past it the execution fails as
/// `memory_limit`.
pub(crate) fn resource_capacity(memory_limit: usize) -> usize {
    (memory_limit / 2 / FIELD_SIZE_LIMIT).max(MIN_RESOURCES)
}

/// A new store for one instance, with `env` as its environment and the
/// `mounts` as its only (read-only) directories; fails when a mount's
/// directory cannot be opened.
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_store(
    engine: &wasmtime::Engine,
    env: &[(String, String)],
    outbound: &Outbound,
    kv: &crate::kv::Access,
    secrets: &crate::SecretEnv,
    mounts: &[crate::Mount],
    memory_limit: usize,
    log_limit: usize,
) -> Result<Store<Sandbox>, String> {
    let logs = LogCapture::new(log_limit, secrets.clone());
    let mut builder = WasiCtx::builder();
    builder
        .envs(env)
        .stdout(logs.clone())
        .stderr(logs.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    for m in mounts {
        builder
            .preopened_dir(&m.dir, &m.path, wasmtime_wasi::FsPerms::ReadOnly)
            .map_err(|e| format!("mounting {} at {}: {e:#}", m.dir.display(), m.path))?;
    }
    let wasi = builder.build();
    let mut http = WasiHttpCtx::new();
    http.set_field_size_limit(FIELD_SIZE_LIMIT);
    let mut table = ResourceTable::new();
    table.set_max_capacity(resource_capacity(memory_limit));
    let sandbox = Sandbox {
        wasi,
        http,
        table,
        hooks: outbound.clone(),
        memory: MemoryLimiter {
            limit: memory_limit,
            hit: false,
            size: 0,
        },
        deadline: Instant::now(),
        logs,
        frame: Frame::default(),
        kv: kv.clone(),
    };
    let mut store = Store::new(engine, sandbox);
    store.limiter(|s| &mut s.memory);
    // Every epoch tick: trap once past the deadline, else yield so that a
    // busy guest shares the thread with other executions. tokio's
    // `yield_now` runs the guest again only after the runtime has looked
    // at its sockets and timers, so a runtime need not look at them more
    // often than its default for a computing guest's sake.
    store.epoch_deadline_callback(|state| {
        if Instant::now() >= state.data().deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        }
    });
    store.set_epoch_deadline(1);
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::Outbound;

    #[test]
    fn grants_match_host_and_port() {
        let grants = Outbound::parse(&["api.example.com".into(), "127.0.0.1:8080".into()]).unwrap();
        let allows = |u: &str| grants.allows(&u.parse().unwrap());
        assert!(allows("https://api.example.com/x"));
        assert!(allows("http://API.example.com:9000/"));
        assert!(allows("http://127.0.0.1:8080/ping"));
        assert!(!allows("http://127.0.0.1:8081/ping"));
        assert!(!allows("http://127.0.0.1/"));
        assert!(!allows("https://evil.example.com/"));
        assert!(Outbound::parse(&["bad host".into()]).is_err());
        assert!(Outbound::parse(&["host:notaport".into()]).is_err());
        assert!(Outbound::default().grants.is_empty());
    }
}
