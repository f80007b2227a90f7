//! The client commands: each sends its request through the typed client
//! and prints the answer (see `render`).

use super::args::{
    AppCommand, CallArgs, DeployArgs, DictCommand, HostCommand, ResultArgs, ScheduleCommand,
    SecretCommand, TokenCommand,
};
use super::render;
use crate::cli::client::{Client, ClientError};
use crate::cli::progress::Spinner;
use anyhow::{Context, bail};
use modal_host::api::{
    CallState, DeployQuery, ExecutionRecord, GitInfo, LogsQuery, ResultQuery, RollbackQuery,
    SecretCreate, Trigger, VersionQuery,
};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Who deploys: `user@host`, or the user alone when the host has no name.
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
fn git_info() -> Option<GitInfo> {
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
    Some(GitInfo {
        commit,
        dirty: !status.stdout.is_empty(),
    })
}

/// `modal deploy`.
pub async fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let client = args.server.client()?;
    let component = crate::cli::python::component(&args.wasm, args.server.state())?;
    let wasm = std::fs::read(&component)
        .with_context(|| format!("cannot read {}", component.display()))?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| crate::cli::common::app_name(&args.wasm));
    let mut mounts = Vec::new();
    for (dir, path) in &crate::cli::python::with_declared_mounts(&args.mounts, &wasm)? {
        let source = dir.display().to_string();
        let spinner = Spinner::start(format!("Packing {source}…"));
        let archive = modal_host::platform::pack_dir(dir)?;
        let info = modal_host::platform::archive_info(&archive)?;
        let progress = spinner.upload(&source, &format!("Storing {source}…"));
        let (digest, _uploaded) = client.put_archive(archive, progress).await?;
        drop(spinner);
        mounts.push(modal_host::platform::MountRecord {
            digest,
            path: path.clone(),
            source: dir.display().to_string(),
            files: info.files,
            bytes: info.bytes,
        });
    }
    let query = DeployQuery {
        deployer: deployer(),
        env: args.env,
        allow_http: args.allow_http,
        allow_callers: args.allow_callers,
        secrets: args.secrets,
        mounts,
        notify: args.notify,
        tag: args.tag,
        git: git_info(),
        pool: args.pool.settings(),
    };
    let size = wasm.len() as u64;
    let file = args.wasm.display().to_string();
    let spinner = Spinner::start(format!("Uploading {file}…"));
    let progress = spinner.upload(
        &file,
        &format!("Compiling and starting {name} on the server…"),
    );
    let deployed = client.deploy(&name, &query, wasm, progress).await?;
    drop(spinner);
    if args.json {
        print_json(&deployed)?;
    } else {
        crate::cli::style::show(&render::deploy(&args.wasm, size, &deployed));
    }
    Ok(ExitCode::SUCCESS)
}

/// `modal call`: the output on stdout, the guest's logs on stderr.
pub async fn call(mut args: CallArgs) -> anyhow::Result<ExitCode> {
    args.take_trailing_flags()?;
    let client = args.server.client()?;
    let input = call_input(&client, &args).await?;
    let query = VersionQuery {
        version: args.version,
    };
    let result = client.call(&args.app, &args.function, query, input).await?;
    if args.json {
        // Output, error and logs together; a call that failed exits 1.
        print_json(&result)?;
        return Ok(match result.error {
            Some(_) => ExitCode::FAILURE,
            None => ExitCode::SUCCESS,
        });
    }
    let _ = std::io::stderr().lock().write_all(result.logs.as_bytes());
    if let Some(error) = result.error {
        return Err(error.into());
    }
    let output = result.output.map(|o| o.to_text()).unwrap_or_default();
    println!("{output}");
    Ok(ExitCode::SUCCESS)
}

/// `modal spawn`: prints the call's id.
pub async fn spawn(mut args: CallArgs) -> anyhow::Result<ExitCode> {
    args.take_trailing_flags()?;
    let client = args.server.client()?;
    let input = call_input(&client, &args).await?;
    let query = VersionQuery {
        version: args.version,
    };
    let spawned = client
        .spawn(&args.app, &args.function, query, input)
        .await?;
    if args.json {
        print_json(&spawned)?;
    } else {
        println!("{}", spawned.call_id);
    }
    Ok(ExitCode::SUCCESS)
}

