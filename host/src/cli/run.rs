//! `modal run` and `modal describe`: load a component locally, without a
//! server.

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use modal_host::spec::FunctionKind;
use modal_host::{AppMeta, AppSpec, DEFAULT_MEMORY_LIMIT, Host, HostConfig, format_duration};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `modal run`.
#[derive(Args)]
pub struct RunArgs {
    /// The component and the function to run, as `APP.wasm::FUNCTION` (or
    /// `app.py::FUNCTION`, built first). The function may be left out when
    /// the app has only one.
    target: String,
    /// The input. For a plain or scheduled function: JSON (leave it out for
    /// a function without parameters). For a web function: the request
    /// path and query, e.g. `/?name=Ada` (default `/`).
    input: Option<String>,
    /// An environment variable for the guest, `KEY=VALUE` (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = super::common::parse_env)]
    env: Vec<(String, String)>,
    /// Memory limit of the instance, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MEMORY_LIMIT >> 20)]
    memory: usize,
    /// Let the function send HTTP requests to HOST (any port) or HOST:PORT
    /// (repeatable); all other outbound requests are denied.
    #[arg(long = "allow-http", value_name = "HOST[:PORT]")]
    allow_http: Vec<String>,
    #[command(flatten)]
    cache: CacheArgs,
}

/// Arguments of `modal describe`.
#[derive(Args)]
pub struct DescribeArgs {
    /// The component.
    wasm: PathBuf,
    /// Print the validated spec as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

/// Where compiled code is cached.
#[derive(Args)]
pub struct CacheArgs {
    /// The state directory; compiled code is cached under `compiled/` in
    /// it, so a second run does not recompile.
    #[arg(long, env = "MODAL_STATE", value_name = "DIR")]
    state: Option<PathBuf>,
    /// Neither use nor fill the compiled-code cache.
    #[arg(long)]
    no_cache: bool,
}

impl CacheArgs {
    fn host(&self, memory_limit: usize) -> anyhow::Result<Host> {
        let cache_dir = if self.no_cache {
            None
        } else {
            Some(super::common::state_dir(self.state.as_deref())?.join("compiled"))
        };
        let config = HostConfig {
            memory_limit,
            // One instance runs: the on-demand allocator starts faster than
            // reserving a whole pool.
            pooling: None,
            cache_dir,
            ..HostConfig::default()
        };
        Ok(Host::new(config)?)
    }
}

fn read_wasm(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (path, function) = match args.target.rsplit_once("::") {
        Some((path, function)) => (PathBuf::from(path), Some(function.to_string())),
        None => (PathBuf::from(&args.target), None),
    };
    let component = super::python::component(&path, args.cache.state.as_deref())?;
    let wasm = read_wasm(&component)?;
    let host = args.cache.host(args.memory << 20)?;
    let mut meta = AppMeta::new(super::common::app_name(&path), 1);
    meta.env = args.env.clone();
    meta.allow_http = args.allow_http.clone();
    // The guest's output goes to stderr as each execution ends.
    let sink: modal_host::ExecutionSink = std::sync::Arc::new(|e: &modal_host::Execution| {
        let _ = std::io::stderr().lock().write_all(e.logs.as_bytes());
    });
    let (app, _) = host.load_with(&wasm, meta, Some(sink)).await?;
    let spec = app.spec();
    let function = match function {
        Some(f) => f,
        None if spec.functions.len() == 1 => spec.functions[0].name.clone(),
        None => bail!(
            "say which function to run, as `{}::FUNCTION`; the app has {}",
            path.display(),
            spec.names().join(", ")
        ),
    };
    let Some(f) = spec.function(&function) else {
        return Err(modal_host::Error::UnknownFunction {
            name: function,
            available: spec.names(),
        }
        .into());
    };
    if let FunctionKind::Web { method } = &f.kind {
        let method = method.clone().unwrap_or_else(|| "GET".into());
        return run_web(
            &app,
            &function,
            &method,
            args.input.as_deref().unwrap_or("/"),
        )
        .await;
    }
    let input = args.input.unwrap_or_default();
    let execution = app.call(&function, input.as_bytes()).await;
    let output = execution.outcome?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&output)?;
    stdout.write_all(b"\n")?;
    Ok(ExitCode::SUCCESS)
}

