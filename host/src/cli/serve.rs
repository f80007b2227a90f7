//! `modal serve`: the development loop. Runs one component as an ephemeral
//! app with its web functions on a local address, and redeploys it through
//! the zero-downtime path whenever the file changes.

use anyhow::Context;
use clap::Args;
use modal_host::server::{DEFAULT_GRACE, Server, ServerConfig, load_or_create_token};
use modal_host::spec::FunctionKind;
use modal_host::{DeployRequest, Deployment, Error, HostConfig, Platform, PlatformConfig};
use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long the file must stay untouched after a change before it is
/// redeployed: an editor or build that writes in several steps is done by
/// then.
const SETTLE: Duration = Duration::from_millis(300);

/// Arguments of `modal serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// The component to serve (`.wasm`, or a `.py` module to build).
    wasm: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
    listen: String,
    /// The app's name; default: the file name.
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

/// The component bytes of `path`, building it first when it is Python.
fn read_component(path: &Path, state: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let wasm = super::python::component(path, state)?;
    std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))
}

/// A file's identity for change detection: modification time and size.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Deploys new versions of the served app.
#[derive(Clone)]
struct Deployer {
    platform: Platform,
    request: DeployRequest,
    /// The directories to mount, packed at each deploy.
    mounts: Vec<(PathBuf, String)>,
}

impl Deployer {
    /// Deploys `wasm` as the next version, with the mounts as they are now.
    async fn deploy(&self, wasm: Vec<u8>) -> Result<Deployment, Error> {
        let mut request = self.request.clone();
        let mounts = super::python::with_declared_mounts(&self.mounts, &wasm)
            .map_err(|e| Error::BadInput(e.to_string()))?;
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
        self.platform.deploy(&wasm, request).await
    }
}

/// `modal serve`.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| super::common::app_name(&args.wasm));
    modal_host::platform::validate_app_name(&name)?;
    let state = std::env::temp_dir().join(format!("modal-serve-{}", std::process::id()));
    let _cleanup = super::common::RemoveOnDrop(state.clone());
    let token =
        load_or_create_token(&state).with_context(|| format!("creating {}", state.display()))?;
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
    let first = deployer
        .deploy(read_component(&args.wasm, args.state.as_deref())?)
        .await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let config = ServerConfig {
        root_app: Some(name.clone()),
        ..ServerConfig::new(token)
    };
    let server = Server::new(platform.clone(), listener, config)?;
    print_banner(&args.wasm, &name, &first, server.addr());
    let (watcher, changes) = watch(&args.wasm)?;
    let redeploys = tokio::spawn(redeploy_on_change(
        args.wasm.clone(),
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
fn print_banner(file: &Path, name: &str, first: &Deployment, addr: SocketAddr) {
    let compiled = if first.compiled_from_cache {
        "compiled code from the cache".to_string()
    } else {
        format!("compiled in {:.0} ms", first.compile_ms)
    };
    say!(
        "✓ Serving {} as app {name} v{} on http://{addr} ({compiled})",
        file.display(),
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
    println!("Watching {} for changes. Ctrl-C to stop.", file.display());
}

/// A message each time changes to `path` settle. The directory is watched
/// rather than the file, so that an editor or build that replaces the file
/// (writes a new one and renames it over the old) is seen too. The watch
/// ends when the returned watcher is dropped.
fn watch(path: &Path) -> anyhow::Result<(Debouncer<RecommendedWatcher>, UnboundedReceiver<()>)> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?
        .to_os_string();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut debouncer = new_debouncer(SETTLE, move |events: DebounceEventResult| match events {
        Ok(events) => {
            if events.iter().any(|e| e.path.file_name() == Some(&name)) {
                let _ = tx.send(());
            }
        }
        Err(e) => tracing::warn!("watching for changes failed: {e}"),
    })
    .context("cannot watch for changes")?;
    debouncer
        .watcher()
        .watch(dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    Ok((debouncer, rx))
}

/// Redeploys `path` each time it changed (its modification time or size;
/// reading it, which the watch also reports, is no change).
async fn redeploy_on_change(
    path: PathBuf,
    state: Option<PathBuf>,
    mut changes: UnboundedReceiver<()>,
    deployer: Deployer,
) {
    let mut last = stamp(&path);
    while changes.recv().await.is_some() {
        let now = stamp(&path);
        if now.is_none() || now == last {
            continue;
        }
        last = now;
        let (source, state) = (path.clone(), state.clone());
        let built = tokio::task::spawn_blocking(move || read_component(&source, state.as_deref()))
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the build task failed: {e}")));
        let result = match built {
            Ok(wasm) => deployer.deploy(wasm).await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match result {
            Ok(d) => say!(
                "✓ Redeployed as v{} in {:.0} ms (v{} drained)",
                d.version,
                d.took_ms,
                d.previous.unwrap_or(0)
            ),
            Err(e) => say!("✗ Not redeployed (the running version keeps serving): {e:#}"),
        }
    }
}
