//! `modal serve`: the development loop. Runs one component as an ephemeral
//! app with its web functions on a local address, and redeploys it through
//! the zero-downtime path whenever the file changes.

use anyhow::Context;
use clap::Args;
use modal_host::server::{DEFAULT_GRACE, Server, ServerConfig, load_or_create_token};
use modal_host::{DeployRequest, FunctionKind, HostConfig, Platform, PlatformConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// How often the file is checked for changes.
const POLL: Duration = Duration::from_millis(300);

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
    #[command(flatten)]
    pool: super::apps::PoolArgs,
}

/// The component bytes of `path`, building it first when it is Python.
fn read_component(path: &Path) -> anyhow::Result<Vec<u8>> {
    let wasm = super::python::component(path, None)?;
    std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))
}

/// A file's identity for change detection: modification time and size.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| super::common::app_name(&args.wasm));
    modal_host::validate_app_name(&name)?;
    let state = std::env::temp_dir().join(format!("modal-serve-{}", std::process::id()));
    let _cleanup = super::common::RemoveOnDrop(state.clone());
    let token =
        load_or_create_token(&state).with_context(|| format!("creating {}", state.display()))?;
    let platform = Platform::open(
        &state,
        HostConfig::default(),
        PlatformConfig::default(),
        None,
    )
    .await?;
    let template = DeployRequest {
        name: name.clone(),
        env: args.env.clone(),
        allow_http: args.allow_http.clone(),
        pool: args.pool.settings(),
        deployer: "modal serve".into(),
        ..DeployRequest::default()
    };
    let deploy = move |platform: Platform, wasm: Vec<u8>| {
        let request = template.clone();
        async move { platform.deploy(&wasm, request).await }
    };
    let first = deploy(platform.clone(), read_component(&args.wasm)?).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let config = ServerConfig {
        root_app: Some(name.clone()),
        ..ServerConfig::new(token)
    };
    let server = Server::new(platform.clone(), listener, config)?;
    let addr = server.addr();
    println!(
        "✓ Serving {} as app {name} v{} on http://{addr}",
        args.wasm.display(),
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
    println!(
        "Watching {} for changes. Ctrl-C to stop.",
        args.wasm.display()
    );

    let watcher = {
        let (platform, path) = (platform.clone(), args.wasm.clone());
        let deploy = deploy.clone();
        let mut last = stamp(&path);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL).await;
                let now = stamp(&path);
                if now.is_none() || now == last {
                    continue;
                }
                // Wait until the writer is done: the stamp must hold still.
                tokio::time::sleep(POLL).await;
                if stamp(&path) != now {
                    continue;
                }
                last = now;
                let source = path.clone();
                let built = tokio::task::spawn_blocking(move || read_component(&source)).await;
                let built =
                    built.unwrap_or_else(|e| Err(anyhow::anyhow!("the build task failed: {e}")));
                let result = match built {
                    Ok(wasm) => deploy(platform.clone(), wasm)
                        .await
                        .map_err(anyhow::Error::from),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(d) => println!(
                        "✓ Redeployed as v{} in {:.0} ms (v{} drained)",
                        d.version,
                        d.took_ms,
                        d.previous.unwrap_or(0)
                    ),
                    Err(e) => {
                        println!("✗ Not redeployed (the running version keeps serving): {e:#}")
                    }
                }
            }
        })
    };
    server
        .run(super::server::shutdown_signal(), DEFAULT_GRACE)
        .await;
    watcher.abort();
    Ok(ExitCode::SUCCESS)
}
