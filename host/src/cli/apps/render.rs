//! What the client commands print: the deploy report, tables of apps,
//! versions, usage and schedules, and executions with their logs.

use crate::cli::style;
use bytesize::ByteSize;
use comfy_table::{ColumnConstraint, Table, presets};
use modal_host::api::{
    AppState, AppStatus, Deployed, Deployment, ExecutionRecord, History, ScheduleStatus, Usage,
    VersionState, WebUrl,
};
use modal_host::platform::{HostRecord, HostReport};
use modal_host::spec::{FunctionKind, FunctionSpec, Schedule};
use std::fmt::Write as _;
use std::path::Path;

/// Spaces between two table columns.
const COLUMN_GAP: u16 = 2;

/// A table without borders: a header row, then one row per item, columns
/// left-aligned and `COLUMN_GAP` apart.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    coloured_table(header, rows, &[])
}

/// How the cells of a column are coloured: the cell's text with colour
/// codes (see `style`).
type Paint = fn(&str) -> String;

/// [`table`] with the cells of the columns `paint` names coloured. They
/// are coloured once laid out, since the layout would count colour codes
/// as width; on a pipe `style::show` removes them again.
fn coloured_table(header: &[&str], rows: Vec<Vec<String>>, paint: &[(usize, Paint)]) -> String {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_header(header.to_vec())
        .add_rows(rows.iter().cloned());
    for column in table.column_iter_mut() {
        column.set_padding((0, COLUMN_GAP));
        // Never wrap: a row stays one line a script can split.
        column.set_constraint(ColumnConstraint::ContentWidth);
    }
    let text = table.trim_fmt();
    let one_line = rows.iter().flatten().all(|cell| !cell.contains('\n'));
    if paint.is_empty() || !one_line {
        return text + "\n";
    }
    let mut lines = text.lines();
    let mut out = String::with_capacity(text.len() * 2);
    out.extend(lines.next());
    out.push('\n');
    for (line, row) in lines.zip(&rows) {
        out.push_str(&paint_row(line, row, paint));
        out.push('\n');
    }
    out
}

/// A laid-out table row `line` of `cells`, with the cells of the columns
/// `paint` names coloured. Each cell is found after the one before it.
fn paint_row(line: &str, cells: &[String], paint: &[(usize, Paint)]) -> String {
    let mut out = String::with_capacity(line.len() * 2);
    let mut at = 0;
    for (column, cell) in cells.iter().enumerate() {
        let Some(start) = line[at..].find(cell.as_str()).map(|s| at + s) else {
            break;
        };
        let end = start + cell.len();
        match paint.iter().find(|(c, _)| *c == column) {
            Some((_, paint)) if !cell.is_empty() => {
                out.push_str(&line[at..start]);
                out.push_str(&paint(cell));
            }
            _ => out.push_str(&line[at..end]),
        }
        at = end;
    }
    out.push_str(&line[at..]);
    out
}

