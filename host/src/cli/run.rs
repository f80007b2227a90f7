//! `modal run` and `modal describe`: load a component locally, without a
//! server. `modal run app.py` runs a Python module's local entrypoint with
//! the arguments of the command line.

use super::progress::Spinner;
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use modal_host::spec::FunctionKind;
use modal_host::{
    AppMeta, AppSpec, DEFAULT_MEMORY_LIMIT, Host, HostConfig, SecretEnv, format_duration,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `modal run`.
#[derive(Args)]
pub struct RunArgs {
    /// The component and the function to run, as `APP.wasm::FUNCTION` (or
    /// `app.py::FUNCTION`, built first). The function may be left out when
    /// the app has only one, or when `app.py` has one
    /// `@app.local_entrypoint()`.
    target: String,
    /// The input. For a plain or scheduled function: JSON (leave it out for
    /// a function without parameters). For a web function: the request
    /// path and query, e.g. `/?name=Ada` (default `/`; see --method,
    /// --header and --data). For a Python local
    /// entrypoint: its arguments, `--NAME VALUE` (a value that parses as
    /// JSON is that JSON, else a string) or `--NAME` for `true`; from the
    /// first of them on, every argument is the entrypoint's (`--` before
    /// them makes a name that `modal run` also has, like `--env`, its too).
    // Hyphens allowed: clap stops parsing its own flags at the first input
    // value; `take_trailing_flags` finds them again for a function's input.
    #[arg(value_name = "INPUT", allow_hyphen_values = true)]
    input: Vec<String>,
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
    /// Mount local directory DIR read-only at PATH in the guest, e.g.
    /// `--mount ./dist:/assets` (repeatable).
    #[arg(long = "mount", value_name = "DIR:PATH", value_parser = super::common::parse_mount)]
    mounts: Vec<(PathBuf, String)>,
    /// Give the guest the variables of secret NAME (repeatable), read from
    /// the state directory (`modal secret create` on a server of that
    /// state); the secrets the code names are read too.
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,
    /// For a web function: the request's method. Default: the method the
    /// function declares, else POST with --data, else GET.
    #[arg(long, value_name = "METHOD", value_parser = parse_method)]
    method: Option<hyper::Method>,
    /// For a web function: a request header, `'NAME: VALUE'` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    /// For a web function: the request body; `@FILE` sends the file's
    /// bytes, `-` (or `@-`) reads it from stdin.
    #[arg(long, value_name = "BODY|@FILE|-")]
    data: Option<String>,
    #[command(flatten)]
    cache: CacheArgs,
}

/// A `--method`: an HTTP method (any case; sent in upper case).
fn parse_method(s: &str) -> Result<hyper::Method, String> {
    hyper::Method::from_bytes(s.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("`{s}` is not an HTTP method"))
}

/// A `--header 'NAME: VALUE'`.
fn parse_header(
    s: &str,
) -> Result<(hyper::header::HeaderName, hyper::header::HeaderValue), String> {
    let Some((name, value)) = s.split_once(':') else {
        return Err(format!("expected 'NAME: VALUE', got `{s}`"));
    };
    let name = hyper::header::HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("`{}` is not a header name", name.trim()))?;
    let value = hyper::header::HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of header `{name}` holds characters a header cannot"))?;
    Ok((name, value))
}

/// The request of a web function that `modal run` sends: `--method`,
/// `--header` and `--data`.
struct WebRequest<'a> {
    /// The method given, if any.
    method: Option<&'a hyper::Method>,
    headers: &'a [(hyper::header::HeaderName, hyper::header::HeaderValue)],
    /// The body, read from `--data`.
    body: Option<Vec<u8>>,
}

