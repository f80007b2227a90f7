//! `modal serve`: the development loop. Runs one app as an ephemeral app
//! with its web functions on a local address, and redeploys it through the
//! zero-downtime path whenever its sources change: a component file, a
//! Python module (served from a development build, see `python_dev`) or a
//! Rust guest crate (built with cargo on every change). A failed build or
//! deploy keeps the running version.

use anyhow::Context;
use clap::Args;
use modal_host::server::{DEFAULT_GRACE, Server, ServerConfig, load_or_create_token};
use modal_host::spec::FunctionKind;
use modal_host::{DeployRequest, Deployment, Error, HostConfig, Platform, PlatformConfig};
use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc::UnboundedReceiver;

/// How often the watcher reports the changes it collected.
const REPORT: Duration = Duration::from_millis(100);

/// How long the sources must stay untouched after a change before a build
/// starts: an editor, a formatter or a build that writes in several steps
/// is done by then, so a burst of saves is one rebuild.
const SETTLE: Duration = Duration::from_millis(250);

/// Arguments of `modal serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// What to serve: a component (`.wasm`), a Python module (`.py`), or
    /// the directory of a Rust guest crate (a `Cargo.toml` with a
    /// `cdylib`), built with `cargo build --release --target wasm32-wasip2`
    /// on every change.
    wasm: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
    listen: String,
    /// The app's name; default: the one the Python module declares, the
    /// crate's name, or the file's name.
    #[arg(long)]
    name: Option<String>,
    /// An environment variable for the guest, `KEY=VALUE` (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = super::common::parse_env)]
    env: Vec<(String, String)>,
    /// Let the app send HTTP requests to HOST (any port) or HOST:PORT
    /// (repeatable); all other outbound requests are denied.
    #[arg(long = "allow-http", value_name = "HOST[:PORT]")]
    allow_http: Vec<String>,
    /// Mount local directory DIR read-only at PATH in the guest, e.g.
    /// `--mount ./dist:/assets` (repeatable); packed again at each
    /// redeploy, so its changes show with the next one.
    #[arg(long = "mount", value_name = "DIR:PATH", value_parser = super::common::parse_mount)]
    mounts: Vec<(PathBuf, String)>,
    /// Attach secret NAME (repeatable). The served app sees the secrets of
    /// the state directory (those `modal secret create` made on a server
    /// of that state), including the ones its code names.
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,
    /// The state directory whose secrets the app may use (and where Python
    /// builds are kept); the served app itself lives in a temporary one.
    #[arg(long, env = "MODAL_STATE", value_name = "DIR")]
    state: Option<PathBuf>,
    #[command(flatten)]
    pool: super::apps::PoolArgs,
}

/// What is served, and how its sources become a component.
enum Source {
    /// A component file, deployed as it is whenever it changes.
    Wasm(PathBuf),
    /// A Python module: one development build (made again only when the
    /// modules it imports from elsewhere change), with the app's sources
    /// copied into `staged` and mounted at each deploy.
    Python {
        file: PathBuf,
        staged: PathBuf,
        /// The modules the app imported from elsewhere in this session.
        known: std::sync::Mutex<BTreeSet<String>>,
    },
    /// A Rust guest crate, built with cargo on every change.
    Crate(super::cargo::GuestCrate),
}

/// A component ready to deploy, with the mounts its source brings (those
/// its code declares, a Python app's sources).
struct Built {
    wasm: Vec<u8>,
    mounts: Vec<(PathBuf, String)>,
    /// How long making it took (0 for a component file).
    build: Duration,
}

/// A file's identity for change detection: modification time and size.
type Stamp = (SystemTime, u64);

impl Source {
    /// Reads what `path` is; a Python app's sources are staged under `state`.
    fn open(path: &Path, state: &Path) -> anyhow::Result<Source> {
        if path.is_dir() {
            if !super::cargo::is_crate(path) {
                anyhow::bail!(
                    "{} is a directory without a Cargo.toml; serve a guest crate's directory, a .wasm or a .py",
                    path.display()
                );
            }
            return Ok(Source::Crate(super::cargo::GuestCrate::open(path)?));
        }
        if super::common::is_python(path) {
            return Ok(Source::Python {
                file: path
                    .canonicalize()
                    .with_context(|| format!("cannot read {}", path.display()))?,
                staged: state.join("python-app"),
                known: Default::default(),
            });
        }
        Ok(Source::Wasm(path.to_path_buf()))
    }

