//! `modal deploy`, `modal call` and `modal app ...`: clients of a running
//! `modal server`.

use super::client::{Client, ServerArgs, encode};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `modal deploy`.
#[derive(Args)]
pub struct DeployArgs {
    /// The component to deploy (`.wasm`, or a `.py` module to build).
    wasm: PathBuf,
    /// The app's name (a DNS label); default: the file name.
    #[arg(long)]
    name: Option<String>,
    /// An environment variable for the guest, `KEY=VALUE` (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = super::common::parse_env)]
    env: Vec<(String, String)>,
    /// A label for this version, shown in `modal app history`.
    #[arg(long)]
    tag: Option<String>,
    /// Let the app send HTTP requests to HOST (any port) or HOST:PORT
    /// (repeatable); all other outbound requests are denied.
    #[arg(long = "allow-http", value_name = "HOST[:PORT]")]
    allow_http: Vec<String>,
    /// Where failed scheduled runs are reported: a JSON POST with app,
    /// version, function, fire time, error and log tail.
    #[arg(long, value_name = "URL")]
    notify: Option<String>,
    #[command(flatten)]
    pool: PoolArgs,
    #[command(flatten)]
    server: ServerArgs,
}

/// Pool settings of a plain `wasi:http` component, which has no
/// `describe` to declare them (an SDK app sets them on its functions).
#[derive(Args, Clone, Debug, Default)]
pub struct PoolArgs {
    /// Plain wasi:http components: requests per instance before it is
    /// replaced (1 gives every request a fresh instance, which guests that
    /// answer only once per instance need).
    #[arg(long, value_name = "N")]
    max_requests: Option<u32>,
    /// Plain wasi:http components: instances kept warm when idle.
    #[arg(long, value_name = "N")]
    min_warm: Option<u32>,
    /// Plain wasi:http components: instances running at once.
    #[arg(long, value_name = "N")]
    max_instances: Option<u32>,
    /// Plain wasi:http components: the time limit of one request (e.g.
    /// `30s`).
    #[arg(long, value_parser = modal_host::parse_duration, value_name = "DURATION")]
    timeout: Option<std::time::Duration>,
}

impl PoolArgs {
    /// The settings as the library takes them.
    pub fn settings(&self) -> modal_host::PoolSettings {
        modal_host::PoolSettings {
            timeout: self.timeout,
            min_warm: self.min_warm,
            max_instances: self.max_instances,
            max_requests: self.max_requests,
        }
    }

    /// The settings as deploy query parameters.
    fn query(&self) -> Vec<String> {
        let mut query = Vec::new();
        let counts = [
            ("max_requests", self.max_requests),
            ("min_warm", self.min_warm),
            ("max_instances", self.max_instances),
        ];
        for (name, value) in counts {
            if let Some(n) = value {
                query.push(format!("{name}={n}"));
            }
        }
        if let Some(timeout) = self.timeout {
            query.push(format!("timeout={}ms", timeout.as_millis()));
        }
        query
    }
}

/// Arguments of `modal call` and `modal spawn`.
#[derive(Args)]
pub struct CallArgs {
    /// The app.
    app: String,
    /// The function.
    function: String,
    /// The JSON input (leave it out for a function without parameters).
    input: Option<String>,
    /// Run this kept version instead of the live one.
    #[arg(long, value_name = "N")]
    version: Option<u64>,
    #[command(flatten)]
    server: ServerArgs,
}

