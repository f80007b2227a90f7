//! `/apps/{name}/logs`: every execution of an app, newest first, with
//! filters (function, version, outcome, trigger), a search in logs and
//! errors, and pages by cursor (the id of the last execution shown).

use super::super::{Body, State};
use super::form::{Pairs, given, url};
use super::layout::{self, Chrome, app_tabs, millis, outcome_badge, short_time};
use crate::app::Trigger;
use crate::error::Outcome;
use crate::platform::ExecutionQuery;
use hyper::Response;
use maud::html;

/// Executions per page of the logs view.
const PAGE: usize = 50;

/// Most executions one page looks at before its filters: the bound on a
/// search's work (a search that matches little stops here and offers
/// the older ones on the next page).
const SCAN: usize = 20_000;

/// Longest search text accepted (longer is cut): a search is a
/// substring, not a document.
const MAX_SEARCH: usize = 200;

/// Every trigger, as the filter offers them.
const TRIGGERS: [Trigger; 4] = [
    Trigger::Call,
    Trigger::Spawn,
    Trigger::Web,
    Trigger::Schedule,
];

/// The filters of the view, as read from its query string.
struct Filters {
    function: Option<String>,
    version: Option<u64>,
    outcome: Option<Outcome>,
    trigger: Option<Trigger>,
    text: Option<String>,
    before: Option<u64>,
}

impl Filters {
    fn read(query: &Pairs) -> Filters {
        Filters {
            function: given(query, "function"),
            version: given(query, "version").and_then(|v| v.trim_start_matches('v').parse().ok()),
            outcome: given(query, "outcome").and_then(|o| Outcome::parse(&o)),
            trigger: given(query, "trigger")
                .and_then(|t| TRIGGERS.into_iter().find(|x| x.as_str() == t)),
            text: given(query, "q").map(|q| q.chars().take(MAX_SEARCH).collect()),
            before: given(query, "before").and_then(|b| b.parse().ok()),
        }
    }

    /// The link to this view with these filters and cursor `before`.
    fn link(&self, app: &str, before: Option<u64>) -> String {
        url(
            &format!("/apps/{app}/logs"),
            &[
                ("function", self.function.clone().unwrap_or_default()),
                (
                    "version",
                    self.version.map(|v| v.to_string()).unwrap_or_default(),
                ),
                (
                    "outcome",
                    self.outcome
                        .map(|o| o.as_str().to_string())
                        .unwrap_or_default(),
                ),
                (
                    "trigger",
                    self.trigger
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                ),
                ("q", self.text.clone().unwrap_or_default()),
                ("before", before.map(|b| b.to_string()).unwrap_or_default()),
            ],
        )
    }
}