    /// The app's default name.
    fn app_name(&self) -> String {
        match self {
            Source::Crate(c) => super::common::app_name(Path::new(&c.name)),
            Source::Wasm(file) | Source::Python { file, .. } => super::common::app_name(file),
        }
    }

    /// The directory to watch, and whether below it too.
    fn watched(&self) -> (PathBuf, RecursiveMode) {
        let parent = |file: &Path| match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match self {
            Source::Wasm(file) => (parent(file), RecursiveMode::NonRecursive),
            Source::Python { file, .. } => (parent(file), RecursiveMode::Recursive),
            Source::Crate(c) => (c.dir.clone(), RecursiveMode::Recursive),
        }
    }

    /// Whether a change at `path` may change what is served.
    fn concerns(&self, path: &Path) -> bool {
        match self {
            Source::Wasm(file) => path.file_name() == file.file_name(),
            Source::Python { .. } => {
                path.extension().is_some_and(|e| e == "py")
                    && !path.components().any(|c| c.as_os_str() == "__pycache__")
            }
            Source::Crate(c) => c.is_source(path),
        }
    }

    /// The identity of every source file now: a change of this is a
    /// change of the sources (reading them, which the watch also reports,
    /// is none).
    fn stamps(&self) -> BTreeMap<PathBuf, Stamp> {
        let mut files = Vec::new();
        match self {
            Source::Wasm(file) => files.push(file.clone()),
            Source::Python { file, .. } => {
                super::python::collect_py(&self.watched().0, 3, &mut files);
                files.push(file.clone());
            }
            Source::Crate(c) => collect_files(&c.dir, &|p| c.is_source(p), &mut files),
        }
        files
            .into_iter()
            .filter_map(|f| {
                let meta = std::fs::metadata(&f).ok()?;
                Some((f, (meta.modified().ok()?, meta.len())))
            })
            .collect()
    }

