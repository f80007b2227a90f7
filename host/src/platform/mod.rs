//! Deployed apps: the registry, the artifact store and the live versions
//! that serve. [`Platform`] is what `modal server` runs and what an
//! embedding program uses: deploy bytes, list, stop, roll back, look up a
//! function and call it.
//!
//! Its rooms: `deploy.rs` (deploy, rollback, stop, gc), `live.rs` (the
//! serving, draining and pinned versions), `calls.rs` (call, serve_http,
//! spawn, result), `status.rs` (what `list`, `history`, `logs` and
//! `/metrics` show), `scheduler.rs` (cron and period schedules, behind a
//! narrow handle). State lives behind async traits ([`Registry`],
//! [`ArtifactStore`], [`RecordStore`], [`SecretStore`] and the key-value
//! store); [`Stores::sqlite`] is the embedded default (`sqlite/`);
//! `postgres/` holds the cluster's stores.

mod artifacts;
pub(crate) mod backoff;
mod calls;
mod cluster;
mod deploy;
mod dicts;
mod fire_times;
mod live;
mod metrics;
mod mounts;
pub mod postgres;
mod records;
mod registry;
mod scheduler;
pub mod secrets;
mod sqlite;
pub mod state;
mod status;

pub use artifacts::{ArtifactStore, FileArtifacts};
pub use calls::FunctionHandle;
pub use cluster::{ALIVE, HostReport};
pub use deploy::{
    DeployRequest, Deployment, GcReport, validate_app_name, validate_callers, validate_env,
};
pub use mounts::{ArchiveInfo, MountRecord, archive_info, pack_dir};
pub use records::{
    BUCKET_MS, Bucket, Buckets, CallEnd, CallParent, CallRecord, CallState, ExecutionPage,
    ExecutionQuery, ExecutionRecord, RecordStore, SpawnedCall, Usage, tree_order,
};
pub use registry::{
    AppRecord, AppState, EVERYTHING, Fire, GitInfo, HostApp, HostRecord, Registry, ScheduleState,
    VersionRecord,
};
pub use scheduler::ScheduleStatus;
pub use secrets::{SecretInfo, SecretKey, SecretRef, SecretStore, local_secrets};
pub use sqlite::{SqliteKeyValue, SqliteRecords, SqliteRegistry, SqliteSecrets};
pub use status::{AppStatus, DrainStatus, VersionState, VersionStatus};

use crate::app::{Execution, ExecutionSink};
use crate::config::HostConfig;
use crate::error::Error;
use crate::host::Host;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a replaced or stopped version may finish its executions in
/// progress before they are cancelled.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Largest component accepted by a deploy (Python components are ~20 MiB).
pub const DEFAULT_MAX_UPLOAD: usize = 128 << 20;

/// How long a stopped app is kept (for `history` and redeploy) before it
/// and its unreferenced artifacts are garbage-collected.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a host's scheduler lease and its claims on spawned calls last
/// without renewal: how soon another host takes over when it dies.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

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
    /// Where this host listens, as the other hosts and `modal host list`
    /// show it.
    pub address: String,
    /// How long the scheduler lease and claims on spawned calls last.
    pub lease: Duration,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        PlatformConfig {
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            max_upload: DEFAULT_MAX_UPLOAD,
            retention: DEFAULT_RETENTION,
            notify: None,
            address: String::new(),
            lease: DEFAULT_LEASE,
        }
    }
}

/// The stores a platform keeps its state in.
#[derive(Clone)]
pub struct Stores {
    /// Apps, versions and schedules.
    pub registry: Arc<dyn Registry>,
    /// Component bytes by digest.
    pub artifacts: Arc<dyn ArtifactStore>,
    /// Executions and spawned calls.
    pub records: Arc<dyn RecordStore>,
    /// The apps' key-value buckets.
    pub kv: Arc<dyn crate::kv::KeyValue>,
    /// Secrets, sealed.
    pub secrets: Arc<dyn SecretStore>,
    /// The key that seals them.
    pub secret_key: SecretKey,
    /// Where this host unpacks mount archives (a cache: each is unpacked
    /// again from its artifact when missing).
    pub mounts_dir: std::path::PathBuf,
}