/// A byte count in binary units (`512 B`, `1.5 KiB`, `20.0 MiB`).
pub fn bytes(n: u64) -> String {
    ByteSize::b(n).display().iec().to_string()
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn timestamp(ms: Option<u64>) -> String {
    ms.and_then(|ms| i64::try_from(ms).ok())
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || "-".into(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// The first 12 characters of a digest.
fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// The deploy (or rollback) report, in the shape of Modal's: `file` of
/// `size` bytes was deployed as `deployed`.
pub fn deploy(file: &Path, size: u64, deployed: &Deployed) -> String {
    let d = &deployed.deployment;
    let mut out = deploy_steps(file, size, d);
    let mut lines: Vec<String> = d
        .spec
        .functions
        .iter()
        .map(|f| function_line(f, &deployed.web))
        .collect();
    lines.extend(d.mounts.iter().map(|m| {
        format!(
            "Mounted {} at {} ({} file{}, {})",
            m.source,
            m.path,
            m.files,
            if m.files == 1 { "" } else { "s" },
            bytes(m.bytes)
        )
    }));
    lines.extend(
        d.secrets
            .iter()
            .map(|s| format!("Attached secret {} (revision {})", s.name, s.revision)),
    );
    for (i, line) in lines.iter().enumerate() {
        let branch = if i + 1 == lines.len() {
            "└──"
        } else {
            "├──"
        };
        let _ = writeln!(out, "{branch} 🔨 {line}");
    }
    let took = if d.took_ms < 1000.0 {
        format!("{:.0} ms", d.took_ms)
    } else {
        format!("{:.2}s", d.took_ms / 1e3)
    };
    let replaced = d
        .previous
        .map(|p| format!(", replacing v{p}"))
        .unwrap_or_default();
    out.push_str(&host_reports(&d.hosts, "live"));
    let _ = writeln!(
        out,
        "✓ App deployed as {} v{}{replaced} in {took}! 🎉",
        d.app, d.version
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "View Deployment: {}", deployed.app_url);
    out
}

/// How the hosts of a cluster took a change (`what`: "live", "stopped"):
/// nothing on a single host, else one line for those that took it and
/// one per host that did not.
pub fn host_reports(hosts: &[HostReport], what: &str) -> String {
    if hosts.len() <= 1 {
        return String::new();
    }
    let ok = hosts.iter().filter(|h| h.error.is_none()).count();
    let mut out = format!("✓ {what} on {ok} of {} hosts.\n", hosts.len());
    for h in hosts {
        if let Some(e) = &h.error {
            let _ = writeln!(out, "✗ not {what} on host {} ({}): {e}", h.host, h.address);
        }
    }
    out
}

/// The hosts: address, release, last heartbeat, what they serve.
pub fn hosts(hosts: &[HostRecord]) -> String {
    let rows = hosts
        .iter()
        .map(|h| {
            let apps: Vec<String> = h
                .apps
                .iter()
                .filter_map(|a| match (a.version, &a.error) {
                    (_, Some(_)) => Some(format!("{} (failed)", a.app)),
                    (Some(v), None) => Some(format!("{} v{v}", a.app)),
                    (None, None) => None,
                })
                .collect();
            let id = if h.leads_schedules {
                format!("{} (schedules)", h.id)
            } else {
                h.id.clone()
            };
            vec![
                id,
                h.address.clone(),
                h.modal_version.clone(),
                format!("{:.1}s ago", h.age_ms as f64 / 1e3),
                if apps.is_empty() {
                    "-".into()
                } else {
                    apps.join(", ")
                },
                h.instances.to_string(),
                h.in_flight.to_string(),
            ]
        })
        .collect();
    coloured_table(
        &[
            "HOST",
            "ADDRESS",
            "MODAL",
            "HEARTBEAT",
            "APPS",
            "INSTANCES",
            "IN FLIGHT",
        ],
        rows,
        &[(4, style::marked_states)],
    )
}

/// The upload (or restore), compile and create lines of a deploy.
fn deploy_steps(file: &Path, size: u64, d: &Deployment) -> String {
    let mut out = String::new();
    let file = file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let digest = short(&d.digest);
    match d.rollback_of {
        Some(from) => writeln!(out, "✓ Restored the code of v{from} ({digest})."),
        None => writeln!(out, "✓ Uploaded {file} ({}, sha256 {digest}).", bytes(size)),
    }
    .ok();
    if d.compiled_from_cache {
        let _ = writeln!(out, "✓ Compiled (from cache, {:.1} ms).", d.compile_ms);
    } else {
        let _ = writeln!(out, "✓ Compiled in {:.0} ms.", d.compile_ms);
    }
    let _ = writeln!(out, "✓ Created objects.");
    out
}

/// What a deploy created for one function.
fn function_line(f: &FunctionSpec, web: &[WebUrl]) -> String {
    let name = &f.name;
    match &f.kind {
        FunctionKind::Web { .. } => {
            let url = web
                .iter()
                .find(|u| u.function == *name)
                .map_or("", |u| u.url.as_str());
            format!("Created web function {name} => {url}")
        }
        FunctionKind::Scheduled { schedule } => {
            let when = match schedule {
                Schedule::Cron {
                    expression,
                    timezone,
                } => format!(
                    "cron `{expression}` {}",
                    timezone.as_deref().unwrap_or("UTC")
                ),
                Schedule::Period(period) => {
                    format!("every {}", modal_host::format_duration(*period))
                }
            };
            format!("Created scheduled function {name} ({when}).")
        }
        FunctionKind::Plain => format!("Created function {name}."),
    }
}

/// One execution: a header line, then its logs indented.
pub fn execution(e: &ExecutionRecord) -> String {
    execution_at(e, 0)
}

/// Executions (oldest first) as trees: the calls a function made are
/// indented under it.
pub fn tree(records: &[ExecutionRecord]) -> String {
    modal_host::platform::tree_order(records, false)
        .into_iter()
        .map(|(indent, e)| execution_at(e, indent))
        .collect()
}

/// [`execution`] indented `indent` steps, as a call made by the execution
/// above it. An execution in a tree of calls shows its call id.
pub fn execution_at(e: &ExecutionRecord, indent: usize) -> String {
    let pad = "  ".repeat(indent);
    let branch = if indent > 0 { "└ " } else { "" };
    let mut out = format!(
        "{}  {pad}{branch}v{} {} [{}] {} {:.1} ms",
        timestamp(Some(e.started_at)),
        e.version,
        e.function,
        e.trigger.as_str(),
        style::states(e.outcome.as_str()),
        e.duration_ms,
    );
    if let Some(status) = e.http_status {
        let _ = write!(out, " HTTP {status}");
    }
    if let (Some(id), true) = (&e.call_id, e.root_call_id.is_some()) {
        let _ = write!(out, " {id}");
    }
    if let Some(error) = &e.error {
        let _ = write!(out, ": {error}");
    }
    out.push('\n');
    for line in e.logs.lines() {
        let _ = writeln!(out, "    {pad}{line}");
    }
    out
}

/// The secrets: never their values.
pub fn secrets(secrets: &[modal_host::platform::SecretInfo]) -> String {
    if secrets.is_empty() {
        return "No secrets yet; create one with `modal secret create NAME KEY=VALUE`.\n".into();
    }
    let rows = secrets
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.keys.join(", "),
                s.revision.to_string(),
                timestamp(Some(s.created_at)),
                timestamp(Some(s.updated_at)),
                if s.used_by.is_empty() {
                    "-".to_string()
                } else {
                    s.used_by.join(", ")
                },
            ]
        })
        .collect();
    table(
        &["name", "keys", "revision", "created", "updated", "used by"],
        rows,
    )
}