    /// Makes the component (blocking: builds run here).
    fn build(&self, state: Option<&Path>) -> anyhow::Result<Built> {
        let start = Instant::now();
        let (wasm, mounts) = match self {
            Source::Wasm(file) => {
                let wasm = std::fs::read(file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let mounts = super::python::with_declared_mounts(&[], &wasm)?;
                (wasm, mounts)
            }
            Source::Python {
                file,
                staged,
                known,
            } => {
                let mut known = known.lock().unwrap_or_else(|e| e.into_inner());
                let component = super::python_dev::component(file, state, &mut known)?;
                let wasm = std::fs::read(&component)
                    .with_context(|| format!("cannot read {}", component.display()))?;
                super::python_dev::stage_sources(file, staged)?;
                let mut mounts = super::python::declared_mounts(file)?;
                mounts.push((staged.clone(), super::python_dev::APP_PATH.to_string()));
                (wasm, mounts)
            }
            Source::Crate(c) => {
                let component = c.build()?;
                let wasm = std::fs::read(&component)
                    .with_context(|| format!("cannot read {}", component.display()))?;
                let mounts = super::python::with_declared_mounts(&[], &wasm)?;
                (wasm, mounts)
            }
        };
        let build = match self {
            Source::Wasm(_) => Duration::ZERO,
            _ => start.elapsed(),
        };
        Ok(Built {
            wasm,
            mounts,
            build,
        })
    }
}

/// The files below `dir` that `keep` accepts (hidden ones skipped).
fn collect_files(dir: &Path, keep: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if !keep(&path) {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_files(&path, keep, out),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
}

/// Deploys new versions of the served app.
#[derive(Clone)]
struct Deployer {
    platform: Platform,
    request: DeployRequest,
    /// The directories to mount (`--mount`), packed at each deploy; they
    /// override the source's own mounts at the same path.
    mounts: Vec<(PathBuf, String)>,
}

impl Deployer {
    /// Deploys `built` as the next version, with the mounts as they are now.
    async fn deploy(&self, built: Built) -> Result<Deployment, Error> {
        let mut request = self.request.clone();
        let mut mounts = self.mounts.clone();
        for (dir, path) in built.mounts {
            if !mounts.iter().any(|(_, p)| *p == path) {
                mounts.push((dir, path));
            }
        }
        for (dir, path) in &mounts {
            let archive = modal_host::platform::pack_dir(dir)?;
            let info = self.platform.put_archive(archive.into()).await?;
            request.mounts.push(modal_host::platform::MountRecord {
                digest: info.digest,
                path: path.clone(),
                source: dir.display().to_string(),
                files: info.files,
                bytes: info.bytes,
            });
        }
        self.platform.deploy(&built.wasm, request).await
    }
}

/// `modal serve`.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let state = std::env::temp_dir().join(format!("modal-serve-{}", std::process::id()));
    let _cleanup = super::common::RemoveOnDrop(state.clone());
    let token =
        load_or_create_token(&state).with_context(|| format!("creating {}", state.display()))?;
    let source = Source::open(&args.wasm, &state)?;
    let name = args.name.clone().unwrap_or_else(|| source.app_name());
    modal_host::platform::validate_app_name(&name)?;
    // The app lives in the temporary state; its compiled code goes to the
    // user's state directory, so a restarted `serve` does not compile again.
    let own = super::common::state_dir(args.state.as_deref())?;
    let compiled = own.join("compiled");
    modal_host::platform::state::private_dir(&compiled)
        .with_context(|| format!("creating {}", compiled.display()))?;
    let host = modal_host::Host::new(HostConfig {
        cache_dir: Some(compiled),
        ..HostConfig::default()
    })?;
    let stores = modal_host::platform::Stores::sqlite(&state)?;
    let sink: modal_host::ExecutionSink = std::sync::Arc::new(print_execution);
    let platform =
        Platform::with_parts(host, stores, PlatformConfig::default(), Some(sink)).await?;
    // The user's secrets, copied (sealed again under the temporary state's
    // key) so that `--secret` and the secrets named in code resolve.
    for (secret, vars) in modal_host::platform::local_secrets(&own, None).await? {
        platform.create_secret(&secret, vars, false).await?;
    }
    let deployer = Deployer {
        platform: platform.clone(),
        request: DeployRequest {
            name: name.clone(),
            env: args.env.clone(),
            allow_http: args.allow_http.clone(),
            secrets: args.secrets.clone(),
            pool: args.pool.settings(),
            deployer: "modal serve".into(),
            ..DeployRequest::default()
        },
        mounts: args.mounts.clone(),
    };
    let source = std::sync::Arc::new(source);
    let stamps = source.stamps();
    let built = {
        let (source, state) = (source.clone(), args.state.clone());
        tokio::task::spawn_blocking(move || source.build(state.as_deref()))
            .await
            .context("the build task failed")??
    };
    let first = deployer.deploy(built).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let config = ServerConfig {
        root_app: Some(name.clone()),
        ..ServerConfig::new(token)
    };
    let server = Server::new(platform.clone(), listener, config)?;
    print_banner(&args.wasm, &source, &name, &first, server.addr());
    let (watcher, changes) = watch(source.clone())?;
    let redeploys = tokio::spawn(redeploy_on_change(
        source,
        stamps,
        args.state.clone(),
        changes,
        deployer,
    ));
    server
        .run(super::server::shutdown_signal("modal serve"), DEFAULT_GRACE)
        .await;
    redeploys.abort();
    drop(watcher);
    println!("modal serve stopped");
    Ok(ExitCode::SUCCESS)
}

/// Prints an execution as it ends, on stderr: the guest's output line by
/// line, prefixed with the function, then for a web request one line
/// `GET /path 200 1.2 ms` (other executions: `tick [schedule] ok 0.8 ms`).
fn print_execution(e: &modal_host::Execution) {
    use std::io::Write;
    let mut out = String::new();
    for line in e.logs.lines() {
        out.push_str(&format!("[{}] {line}\n", e.function));
    }
    let ms = e.duration.as_secs_f64() * 1e3;
    match (&e.request, e.http_status) {
        (Some(request), status) => {
            let status = status.map_or_else(|| "-".to_string(), |s| s.to_string());
            out.push_str(&format!(
                "{} {} {status} {ms:.1} ms\n",
                request.method,
                request.uri.path()
            ));
        }
        (None, _) => {
            let outcome = match &e.outcome {
                Ok(_) => "ok".to_string(),
                Err(err) => format!("{}: {err}", err.kind()),
            };
            out.push_str(&format!(
                "{} [{}] {outcome} {ms:.1} ms\n",
                e.function,
                e.trigger.as_str()
            ));
        }
    }
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}

/// Where the served app answers, and what is watched.
fn print_banner(path: &Path, source: &Source, name: &str, first: &Deployment, addr: SocketAddr) {
    let compiled = if first.compiled_from_cache {
        "compiled code from the cache".to_string()
    } else {
        format!("compiled in {:.0} ms", first.compile_ms)
    };
    say!(
        "✓ Serving {} as app {name} v{} on http://{addr} ({compiled})",
        path.display(),
        first.version
    );
    let web: Vec<&str> = first
        .spec
        .functions
        .iter()
        .filter(|f| matches!(f.kind, FunctionKind::Web { .. }))
        .map(|f| f.name.as_str())
        .collect();
    for f in &web {
        let label = f.to_ascii_lowercase().replace('_', "-");
        println!("  {f} => http://{name}--{label}.localhost:{}/", addr.port());
    }
    if web.len() == 1 {
        println!("  {} also answers at http://{addr}/", web[0]);
    }
    if web.is_empty() {
        println!(
            "  (no web functions; call the others at http://{addr}/api/v1/apps/{name}/functions/NAME/call)"
        );
    }
    let watched = source.watched().0;
    match source {
        Source::Wasm(_) => println!("Watching {} for changes. Ctrl-C to stop.", path.display()),
        Source::Python { .. } => println!(
            "Watching the Python files in {} for changes (served without a rebuild). Ctrl-C to stop.",
            watched.display()
        ),
        Source::Crate(_) => println!(
            "Watching {} for changes (cargo build --release --target {} on each). Ctrl-C to stop.",
            watched.display(),
            super::cargo::TARGET
        ),
    }
}

/// A message each time changes that concern `source` settle. A component
/// file's directory is watched rather than the file, so that an editor or
/// build that replaces the file (writes a new one and renames it over the
/// old) is seen too. The watch ends when the returned watcher is dropped.
fn watch(
    source: std::sync::Arc<Source>,
) -> anyhow::Result<(Debouncer<RecommendedWatcher>, UnboundedReceiver<()>)> {
    let (dir, mode) = source.watched();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let concerned = source.clone();
    let mut debouncer = new_debouncer(REPORT, move |events: DebounceEventResult| match events {
        Ok(events) => {
            if events.iter().any(|e| concerned.concerns(&e.path)) {
                let _ = tx.send(());
            }
        }
        Err(e) => tracing::warn!("watching for changes failed: {e}"),
    })
    .context("cannot watch for changes")?;
    debouncer
        .watcher()
        .watch(&dir, mode)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    Ok((debouncer, rx))
}

/// Builds and redeploys each time the sources changed. Changes that arrive
/// while a build runs make one more build after it, however many there
/// were: a burst of saves is one rebuild.
async fn redeploy_on_change(
    source: std::sync::Arc<Source>,
    mut last: BTreeMap<PathBuf, Stamp>,
    state: Option<PathBuf>,
    mut changes: UnboundedReceiver<()>,
    deployer: Deployer,
) {
    while changes.recv().await.is_some() {
        // Wait until the sources settle.
        loop {
            match tokio::time::timeout(SETTLE, changes.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        let now = source.stamps();
        if now == last {
            continue;
        }
        last = now;
        if let Source::Crate(c) = &*source {
            esay!("Change seen; building {}…", c.name);
        }
        let (building, state) = (source.clone(), state.clone());
        let built = tokio::task::spawn_blocking(move || building.build(state.as_deref()))
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the build task failed: {e}")));
        let result = match built {
            Ok(built) => {
                let build = built.build;
                deployer
                    .deploy(built)
                    .await
                    .map(|d| (d, build))
                    .map_err(anyhow::Error::from)
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((d, build)) => {
                let built = if build.is_zero() {
                    String::new()
                } else {
                    format!("; built in {:.1}s", build.as_secs_f64())
                };
                say!(
                    "✓ Redeployed as v{} in {:.0} ms (v{} drained{built})",
                    d.version,
                    d.took_ms,
                    d.previous.unwrap_or(0)
                )
            }
            Err(e) => say!("✗ Not redeployed (the running version keeps serving): {e:#}"),
        }
    }
}