impl Stores {
    /// The embedded default in `state_dir`: `registry.db`,
    /// `executions.db`, `kv.db` and `secrets.db` (SQLite), `artifacts/`
    /// and `secret.key`, all private to the user.
    pub fn sqlite(state_dir: &Path) -> Result<Stores, Error> {
        let registry = state_dir.join("registry.db");
        let records = state_dir.join("executions.db");
        let kv = state_dir.join("kv.db");
        let secrets = state_dir.join("secrets.db");
        for db in [&registry, &records, &kv, &secrets] {
            if !db.exists() {
                // SQLite gives its -wal and -shm files the mode of the
                // database file.
                state::private_file(db).map_err(|source| Error::Io {
                    context: format!("creating {}", db.display()),
                    source,
                })?;
            }
        }
        Ok(Stores {
            registry: Arc::new(SqliteRegistry::open(&registry)?),
            artifacts: Arc::new(FileArtifacts::open(&state_dir.join("artifacts"))?),
            records: Arc::new(SqliteRecords::open(&records)?),
            kv: Arc::new(SqliteKeyValue::open(&kv)?),
            secrets: Arc::new(SqliteSecrets::open(&secrets)?),
            secret_key: SecretKey::load_or_create(state_dir)?,
            mounts_dir: mounts_dir(state_dir)?,
        })
    }
}

impl Stores {
    /// The cluster's stores in the database `pg` (its schemas brought up
    /// to date), with this host's `secret_key` (checked against the
    /// cluster's) and its cache of unpacked mounts in `state_dir/mounts`.
    pub async fn postgres(
        pg: &postgres::Pg,
        secret_key: SecretKey,
        state_dir: &Path,
    ) -> Result<Stores, Error> {
        pg.check_key(&secret_key).await?;
        Ok(Stores {
            registry: Arc::new(postgres::PgRegistry::open(pg.clone()).await?),
            artifacts: Arc::new(postgres::PgArtifacts::open(pg.clone()).await?),
            records: Arc::new(postgres::PgRecords::open(pg.clone()).await?),
            kv: Arc::new(postgres::PgKeyValue::open(pg.clone()).await?),
            secrets: Arc::new(postgres::PgSecrets::open(pg.clone()).await?),
            secret_key,
            mounts_dir: mounts_dir(state_dir)?,
        })
    }
}

