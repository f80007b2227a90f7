//! Deployed apps: the registry, the artifact store and the live versions
//! that serve. [`Platform`] is what `modal server` runs and what an
//! embedding program uses: deploy bytes, list, stop, roll back, look up a
//! function and call it.

mod artifacts;
mod migrate;
mod records;
mod registry;
mod scheduler;
pub mod state;

pub use artifacts::{ArtifactStore, FileArtifacts};
pub use records::{CallRecord, ExecutionRecord, Usage};
pub use registry::{
    AppRecord, AppState, GitInfo, Registry, ScheduleState, SqliteRegistry, VersionRecord,
};
pub use scheduler::ScheduleStatus;

use crate::app::{AppMeta, Execution, ExecutionSink, LoadedApp, Trigger};
use crate::compile::{CompileStats, digest};
use crate::config::HostConfig;
use crate::error::Error;
use crate::host::Host;
use crate::pool::PoolStats;
use crate::spec::AppSpec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a replaced or stopped version may finish its executions in
/// progress before they are cancelled.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Largest component accepted by a deploy (Python components are ~20 MiB).
pub const DEFAULT_MAX_UPLOAD: usize = 128 << 20;

/// How long a stopped app is kept (for `history` and redeploy) before it
/// and its unreferenced artifacts are garbage-collected.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Attempts of an execution that keeps reaching versions that were just
/// replaced (each attempt takes the live version anew).
const RETRIES: u32 = 5;

/// Non-live versions kept loaded for `--version` calls.
const MAX_PINNED: usize = 16;

/// Settings of a [`Platform`].
#[derive(Clone, Debug)]
pub struct PlatformConfig {
    /// Deadline for a replaced version's executions in progress.
    pub drain_timeout: Duration,
    /// Largest component a deploy accepts, in bytes.
    pub max_upload: usize,
    /// How long stopped apps are kept.
    pub retention: Duration,
    /// Where failed scheduled runs are reported when the app names no
    /// webhook of its own.
    pub notify: Option<String>,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        PlatformConfig {
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            max_upload: DEFAULT_MAX_UPLOAD,
            retention: DEFAULT_RETENTION,
            notify: None,
        }
    }
}

/// What a deploy asks for besides the component.
#[derive(Clone, Debug, Default)]
pub struct DeployRequest {
    /// The app's name (a DNS label).
    pub name: String,
    /// Environment variables for the guest.
    pub env: Vec<(String, String)>,
    /// Hosts (`host` or `host:port`) the app may send HTTP requests to.
    pub allow_http: Vec<String>,
    /// Where failed scheduled runs are reported (a JSON POST); the
    /// platform's default when `None`.
    pub notify: Option<String>,
    /// A label for this version, shown in the history.
    pub tag: Option<String>,
    /// Who deploys.
    pub deployer: String,
    /// The commit deployed from.
    pub git: Option<GitInfo>,
    /// Pool settings for a plain `wasi:http` component.
    pub pool: crate::spec::PoolSettings,
}

/// The result of a deploy or rollback.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deployment {
    /// The app.
    pub app: String,
    /// The new live version.
    pub version: u64,
    /// The version it replaced, if any.
    pub previous: Option<u64>,
    /// SHA-256 of the component.
    pub digest: String,
    /// Size of the component in bytes.
    pub size: usize,
    /// What the component offers.
    pub spec: AppSpec,
    /// Whether compiled code came from the cache.
    pub compiled_from_cache: bool,
    /// Time spent compiling or loading compiled code, in ms.
    pub compile_ms: f64,
    /// Time the whole deploy took, in ms.
    pub took_ms: f64,
    /// For a rollback, the version whose code now runs.
    pub rollback_of: Option<u64>,
}

/// One version as `list` and `history` show it.
#[derive(Clone, Debug, Serialize)]
pub struct VersionStatus {
    /// The recorded version.
    #[serde(flatten)]
    pub record: VersionRecord,
    /// `live`, `draining` or `retired`.
    pub status: &'static str,
    /// Instances alive (live or draining versions).
    pub instances: usize,
    /// Executions in progress.
    pub in_flight: usize,
}

/// An app as `list` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppStatus {
    /// The recorded app.
    #[serde(flatten)]
    pub record: AppRecord,
    /// Functions of the live version.
    pub functions: usize,
    /// Instances of the live version.
    pub instances: usize,
    /// Executions in progress on the live version.
    pub in_flight: usize,
    /// Executions recorded (all versions, within the retention).
    pub calls: u64,
    /// Of those, the failed ones.
    pub errors: u64,
    /// Versions still draining.
    pub draining: Vec<DrainStatus>,
    /// Its schedules and their next fire times.
    pub schedules: Vec<ScheduleStatus>,
    /// Set when the live version could not be loaded at start-up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_error: Option<String>,
}

/// A replaced version finishing its executions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DrainStatus {
    /// The version.
    pub version: u64,
    /// Executions still in progress.
    pub in_flight: usize,
    /// Instances still alive.
    pub instances: usize,
    /// Seconds until stragglers are cancelled.
    pub deadline_in_s: u64,
}

