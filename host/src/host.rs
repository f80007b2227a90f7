//! The host: one wasmtime engine (async, epoch interruption, pooling
//! allocator), the linker with the sandboxed WASI set, the compiler and
//! its cache, and loading components into [`LoadedApp`]s.

use crate::app::{AppMeta, ExecutionSink, Links, LoadedApp};
use crate::bindings::{FunctionIndices, LifecycleIndices};
use crate::compile::{CompileStats, Compiler, digest, one_line};
use crate::config::{EPOCH_TICK, HostConfig};
use crate::error::Error;
use crate::pool::Prepared;
use crate::sandbox::Sandbox;
use crate::spec::AppSpec;
use std::sync::Arc;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyIndices;

/// The export name of the modal contract's `function` interface.
const FUNCTION_EXPORT: &str = "modal:app/function@0.1.0";
/// The export name of the modal contract's `needs` interface.
const NEEDS_EXPORT: &str = "modal:app/needs@0.1.0";
/// The export name of the standard HTTP handler.
const HTTP_EXPORT: &str = "wasi:http/incoming-handler@0.2.12";

/// Loads and runs components. Cheap to clone; clones share the engine.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

struct HostInner {
    engine: Engine,
    linker: Linker<Sandbox>,
    config: HostConfig,
    compiler: Compiler,
    /// The runtime the host was created on, if any: background work of its
    /// apps (detached web handlers, scale-down, exit hooks) runs there.
    runtime: Option<tokio::runtime::Handle>,
    /// Every pool of every app loaded on this host.
    reclaimer: Arc<crate::pool::Reclaimer>,
}

