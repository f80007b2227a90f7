//! `/apps/{name}/executions/{id}`: one execution — its timing, memory,
//! HTTP status, error and logs — and, for calls between functions, the
//! execution that called it and the calls it made.

use super::super::{Body, State};
use super::layout::{self, Chrome, app_tabs, mib, millis, outcome_badge, time};
use crate::platform::ExecutionRecord;
use hyper::{Response, StatusCode};
use maud::{Markup, html};

/// `GET /apps/{name}/executions/{id}`.
pub(super) async fn page(state: &State, name: &str, id: &str, chrome: Chrome) -> Response<Body> {
    let platform = &state.platform;
    let not_found = |chrome: &Chrome| {
        layout::error_page(
            StatusCode::NOT_FOUND,
            chrome,
            "Not found",
            &format!(
                "App `{name}` has no execution {id} (executions are kept for the retention window)."
            ),
        )
    };
    let Ok(number) = id.parse::<u64>() else {
        return not_found(&chrome);
    };
    let e = match platform.execution(name, number).await {
        Ok(Some(e)) => e,
        Ok(None) => return not_found(&chrome),
        Err(e) => return layout::platform_error(&chrome, &e),
    };
    // Its tree of calls: the parent, the calls it made, other attempts.
    let tree = match e.root_call_id.as_deref().or(e.call_id.as_deref()) {
        Some(root) => platform.tree(root).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let parent = e
        .parent_call_id
        .as_deref()
        .and_then(|p| tree.iter().find(|r| r.call_id.as_deref() == Some(p)));
    let children: Vec<&ExecutionRecord> = match e.call_id.as_deref() {
        Some(call) => tree
            .iter()
            .filter(|r| {
                r.parent_call_id.as_deref() == Some(call) && r.call_id.as_deref() != Some(call)
            })
            .collect(),
        None => Vec::new(),
    };
    let attempts: Vec<&ExecutionRecord> = match e.call_id.as_deref() {
        Some(call) => tree
            .iter()
            .filter(|r| r.call_id.as_deref() == Some(call) && r.id != e.id)
            .collect(),
        None => Vec::new(),
    };
    layout::page(
        &format!("{} #{}", e.function, e.id),
        &chrome,
        html! {
            h1 { (name) " " span.muted { "/" } " " (e.function) " " span.muted { "#" (e.id) } " " (outcome_badge(e.outcome)) }
            (app_tabs(name, ""))
            dl.facts #facts {
                dt { "Function" } dd { (e.function) }
                dt { "Version" } dd { "v" (e.version) }
                dt { "Trigger" } dd { (e.trigger.as_str()) }
                dt { "Outcome" } dd { (e.outcome.as_str()) }
                dt { "Started" } dd { (time(Some(e.started_at))) }
                dt { "Duration" } dd #duration { (millis(e.duration_ms)) }
                dt { "Memory" } dd { (mib(e.memory)) }
                @if let Some(status) = e.http_status { dt { "HTTP status" } dd #http-status { (status) } }
                @if let Some(call) = &e.call_id { dt { "Call id" } dd { code { (call) } } }
                @if let Some(run) = &e.run_id { dt { "Run id" } dd { code { (run) } } }
                @if e.depth > 0 { dt { "Depth" } dd { (e.depth) } }
            }
            @if let Some(err) = &e.error {
                h2 { "Error" }
                pre #error.error-text { (err) }
            }
            h2 { "Logs" }
            @if e.logs.is_empty() { p.muted #logs { "It printed nothing." } } @else { pre #logs { (e.logs) } }
            @if e.parent_call_id.is_some() {
                h2 { "Called by" }
                div #parent {
                    @match parent {
                        Some(p) => { (row(p)) }
                        None => { p.muted { "call " code { (e.parent_call_id.as_deref().unwrap_or("")) } " (no longer stored)" } }
                    }
                }
            }
            @if !children.is_empty() {
                h2 { "Calls it made " span.muted { "(" (children.len()) ")" } }
                div #children { @for c in &children { (row(c)) } }
            }
            @if !attempts.is_empty() {
                h2 { "Other attempts of this call" }
                div #attempts { @for a in &attempts { (row(a)) } }
            }
        },
    )
}

/// One related execution, linked to its page.
fn row(e: &ExecutionRecord) -> Markup {
    html! {
        div.execution data-id=(e.id) {
            (outcome_badge(e.outcome)) " "
            a href={"/apps/" (e.app) "/executions/" (e.id)} { strong { (e.function) } " #" (e.id) }
            " " span.muted { (e.app) " v" (e.version) " · " (time(Some(e.started_at))) " · " (millis(e.duration_ms)) }
            @if let Some(err) = &e.error { div.error-text { (err) } }
        }
    }
}