/// The input of `modal call` or `spawn`: the JSON given (or read from
/// stdin for `-`), or built from `--NAME VALUE` arguments by the
/// signature of the function (of the version called).
async fn call_input(client: &Client, args: &CallArgs) -> anyhow::Result<Vec<u8>> {
    let function = &args.function;
    match args.input.as_slice() {
        [] => return Ok(Vec::new()),
        [dash] if dash == "-" => return Ok(crate::cli::common::read_stdin()?.into_bytes()),
        [one] if !one.starts_with("--") => return Ok(one.clone().into_bytes()),
        [first, ..] if !first.starts_with("--") => bail!(
            "`{function}` takes one input, but {} were given (give JSON, or its arguments \
             as --NAME VALUE)",
            args.input.len()
        ),
        _ => {}
    }
    let detail = client.app(&args.app).await?;
    let version = args.version.or(detail.app.record.live_version);
    let signature = detail
        .versions
        .iter()
        .find(|v| Some(v.record.version) == version)
        .and_then(|v| v.record.spec.function(function))
        .and_then(|f| f.signature.clone());
    let params = signature
        .as_deref()
        .and_then(crate::cli::run::parameters)
        .with_context(|| {
            format!("`{function}` reports no readable signature; give its input as JSON")
        })?;
    crate::cli::run::entrypoint_input(function, &params, &args.input)
}

/// Exit code of `modal result` for a call still running.
const PENDING: u8 = 3;