/// Arguments of `modal result`.
#[derive(Args)]
pub struct ResultArgs {
    /// The call id `modal spawn` printed.
    id: String,
    /// Wait up to this long for the call to finish (e.g. `30s`).
    #[arg(long, default_value = "0s")]
    wait: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// `modal schedule ...`.
#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// The schedules of an app: when they run, next fire time, paused.
    List {
        /// The app.
        app: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop firing a schedule (without a redeploy).
    Pause {
        /// The app.
        app: String,
        /// The scheduled function.
        function: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Fire a paused schedule again.
    Resume {
        /// The app.
        app: String,
        /// The scheduled function.
        function: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Fire a schedule once, now (with its retries); prints the run id.
    Run {
        /// The app.
        app: String,
        /// The scheduled function.
        function: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The recent runs of a schedule.
    History {
        /// The app.
        app: String,
        /// The scheduled function.
        function: String,
        /// How many runs.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn schedule(command: ScheduleCommand) -> anyhow::Result<ExitCode> {
    match command {
        ScheduleCommand::List { app, server } => {
            let path = format!("/api/v1/apps/{}/schedules", encode(&app));
            let body = server
                .client()?
                .expect(Method::GET, &path, Vec::new())
                .await?;
            print!("{}", render_schedules(&body["schedules"]));
        }
        ScheduleCommand::Pause {
            app,
            function,
            server,
        } => {
            let path = format!(
                "/api/v1/apps/{}/schedules/{}/pause",
                encode(&app),
                encode(&function)
            );
            server
                .client()?
                .expect(Method::POST, &path, Vec::new())
                .await?;
            println!("✓ Paused {app}.{function}.");
        }
        ScheduleCommand::Resume {
            app,
            function,
            server,
        } => {
            let path = format!(
                "/api/v1/apps/{}/schedules/{}/resume",
                encode(&app),
                encode(&function)
            );
            server
                .client()?
                .expect(Method::POST, &path, Vec::new())
                .await?;
            println!("✓ Resumed {app}.{function}.");
        }
        ScheduleCommand::Run {
            app,
            function,
            server,
        } => {
            let path = format!(
                "/api/v1/apps/{}/schedules/{}/run",
                encode(&app),
                encode(&function)
            );
            let body = server
                .client()?
                .expect(Method::POST, &path, Vec::new())
                .await?;
            println!("{}", body["run_id"].as_str().unwrap_or_default());
        }
        ScheduleCommand::History {
            app,
            function,
            limit,
            server,
        } => {
            let path = format!(
                "/api/v1/apps/{}/logs?limit={}&function={}",
                encode(&app),
                MAX_HISTORY,
                encode(&function)
            );
            let body = server
                .client()?
                .expect(Method::GET, &path, Vec::new())
                .await?;
            let runs: Vec<&Value> = body["executions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["trigger"] == "schedule")
                .collect();
            for e in &runs[runs.len().saturating_sub(limit)..] {
                let run = e["run_id"]
                    .as_str()
                    .map(|r| format!("  ({r})"))
                    .unwrap_or_default();
                print!(
                    "{}",
                    render_execution(e).replacen('\n', &format!("{run}\n"), 1)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Executions fetched to find a schedule's runs among all of its
/// function's executions.
const MAX_HISTORY: usize = 1000;

fn render_schedules(schedules: &Value) -> String {
    let rows = schedules
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let state = if s["paused"] == true {
                "paused"
            } else if s["running"] == true {
                "running"
            } else {
                "waiting"
            };
            vec![
                s["function"].as_str().unwrap_or("").to_string(),
                s["schedule"].as_str().unwrap_or("").to_string(),
                state.to_string(),
                timestamp(s["next_fire"].as_u64()),
            ]
        })
        .collect();
    table(&["FUNCTION", "SCHEDULE", "STATE", "NEXT FIRE"], rows)
}

/// `modal app ...`.
#[derive(Subcommand)]
pub enum AppCommand {
    /// List apps: state, live version, deploy time, functions.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The versions of an app: when, by whom, tag, commit, state.
    History {
        /// The app.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Make an earlier version's code live again, as a new version.
    Rollback {
        /// The app.
        name: String,
        /// The version to return to; default: the one before the live one.
        #[arg(long, value_name = "N")]
        version: Option<u64>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Recent executions of an app and their logs; `--follow` streams new ones.
    Logs {
        /// The app.
        name: String,
        /// Only this function.
        #[arg(long)]
        function: Option<String>,
        /// Keep printing executions as they happen.
        #[arg(long, short)]
        follow: bool,
        /// How many recent executions to print first.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Usage per version and function: calls, errors, durations, memory.
    Stats {
        /// The app.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop an app: endpoints and schedules stop, calls in progress drain.
    Stop {
        /// The app.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn deployer() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}

/// The commit of the current directory and whether the tree is dirty.
fn git_info() -> Option<(String, bool)> {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    if !commit.status.success() {
        return None;
    }
    let commit = String::from_utf8(commit.stdout).ok()?.trim().to_string();
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain"])
        .output()
        .ok()?;
    Some((commit, !status.stdout.is_empty()))
}

pub async fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let client = args.server.client()?;
    let component = super::python::component(&args.wasm, args.server.state())?;
    let wasm = std::fs::read(&component)
        .with_context(|| format!("cannot read {}", component.display()))?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| super::common::app_name(&args.wasm));
    let mut query = vec![format!("deployer={}", encode(&deployer()))];
    for (k, v) in &args.env {
        query.push(format!("env={}", encode(&format!("{k}={v}"))));
    }
    for host in &args.allow_http {
        query.push(format!("allow_http={}", encode(host)));
    }
    if let Some(url) = &args.notify {
        query.push(format!("notify={}", encode(url)));
    }
    if let Some(tag) = &args.tag {
        query.push(format!("tag={}", encode(tag)));
    }
    query.extend(args.pool.query());
    if let Some((commit, dirty)) = git_info() {
        query.push(format!("git_commit={commit}&git_dirty={dirty}"));
    }
    let path = format!("/api/v1/apps/{}/deploy?{}", encode(&name), query.join("&"));
    let size = wasm.len();
    let body = client.expect(Method::POST, &path, wasm).await?;
    print!("{}", render_deploy(&args.wasm, size, &body));
    Ok(ExitCode::SUCCESS)
}

/// The deploy (or rollback) output, in the shape of Modal's.
fn render_deploy(file: &Path, size: usize, body: &Value) -> String {
    use std::fmt::Write as _;
    let d = &body["deployment"];
    let mut out = String::new();
    let digest = d["digest"].as_str().unwrap_or("");
    let file = file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    match d["rollback_of"].as_u64() {
        Some(from) => {
            let _ = writeln!(
                out,
                "✓ Restored the code of v{from} ({}).",
                &digest[..digest.len().min(12)]
            );
        }
        None => {
            let _ = writeln!(
                out,
                "✓ Uploaded {file} ({}, sha256 {}).",
                bytes(size),
                &digest[..digest.len().min(12)]
            );
        }
    }
    if d["compiled_from_cache"].as_bool() == Some(true) {
        let _ = writeln!(
            out,
            "✓ Compiled (from cache, {:.1} ms).",
            d["compile_ms"].as_f64().unwrap_or(0.0)
        );
    } else {
        let _ = writeln!(
            out,
            "✓ Compiled in {:.0} ms.",
            d["compile_ms"].as_f64().unwrap_or(0.0)
        );
    }
    let _ = writeln!(out, "✓ Created objects.");
    let functions = d["spec"]["functions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, f) in functions.iter().enumerate() {
        let branch = if i + 1 == functions.len() {
            "└──"
        } else {
            "├──"
        };
        let name = f["name"].as_str().unwrap_or("?");
        let line = match f["kind"]["type"].as_str() {
            Some("web") => {
                let url = body["web"]
                    .as_array()
                    .and_then(|w| w.iter().find(|u| u["function"] == name))
                    .and_then(|u| u["url"].as_str())
                    .unwrap_or("");
                format!("Created web function {name} => {url}")
            }
            Some("scheduled") => {
                let schedule = &f["kind"]["schedule"];
                let when = match (
                    schedule["cron"]["expression"].as_str(),
                    schedule["period_ms"].as_u64(),
                ) {
                    (Some(expr), _) => {
                        let zone = schedule["cron"]["timezone"].as_str().unwrap_or("UTC");
                        format!("cron `{expr}` {zone}")
                    }
                    (_, Some(ms)) => format!(
                        "every {}",
                        modal_host::format_duration(std::time::Duration::from_millis(ms))
                    ),
                    _ => "scheduled".into(),
                };
                format!("Created scheduled function {name} ({when}).")
            }
            _ => format!("Created function {name}."),
        };
        let _ = writeln!(out, "{branch} 🔨 {line}");
    }
    let app = d["app"].as_str().unwrap_or("?");
    let version = d["version"].as_u64().unwrap_or(0);
    let took_ms = d["took_ms"].as_f64().unwrap_or(0.0);
    let took = if took_ms < 1000.0 {
        format!("{took_ms:.0} ms")
    } else {
        format!("{:.2}s", took_ms / 1e3)
    };
    let replaced = d["previous"]
        .as_u64()
        .map(|p| format!(", replacing v{p}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "✓ App deployed as {app} v{version}{replaced} in {took}! 🎉"
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "View Deployment: {}",
        body["app_url"].as_str().unwrap_or("")
    );
    out
}

fn bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

pub async fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let client = args.server.client()?;
    let mut path = format!(
        "/api/v1/apps/{}/functions/{}/call",
        encode(&args.app),
        encode(&args.function)
    );
    if let Some(v) = args.version {
        path.push_str(&format!("?version={v}"));
    }
    let input = args.input.unwrap_or_default().into_bytes();
    let answer = client.send(Method::POST, &path, input).await?;
    if let Some(logs) = answer.body["logs"].as_str() {
        let _ = std::io::stderr().lock().write_all(logs.as_bytes());
    }
    if let Some(message) = answer.error_message() {
        bail!(message);
    }
    let output = match (
        &answer.body.get("output"),
        answer.body["output_text"].as_str(),
    ) {
        (Some(value), _) => serde_json::to_string(value)?,
        (None, Some(text)) => text.to_string(),
        (None, None) => String::new(),
    };
    println!("{output}");
    Ok(ExitCode::SUCCESS)
}

pub async fn app(command: AppCommand) -> anyhow::Result<ExitCode> {
    match command {
        AppCommand::List { json, server } => {
            let body = server
                .client()?
                .expect(Method::GET, "/api/v1/apps", Vec::new())
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&body["apps"])?);
            } else {
                print!("{}", render_list(&body["apps"]));
            }
        }
        AppCommand::History { name, json, server } => {
            let path = format!("/api/v1/apps/{}/history", encode(&name));
            let body = server
                .client()?
                .expect(Method::GET, &path, Vec::new())
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&body["versions"])?);
            } else {
                print!("{}", render_history(&body));
            }
        }
        AppCommand::Rollback {
            name,
            version,
            server,
        } => {
            let client: Client = server.client()?;
            let mut path = format!(
                "/api/v1/apps/{}/rollback?deployer={}",
                encode(&name),
                encode(&deployer())
            );
            if let Some(v) = version {
                path.push_str(&format!("&version={v}"));
            }
            let body = client.expect(Method::POST, &path, Vec::new()).await?;
            let size = body["deployment"]["size"].as_u64().unwrap_or(0) as usize;
            print!("{}", render_deploy(Path::new(&name), size, &body));
        }
        AppCommand::Logs {
            name,
            function,
            follow,
            limit,
            server,
        } => {
            let client = server.client()?;
            let filter = function
                .as_deref()
                .map(|f| format!("&function={}", encode(f)))
                .unwrap_or_default();
            let path = format!("/api/v1/apps/{}/logs?limit={limit}{filter}", encode(&name));
            let body = client.expect(Method::GET, &path, Vec::new()).await?;
            for e in body["executions"].as_array().into_iter().flatten() {
                print!("{}", render_execution(e));
            }
            if follow {
                let path = format!("/api/v1/apps/{}/logs?follow=1{filter}", encode(&name));
                client
                    .events(&path, |data| {
                        if let Ok(e) = serde_json::from_str::<Value>(data) {
                            print!("{}", render_execution(&e));
                            let _ = std::io::stdout().flush();
                        }
                    })
                    .await?;
            }
        }
        AppCommand::Stats { name, json, server } => {
            let path = format!("/api/v1/apps/{}/stats", encode(&name));
            let body = server
                .client()?
                .expect(Method::GET, &path, Vec::new())
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&body["usage"])?);
            } else {
                print!("{}", render_stats(&body["usage"]));
            }
        }
        AppCommand::Stop { name, server } => {
            let path = format!("/api/v1/apps/{}/stop", encode(&name));
            server
                .client()?
                .expect(Method::POST, &path, Vec::new())
                .await?;
            println!("✓ Stopped app {name}: it takes no new calls; calls in progress drain.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One execution: a header line, then its logs indented.
fn render_execution(e: &Value) -> String {
    let mut out = format!(
        "{}  v{} {} [{}] {} {:.1} ms",
        timestamp(e["started_at"].as_u64()),
        e["version"].as_u64().unwrap_or(0),
        e["function"].as_str().unwrap_or("?"),
        e["trigger"].as_str().unwrap_or("?"),
        e["outcome"].as_str().unwrap_or("?"),
        e["duration_ms"].as_f64().unwrap_or(0.0),
    );
    if let Some(status) = e["http_status"].as_u64() {
        out.push_str(&format!(" HTTP {status}"));
    }
    if let Some(error) = e["error"].as_str() {
        out.push_str(&format!(": {error}"));
    }
    out.push('\n');
    for line in e["logs"].as_str().unwrap_or("").lines() {
        out.push_str(&format!("    {line}\n"));
    }
    out
}

fn render_stats(usage: &Value) -> String {
    let rows = usage
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            vec![
                format!("v{}", u["version"].as_u64().unwrap_or(0)),
                u["function"].as_str().unwrap_or("").to_string(),
                u["calls"].as_u64().unwrap_or(0).to_string(),
                u["errors"].as_u64().unwrap_or(0).to_string(),
                format!("{:.2} ms", u["p50_ms"].as_f64().unwrap_or(0.0)),
                format!("{:.2} ms", u["p99_ms"].as_f64().unwrap_or(0.0)),
                format!("{:.1} ms", u["total_ms"].as_f64().unwrap_or(0.0)),
                bytes(u["peak_memory"].as_u64().unwrap_or(0) as usize),
            ]
        })
        .collect();
    table(
        &[
            "VERSION",
            "FUNCTION",
            "CALLS",
            "ERRORS",
            "P50",
            "P99",
            "TOTAL",
            "PEAK MEMORY",
        ],
        rows,
    )
}

pub async fn spawn(args: CallArgs) -> anyhow::Result<ExitCode> {
    let client = args.server.client()?;
    let mut path = format!(
        "/api/v1/apps/{}/functions/{}/spawn",
        encode(&args.app),
        encode(&args.function)
    );
    if let Some(v) = args.version {
        path.push_str(&format!("?version={v}"));
    }
    let body = client
        .expect(
            Method::POST,
            &path,
            args.input.unwrap_or_default().into_bytes(),
        )
        .await?;
    println!("{}", body["call_id"].as_str().unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// Exit code of `modal result` for a call still running.
const PENDING: u8 = 3;

pub async fn result(args: ResultArgs) -> anyhow::Result<ExitCode> {
    let client = args.server.client()?;
    let path = format!(
        "/api/v1/calls/{}?wait={}",
        encode(&args.id),
        encode(&args.wait)
    );
    let body = client.expect(Method::GET, &path, Vec::new()).await?;
    match body["state"].as_str() {
        Some("succeeded") => {
            match (body.get("output"), body["output_text"].as_str()) {
                (Some(v), _) => println!("{}", serde_json::to_string(v)?),
                (None, Some(t)) => println!("{t}"),
                _ => println!(),
            }
            Ok(ExitCode::SUCCESS)
        }
        Some("failed") => bail!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("the call failed")
                .to_string()
        ),
        _ => {
            eprintln!("call {} is still pending", args.id);
            Ok(ExitCode::from(PENDING))
        }
    }
}

/// `v3 live (2 warm)` plus `v2 draining (5 in flight)` for each draining
/// version.
fn version_column(app: &Value) -> String {
    let mut text = match (app["state"].as_str(), app["live_version"].as_u64()) {
        (Some("stopped"), Some(v)) => format!("v{v} stopped"),
        (_, Some(v)) => format!(
            "v{v} live ({} warm)",
            app["instances"].as_u64().unwrap_or(0)
        ),
        _ => "-".into(),
    };
    for d in app["draining"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            ", v{} draining ({} in flight)",
            d["version"].as_u64().unwrap_or(0),
            d["in_flight"].as_u64().unwrap_or(0)
        ));
    }
    text
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

fn render_list(apps: &Value) -> String {
    let apps = apps.as_array().cloned().unwrap_or_default();
    if apps.is_empty() {
        return "No apps deployed. Deploy one with `modal deploy APP.wasm`.\n".into();
    }
    let rows = apps
        .iter()
        .map(|a| {
            vec![
                a["name"].as_str().unwrap_or("").to_string(),
                a["state"].as_str().unwrap_or("").to_string(),
                version_column(a),
                timestamp(a["updated_at"].as_u64()),
                a["functions"].as_u64().unwrap_or(0).to_string(),
                a["calls"].as_u64().unwrap_or(0).to_string(),
                a["errors"].as_u64().unwrap_or(0).to_string(),
                next_fire(a),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATE",
            "VERSION",
            "DEPLOYED",
            "FUNCTIONS",
            "CALLS",
            "ERRORS",
            "NEXT FIRE",
        ],
        rows,
    )
}

/// The earliest next fire time of an app's schedules, and which.
fn next_fire(app: &Value) -> String {
    let next = app["schedules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["next_fire"].as_u64()?, s["function"].as_str()?)))
        .min();
    match next {
        Some((at, function)) => format!("{} ({function})", timestamp(Some(at))),
        None => "-".into(),
    }
}

fn render_history(body: &Value) -> String {
    let versions = body["versions"].as_array().cloned().unwrap_or_default();
    let rows = versions
        .iter()
        .rev()
        .map(|v| {
            let state = match v["status"].as_str() {
                Some("live") => format!("live ({} warm)", v["instances"].as_u64().unwrap_or(0)),
                Some("draining") => format!(
                    "draining ({} in flight)",
                    v["in_flight"].as_u64().unwrap_or(0)
                ),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let commit = match (v["git"]["commit"].as_str(), v["git"]["dirty"].as_bool()) {
                (Some(c), Some(true)) => format!("{}-dirty", &c[..c.len().min(10)]),
                (Some(c), _) => c[..c.len().min(10)].to_string(),
                _ => "-".into(),
            };
            let mut tag = v["tag"].as_str().unwrap_or("-").to_string();
            if let Some(from) = v["rollback_of"].as_u64() {
                tag = format!("{tag} (rollback to v{from})");
            }
            vec![
                format!("v{}", v["version"].as_u64().unwrap_or(0)),
                state,
                timestamp(v["deployed_at"].as_u64()),
                v["deployer"].as_str().unwrap_or("").to_string(),
                tag,
                commit,
            ]
        })
        .collect();
    let stopped = if body["app"]["state"] == "stopped" {
        "(app stopped)\n"
    } else {
        ""
    };
    format!(
        "{stopped}{}",
        table(
            &["VERSION", "STATE", "DEPLOYED", "DEPLOYER", "TAG", "COMMIT"],
            rows
        )
    )
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC`.
fn timestamp(ms: Option<u64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::timestamp;

    #[test]
    fn timestamps_are_utc_dates() {
        assert_eq!(timestamp(Some(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            timestamp(Some(1_795_721_699_525)),
            "2026-11-26 19:34:59 UTC"
        );
        assert_eq!(timestamp(None), "-");
    }
}