/// What garbage collection removed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GcReport {
    /// Stopped apps forgotten.
    pub apps: Vec<String>,
    /// Artifacts deleted.
    pub artifacts: usize,
}

/// The state of one app name in memory.
enum Slot {
    Serving(LoadedApp),
    Stopped,
    /// The live version could not be loaded at start-up.
    Broken(String),
}

struct Draining {
    app: LoadedApp,
    deadline: Instant,
}

/// Deployed apps and their live versions. Cheap to clone.
#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

struct Inner {
    host: Host,
    /// The runtime the platform was opened on: its background work (drains,
    /// spawned calls, manual schedule runs) runs there, whichever thread
    /// asked for it (e.g. a connection thread of the server).
    runtime: tokio::runtime::Handle,
    scheduler: Arc<scheduler::Scheduler>,
    recorder: Arc<records::Recorder>,
    /// Bumped whenever a spawned call finishes, to wake waiting readers.
    calls_done: tokio::sync::watch::Sender<u64>,
    registry: Arc<dyn Registry>,
    artifacts: Arc<dyn ArtifactStore>,
    config: PlatformConfig,
    sink: Option<ExecutionSink>,
    slots: RwLock<HashMap<String, Slot>>,
    draining: Mutex<Vec<Draining>>,
    pinned: tokio::sync::Mutex<Vec<(String, u64, LoadedApp, Instant)>>,
    deploy_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Deploys hold it shared while their artifact is not yet referenced;
    /// garbage collection holds it exclusively.
    gc_lock: tokio::sync::RwLock<()>,
    /// The state directory's lock, held for the platform's life.
    _state_lock: Option<state::StateLock>,
    /// Set by [`Platform::shutdown`].
    shutting_down: std::sync::atomic::AtomicBool,
}

/// What an execution runs for: a call (with its id) or a scheduled run.
#[derive(Clone, Copy)]
enum Run<'a> {
    Call(&'a str),
    Scheduled(&'a str),
}

/// First pause before a failed call or scheduled run is tried again.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The pause before attempt `attempt + 1` (the first retry is attempt 1):
/// doubling from [`RETRY_BACKOFF`] up to [`MAX_BACKOFF`].
pub(crate) fn retry_backoff(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    (RETRY_BACKOFF * (1 << doublings)).min(MAX_BACKOFF)
}

/// A new random id for a call (`call-` and 20 hex digits).
fn new_call_id() -> Result<String, Error> {
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness for a call id: {e}")))?;
    Ok(format!("call-{}", hex::encode(bytes)))
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Checks that `name` is a DNS label: `[a-z0-9-]{1,63}`, no `-` at either
/// end and no `--` (which separates app and function in web host names).
pub fn validate_app_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidAppName(name.to_string()))
    }
}

/// Checks deploy-time environment variables: each key is a portable
/// variable name (`[A-Za-z_][A-Za-z0-9_]*`, at most 256 bytes) that does
/// not start with `MODAL_` (the host sets those), and no value holds a NUL.
pub fn validate_env(env: &[(String, String)]) -> Result<(), Error> {
    for (key, value) in env {
        let bad = |why: &str| {
            Err(Error::BadInput(format!(
                "environment variable `{}`: {why}",
                key.escape_debug()
            )))
        };
        let portable = key.len() <= 256
            && key
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !portable {
            return bad("a name is letters, digits and `_`, not starting with a digit");
        }
        if key.to_ascii_uppercase().starts_with("MODAL_") {
            return bad("names starting with `MODAL_` are set by the host");
        }
        if value.contains('\0') {
            return bad("a value cannot contain a NUL byte");
        }
    }
    Ok(())
}

impl Platform {
    /// Opens the embedded default on `state_dir`: `registry.db` (SQLite),
    /// `artifacts/` and the compiled-code cache `compiled/`. Loads every
    /// deployed app's live version (from cached compiled code). The
    /// directory is made private to its user and locked for the platform's
    /// life: a second platform on it fails with [`Error::StateInUse`].
    pub async fn open(
        state_dir: &Path,
        mut host_config: HostConfig,
        config: PlatformConfig,
        sink: Option<ExecutionSink>,
    ) -> Result<Platform, Error> {
        let lock = state::lock(state_dir)?;
        let registry_path = state_dir.join("registry.db");
        let records = state_dir.join("executions.db");
        for db in [&registry_path, &records] {
            if !db.exists() {
                // SQLite gives its -wal and -shm files the mode of the
                // database file.
                state::private_file(db).map_err(|source| Error::Io {
                    context: format!("creating {}", db.display()),
                    source,
                })?;
            }
        }
        let registry = SqliteRegistry::open(&registry_path)?;
        let artifacts = FileArtifacts::open(&state_dir.join("artifacts"))?;
        let compiled = state_dir.join("compiled");
        state::private_dir(&compiled).map_err(|source| Error::Io {
            context: format!("creating {}", compiled.display()),
            source,
        })?;
        host_config.cache_dir = Some(compiled);
        let host = Host::new(host_config)?;
        Platform::build(
            host,
            Arc::new(registry),
            Arc::new(artifacts),
            &records,
            config,
            sink,
            Some(lock),
        )
        .await
    }