/// `modal result`.
pub async fn result(args: ResultArgs) -> anyhow::Result<ExitCode> {
    let client = args.server.client()?;
    let query = ResultQuery {
        wait: Some(args.wait),
    };
    if args.tree {
        let tree = client.tree(&args.id).await?.executions;
        crate::cli::style::show(&render::tree(&tree));
        // A call made with `modal call` (not spawned) has a tree only.
        let spawned = client.result(&args.id, &query).await;
        if matches!(&spawned, Err(ClientError::Api { .. })) && !tree.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let status = client.result(&args.id, &query).await?;
    if args.json {
        print_json(&status)?;
        return Ok(match status.state {
            CallState::Succeeded => ExitCode::SUCCESS,
            CallState::Failed => ExitCode::FAILURE,
            CallState::Pending => ExitCode::from(PENDING),
        });
    }
    match status.state {
        CallState::Succeeded => {
            println!("{}", status.output.map(|o| o.to_text()).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        CallState::Failed => match status.error {
            Some(error) => Err(error.into()),
            None => bail!("the call failed"),
        },
        CallState::Pending => {
            eprintln!("call {} is still pending", args.id);
            Ok(ExitCode::from(PENDING))
        }
    }
}

/// Prints `value` as indented JSON.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut value = serde_json::to_value(value)?;
    with_rfc3339(&mut value);
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// [`print_json`] on one line (a stream of records, one per line).
fn print_json_line(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut value = serde_json::to_value(value)?;
    with_rfc3339(&mut value);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&value)?)?;
    out.flush()?;
    Ok(())
}

/// Beside every time in epoch ms (a field `*_at`, or `next_fire`), the
/// same time in RFC 3339 (`*_at_rfc3339`), at any depth.
fn with_rfc3339(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let times: Vec<(String, String)> = map
                .iter()
                .filter(|(k, _)| k.ends_with("_at") || *k == "next_fire")
                .filter_map(|(k, v)| {
                    let ms = i64::try_from(v.as_u64()?).ok()?;
                    let at = chrono::DateTime::from_timestamp_millis(ms)?;
                    let text = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    Some((format!("{k}_rfc3339"), text))
                })
                .collect();
            for v in map.values_mut() {
                with_rfc3339(v);
            }
            for (k, text) in times {
                map.insert(k, Value::String(text));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(with_rfc3339),
        _ => {}
    }
}

/// `modal app ...`.
pub async fn app(command: AppCommand) -> anyhow::Result<ExitCode> {
    match command {
        AppCommand::List { json, server } => {
            let apps = server.client()?.apps().await?.apps;
            if json {
                print_json(&apps)?;
            } else {
                crate::cli::style::show(&render::apps(&apps));
            }
        }
        AppCommand::History { name, json, server } => {
            let history = server.client()?.history(&name).await?;
            if json {
                print_json(&history.versions)?;
            } else {
                crate::cli::style::show(&render::history(&history));
            }
        }
        AppCommand::Rollback {
            name,
            version,
            server,
        } => {
            let query = RollbackQuery {
                version,
                deployer: deployer(),
            };
            let spinner = Spinner::start(format!("Rolling back {name}…"));
            let deployed = server.client()?.rollback(&name, &query).await?;
            drop(spinner);
            let size = deployed.deployment.size as u64;
            crate::cli::style::show(&render::deploy(Path::new(&name), size, &deployed));
        }
        AppCommand::Logs {
            name,
            function,
            follow,
            limit,
            json,
            server,
        } => logs(&server.client()?, &name, function, follow, limit, json).await?,
        AppCommand::Stats { name, json, server } => {
            let usage = server.client()?.usage(&name).await?.usage;
            if json {
                print_json(&usage)?;
            } else {
                crate::cli::style::show(&render::stats(&usage));
            }
        }
        AppCommand::Stop { name, server } => match server.client()?.stop(&name).await {
            Ok(stopped) => {
                crate::cli::style::show(&render::host_reports(&stopped.hosts, "stopped"));
                say!("✓ Stopped app {name}: it takes no new calls; calls in progress drain.");
            }
            // What was asked already holds: not a failure.
            Err(ClientError::Api { error, .. }) if error.kind == "app_stopped" => {
                say!("✓ App {name} is already stopped.");
            }
            Err(e) => return Err(e.into()),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// `modal app logs`: the latest `limit` executions, then with `follow` the
/// new ones as they happen.
async fn logs(
    client: &Client,
    app: &str,
    function: Option<String>,
    follow: bool,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let query = LogsQuery {
        limit: Some(limit),
        function: function.clone(),
        follow: false,
    };
    let executions = client.logs(app, &query).await?.executions;
    if json && !follow {
        return print_json(&executions);
    }
    if json {
        // A stream: one execution per line.
        for e in &executions {
            print_json_line(e)?;
        }
    } else {
        crate::cli::style::show(&render::tree(&executions));
    }
    if follow {
        // Start after the last one printed: what ran in between comes first.
        let after = executions.last().map(|e| e.id);
        client
            .follow(app, function.as_deref(), after, |e| {
                if json {
                    let _ = print_json_line(&e);
                    return;
                }
                // Live, a call ends before its caller: indented by depth.
                crate::cli::style::show(&render::execution_at(&e, e.depth as usize));
                let _ = std::io::stdout().flush();
            })
            .await?;
    }
    Ok(())
}

/// Executions fetched to find a schedule's runs among all of its
/// function's executions.
const MAX_HISTORY: usize = 1000;

/// `modal schedule ...`.
/// The variables of `modal secret create`: the arguments, then the .env
/// file. A bad argument is reported without its text (it may hold a
/// value).
fn secret_vars(
    vars: Vec<String>,
    dotenv: Option<&Path>,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut all = std::collections::BTreeMap::new();
    for (i, var) in vars.into_iter().enumerate() {
        let Some((key, value)) = var.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!(
                "argument {} is not KEY=VALUE (its text is not shown)",
                i + 2
            );
        };
        if all.insert(key.to_string(), value.to_string()).is_some() {
            bail!("`{key}` is given twice");
        }
    }
    if let Some(path) = dotenv {
        let lines = dotenvy::from_path_iter(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for line in lines {
            let (key, value) = line.map_err(|e| match e {
                dotenvy::Error::LineParse(_, at) => {
                    anyhow::anyhow!("{}: cannot parse the line at byte {at}", path.display())
                }
                e => anyhow::anyhow!("{}: {e}", path.display()),
            })?;
            if all.insert(key.clone(), value).is_some() {
                bail!("`{key}` is given twice");
            }
        }
    }
    if all.is_empty() {
        bail!("give the secret's variables as KEY=VALUE, or with --from-dotenv FILE");
    }
    Ok(all)
}

/// `modal secret ...`.
pub async fn secret(command: SecretCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretCommand::Create {
            name,
            vars,
            from_dotenv,
            force,
            server,
        } => {
            let create = SecretCreate {
                vars: secret_vars(vars, from_dotenv.as_deref())?,
            };
            let info = server
                .client()?
                .create_secret(&name, &create, force)
                .await?;
            say!(
                "✓ Created secret {} (revision {}) with {}.",
                info.name,
                info.revision,
                info.keys.join(", ")
            );
            if info.revision > 1 && !info.used_by.is_empty() {
                println!(
                    "  Redeploy {} to use it; their live versions keep revision {}.",
                    info.used_by.join(", "),
                    info.revision - 1
                );
            }
        }
        SecretCommand::List { json, server } => {
            let secrets = server.client()?.secrets().await?.secrets;
            if json {
                print_json(&secrets)?;
            } else {
                crate::cli::style::show(&render::secrets(&secrets));
            }
        }
        SecretCommand::Delete {
            name,
            force,
            server,
        } => {
            server.client()?.delete_secret(&name, force).await?;
            say!("✓ Deleted secret {name}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `modal dict ...`.
pub async fn dict(command: DictCommand) -> anyhow::Result<ExitCode> {
    match command {
        DictCommand::List { app, json, server } => {
            let dicts = server.client()?.dicts(&app).await?.dicts;
            if json {
                print_json(&dicts)?;
            } else {
                crate::cli::style::show(&render::dicts(&dicts));
            }
        }
        DictCommand::Keys {
            app,
            bucket,
            json,
            server,
        } => {
            let client = server.client()?;
            let mut cursor = 0;
            let mut keys = Vec::new();
            let mut out = std::io::stdout().lock();
            loop {
                let page = client.dict_keys(&app, &bucket, cursor).await?;
                if json {
                    keys.extend(page.keys);
                } else {
                    for key in &page.keys {
                        writeln!(out, "{key}")?;
                    }
                }
                match page.cursor {
                    Some(next) => cursor = next,
                    None => break,
                }
            }
            drop(out);
            if json {
                print_json(&keys)?;
            }
        }
        DictCommand::Get {
            app,
            bucket,
            key,
            server,
        } => {
            let value = server.client()?.dict_get(&app, &bucket, &key).await?;
            println!("{}", value.value.to_text());
        }
        DictCommand::Put {
            app,
            bucket,
            key,
            value,
            server,
        } => {
            let client = server.client()?;
            client
                .dict_put(&app, &bucket, &key, value.into_bytes())
                .await?;
            say!("✓ Set {key} in {app}/{bucket}.");
        }
        DictCommand::Clear {
            app,
            bucket,
            server,
        } => {
            server.client()?.dict_clear(&app, &bucket).await?;
            say!("✓ Cleared {app}/{bucket}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn schedule(command: ScheduleCommand) -> anyhow::Result<ExitCode> {
    match command {
        ScheduleCommand::List { app, json, server } => {
            let schedules = server.client()?.schedules(&app).await?.schedules;
            if json {
                print_json(&schedules)?;
            } else {
                crate::cli::style::show(&render::schedules(&schedules));
            }
        }
        ScheduleCommand::Pause {
            app,
            function,
            server,
        } => {
            server.client()?.set_paused(&app, &function, true).await?;
            say!("✓ Paused {app}.{function}.");
        }
        ScheduleCommand::Resume {
            app,
            function,
            server,
        } => {
            server.client()?.set_paused(&app, &function, false).await?;
            say!("✓ Resumed {app}.{function}.");
        }
        ScheduleCommand::Run {
            app,
            function,
            server,
        } => {
            let run = server.client()?.run_schedule(&app, &function).await?;
            println!("{}", run.run_id);
        }
        ScheduleCommand::History {
            app,
            function,
            limit,
            json,
            server,
        } => schedule_history(&server.client()?, &app, function, limit, json).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `modal schedule history`: the latest `limit` scheduled runs of
/// `function`, each with its run id.
async fn schedule_history(
    client: &Client,
    app: &str,
    function: String,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let query = LogsQuery {
        limit: Some(MAX_HISTORY),
        function: Some(function),
        follow: false,
    };
    let executions = client.logs(app, &query).await?.executions;
    let runs: Vec<&ExecutionRecord> = executions
        .iter()
        .filter(|e| e.trigger == Trigger::Schedule)
        .collect();
    let runs = &runs[runs.len().saturating_sub(limit)..];
    if json {
        return print_json(&runs);
    }
    for e in runs {
        let run = e
            .run_id
            .as_deref()
            .map(|r| format!("  ({r})"))
            .unwrap_or_default();
        crate::cli::style::show(&render::execution(e).replacen('\n', &format!("{run}\n"), 1));
    }
    Ok(())
}

/// `modal host ...`.
pub async fn host(command: HostCommand) -> anyhow::Result<ExitCode> {
    match command {
        HostCommand::List { json, server } => {
            let hosts = server.client()?.hosts().await?.hosts;
            if json {
                print_json(&hosts)?;
            } else {
                crate::cli::style::show(&render::hosts(&hosts));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `modal token ...`.
pub async fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Show { database, state } => {
            let token = match database {
                Some(url) => {
                    let pg = modal_host::platform::postgres::Pg::connect(&url, 1).await?;
                    pg.stored_token().await?.ok_or_else(|| {
                        anyhow::anyhow!(
                            "the database has no token yet: start a `modal server --database` on it first"
                        )
                    })?
                }
                None => {
                    let dir = crate::cli::common::state_dir(state.as_deref())?;
                    let path = dir.join(modal_host::server::TOKEN_FILE);
                    std::fs::read_to_string(&path)
                        .with_context(|| {
                            format!(
                                "cannot read {}; start `modal server` once to create it",
                                path.display()
                            )
                        })?
                        .trim()
                        .to_string()
                }
            };
            println!("{token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