async fn run_web(
    app: &modal_host::LoadedApp,
    function: &str,
    method: &str,
    path: &str,
) -> anyhow::Result<ExitCode> {
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let request = hyper::Request::builder()
        .method(method)
        .uri(&path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .with_context(|| format!("`{path}` is not a valid request path"))?;
    let response = app.serve_http(function, request).await?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the response body failed: {e:?}"))?
        .to_bytes();
    // Let the handler task finish and drop its instance before exiting.
    app.drain().await;
    std::io::stdout().lock().write_all(&body)?;
    if !body.ends_with(b"\n") {
        println!();
    }
    if status.is_client_error() || status.is_server_error() {
        bail!("the web function answered {status}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn describe(args: DescribeArgs) -> anyhow::Result<ExitCode> {
    let component = super::python::component(&args.wasm, args.cache.state.as_deref())?;
    let wasm = read_wasm(&component)?;
    let host = args.cache.host(DEFAULT_MEMORY_LIMIT)?;
    let spec = host.describe(&wasm).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&spec)?);
    } else {
        print!("{}", render_spec(&args.wasm, &spec));
    }
    Ok(ExitCode::SUCCESS)
}

/// The spec as a table a person reads.
fn render_spec(path: &Path, spec: &AppSpec) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let sdk = spec
        .sdk
        .as_deref()
        .map(|s| format!(" (built with {s})"))
        .unwrap_or_default();
    let _ = writeln!(out, "{}{sdk}", path.display());
    let width = spec
        .functions
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(0);
    for f in &spec.functions {
        let kind = match &f.kind {
            FunctionKind::Plain => "plain".to_string(),
            FunctionKind::Web { method: Some(m) } => format!("web {m}"),
            FunctionKind::Web { method: None } => "web".to_string(),
            FunctionKind::Scheduled { schedule } => format!("scheduled, {schedule}"),
        };
        let _ = writeln!(out, "  {:width$}  {kind}", f.name);
        let pad = " ".repeat(width + 4);
        if let Some(sig) = &f.signature {
            let _ = writeln!(out, "{pad}{sig}");
        }
        if let Some(d) = &f.description {
            let _ = writeln!(out, "{pad}{d}");
        }
        let s = &f.settings;
        let mut settings = format!(
            "timeout {}, max_instances {}",
            format_duration(s.timeout),
            s.max_instances
        );
        if s.min_warm > 0 {
            let _ = write!(settings, ", min_warm {}", s.min_warm);
        }
        if s.retries > 0 {
            let _ = write!(settings, ", retries {}", s.retries);
        }
        if let Some(n) = s.max_requests_per_instance {
            let _ = write!(settings, ", max_requests {n}");
        }
        let _ = writeln!(out, "{pad}{settings}");
    }
    out
}

/// Arguments of `modal build`.
#[derive(Args)]
pub struct BuildArgs {
    /// The Python module (written with the Python SDK, `import modal`).
    source: PathBuf,
    /// Where to write the component; default: beside the module, `.wasm`.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Leave out the host's `context` import so that plain wasi:http hosts
    /// (e.g. `wasmtime serve`) can run the component; `modal.run_id()` then
    /// returns None.
    #[arg(long)]
    portable: bool,
}

pub fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    if !super::common::is_python(&args.source) {
        bail!(
            "`modal build` builds Python modules (`app.py`); Rust apps build with `cargo build --target wasm32-wasip2`"
        );
    }
    super::python::build(&args.source, args.output.as_deref(), args.portable)?;
    Ok(ExitCode::SUCCESS)
}