    /// A platform on given parts (e.g. another registry implementation);
    /// executions and spawned calls are kept in the SQLite file `records`.
    pub async fn with_parts(
        host: Host,
        registry: Arc<dyn Registry>,
        artifacts: Arc<dyn ArtifactStore>,
        records: &Path,
        config: PlatformConfig,
        sink: Option<ExecutionSink>,
    ) -> Result<Platform, Error> {
        Platform::build(host, registry, artifacts, records, config, sink, None).await
    }

    async fn build(
        host: Host,
        registry: Arc<dyn Registry>,
        artifacts: Arc<dyn ArtifactStore>,
        records: &Path,
        config: PlatformConfig,
        sink: Option<ExecutionSink>,
        state_lock: Option<state::StateLock>,
    ) -> Result<Platform, Error> {
        let recorder = records::Recorder::start(Arc::new(records::Store::open(records)?))?;
        let recording = recorder.clone();
        let sink: ExecutionSink = Arc::new(move |e: &Execution| {
            recording.record(e);
            if let Some(user) = &sink {
                user(e);
            }
        });
        let sink = Some(sink);
        let platform = Platform {
            inner: Arc::new(Inner {
                runtime: tokio::runtime::Handle::current(),
                host,
                scheduler: Arc::default(),
                recorder,
                calls_done: tokio::sync::watch::channel(0).0,
                registry,
                artifacts,
                config,
                sink,
                slots: RwLock::new(HashMap::new()),
                draining: Mutex::new(Vec::new()),
                pinned: tokio::sync::Mutex::new(Vec::new()),
                deploy_locks: Mutex::new(HashMap::new()),
                gc_lock: tokio::sync::RwLock::new(()),
                _state_lock: state_lock,
                shutting_down: Default::default(),
            }),
        };
        platform.restore().await?;
        platform.resume_calls()?;
        scheduler::Scheduler::start(&platform)?;
        Ok(platform)
    }

    /// The host that runs the apps.
    pub fn host(&self) -> &Host {
        &self.inner.host
    }

    /// The settings.
    pub fn config(&self) -> &PlatformConfig {
        &self.inner.config
    }