impl RunArgs {
    /// What `--method`, `--header` and `--data` give a web function's
    /// request; an error for another function.
    fn web_request(&self, function: &str, web: bool) -> anyhow::Result<WebRequest<'_>> {
        if !web && (self.method.is_some() || !self.headers.is_empty() || self.data.is_some()) {
            bail!("--method, --header and --data are for web functions; `{function}` is not one");
        }
        let body = match self.data.as_deref() {
            None => None,
            Some("-" | "@-") => Some(super::common::read_stdin_bytes()?),
            Some(data) => match data.strip_prefix('@') {
                Some(file) => Some(
                    std::fs::read(file)
                        .with_context(|| format!("cannot read the request body from {file}"))?,
                ),
                None => Some(data.as_bytes().to_vec()),
            },
        };
        Ok(WebRequest {
            method: self.method.as_ref(),
            headers: &self.headers,
            body,
        })
    }
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

impl RunArgs {
    /// Moves `modal run`'s own flags given after a function's input
    /// (`modal run APP.wasm::get URL --allow-http HOST`), which clap
    /// collects into `input`, to where they belong. Only a local
    /// entrypoint takes flag-like arguments of its own.
    fn take_trailing_flags(&mut self) -> anyhow::Result<()> {
        use clap::parser::ValueSource;
        let leading = vec![self.target.clone()];
        let parsed =
            super::common::trailing_flags::<RunArgs>("modal run", leading, &mut self.input)?;
        let Some((later, matches)) = parsed else {
            return Ok(());
        };
        let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        self.input.extend(later.input);
        self.env.extend(later.env);
        self.allow_http.extend(later.allow_http);
        self.mounts.extend(later.mounts);
        self.secrets.extend(later.secrets);
        self.headers.extend(later.headers);
        if given("method") {
            self.method = later.method;
        }
        if given("data") {
            self.data = later.data;
        }
        if given("memory") {
            self.memory = later.memory;
        }
        if given("state") {
            self.cache.state = later.cache.state;
        }
        self.cache.no_cache |= later.cache.no_cache;
        Ok(())
    }
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

/// The variables of secrets `names` of the state directory, checked
/// against `--env` as a deploy checks them.
async fn local_secret_env(args: &RunArgs, names: &[String]) -> anyhow::Result<SecretEnv> {
    if names.is_empty() {
        return Ok(SecretEnv::default());
    }
    let state = super::common::state_dir(args.cache.state.as_deref())?;
    let mut vars: Vec<(String, String)> = Vec::new();
    for (name, values) in modal_host::platform::local_secrets(&state, Some(names)).await? {
        for (key, value) in values {
            if vars.iter().any(|(k, _)| *k == key) || args.env.iter().any(|(k, _)| *k == key) {
                bail!("`{key}` is set twice (by secret `{name}` and another secret or --env)");
            }
            vars.push((key, value));
        }
    }
    Ok(SecretEnv::new(vars))
}

fn read_wasm(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub async fn run(mut args: RunArgs) -> anyhow::Result<ExitCode> {
    let (path, function) = match args.target.rsplit_once("::") {
        Some((path, function)) => (PathBuf::from(path), Some(function.to_string())),
        None => (PathBuf::from(&args.target), None),
    };
    let entrypoints = super::common::local_entrypoints(&path);
    let function = match function {
        None if entrypoints.len() > 1 => bail!(
            "say which local entrypoint to run, as `{}::FUNCTION`; the module has {}",
            path.display(),
            entrypoints.join(", ")
        ),
        None => entrypoints.first().cloned(),
        named => named,
    };
    // The entrypoint's own output is the command's output, as in Modal.
    let entrypoint: Option<Arc<str>> = function
        .as_ref()
        .filter(|f| entrypoints.contains(f))
        .map(|f| Arc::from(f.as_str()));
    if entrypoint.is_none() {
        args.take_trailing_flags()?;
    }
    let component = super::python::component(&path, args.cache.state.as_deref())?;
    let wasm = read_wasm(&component)?;
    let host = args.cache.host(args.memory << 20)?;
    let mut meta = AppMeta::new(super::common::app_name(&path), 1);
    meta.env = args.env.clone();
    meta.allow_http = args.allow_http.clone();
    meta.mounts = super::python::with_declared_mounts(&args.mounts, &wasm)?
        .iter()
        .map(|(dir, path)| modal_host::Mount {
            dir: dir.clone(),
            path: path.clone(),
        })
        .collect();
    // The guest's output goes to stderr as each execution ends; a local
    // entrypoint's (when it succeeds) to stdout.
    let root = entrypoint.clone();
    let sink: modal_host::ExecutionSink = Arc::new(move |e: &modal_host::Execution| {
        let logs = e.logs.as_bytes();
        if e.depth == 0 && e.outcome.is_ok() && root.as_deref() == Some(&*e.function) {
            let _ = std::io::stdout().lock().write_all(logs);
        } else {
            let _ = std::io::stderr().lock().write_all(logs);
        }
    });
    meta.secrets = local_secret_env(&args, &args.secrets).await?;
    let compiling = Spinner::start(format!("Compiling {}…", path.display()));
    let (mut app, _) = host
        .load_with(&wasm, meta.clone(), Some(sink.clone()))
        .await?;
    drop(compiling);
    // The secrets the code names are known once it described itself; it
    // is loaded again with them (from the compiled-code cache).
    let named: Vec<String> = app
        .spec()
        .secrets
        .iter()
        .filter(|n| !args.secrets.contains(n))
        .cloned()
        .collect();
    if !named.is_empty() {
        app.drain().await;
        let all: Vec<String> = args.secrets.iter().chain(&named).cloned().collect();
        meta.secrets = local_secret_env(&args, &all).await?;
        (app, _) = host.load_with(&wasm, meta, Some(sink)).await?;
    }
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
    let web = matches!(f.kind, FunctionKind::Web { .. });
    let request = args.web_request(&function, web)?;
    // A local entrypoint's arguments, or a function's given as `--x 7`:
    // the input built from its signature.
    let by_name = !web && args.input.first().is_some_and(|a| a.starts_with("--"));
    if entrypoint.is_some() || by_name {
        let params = f
            .signature
            .as_deref()
            .and_then(parameters)
            .with_context(|| format!("`{function}` reports no readable signature"))?;
        let input = entrypoint_input(&function, &params, &args.input)?;
        let output = app.call(&function, &input).await.outcome?;
        // An entrypoint's prints are its output; a result other than
        // `None` follows.
        if entrypoint.is_none() || (!output.is_empty() && output != b"null") {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&output)?;
            stdout.write_all(b"\n")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let input = match args.input.as_slice() {
        [] => None,
        [dash] if dash == "-" && !web => Some(super::common::read_stdin()?),
        [one] => Some(one.clone()),
        more => bail!(
            "`{function}` takes one input, but {} were given (give JSON, or its \
             arguments as --NAME VALUE)",
            more.len()
        ),
    };
    if let FunctionKind::Web { method: declared } = &f.kind {
        // The method given, else the one declared, else what curl sends.
        let method = match (request.method, declared) {
            (Some(given), _) => given.clone(),
            (None, Some(declared)) => parse_method(declared).map_err(anyhow::Error::msg)?,
            (None, None) if request.body.is_some() => hyper::Method::POST,
            (None, None) => hyper::Method::GET,
        };
        let path = input.as_deref().unwrap_or("/");
        return run_web(&app, &function, method, path, request).await;
    }
    let execution = app
        .call(&function, input.unwrap_or_default().as_bytes())
        .await;
    let output = execution.outcome?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&output)?;
    stdout.write_all(b"\n")?;
    Ok(ExitCode::SUCCESS)
}

/// A parameter of a Python function, as its spec's signature shows it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Parameter {
    name: String,
    /// Its default as the signature writes it (`'world'`), if it has one.
    default: Option<String>,
}

/// The parameters of a signature such as `main(name='world', n: int = 3)`
/// (what the Python SDK reports, from `inspect.signature`) that a JSON
/// input fills: not `*args`, `**kwargs` or the `/` and `*` markers. `None`
/// when it does not read as one.
pub(crate) fn parameters(signature: &str) -> Option<Vec<Parameter>> {
    let list = &signature[signature.find('(')? + 1..];
    let mut rest = &list[..top_level(list, |c, depth| c == ')' && depth == 0)?];
    let mut params = Vec::new();
    loop {
        let end = top_level(rest, |c, depth| c == ',' && depth == 0).unwrap_or(rest.len());
        let text = rest[..end].trim();
        if !text.is_empty() && text != "/" && !text.starts_with('*') {
            let name_end = text.find([':', '=']).unwrap_or(text.len());
            params.push(Parameter {
                name: text[..name_end].trim().to_string(),
                default: top_level(text, |c, depth| c == '=' && depth == 0)
                    .map(|at| text[at + 1..].trim().to_string()),
            });
        }
        if end == rest.len() {
            return Some(params);
        }
        rest = &rest[end + 1..];
    }
}

/// The index of the first character of `text` outside string literals
/// that `wanted(char, depth)` accepts, `depth` being how many brackets are
/// open around it (an unmatched closing bracket is at depth 0).
fn top_level(text: &str, mut wanted: impl FnMut(char, usize) -> bool) -> Option<usize> {
    let (mut depth, mut quote, mut escaped) = (0usize, None, false);
    for (at, c) in text.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        let here = match c {
            '\'' | '"' => {
                quote = Some(c);
                continue;
            }
            '(' | '[' | '{' => {
                depth += 1;
                depth - 1
            }
            ')' | ']' | '}' if depth > 0 => {
                depth -= 1;
                continue;
            }
            _ => depth,
        };
        if wanted(c, here) {
            return Some(at);
        }
    }
    None
}

