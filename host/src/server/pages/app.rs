//! `/apps/{name}`: an app's overview. Its functions (with schedule
//! buttons), versions (with rollback), usage and recent executions update
//! themselves; the charts show the last hours per minute.

use super::super::{Body, State};
use super::charts::{self, DEFAULT_HOURS, HOURS, MAX_ROWS, Window};
use super::form::{Pairs, encode, given, url};
use super::layout::{self, Chrome, app_tabs, mib, millis, outcome_badge, state_badge, time};
use crate::platform::{
    AppState, AppStatus, ExecutionRecord, VersionState, VersionStatus, tree_order,
};
use crate::spec::FunctionKind;
use hyper::Response;
use maud::{Markup, html};

/// Executions shown on an app's page (the logs view pages through all).
const RECENT: usize = 20;

/// The figures a page of an app needs, read once.
struct Overview {
    app: AppStatus,
    versions: Vec<VersionStatus>,
    usage: Vec<crate::platform::Usage>,
    executions: Vec<ExecutionRecord>,
}

/// The figures of app `name`; its usage only `with_usage` (it reads
/// every stored execution of the app, so the parts that update
/// themselves leave it out).
async fn overview(state: &State, name: &str, with_usage: bool) -> Result<Overview, crate::Error> {
    let platform = &state.platform;
    let app = platform.app(name).await?;
    Ok(Overview {
        versions: platform.history(name).await?,
        usage: if with_usage {
            platform.usage(name).await?
        } else {
            Vec::new()
        },
        executions: platform.logs(name, None, RECENT).await?,
        app,
    })
}

/// `GET /apps/{name}` (or only its live parts with `part=live`).
pub(super) async fn page(
    state: &State,
    name: &str,
    mut chrome: Chrome,
    query: &Pairs,
) -> Response<Body> {
    let live = given(query, "part").as_deref() == Some("live");
    let o = match overview(state, name, !live).await {
        Ok(o) => o,
        Err(e) => return layout::platform_error(&chrome, &e),
    };
    let parts = parts(state, name, &o);
    let choice = ChartChoice::read(query);
    if live {
        let charts = match given(query, "slow") {
            Some(_) => charts_part(state, name, &choice).await,
            None => html! {},
        };
        return layout::fragment(html! {
            (parts.functions) (parts.versions) (parts.executions) (charts)
        });
    }
    let charts = charts_section(state, name, &o, &choice).await;
    chrome.live = Some(choice.live_url(name));
    layout::page(
        name,
        &chrome,
        html! {
            h1 { (name) " " (state_badge(&o.app))
                span #live-status.badge.live title="updates itself" { "live" }
                @if o.app.record.state == AppState::Deployed {
                    a.button.danger #stop href={"/apps/" (name) "/stop"} { "Stop" }
                }
            }
            (app_tabs(name, "overview"))
            @if let Some(e) = &o.app.load_error { p.error-text { "The live version failed to load: " (e) } }
            (parts.functions)
            (charts)
            (parts.versions)
            (parts.usage)
            (parts.executions)
        },
    )
}

/// The parts of the page: functions, versions and recent executions
/// update themselves; usage is read when the page loads.
struct Parts {
    functions: Markup,
    versions: Markup,
    usage: Markup,
    executions: Markup,
}