    fn slots(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Slot>> {
        self.inner
            .slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn slots_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Slot>> {
        self.inner
            .slots
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn draining(&self) -> std::sync::MutexGuard<'_, Vec<Draining>> {
        self.inner
            .draining
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Loads the live version of every deployed app.
    async fn restore(&self) -> Result<(), Error> {
        for app in self.inner.registry.apps()? {
            let slot = match (app.state, app.live_version) {
                (AppState::Deployed, Some(version)) => {
                    match self.load_version(&app.name, version).await {
                        Ok(loaded) => Slot::Serving(loaded),
                        Err(e) => {
                            tracing::error!(app = %app.name, version, "could not load the live version: {e}");
                            Slot::Broken(e.to_string())
                        }
                    }
                }
                _ => Slot::Stopped,
            };
            self.slots_mut().insert(app.name, slot);
        }
        Ok(())
    }

    /// The record of `version` of `app`.
    fn version_record(&self, app: &str, version: u64) -> Result<VersionRecord, Error> {
        self.inner
            .registry
            .version(app, version)?
            .ok_or_else(|| Error::VersionNotFound {
                app: app.to_string(),
                version,
            })
    }

    /// Loads a recorded version from the artifact store.
    async fn load_version(&self, app: &str, version: u64) -> Result<LoadedApp, Error> {
        let record = self.version_record(app, version)?;
        let bytes = self.inner.artifacts.get(&record.digest)?;
        let meta = AppMeta {
            name: app.to_string(),
            version,
            env: record.env.clone(),
            allow_http: record.allow_http.clone(),
            pool: record.pool.clone(),
        };
        let (loaded, _) = self
            .inner
            .host
            .load_with(&bytes, meta, self.inner.sink.clone())
            .await?;
        Ok(loaded)
    }

    fn deploy_lock(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .inner
            .deploy_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        locks.entry(app.to_string()).or_default().clone()
    }

    /// Validates, compiles and describes `wasm`, stores it as the next
    /// version of `request.name` and makes it live. The version it replaces
    /// stops taking new executions at once and drains. On any error
    /// nothing changes: the previous version keeps serving.
    pub async fn deploy(&self, wasm: &[u8], request: DeployRequest) -> Result<Deployment, Error> {
        validate_app_name(&request.name)?;
        validate_env(&request.env)?;
        if wasm.len() > self.inner.config.max_upload {
            return Err(Error::TooLarge {
                limit: self.inner.config.max_upload,
            });
        }
        let lock = self.deploy_lock(&request.name);
        let _deploying = lock.lock().await;
        self.publish(wasm, request, None).await
    }

    /// The deploy path shared by deploy and rollback; the caller holds the
    /// app's deploy lock.
    async fn publish(
        &self,
        wasm: &[u8],
        request: DeployRequest,
        rollback_of: Option<u64>,
    ) -> Result<Deployment, Error> {
        let start = Instant::now();
        let _gc = self.inner.gc_lock.read().await;
        let registry = &self.inner.registry;
        let version = registry.next_version(&request.name)?;
        let digest = digest(wasm);
        let meta = AppMeta {
            name: request.name.clone(),
            version,
            env: request.env.clone(),
            allow_http: request.allow_http.clone(),
            pool: request.pool.clone(),
        };
        let (loaded, stats): (LoadedApp, CompileStats) = self
            .inner
            .host
            .load_with(wasm, meta, self.inner.sink.clone())
            .await?;
        // Stored only once it loaded: a rejected upload leaves nothing
        // behind. Stored before `publish`, so the live version always has
        // its artifact.
        if let Err(e) = self.inner.artifacts.put(&digest, wasm) {
            loaded.drain().await;
            return Err(e);
        }
        let now = now_ms();
        let record = VersionRecord {
            app: request.name.clone(),
            version,
            digest: digest.clone(),
            spec: loaded.spec().clone(),
            env: request.env,
            allow_http: request.allow_http,
            notify: request.notify,
            pool: request.pool,
            deployed_at: now,
            deployer: request.deployer,
            tag: request.tag,
            git: request.git,
            rollback_of,
        };
        if let Err(e) = registry.publish(&record, now) {
            loaded.drain().await;
            return Err(e);
        }
        let previous = self.go_live(&request.name, loaded);
        self.inner.recorder.deployed();
        self.inner.scheduler.changed();
        match rollback_of {
            Some(from) => tracing::info!(app = %request.name, version, from, "rolled back"),
            None => {
                tracing::info!(app = %request.name, version, digest = &digest[..12], "deployed")
            }
        }
        Ok(Deployment {
            app: request.name,
            version,
            previous,
            digest,
            size: wasm.len(),
            spec: record.spec,
            compiled_from_cache: stats.cached,
            compile_ms: stats.elapsed.as_secs_f64() * 1e3,
            took_ms: start.elapsed().as_secs_f64() * 1e3,
            rollback_of,
        })
    }

    /// Makes `loaded` the serving version; the one it replaces drains.
    fn go_live(&self, app: &str, loaded: LoadedApp) -> Option<u64> {
        let old = self
            .slots_mut()
            .insert(app.to_string(), Slot::Serving(loaded));
        match old {
            Some(Slot::Serving(old)) => {
                let version = old.meta().version;
                self.retire(old);
                Some(version)
            }
            _ => None,
        }
    }

    /// Drains a version that no longer serves, cancelling what is still
    /// running at the drain deadline.
    fn retire(&self, old: LoadedApp) {
        let timeout = self.inner.config.drain_timeout;
        self.draining().push(Draining {
            app: old.clone(),
            deadline: Instant::now() + timeout,
        });
        let platform = self.clone();
        self.spawn_task(async move {
            if tokio::time::timeout(timeout, old.drain()).await.is_err() {
                let stragglers = old.in_flight();
                tracing::warn!(
                    app = %old.meta().name,
                    version = old.meta().version,
                    stragglers,
                    "drain deadline passed; cancelling executions still in progress"
                );
                old.cancel("its version was replaced and the drain deadline passed");
                old.drain().await;
            }
            platform
                .draining()
                .retain(|d| !Arc::ptr_eq(&d.app.inner, &old.inner));
        });
    }

    /// Stops an app: no new executions; those in progress drain.
    pub async fn stop(&self, app: &str) -> Result<(), Error> {
        let lock = self.deploy_lock(app);
        let _guard = lock.lock().await;
        match self.inner.registry.app(app)? {
            None => return Err(Error::AppNotFound(app.to_string())),
            Some(record) if record.state == AppState::Stopped => {
                return Err(Error::AppStopped(app.to_string()));
            }
            Some(_) => {}
        }
        self.inner.registry.stop(app, now_ms())?;
        let old = self.slots_mut().insert(app.to_string(), Slot::Stopped);
        if let Some(Slot::Serving(old)) = old {
            self.retire(old);
        }
        self.unpin(app).await;
        self.inner.scheduler.changed();
        tracing::info!(app, "stopped");
        Ok(())
    }

    /// Makes an earlier version's code live again, as a new version.
    /// Without `version`, the one before the live version.
    pub async fn rollback(
        &self,
        app: &str,
        version: Option<u64>,
        deployer: &str,
    ) -> Result<Deployment, Error> {
        let lock = self.deploy_lock(app);
        let _guard = lock.lock().await;
        let record = self
            .inner
            .registry
            .app(app)?
            .ok_or_else(|| Error::AppNotFound(app.to_string()))?;
        let target = match version {
            Some(v) => v,
            None => {
                let live = record.live_version.unwrap_or(0);
                let versions = self.inner.registry.versions(app)?;
                let live_digest = versions
                    .iter()
                    .find(|v| v.version == live)
                    .map(|v| v.digest.clone());
                versions
                    .iter()
                    .rev()
                    .find(|v| v.version < live && Some(&v.digest) != live_digest.as_ref())
                    .or_else(|| versions.iter().rev().find(|v| v.version < live))
                    .map(|v| v.version)
                    .ok_or_else(|| {
                        Error::WrongKind(format!(
                            "app `{app}` has no version before v{live} to roll back to"
                        ))
                    })?
            }
        };
        let old = self.version_record(app, target)?;
        let bytes = self.inner.artifacts.get(&old.digest)?;
        let request = DeployRequest {
            name: app.to_string(),
            env: old.env.clone(),
            allow_http: old.allow_http.clone(),
            notify: old.notify.clone(),
            tag: old.tag.clone(),
            deployer: deployer.to_string(),
            git: old.git.clone(),
            pool: old.pool.clone(),
        };
        self.publish(&bytes, request, Some(target)).await
    }

    /// The serving version of `app`, or why there is none.
    pub fn live(&self, app: &str) -> Result<LoadedApp, Error> {
        match self.slots().get(app) {
            Some(Slot::Serving(loaded)) => Ok(loaded.clone()),
            Some(Slot::Stopped) => Err(Error::AppStopped(app.to_string())),
            Some(Slot::Broken(e)) => {
                Err(Error::Internal(format!("app `{app}` failed to load: {e}")))
            }
            None => Err(Error::AppNotFound(app.to_string())),
        }
    }

    /// A kept version of `app`: the live one, or another loaded on demand
    /// from its cached compiled code.
    pub async fn version(&self, app: &str, version: u64) -> Result<LoadedApp, Error> {
        let live = self.live(app)?;
        if live.meta().version == version {
            return Ok(live);
        }
        let mut pinned = self.inner.pinned.lock().await;
        if let Some(entry) = pinned
            .iter_mut()
            .find(|(a, v, _, _)| a == app && *v == version)
        {
            entry.3 = Instant::now();
            return Ok(entry.2.clone());
        }
        let loaded = self.load_version(app, version).await?;
        if pinned.len() >= MAX_PINNED
            && let Some(oldest) = pinned
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.3)
                .map(|(i, _)| i)
        {
            let (_, _, evicted, _) = pinned.remove(oldest);
            self.retire(evicted);
        }
        pinned.push((app.to_string(), version, loaded.clone(), Instant::now()));
        Ok(loaded)
    }

    async fn unpin(&self, app: &str) {
        let mut pinned = self.inner.pinned.lock().await;
        let (gone, kept): (Vec<_>, Vec<_>) = pinned.drain(..).partition(|(a, _, _, _)| a == app);
        *pinned = kept;
        drop(pinned);
        for (_, _, loaded, _) in gone {
            self.retire(loaded);
        }
    }

    /// Looks up a deployed function. The handle always calls the version
    /// live at the time of the call.
    pub fn function(&self, app: &str, function: &str) -> Result<FunctionHandle, Error> {
        let live = self.live(app)?;
        if live.spec().function(function).is_none() {
            return Err(Error::UnknownFunction {
                name: function.to_string(),
                available: live.spec().names(),
            });
        }
        Ok(FunctionHandle {
            platform: self.clone(),
            app: app.to_string(),
            function: function.to_string(),
        })
    }

    /// Calls `function` of `app` (of `version` when given, else the live
    /// one). A call that reaches a version just replaced by a deploy is
    /// retried on the new one, so deploys fail no call.
    pub async fn call(
        &self,
        app: &str,
        function: &str,
        input: &[u8],
        version: Option<u64>,
        trigger: Trigger,
    ) -> Result<Execution, Error> {
        let call_id = new_call_id()?;
        self.call_with_retries(app, function, input, version, trigger, &call_id)
            .await
    }

    /// Runs a call, and runs it again (after a growing pause) while it
    /// fails inside the guest and the function's `retries` allow. Every
    /// attempt is recorded with `call_id`; the last one is returned.
    async fn call_with_retries(
        &self,
        app: &str,
        function: &str,
        input: &[u8],
        version: Option<u64>,
        trigger: Trigger,
        call_id: &str,
    ) -> Result<Execution, Error> {
        let mut attempt = 0;
        loop {
            let (execution, retries) = self
                .execute(app, function, input, version, trigger, Run::Call(call_id))
                .await?;
            let failed = execution.outcome.as_ref().err();
            if !failed.is_some_and(Error::is_retryable) || attempt >= retries {
                return Ok(execution);
            }
            attempt += 1;
            tracing::info!(app, function, call_id, attempt, "call failed; retrying");
            tokio::time::sleep(retry_backoff(attempt)).await;
        }
    }

    /// Runs a scheduled function of the live version for run `run_id`.
    pub(crate) async fn run_scheduled(
        &self,
        app: &str,
        function: &str,
        run_id: &str,
    ) -> Result<Execution, Error> {
        let run = Run::Scheduled(run_id);
        let (execution, _) = self
            .execute(app, function, b"", None, Trigger::Schedule, run)
            .await?;
        Ok(execution)
    }

    async fn execute(
        &self,
        app: &str,
        function: &str,
        input: &[u8],
        version: Option<u64>,
        trigger: Trigger,
        run: Run<'_>,
    ) -> Result<(Execution, u32), Error> {
        let mut attempts = 0;
        loop {
            let loaded = match version {
                Some(v) => self.version(app, v).await?,
                None => self.live(app)?,
            };
            let execution = match run {
                Run::Scheduled(id) => loaded.run_scheduled(function, id).await,
                Run::Call(id) => loaded.call_with_id(function, input, trigger, id).await,
            };
            attempts += 1;
            if matches!(execution.outcome, Err(Error::ShuttingDown(_))) && attempts < RETRIES {
                tokio::task::yield_now().await;
                continue;
            }
            let retries = loaded
                .spec()
                .function(function)
                .map_or(0, |f| f.settings.retries);
            return Ok((execution, retries));
        }
    }

    /// Serves an HTTP request with web function `function` of the live
    /// version of `app`. A request that reaches a version just replaced by
    /// a deploy is passed on, untouched, to the new one. An [`ErrorId`]
    /// extension on the request goes into the logs of a failed execution.
    ///
    /// [`ErrorId`]: crate::ErrorId
    pub async fn serve_http<B>(
        &self,
        app: &str,
        function: &str,
        mut request: hyper::Request<B>,
    ) -> Result<crate::WebResponse, Error>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let error_id = request.extensions_mut().remove::<crate::ErrorId>();
        self.serve_http_as(app, function, request, error_id).await
    }

    /// [`serve_http`](Self::serve_http) with the error id given directly.
    pub(crate) async fn serve_http_as<B>(
        &self,
        app: &str,
        function: &str,
        mut request: hyper::Request<B>,
        error_id: Option<crate::ErrorId>,
    ) -> Result<crate::WebResponse, Error>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let live = self.live(app)?;
            match live
                .try_serve_http(function, request, error_id.clone())
                .await
            {
                Ok(response) => return Ok(response),
                Err((_, Some(untouched))) if attempts < RETRIES => {
                    request = *untouched;
                    tokio::task::yield_now().await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Accepts a call to run in the background and returns its id at once.
    /// The call is stored first, so one accepted before a crash runs after
    /// the restart (at least once).
    pub async fn spawn(
        &self,
        app: &str,
        function: &str,
        input: &[u8],
        version: Option<u64>,
    ) -> Result<String, Error> {
        let loaded = match version {
            Some(v) => self.version(app, v).await?,
            None => self.live(app)?,
        };
        match loaded.spec().function(function) {
            None => {
                return Err(Error::UnknownFunction {
                    name: function.to_string(),
                    available: loaded.spec().names(),
                });
            }
            Some(f) if matches!(f.kind, crate::spec::FunctionKind::Web { .. }) => {
                return Err(Error::WrongKind(format!(
                    "`{function}` is a web function and cannot be spawned"
                )));
            }
            Some(_) => {}
        }
        let id = new_call_id()?;
        self.inner
            .recorder
            .store
            .insert_call(&id, app, function, version, input, now_ms())?;
        self.run_spawned(
            id.clone(),
            app.to_string(),
            function.to_string(),
            version,
            input.to_vec(),
        );
        Ok(id)
    }

    /// The runtime the platform was opened on.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.inner.runtime
    }

    /// Runs `task` on the platform's runtime.
    pub(crate) fn spawn_task(&self, task: impl Future<Output = ()> + Send + 'static) {
        drop(self.inner.runtime.spawn(task));
    }

    fn run_spawned(
        &self,
        id: String,
        app: String,
        function: String,
        version: Option<u64>,
        input: Vec<u8>,
    ) {
        let platform = self.clone();
        self.spawn_task(async move {
            let mut waits = 0;
            let result = loop {
                let result = platform
                    .call_with_retries(&app, &function, &input, version, Trigger::Spawn, &id)
                    .await
                    .and_then(|execution| execution.outcome);
                // An accepted call waits for the host to have room: it is
                // never rejected for load.
                match result {
                    Err(Error::HostAtCapacity(_)) => {
                        waits += 1;
                        tokio::time::sleep(retry_backoff(waits).min(Duration::from_secs(5))).await;
                    }
                    result => break result,
                }
            };
            let shutting_down = platform
                .inner
                .shutting_down
                .load(std::sync::atomic::Ordering::Acquire);
            if shutting_down && matches!(result, Err(Error::Cancelled { .. } | Error::ShuttingDown(_))) {
                // Cut by the shutdown: it stays pending and runs again at
                // the next start (at least once).
                tracing::info!(call = %id, "spawned call cut by the shutdown; it runs again after the restart");
                return;
            }
            if let Err(e) = platform
                .inner
                .recorder
                .store
                .finish_call(&id, &result, now_ms())
            {
                tracing::error!(call = %id, "could not store the result of a spawned call: {e}");
            }
            platform.inner.calls_done.send_modify(|n| *n += 1);
        });
    }

    /// Runs the calls accepted before a restart that never finished.
    fn resume_calls(&self) -> Result<(), Error> {
        for call in self.inner.recorder.store.unfinished_calls()? {
            tracing::info!(call = %call.id, app = %call.app, function = %call.function, "resuming a spawned call accepted before the restart");
            self.run_spawned(call.id, call.app, call.function, call.version, call.input);
        }
        Ok(())
    }

    /// The state of a spawned call, waiting up to `wait` for it to finish.
    pub async fn result(&self, id: &str, wait: Duration) -> Result<CallRecord, Error> {
        let deadline = Instant::now() + wait;
        let mut done = self.inner.calls_done.subscribe();
        loop {
            let record = self
                .inner
                .recorder
                .store
                .call(id)?
                .ok_or_else(|| Error::BadInput(format!("no spawned call with id `{id}`")))?;
            if record.state != "pending" || Instant::now() >= deadline {
                return Ok(record);
            }
            let _ = tokio::time::timeout_at(deadline.into(), done.changed()).await;
        }
    }

    /// The latest executions of an app (of one function if given).
    pub fn logs(
        &self,
        app: &str,
        function: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, Error> {
        self.inner
            .registry
            .app(app)?
            .ok_or_else(|| Error::AppNotFound(app.to_string()))?;
        self.inner.recorder.store.recent(app, function, limit)
    }

    /// New executions of every app, as they are recorded.
    pub fn follow(&self) -> tokio::sync::broadcast::Receiver<ExecutionRecord> {
        self.inner.recorder.follow()
    }

    /// Usage per version and function of an app.
    pub fn usage(&self, app: &str) -> Result<Vec<Usage>, Error> {
        self.inner
            .registry
            .app(app)?
            .ok_or_else(|| Error::AppNotFound(app.to_string()))?;
        self.inner.recorder.store.usage(app)
    }

    /// Metrics in the Prometheus text format.
    pub fn metrics(&self) -> String {
        let mut instances: Vec<(String, u64, usize)> = self
            .slots()
            .iter()
            .filter_map(|(name, slot)| match slot {
                Slot::Serving(l) => {
                    Some((name.clone(), l.meta().version, live_instances(&l.stats())))
                }
                _ => None,
            })
            .collect();
        instances.extend(self.draining().iter().map(|d| {
            (
                d.app.meta().name.clone(),
                d.app.meta().version,
                live_instances(&d.app.stats()),
            )
        }));
        instances.sort();
        self.inner.recorder.metrics(&instances)
    }

    /// Every app, with its live version's figures and draining versions.
    pub fn apps(&self) -> Result<Vec<AppStatus>, Error> {
        let totals = self.inner.recorder.store.totals()?;
        let apps = self.inner.registry.apps()?;
        Ok(apps
            .into_iter()
            .map(|record| {
                let (calls, errors) = totals.get(&record.name).copied().unwrap_or_default();
                let mut status = self.status(record);
                (status.calls, status.errors) = (calls, errors);
                status
            })
            .collect())
    }

    /// One app.
    pub fn app(&self, name: &str) -> Result<AppStatus, Error> {
        let record = self
            .inner
            .registry
            .app(name)?
            .ok_or_else(|| Error::AppNotFound(name.to_string()))?;
        Ok(self.status(record))
    }

    fn status(&self, record: AppRecord) -> AppStatus {
        let schedules = self.inner.scheduler.status(&record.name);
        let slots = self.slots();
        let (functions, instances, in_flight, load_error) = match slots.get(&record.name) {
            Some(Slot::Serving(l)) => (
                l.spec().functions.len(),
                live_instances(&l.stats()),
                l.in_flight(),
                None,
            ),
            Some(Slot::Broken(e)) => (0, 0, 0, Some(e.clone())),
            _ => (0, 0, 0, None),
        };
        drop(slots);
        let now = Instant::now();
        let draining = self
            .draining()
            .iter()
            .filter(|d| *d.app.meta().name == record.name)
            .map(|d| DrainStatus {
                version: d.app.meta().version,
                in_flight: d.app.in_flight(),
                instances: live_instances(&d.app.stats()),
                deadline_in_s: d.deadline.saturating_duration_since(now).as_secs(),
            })
            .collect();
        AppStatus {
            record,
            functions,
            instances,
            in_flight,
            calls: 0,
            errors: 0,
            schedules,
            draining,
            load_error,
        }
    }

    /// The versions of an app, oldest first, with their status.
    pub fn history(&self, app: &str) -> Result<Vec<VersionStatus>, Error> {
        let status = self.app(app)?;
        let versions = self.inner.registry.versions(app)?;
        Ok(versions
            .into_iter()
            .map(|record| {
                let v = record.version;
                let (label, instances, in_flight) = if status.record.state == AppState::Deployed
                    && status.record.live_version == Some(v)
                {
                    ("live", status.instances, status.in_flight)
                } else if let Some(d) = status.draining.iter().find(|d| d.version == v) {
                    ("draining", d.instances, d.in_flight)
                } else {
                    ("retired", 0, 0)
                };
                VersionStatus {
                    record,
                    status: label,
                    instances,
                    in_flight,
                }
            })
            .collect())
    }

    /// Per-function instance figures of the live version.
    pub fn stats(&self, app: &str) -> Result<Vec<PoolStats>, Error> {
        Ok(self.live(app)?.stats())
    }

    /// Forgets apps stopped longer than the retention, then deletes
    /// artifacts (and their compiled code) that no kept version uses.
    pub async fn gc(&self) -> Result<GcReport, Error> {
        let _exclusive = self.inner.gc_lock.write().await;
        let registry = &self.inner.registry;
        let cutoff = now_ms().saturating_sub(self.inner.config.retention.as_millis() as u64);
        let mut report = GcReport::default();
        for app in registry.stopped_before(cutoff)? {
            registry.delete_app(&app)?;
            self.slots_mut().remove(&app);
            tracing::info!(app, "garbage-collected stopped app");
            report.apps.push(app);
        }
        self.inner.recorder.store.prune(cutoff, &report.apps)?;
        let referenced = registry.referenced_digests()?;
        for digest in self.inner.artifacts.list()? {
            if referenced.contains(&digest) {
                continue;
            }
            self.inner.artifacts.delete(&digest)?;
            if let Some(path) = self.inner.host.compiled_path(&digest) {
                let _ = std::fs::remove_file(path);
            }
            report.artifacts += 1;
        }
        Ok(report)
    }

    /// Runs [`gc`](Self::gc) every `period` until the platform is dropped.
    pub fn spawn_gc(&self, period: Duration) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let platform = Platform { inner };
                if let Err(e) = platform.gc().await {
                    tracing::warn!("garbage collection failed: {e}");
                }
            }
        });
    }

    /// Stops every version from taking new executions and waits up to
    /// `grace` for those in progress; the rest are cancelled (and
    /// recorded so). Spawned calls cut this way stay pending and run again
    /// at the next start. Returns once every record is stored.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner
            .shutting_down
            .store(true, std::sync::atomic::Ordering::Release);
        let mut apps: Vec<LoadedApp> = self
            .slots()
            .values()
            .filter_map(|s| match s {
                Slot::Serving(l) => Some(l.clone()),
                _ => None,
            })
            .collect();
        apps.extend(self.draining().iter().map(|d| d.app.clone()));
        apps.extend(self.inner.pinned.lock().await.iter().map(|p| p.2.clone()));
        for app in &apps {
            app.close();
        }
        let drain_all = async {
            for app in &apps {
                app.drain().await;
            }
        };
        if tokio::time::timeout(grace, drain_all).await.is_err() {
            for app in &apps {
                app.cancel("the host is shutting down");
                app.drain().await;
            }
        }
        // Let cancelled executions reach the recorder, then store them.
        tokio::task::yield_now().await;
        self.inner.recorder.flush().await;
    }
}