/// What `function` takes, for its usage errors.
fn takes(params: &[Parameter]) -> String {
    if params.is_empty() {
        return "it takes no arguments".into();
    }
    let list: Vec<String> = params
        .iter()
        .map(|p| match &p.default {
            Some(d) => format!("--{} (default {d})", p.name),
            None => format!("--{}", p.name),
        })
        .collect();
    format!("it takes {}", list.join(", "))
}

/// The input of a local entrypoint from its command-line arguments, by
/// the rule the SDK decodes it with: nothing for no parameters, the value
/// itself for one, an object keyed by name for several. `--NAME VALUE`
/// (or `--NAME=VALUE`) gives a parameter: a value that parses as JSON is
/// that JSON, else a string; `--NAME` followed by another flag (or
/// nothing) is `true`. Dashes in a name stand for underscores.
pub(crate) fn entrypoint_input(
    function: &str,
    params: &[Parameter],
    args: &[String],
) -> anyhow::Result<Vec<u8>> {
    use serde_json::{Map, Value};
    let mut given = Map::new();
    let mut args = args.iter().peekable();
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix("--").filter(|f| !f.is_empty()) else {
            bail!(
                "`{function}` takes --NAME VALUE arguments, not `{arg}`; {}",
                takes(params)
            );
        };
        let (key, value) = match flag.split_once('=') {
            Some((key, value)) => (key, Some(value.to_string())),
            None => (flag, args.next_if(|a| !a.starts_with("--")).cloned()),
        };
        let name = key.replace('-', "_");
        if !params.iter().any(|p| p.name == name) {
            bail!("`{function}` has no parameter `{name}`; {}", takes(params));
        }
        let value = match value {
            None => Value::Bool(true),
            Some(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        };
        if given.insert(name.clone(), value).is_some() {
            bail!("`{function}` was given --{key} twice; {}", takes(params));
        }
    }
    let missing: Vec<String> = params
        .iter()
        .filter(|p| p.default.is_none() && !given.contains_key(&p.name))
        .map(|p| format!("--{}", p.name))
        .collect();
    if !missing.is_empty() {
        bail!(
            "`{function}` needs {}; {}",
            missing.join(", "),
            takes(params)
        );
    }
    let input = match params {
        [] => None,
        [one] => given.remove(&one.name),
        _ => Some(Value::Object(given)),
    };
    Ok(match input {
        Some(value) => serde_json::to_vec(&value)?,
        None => Vec::new(),
    })
}