impl Host {
    /// Creates the engine and starts its epoch ticker.
    pub fn new(config: HostConfig) -> Result<Host, Error> {
        let mut wasm = Config::new();
        wasm.epoch_interruption(true);
        if let Some(limits) = &config.pooling {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(limits.total_component_instances)
                .total_core_instances(limits.total_core_instances)
                .total_memories(limits.total_memories)
                .total_tables(limits.total_tables)
                .total_stacks(limits.total_stacks)
                .decommit_batch_size(limits.decommit_batch.max(1))
                .table_keep_resident(limits.table_keep_resident);
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm)
            .map_err(|e| Error::Internal(format!("creating the engine: {e:#}")))?;
        let mut linker = Linker::new(&engine);
        let link = |e: wasmtime::Error| Error::Internal(format!("linking WASI: {e:#}"));
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link)?;
        crate::bindings::modal::app::context::add_to_linker::<
            _,
            wasmtime::component::HasSelf<Sandbox>,
        >(&mut linker, |s| s)
        .map_err(link)?;
        crate::bindings::modal::app::invoke::add_to_linker::<
            _,
            wasmtime::component::HasSelf<Sandbox>,
        >(&mut linker, |s| s)
        .map_err(link)?;
        use crate::bindings::wasi::keyvalue::{atomics, batch, store};
        store::add_to_linker::<_, wasmtime::component::HasSelf<Sandbox>>(&mut linker, |s| s)
            .map_err(link)?;
        atomics::add_to_linker::<_, wasmtime::component::HasSelf<Sandbox>>(&mut linker, |s| s)
            .map_err(link)?;
        batch::add_to_linker::<_, wasmtime::component::HasSelf<Sandbox>>(&mut linker, |s| s)
            .map_err(link)?;
        spawn_epoch_ticker(&engine);
        let compiler = Compiler::new(engine.clone(), config.cache_dir.as_deref());
        let warm_memory = config.warm_memory;
        Ok(Host {
            inner: Arc::new(HostInner {
                engine,
                linker,
                config,
                compiler,
                runtime: tokio::runtime::Handle::try_current().ok(),
                reclaimer: Arc::new(crate::pool::Reclaimer::new(warm_memory)),
            }),
        })
    }

    /// The settings this host was created with.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// Components compiled (rather than loaded from the cache) so far.
    pub fn compilations(&self) -> u64 {
        self.inner.compiler.compilations()
    }

    /// Checks, compiles (or loads from the cache) and links a component.
    async fn prepare(&self, wasm: &[u8]) -> Result<(Prepared, String, CompileStats), Error> {
        let digest = digest(wasm);
        let host = self.clone();
        let bytes = wasm.to_vec();
        let key = digest.clone();
        let (component, stats) =
            tokio::task::spawn_blocking(move || host.inner.compiler.load(&bytes, &key))
                .await
                .map_err(|e| Error::Internal(format!("the compile task failed: {e}")))??;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| Error::UnsupportedImports(one_line(&format!("{e:#}"))))?;
        let function = optional_export(&component, FUNCTION_EXPORT, || FunctionIndices::new(&pre))?;
        let lifecycle = LifecycleIndices::new(&pre).ok();
        let needs = optional_export(&component, NEEDS_EXPORT, || {
            crate::bindings::NeedsIndices::new(&pre)
        })?;
        let proxy = optional_export(&component, HTTP_EXPORT, || ProxyIndices::new(&pre))?;
        if function.is_none() && proxy.is_none() {
            return Err(Error::MissingExports);
        }
        let config = &self.inner.config;
        let prepared = Prepared {
            engine: self.inner.engine.clone(),
            pre,
            function,
            lifecycle,
            needs,
            proxy,
            outbound: crate::sandbox::Outbound::default(),
            kv: crate::kv::Access {
                store: Arc::new(crate::kv::Memory::default()),
                app: Arc::from("describe"),
            },
            secrets: Default::default(),
            mounts: Vec::new(),
            run_enter: false,
            run_exit: false,
            memory_limit: config.memory_limit,
            log_limit: config.log_limit,
            hook_timeout: config.describe_timeout,
            runtime: self.inner.runtime.clone(),
            reclaimer: self.inner.reclaimer.clone(),
        };
        Ok((prepared, digest, stats))
    }

    /// Where the compiled code of the component with this SHA-256 is
    /// cached, if caching is on.
    pub fn compiled_path(&self, digest: &str) -> Option<std::path::PathBuf> {
        self.inner.compiler.cache_path(digest)
    }

    /// Checks and compiles a component (filling the compiled-code cache)
    /// without loading it; reports whether the cache already had it.
    pub async fn precompile(&self, wasm: &[u8]) -> Result<CompileStats, Error> {
        self.prepare(wasm).await.map(|(_, _, stats)| stats)
    }

    /// Reads and validates the spec of a component without keeping it.
    pub async fn describe(&self, wasm: &[u8]) -> Result<AppSpec, Error> {
        let (prepared, _, _) = self.prepare(wasm).await?;
        self.read_spec(&prepared, &AppMeta::new("describe", 0))
            .await
    }

    async fn read_spec(&self, prepared: &Prepared, meta: &AppMeta) -> Result<AppSpec, Error> {
        let config = &self.inner.config;
        let Some(_) = &prepared.function else {
            let mut spec = AppSpec::proxy(config);
            for f in &mut spec.functions {
                meta.pool
                    .apply(&mut f.settings)
                    .map_err(Error::InvalidSpec)?;
            }
            return Ok(spec);
        };
        if !meta.pool.is_empty() {
            return Err(Error::InvalidSpec(vec![
                "--timeout, --min-warm, --max-instances and --max-requests are for plain \
                 wasi:http components; an app built with the SDK sets them on its functions"
                    .into(),
            ]));
        }
        let env = vec![
            ("MODAL_APP_NAME".to_string(), meta.name.clone()),
            ("MODAL_APP_VERSION".to_string(), meta.version.to_string()),
        ];
        let (raw, secrets) = crate::pool::describe(prepared, &env)
            .await
            .map_err(Error::Describe)?;
        let mut spec = AppSpec::validate(raw.into(), config)?;
        spec.secrets = crate::spec::validate_secret_names(secrets)?;
        if prepared.proxy.is_none()
            && let Some(web) = spec
                .functions
                .iter()
                .find(|f| matches!(f.kind, crate::spec::FunctionKind::Web { .. }))
        {
            return Err(Error::InvalidSpec(vec![format!(
                "function `{}`: declared as a web function, but the component does not export `{HTTP_EXPORT}`",
                web.name
            )]));
        }
        Ok(spec)
    }

    /// Loads a component as version `meta.version` of app `meta.name`:
    /// validates and compiles it, reads and validates its spec, and starts
    /// each function's `min_warm` instances before returning.
    pub async fn load(&self, wasm: &[u8], meta: AppMeta) -> Result<LoadedApp, Error> {
        self.load_with(wasm, meta, None).await.map(|(app, _)| app)
    }

    /// Like [`load`](Self::load), with a sink that receives every
    /// execution, and reporting how the code was compiled.
    pub async fn load_with(
        &self,
        wasm: &[u8],
        meta: AppMeta,
        sink: Option<ExecutionSink>,
    ) -> Result<(LoadedApp, CompileStats), Error> {
        let links = Links {
            sink,
            ..Links::default()
        };
        self.load_linked(wasm, meta, links).await
    }

    /// Like [`load_with`](Self::load_with), with the invoker that runs
    /// the calls its guests make to other functions.
    pub(crate) async fn load_linked(
        &self,
        wasm: &[u8],
        meta: AppMeta,
        links: Links,
    ) -> Result<(LoadedApp, CompileStats), Error> {
        let outbound = crate::sandbox::Outbound::parse(&meta.allow_http)
            .map_err(|e| Error::BadInput(format!("--allow-http: {e}")))?;
        let (mut prepared, digest, stats) = self.prepare(wasm).await?;
        prepared.outbound = outbound;
        if let Some(store) = links.kv.clone() {
            prepared.kv.store = store;
        }
        prepared.kv.app = Arc::from(meta.name.as_str());
        prepared.secrets = meta.secrets.clone();
        prepared.mounts = meta.mounts.clone();
        let spec = self.read_spec(&prepared, &meta).await?;
        prepared.run_enter = spec.has_enter && prepared.lifecycle.is_some();
        prepared.run_exit = spec.has_exit && prepared.lifecycle.is_some();
        let prepared = Arc::new(prepared);
        let app = LoadedApp::new(meta, spec, digest, prepared, &self.inner.config, links);
        if let Err(e) = app.prewarm().await {
            app.drain().await;
            return Err(e);
        }
        Ok((app, stats))
    }
}

/// Looks up an optional export: absent is `None`; present with the wrong
/// shape is an error naming it.
fn optional_export<T>(
    component: &Component,
    name: &str,
    indices: impl FnOnce() -> wasmtime::Result<T>,
) -> Result<Option<T>, Error> {
    if component.get_export_index(None, name).is_none() {
        return Ok(None);
    }
    indices().map(Some).map_err(|e| {
        Error::InvalidComponent(format!(
            "its export `{name}` does not match the contract: {}",
            one_line(&format!("{e:#}"))
        ))
    })
}

/// Advances the engine's epoch every tick until the engine is dropped;
/// deadlines and time slices are counted in these ticks.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("modal-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(
            "could not start the epoch ticker; timeouts will not interrupt busy guests: {e}"
        );
    }
}