fn live_instances(stats: &[PoolStats]) -> usize {
    stats.iter().map(|s| s.live).sum()
}

/// A deployed function, found by app and name.
#[derive(Clone)]
pub struct FunctionHandle {
    platform: Platform,
    app: String,
    function: String,
}

impl FunctionHandle {
    /// Calls the function on the live version and waits for the result.
    pub async fn call(&self, input: &[u8]) -> Result<Execution, Error> {
        self.platform
            .call(&self.app, &self.function, input, None, Trigger::Call)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::validate_app_name;

    #[test]
    fn environment_names_are_checked() {
        let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        super::validate_env(&env("API_KEY", "a=b c")).unwrap();
        super::validate_env(&env("_x1", "")).unwrap();
        for (k, v) in [
            ("MODAL_APP_NAME", "x"),
            ("modal_function", "x"),
            ("HAS SPACE", "x"),
            ("1ST", "x"),
            ("", "x"),
            ("A\0B", "x"),
            ("OK", "nul\0inside"),
        ] {
            assert!(super::validate_env(&env(k, v)).is_err(), "{k:?}={v:?}");
        }
    }

    #[test]
    fn app_names_are_dns_labels() {
        for ok in ["hello", "a", "my-app-2", &"x".repeat(63)] {
            validate_app_name(ok).unwrap();
        }
        for bad in [
            "",
            "Hello",
            "-a",
            "a-",
            "a--b",
            "a_b",
            "a.b",
            &"x".repeat(64),
        ] {
            assert!(validate_app_name(bad).is_err(), "{bad:?}");
        }
    }
}