fn parts(state: &State, name: &str, o: &Overview) -> Parts {
    let live = state.platform.live(name).ok();
    let functions = html! {
        div #functions-part data-part="functions" {
            h2 { "Functions" }
            @if let Some(live) = &live {
                div.scroll { table #functions {
                    thead { tr { th { "Function" } th.secondary { "Kind" } th { "Where / when" } th { "Next fire" } th { "Schedule" } } }
                    tbody { @for f in &live.spec().functions { tr data-function=(f.name) {
                        td { (f.name) }
                        td.secondary { (f.kind.name()) }
                        td.wrap { @match &f.kind {
                            FunctionKind::Web { .. } => {
                                @let url = state.web_url(name, &f.name);
                                a.web-url href=(url) { (url) }
                            }
                            FunctionKind::Scheduled { schedule } => { (schedule.to_string()) }
                            FunctionKind::Plain => { code { "modal call " (name) " " (f.name) } }
                        } }
                        @let schedule = o.app.schedules.iter().find(|s| s.function == f.name);
                        td.next-fire { @if let Some(s) = schedule {
                            @if s.paused { span.badge.paused { "paused" } } @else { (time(s.next_fire)) }
                            @if s.running { " " span.badge.live { "running" } }
                        } @else { "-" } }
                        td { @if let Some(s) = schedule {
                            @let base = format!("/apps/{name}/schedules/{}", encode(&f.name));
                            div.actions {
                                @if s.paused {
                                    a.button.small data-action="resume" href={(base) "/resume"} { "Resume" }
                                } @else {
                                    a.button.small data-action="pause" href={(base) "/pause"} { "Pause" }
                                }
                                a.button.small data-action="run" href={(base) "/run"} { "Run now" }
                            }
                        } }
                    } } }
                } }
            } @else { p.muted { "No version is serving." } }
        }
    };
    let versions = html! {
        div #versions-part data-part="versions" {
            h2 { "Versions" }
            @if !o.app.draining.is_empty() {
                p.muted #draining { @for d in &o.app.draining {
                    "v" (d.version) " is draining: " (d.in_flight) " in flight, " (d.instances) (if d.instances == 1 { " instance" } else { " instances" }) ", cut off in " (d.deadline_in_s) " s. "
                } }
            }
            div.scroll { table #versions {
                thead { tr { th { "Version" } th { "Status" } th.num.secondary { "Instances" } th.num { "In flight" } th.secondary { "Deployed" } th.secondary { "By" } th.secondary { "Tag" } th {} } }
                tbody { @for v in o.versions.iter().rev() { tr data-version=(v.record.version) {
                    td { "v" (v.record.version) }
                    td { span class={"badge " (v.status.as_str())} { (v.status.as_str()) } }
                    td.num.secondary { (v.instances) }
                    td.num.in-flight { (v.in_flight) }
                    td.secondary { (time(Some(v.record.deployed_at))) }
                    td.secondary { (v.record.deployer) }
                    td.secondary { (v.record.tag.as_deref().unwrap_or("-")) }
                    td { @if v.status != VersionState::Live {
                        a.button.small.rollback href={"/apps/" (name) "/rollback/" (v.record.version)} { "Roll back" }
                    } }
                } } }
            } }
        }
    };
    let usage = html! {
        div #usage-part {
            h2 { "Usage" }
            div.scroll { table #usage {
                thead { tr { th { "Version" } th { "Function" } th.num { "Calls" } th.num { "Errors" } th.num { "p50" } th.num { "p99" } th.num.secondary { "Peak memory" } } }
                tbody { @for u in &o.usage { tr {
                    td { "v" (u.version) } td { (u.function) } td.num { (u.calls) } td.num { (u.errors) }
                    td.num { (millis(u.p50_ms)) } td.num { (millis(u.p99_ms)) }
                    td.num.secondary { (mib(u.peak_memory)) }
                } } }
            } }
        }
    };
    let executions = html! {
        div #executions-part data-part="executions" {
            h2 { "Recent executions" a href={"/apps/" (name) "/logs"} { "all logs →" } }
            @if o.executions.is_empty() { p.muted { "None yet." } }
            div #executions {
                @for (indent, e) in tree_order(&o.executions, true) {
                    div.execution.nested[indent > 0] data-id=(e.id) style=[(indent > 0).then(|| format!("margin-left: {}em", (2 * indent).min(8)))] {
                        (outcome_badge(e.outcome))
                        " " a href={"/apps/" (e.app) "/executions/" (e.id)} { strong { (e.function) } } " "
                        span.muted { "v" (e.version) " · " (e.trigger.as_str()) " · " (time(Some(e.started_at))) " · " (millis(e.duration_ms)) @if let Some(status) = e.http_status { " · HTTP " (status) } @if let (Some(id), Some(_)) = (&e.call_id, &e.root_call_id) { " · " code { (id) } } }
                        @if let Some(err) = &e.error { div.error-text { (err) } }
                        @if !e.logs.is_empty() { pre { (e.logs) } }
                    }
                }
            }
        }
    };
    Parts {
        functions,
        versions,
        usage,
        executions,
    }
}