/// The buckets of an app.
pub fn dicts(dicts: &[modal_host::api::DictInfo]) -> String {
    if dicts.is_empty() {
        return "No buckets hold keys yet.\n".into();
    }
    let rows = dicts
        .iter()
        .map(|d| vec![d.name.clone(), d.keys.to_string()])
        .collect();
    table(&["bucket", "keys"], rows)
}

/// Usage per version and function.
pub fn stats(usage: &[Usage]) -> String {
    let rows = usage
        .iter()
        .map(|u| {
            vec![
                format!("v{}", u.version),
                u.function.clone(),
                u.calls.to_string(),
                u.errors.to_string(),
                format!("{:.2} ms", u.p50_ms),
                format!("{:.2} ms", u.p99_ms),
                format!("{:.1} ms", u.total_ms),
                bytes(u.peak_memory),
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

/// The schedules of an app: when they run, their state, the next fire.
pub fn schedules(schedules: &[ScheduleStatus]) -> String {
    let rows = schedules
        .iter()
        .map(|s| {
            let state = if s.paused {
                "paused"
            } else if s.running {
                "running"
            } else {
                "waiting"
            };
            vec![
                s.function.clone(),
                s.schedule.clone(),
                state.to_string(),
                timestamp(s.next_fire),
            ]
        })
        .collect();
    coloured_table(
        &["FUNCTION", "SCHEDULE", "STATE", "NEXT FIRE"],
        rows,
        &[(2, style::states)],
    )
}

/// An app's state as the API names it.
fn state_name(state: AppState) -> &'static str {
    match state {
        AppState::Deployed => "deployed",
        AppState::Stopped => "stopped",
    }
}

/// `v3 live (2 warm)` plus `v2 draining (5 in flight)` for each draining
/// version.
fn version_column(app: &AppStatus) -> String {
    let mut text = match (app.record.state, app.record.live_version) {
        (AppState::Stopped, Some(v)) => format!("v{v} stopped"),
        (_, Some(v)) => format!("v{v} live ({} warm)", app.instances),
        _ => "-".into(),
    };
    for d in &app.draining {
        let _ = write!(
            text,
            ", v{} draining ({} in flight)",
            d.version, d.in_flight
        );
    }
    text
}

/// The earliest next fire time of an app's schedules, and which.
fn next_fire(app: &AppStatus) -> String {
    let next = app
        .schedules
        .iter()
        .filter_map(|s| Some((s.next_fire?, s.function.as_str())))
        .min();
    match next {
        Some((at, function)) => format!("{} ({function})", timestamp(Some(at))),
        None => "-".into(),
    }
}

/// The apps: state, versions, deploy time, functions, calls, next fire.
pub fn apps(apps: &[AppStatus]) -> String {
    if apps.is_empty() {
        return "No apps deployed. Deploy one with `modal deploy APP.wasm`.\n".into();
    }
    let rows = apps
        .iter()
        .map(|a| {
            vec![
                a.record.name.clone(),
                state_name(a.record.state).to_string(),
                version_column(a),
                timestamp(Some(a.record.updated_at)),
                a.functions.to_string(),
                a.calls.to_string(),
                a.errors.to_string(),
                next_fire(a),
            ]
        })
        .collect();
    coloured_table(
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
        &[(1, style::states), (2, style::states)],
    )
}

/// The versions of an app, newest first.
pub fn history(history: &History) -> String {
    let rows = history
        .versions
        .iter()
        .rev()
        .map(|v| {
            let r = &v.record;
            let state = match v.status {
                VersionState::Live => format!("live ({} warm)", v.instances),
                VersionState::Draining => format!("draining ({} in flight)", v.in_flight),
                VersionState::Retired => "retired".into(),
            };
            let commit = match &r.git {
                Some(git) => {
                    let short = git.commit.get(..10).unwrap_or(&git.commit);
                    let dirty = if git.dirty { "-dirty" } else { "" };
                    format!("{short}{dirty}")
                }
                None => "-".into(),
            };
            let mut tag = r.tag.clone().unwrap_or_else(|| "-".into());
            if let Some(from) = r.rollback_of {
                tag = format!("{tag} (rollback to v{from})");
            }
            vec![
                format!("v{}", r.version),
                state,
                timestamp(Some(r.deployed_at)),
                r.deployer.clone(),
                tag,
                commit,
            ]
        })
        .collect();
    let stopped = if history.app.record.state == AppState::Stopped {
        "(app stopped)\n"
    } else {
        ""
    };
    let header = ["VERSION", "STATE", "DEPLOYED", "DEPLOYER", "TAG", "COMMIT"];
    let table = coloured_table(&header, rows, &[(1, style::states)]);
    format!("{}{table}", style::states(stopped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_dates() {
        assert_eq!(timestamp(Some(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            timestamp(Some(1_795_721_699_525)),
            "2026-11-26 19:34:59 UTC"
        );
        assert_eq!(timestamp(None), "-");
        assert_eq!(timestamp(Some(u64::MAX)), "-");
    }

    #[test]
    fn sizes_are_in_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(20 << 20), "20.0 MiB");
    }

    #[test]
    fn states_are_coloured_after_the_layout() {
        let rows = || {
            vec![
                vec!["live".into(), "deployed".into(), "v2 live (1 warm)".into()],
                vec!["failed".into(), "stopped".into(), String::new()],
                vec![
                    "ümlaut".into(),
                    "deployed".into(),
                    "v1 draining (2 in flight)".into(),
                ],
            ]
        };
        let header = ["NAME", "STATE", "VERSION"];
        let paint: &[(usize, Paint)] = &[(1, style::states), (2, style::states)];
        let coloured = coloured_table(&header, rows(), paint);
        // As a pipe gets it (`style::show` strips the codes), the same layout.
        let plain = anstream::adapter::strip_str(&coloured).to_string();
        assert_eq!(plain, table(&header, rows()));
        let lines: Vec<&str> = coloured.lines().collect();
        assert_eq!(
            lines[0], "NAME    STATE     VERSION",
            "the header stays plain"
        );
        // Names that read as states keep their colour; state columns change.
        assert_eq!(
            lines[1],
            "live    \x1b[32mdeployed\x1b[0m  v2 \x1b[32mlive\x1b[0m (1 warm)"
        );
        assert_eq!(lines[2], "failed  \x1b[31mstopped\x1b[0m");
        assert!(lines[3].contains("v1 \x1b[33mdraining\x1b[0m (2 in flight)"));
    }

    #[test]
    fn tables_are_aligned_columns_without_borders() {
        let rows = vec![
            vec!["v10".into(), "live (1 warm)".into(), "ümlaut".into()],
            vec!["v9".into(), "retired".into(), String::new()],
        ];
        assert_eq!(
            table(&["VERSION", "STATE", "TAG"], rows),
            "VERSION  STATE          TAG\n\
             v10      live (1 warm)  ümlaut\n\
             v9       retired\n"
        );
    }
}