/// Sends web function `function` of `app` one request, `method` on `path`
/// with `given`'s headers and body, and prints the answer's body. An
/// answer other than 2xx is said on stderr: a 4xx or 5xx fails the
/// command.
async fn run_web(
    app: &modal_host::LoadedApp,
    function: &str,
    method: hyper::Method,
    path: &str,
    given: WebRequest<'_>,
) -> anyhow::Result<ExitCode> {
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let mut builder = hyper::Request::builder().method(method).uri(&path);
    let has = |name: hyper::header::HeaderName| given.headers.iter().any(|(n, _)| *n == name);
    if !has(hyper::header::HOST) {
        builder = builder.header(hyper::header::HOST, "localhost");
    }
    let body = given.body.unwrap_or_default();
    if !body.is_empty() && !has(hyper::header::CONTENT_LENGTH) {
        builder = builder.header(hyper::header::CONTENT_LENGTH, body.len());
    }
    for (name, value) in given.headers {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Full::new(Bytes::from(body)))
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
    if !body.is_empty() && !body.ends_with(b"\n") {
        println!();
    }
    if status.is_client_error() || status.is_server_error() {
        bail!("the web function answered {status}");
    }
    if !status.is_success() {
        eprintln!("the web function answered {status}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn describe(args: DescribeArgs) -> anyhow::Result<ExitCode> {
    let component = super::python::component(&args.wasm, args.cache.state.as_deref())?;
    let wasm = read_wasm(&component)?;
    let host = args.cache.host(DEFAULT_MEMORY_LIMIT)?;
    let compiling = Spinner::start(format!("Compiling {}…", args.wasm.display()));
    let spec = host.describe(&wasm).await?;
    drop(compiling);
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
    /// Leave out the host's imports (`context`, `invoke`) so that plain
    /// wasi:http hosts (e.g. `wasmtime serve`) can run the component;
    /// `modal.run_id()` then returns None, and calls to other functions
    /// raise `modal.exception.ExecutionError`.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `modal run ARGS`, as the CLI parses it, with the flags after a
    /// function's input moved (as `run` does when no entrypoint runs).
    fn parse(args: &[&str], entrypoint: bool) -> Result<RunArgs, String> {
        use clap::FromArgMatches;
        let command = RunArgs::augment_args(clap::Command::new("modal run")).no_binary_name(true);
        let matches = command
            .try_get_matches_from(args)
            .map_err(|e| e.to_string())?;
        let mut parsed = RunArgs::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        if !entrypoint {
            parsed.take_trailing_flags().map_err(|e| e.to_string())?;
        }
        Ok(parsed)
    }

    #[test]
    fn run_flags_and_inputs_are_told_apart() {
        // A function's input, with flags before and after it.
        let a = parse(
            &[
                "--memory",
                "32",
                "f.wasm::get",
                "http://x/",
                "--allow-http",
                "x",
                "--no-cache",
                "--memory",
                "64",
                "--env",
                "A=1",
            ],
            false,
        )
        .unwrap();
        assert_eq!(a.input, ["http://x/"]);
        assert_eq!(a.allow_http, ["x"]);
        assert_eq!(a.env, [("A".to_string(), "1".to_string())]);
        assert_eq!(a.memory, 64);
        assert!(a.cache.no_cache);
        let a = parse(&["--memory", "32", "f.wasm::f", "1", "--no-cache"], false).unwrap();
        assert_eq!((a.input, a.memory), (vec!["1".to_string()], 32));
        assert_eq!(
            parse(&["f.wasm::square", "-3"], false).unwrap().input,
            ["-3"]
        );
        assert_eq!(
            parse(&["f.wasm::f", "1", "2", "--no-cache"], false)
                .unwrap()
                .input,
            ["1", "2"]
        );
        assert_eq!(
            parse(&["f.wasm::f", "1", "--bogus"], false).err(),
            Some("unexpected argument '--bogus' found".into())
        );
        // A web function's request, given after its path.
        let a = parse(
            &[
                "f.wasm::web",
                "/p",
                "--header",
                "A: b",
                "--method",
                "put",
                "--data",
                "x",
                "--header",
                "c:d",
            ],
            false,
        )
        .unwrap();
        assert_eq!(a.input, ["/p"]);
        assert_eq!(
            (a.method, a.data),
            (Some(hyper::Method::PUT), Some("x".into()))
        );
        let headers: Vec<String> = a
            .headers
            .iter()
            .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
            .collect();
        assert_eq!(headers, ["a=b", "c=d"]);
        // A local entrypoint's arguments: every one after the first is its.
        let a = parse(
            &["app.py", "--env", "A=1", "--name", "Ada", "--memory", "8"],
            true,
        )
        .unwrap();
        assert_eq!(a.input, ["--name", "Ada", "--memory", "8"]);
        assert_eq!((a.env.len(), a.memory), (1, DEFAULT_MEMORY_LIMIT >> 20));
        let a = parse(&["app.py", "--", "--env", "prod"], true).unwrap();
        assert_eq!(
            (a.input, a.env.len()),
            (vec!["--env".into(), "prod".into()], 0)
        );
    }

    fn param(name: &str, default: Option<&str>) -> Parameter {
        Parameter {
            name: name.into(),
            default: default.map(String::from),
        }
    }

    #[test]
    fn parameters_are_read_from_python_signatures() {
        assert_eq!(
            parameters("main(name='world', n: int = 3)"),
            Some(vec![param("name", Some("'world'")), param("n", Some("3"))])
        );
        assert_eq!(
            parameters("f(xs: dict[str, int] = {'a,)': 1}, /, *args, y=(1, 2), **kw) -> list[int]"),
            Some(vec![
                param("xs", Some("{'a,)': 1}")),
                param("y", Some("(1, 2)"))
            ])
        );
        assert_eq!(
            parameters("g(a, *, b: 'x=y')"),
            Some(vec![param("a", None), param("b", None)])
        );
        assert_eq!(parameters("tick()"), Some(vec![]));
        assert_eq!(parameters("square(x: f64 -> f64"), None);
        assert_eq!(parameters("square"), None);
    }

    fn input(params: &[Parameter], args: &[&str]) -> Result<String, String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        entrypoint_input("main", params, &args)
            .map(|bytes| String::from_utf8(bytes).unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn entrypoint_arguments_become_the_input_the_sdk_decodes() {
        let two = [param("name", Some("'world'")), param("n_items", Some("3"))];
        assert_eq!(
            input(&two, &["--name", "Ada", "--n-items", "4"]),
            Ok(r#"{"n_items":4,"name":"Ada"}"#.into())
        );
        assert_eq!(
            input(&two, &["--name=[1, 2]", "--n_items", "-3"]),
            Ok(r#"{"n_items":-3,"name":[1,2]}"#.into())
        );
        assert_eq!(input(&two, &["--name"]), Ok(r#"{"name":true}"#.into()));
        assert_eq!(input(&two, &[]), Ok("{}".into()));
        let one = [param("name", None)];
        assert_eq!(input(&one, &["--name", "\"7\""]), Ok(r#""7""#.into()));
        assert_eq!(input(&one, &["--name", "7"]), Ok("7".into()));
        assert_eq!(input(&[], &[]), Ok(String::new()));
    }

    #[test]
    fn bad_entrypoint_arguments_list_the_parameters() {
        let params = [param("name", Some("'world'")), param("n", None)];
        assert_eq!(
            input(&params, &["--nmae", "Ada", "--n", "1"]),
            Err("`main` has no parameter `nmae`; it takes --name (default 'world'), --n".into())
        );
        assert_eq!(
            input(&params, &["Ada"]),
            Err("`main` takes --NAME VALUE arguments, not `Ada`; it takes --name (default 'world'), --n".into())
        );
        assert_eq!(
            input(&params, &["--name", "a", "--name", "b", "--n", "1"]),
            Err("`main` was given --name twice; it takes --name (default 'world'), --n".into())
        );
        assert_eq!(
            input(&params, &["--name", "Ada"]),
            Err("`main` needs --n; it takes --name (default 'world'), --n".into())
        );
        assert_eq!(
            input(&[], &["--x"]),
            Err("`main` has no parameter `x`; it takes no arguments".into())
        );
    }
}