/// What the charts show: the window and, if picked, one function or
/// version (from the page's query string).
struct ChartChoice {
    hours: u64,
    function: Option<String>,
    version: Option<u64>,
}

impl ChartChoice {
    fn read(query: &Pairs) -> ChartChoice {
        ChartChoice {
            hours: given(query, "hours")
                .and_then(|h| h.parse::<u64>().ok())
                .filter(|h| HOURS.contains(h))
                .unwrap_or(DEFAULT_HOURS),
            function: given(query, "function"),
            version: given(query, "version")
                .and_then(|v| v.trim_start_matches('v').parse::<u64>().ok()),
        }
    }

    /// The page's live URL, which keeps this choice.
    fn live_url(&self, name: &str) -> String {
        url(
            &format!("/apps/{name}"),
            &[
                ("part", "live".to_string()),
                ("hours", self.hours.to_string()),
                ("function", self.function.clone().unwrap_or_default()),
                (
                    "version",
                    self.version.map(|v| v.to_string()).unwrap_or_default(),
                ),
            ],
        )
    }
}

/// The charts and their summary (a part that the page refreshes with its
/// slow parts).
async fn charts_part(state: &State, name: &str, choice: &ChartChoice) -> Markup {
    let hours = choice.hours;
    let window = Window::last(hours, crate::platform::now_ms());
    let buckets = state
        .platform
        .buckets(name, window.from, window.to, MAX_ROWS)
        .await;
    html! {
        div #charts-part data-part="charts" {
            @match buckets {
                Err(e) => { p.error-text { "The charts could not be read: " (e) } }
                Ok(buckets) => {
                    @let (lines, hidden) = charts::lines(&buckets, &window, choice.function.as_deref(), choice.version);
                    @let calls: u64 = buckets.buckets.iter().map(|b| b.calls).sum();
                    @let errors: u64 = buckets.buckets.iter().map(|b| b.errors).sum();
                    p.muted #chart-summary {
                        (calls) " executions, " (errors) " failed, in the last " (hours) " h (UTC)."
                        @if buckets.complete_from > window.from {
                            " Only the latest " (MAX_ROWS) " executions are charted: minutes before " (layout::clock(buckets.complete_from)) " are left out."
                        }
                        @if hidden > 0 { " " (hidden) " quieter lines are not drawn; pick a function or version." }
                    }
                    (charts::charts(&window, &lines))
                }
            }
        }
    }
}

/// The charts with their picker (window, function, version).
async fn charts_section(state: &State, name: &str, o: &Overview, choice: &ChartChoice) -> Markup {
    let functions = layout::function_names(&o.versions);
    html! {
        section #charts {
            h2 { "Charts" }
            form.filters method="get" action={"/apps/" (name)} {
                label { "Window" select name="hours" {
                    @for h in HOURS { option value=(h) selected[h == choice.hours] { "last " (h) " h" } }
                } }
                label { "Function" select name="function" {
                    option value="" { "all" }
                    @for f in &functions { option value=(f) selected[choice.function.as_deref() == Some(f.as_str())] { (f) } }
                } }
                label { "Version" select name="version" {
                    option value="" { "all" }
                    @for v in o.versions.iter().rev() { option value=(v.record.version) selected[choice.version == Some(v.record.version)] { "v" (v.record.version) } }
                } }
                button type="submit" { "Show" }
            }
            (charts_part(state, name, choice).await)
        }
    }
}