/// `GET /apps/{name}/logs`.
pub(super) async fn page(
    state: &State,
    name: &str,
    chrome: Chrome,
    query: &Pairs,
) -> Response<Body> {
    let platform = &state.platform;
    let f = Filters::read(query);
    let search = ExecutionQuery {
        app: name.to_string(),
        function: f.function.clone(),
        version: f.version,
        outcome: f.outcome,
        trigger: f.trigger,
        text: f.text.clone(),
        before: f.before,
        limit: PAGE,
        scan: SCAN,
    };
    let found = match platform.search(&search).await {
        Ok(found) => found,
        Err(e) => return layout::platform_error(&chrome, &e),
    };
    let versions = platform.history(name).await.unwrap_or_default();
    let functions = layout::function_names(&versions);
    let filtered = f.function.is_some()
        || f.version.is_some()
        || f.outcome.is_some()
        || f.trigger.is_some()
        || f.text.is_some();
    layout::page(
        &format!("{name} logs"),
        &chrome,
        html! {
            h1 { (name) " " span.muted { "logs" } }
            (app_tabs(name, "logs"))
            form.filters #log-filters method="get" action={"/apps/" (name) "/logs"} {
                label { "Function" select name="function" {
                    option value="" { "all" }
                    @for fun in &functions { option value=(fun) selected[f.function.as_deref() == Some(fun.as_str())] { (fun) } }
                } }
                label { "Version" select name="version" {
                    option value="" { "all" }
                    @for v in versions.iter().rev() { option value=(v.record.version) selected[f.version == Some(v.record.version)] { "v" (v.record.version) } }
                } }
                label { "Outcome" select name="outcome" {
                    option value="" { "all" }
                    @for o in Outcome::ALL { option value=(o.as_str()) selected[f.outcome == Some(o)] { (o.as_str()) } }
                } }
                label { "Trigger" select name="trigger" {
                    option value="" { "all" }
                    @for t in TRIGGERS { option value=(t.as_str()) selected[f.trigger == Some(t)] { (t.as_str()) } }
                } }
                label { "Search logs and errors" input type="search" name="q" value=[f.text.as_deref()] maxlength=(MAX_SEARCH) placeholder="text"; }
                button.primary #apply-filters type="submit" { "Filter" }
                @if filtered { a.button href={"/apps/" (name) "/logs"} { "Clear" } }
            }
            @if found.records.is_empty() {
                p.muted #no-logs { @if f.before.is_some() { "No older executions match." } @else if filtered { "No execution matches." } @else { "No executions yet." } }
            } @else {
                div.scroll { table #logs {
                    thead { tr {
                        th { "Started (UTC)" } th { "Function" } th { "Outcome" } th.num { "Duration" }
                        th.secondary { "Version" } th.secondary { "Trigger" } th.secondary { "HTTP" } th { "Error or output" }
                    } }
                    tbody { @for e in &found.records {
                        tr data-id=(e.id) data-function=(e.function) data-outcome=(e.outcome.as_str()) data-version=(e.version) data-trigger=(e.trigger.as_str()) {
                            td { a href={"/apps/" (name) "/executions/" (e.id)} { (short_time(e.started_at)) } }
                            td { (e.function) }
                            td { (outcome_badge(e.outcome)) }
                            td.num { (millis(e.duration_ms)) }
                            td.secondary { "v" (e.version) }
                            td.secondary { (e.trigger.as_str()) }
                            td.secondary { @if let Some(s) = e.http_status { (s) } @else { "-" } }
                            td.wrap {
                                @if let Some(err) = &e.error { span.error-text { (preview(err)) } }
                                @else { code { (preview(&e.logs)) } }
                            }
                        }
                    } }
                } }
            }
            div.pager {
                @if f.before.is_some() { a.button #newest href=(f.link(name, None)) { "← Newest" } }
                @if let Some(next) = found.next { a.button #older href=(f.link(name, Some(next))) { "Older →" } }
                span.muted { "Each page looks at up to " (SCAN) " executions." }
            }
        },
    )
}

/// The start of a log or error, on one line.
fn preview(text: &str) -> String {
    /// Characters of a log shown in the table.
    const PREVIEW: usize = 160;
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > PREVIEW {
        let mut cut: String = line.chars().take(PREVIEW).collect();
        cut.push('…');
        cut
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::super::form::pairs;
    use super::*;

    #[test]
    fn filters_read_what_they_know_and_links_keep_them() {
        let f = Filters::read(&pairs(
            b"function=square&version=v2&outcome=error&trigger=web&q=a+b&before=77&x=1",
        ));
        assert_eq!(f.function.as_deref(), Some("square"));
        assert_eq!(
            (f.version, f.outcome, f.trigger),
            (Some(2), Some(Outcome::Error), Some(Trigger::Web))
        );
        assert_eq!((f.text.as_deref(), f.before), (Some("a b"), Some(77)));
        assert_eq!(
            f.link("hello", Some(5)),
            "/apps/hello/logs?function=square&version=2&outcome=error&trigger=web&q=a+b&before=5"
        );
        let unknown = Filters::read(&pairs(b"outcome=nope&trigger=x&version=z&before=-1&q=++"));
        assert!(
            unknown.outcome.is_none() && unknown.trigger.is_none() && unknown.version.is_none()
        );
        assert!(unknown.before.is_none() && unknown.text.is_none());
        assert_eq!(unknown.link("a", None), "/apps/a/logs");
    }

    #[test]
    fn previews_are_one_short_line() {
        assert_eq!(preview("a\n  b\tc\n"), "a b c");
        let long = "x".repeat(500);
        assert_eq!(preview(&long).chars().count(), 161);
    }
}