/// `state_dir/mounts`, created private.
fn mounts_dir(state_dir: &Path) -> Result<std::path::PathBuf, Error> {
    let dir = state_dir.join("mounts");
    state::private_dir(&dir).map_err(|source| Error::Io {
        context: format!("creating {}", dir.display()),
        source,
    })?;
    Ok(dir)
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
    /// Runs the calls between functions of the versions it loads.
    invoker: Arc<dyn crate::invoke::Invoker>,
    /// The apps' key-value buckets.
    kv: Arc<dyn crate::kv::KeyValue>,
    secrets: Arc<dyn SecretStore>,
    secret_key: SecretKey,
    mounts_dir: std::path::PathBuf,
    live: live::Live,
    deploy_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Deploys hold it shared while their artifact is not yet referenced;
    /// garbage collection holds it exclusively.
    gc_lock: tokio::sync::RwLock<()>,
    /// The state directory's lock, held for the platform's life.
    _state_lock: Option<state::StateLock>,
    /// Set by [`Platform::shutdown`].
    shutting_down: std::sync::atomic::AtomicBool,
    /// This process's id among the hosts on the same stores.
    host_id: String,
    /// When it started (Unix ms).
    started_at: u64,
    /// Apps whose live version this host could not load: (version, why).
    failures: Mutex<HashMap<String, (u64, String)>>,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The engine with its compiled-code cache in `state_dir/compiled`.
fn local_host(state_dir: &Path, mut host_config: HostConfig) -> Result<Host, Error> {
    let compiled = state_dir.join("compiled");
    state::private_dir(&compiled).map_err(|source| Error::Io {
        context: format!("creating {}", compiled.display()),
        source,
    })?;
    host_config.cache_dir = Some(compiled);
    Host::new(host_config)
}

impl Platform {
    /// Opens the embedded default on `state_dir` ([`Stores::sqlite`] and
    /// the compiled-code cache `compiled/`). Loads every deployed app's
    /// live version (from cached compiled code). The directory is made
    /// private to its user and locked for the platform's life: a second
    /// platform on it fails with [`Error::StateInUse`].
    pub async fn open(
        state_dir: &Path,
        host_config: HostConfig,
        config: PlatformConfig,
        sink: Option<ExecutionSink>,
    ) -> Result<Platform, Error> {
        let lock = state::lock(state_dir)?;
        let stores = Stores::sqlite(state_dir)?;
        let host = local_host(state_dir, host_config)?;
        Platform::build(host, stores, config, sink, Some(lock)).await
    }

    /// Opens a host of a cluster: its state in the database `pg`
    /// ([`Stores::postgres`]), only its caches (compiled code, unpacked
    /// mounts) in `state_dir`, which it locks. Loads every deployed app's
    /// live version and joins the other hosts.
    pub async fn open_cluster(
        pg: &postgres::Pg,
        secret_key: SecretKey,
        state_dir: &Path,
        host_config: HostConfig,
        config: PlatformConfig,
        sink: Option<ExecutionSink>,
    ) -> Result<Platform, Error> {
        let lock = state::lock(state_dir)?;
        let stores = Stores::postgres(pg, secret_key, state_dir).await?;
        let host = local_host(state_dir, host_config)?;
        Platform::build(host, stores, config, sink, Some(lock)).await
    }

    /// A platform on given stores (e.g. another registry implementation).
    pub async fn with_parts(
        host: Host,
        stores: Stores,
        config: PlatformConfig,
        sink: Option<ExecutionSink>,
    ) -> Result<Platform, Error> {
        Platform::build(host, stores, config, sink, None).await
    }

    async fn build(
        host: Host,
        stores: Stores,
        config: PlatformConfig,
        sink: Option<ExecutionSink>,
        state_lock: Option<state::StateLock>,
    ) -> Result<Platform, Error> {
        let recorder = records::Recorder::start(stores.records).await?;
        let recording = recorder.clone();
        let sink: ExecutionSink = Arc::new(move |e: &Execution| {
            recording.record(e);
            if let Some(user) = &sink {
                user(e);
            }
        });
        let runtime = tokio::runtime::Handle::current();
        let host_id = cluster::host_id();
        // Subscribed before the apps are read: nothing announced in
        // between is missed.
        let changes = stores.registry.changes();
        let inner = Arc::new_cyclic(|weak| Inner {
            scheduler: Arc::new(scheduler::Scheduler::new(
                stores.registry.clone(),
                Box::new(calls::Runs(weak.clone())),
                runtime.clone(),
                (host_id.clone(), config.lease),
            )),
            runtime,
            host,
            recorder,
            calls_done: tokio::sync::watch::channel(0).0,
            registry: stores.registry,
            artifacts: stores.artifacts,
            config,
            sink: Some(sink),
            invoker: Arc::new(calls::Calls(weak.clone())),
            kv: stores.kv,
            secrets: stores.secrets,
            secret_key: stores.secret_key,
            mounts_dir: stores.mounts_dir,
            live: live::Live::default(),
            deploy_locks: Mutex::new(HashMap::new()),
            gc_lock: tokio::sync::RwLock::new(()),
            _state_lock: state_lock,
            shutting_down: Default::default(),
            host_id,
            started_at: now_ms(),
            failures: Mutex::default(),
        });
        let platform = Platform { inner };
        platform.restore().await?;
        platform.start_cluster(changes);
        scheduler::Scheduler::start(&platform.inner.scheduler).await?;
        Ok(platform)
    }

    /// What a version this platform loads is connected to.
    pub(crate) fn links(&self) -> crate::app::Links {
        crate::app::Links {
            sink: self.inner.sink.clone(),
            invoker: Some(self.inner.invoker.clone()),
            kv: Some(self.inner.kv.clone()),
        }
    }

    /// The host that runs the apps.
    pub fn host(&self) -> &Host {
        &self.inner.host
    }

    /// The settings.
    pub fn config(&self) -> &PlatformConfig {
        &self.inner.config
    }

    /// The runtime the platform was opened on.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.inner.runtime
    }

    /// Whether [`shutdown`](Self::shutdown) began.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.inner
            .shutting_down
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Runs `task` on the platform's runtime.
    pub(crate) fn spawn_task(&self, task: impl Future<Output = ()> + Send + 'static) {
        drop(self.inner.runtime.spawn(task));
    }

    /// Runs `operation` to its end on the platform's runtime even if the
    /// caller stops waiting: a change that reached a store is always
    /// applied in memory too (a deploy committed in the registry goes live,
    /// an accepted spawned call runs).
    pub(crate) async fn to_the_end<T: Send + 'static>(
        &self,
        operation: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        self.inner
            .runtime
            .spawn(operation)
            .await
            .map_err(|e| Error::Internal(format!("a platform operation failed: {e}")))?
    }

    fn deploy_lock(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .inner
            .deploy_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        locks.entry(app.to_string()).or_default().clone()
    }

    /// Pauses or resumes the schedule of `function`. It runs to its end
    /// even if the caller stops waiting.
    pub async fn set_paused(&self, app: &str, function: &str, paused: bool) -> Result<(), Error> {
        self.scheduled_function(app, function)?;
        let scheduler = self.inner.scheduler.clone();
        let (app, function) = (app.to_string(), function.to_string());
        self.to_the_end(async move { scheduler.pause(&app, &function, paused).await })
            .await
    }

    /// Fires `function` now, once, as a scheduled run; returns its run id.
    pub async fn run_now(&self, app: &str, function: &str) -> Result<String, Error> {
        let retries = self.scheduled_function(app, function)?;
        self.inner.scheduler.run_now(app, function, retries)
    }

    /// The schedules of `app`, with their next fire times.
    pub fn schedules(&self, app: &str) -> Vec<ScheduleStatus> {
        self.inner.scheduler.status(app)
    }
}
