//! `/apps`: every app with its state, live version, in-flight calls and
//! totals; the table updates itself.

use super::super::{Body, State};
use super::form::{Pairs, given};
use super::layout::{self, Chrome, state_badge, time};
use hyper::Response;
use maud::html;

/// `GET /apps` (or only its live part with `part=live`).
pub(super) async fn page(state: &State, mut chrome: Chrome, query: &Pairs) -> Response<Body> {
    let apps = match state.platform.apps().await {
        Ok(apps) => apps,
        Err(e) => return layout::platform_error(&chrome, &e),
    };
    let part = html! {
        div #apps-part data-part="apps" {
            @if apps.is_empty() {
                p.muted { "No apps yet. Deploy one with " code { "modal deploy APP.wasm" } "." }
            } @else {
                div.scroll { table #apps {
                    thead { tr {
                        th { "Name" } th { "State" } th { "Live" } th.num { "In flight" }
                        th.secondary { "Deployed" } th.num { "Calls" } th.num { "Errors" }
                    } }
                    tbody { @for app in &apps { tr data-app=(app.record.name) {
                        td { a href={"/apps/" (app.record.name)} { (app.record.name) } }
                        td { (state_badge(app)) }
                        td { @if let Some(v) = app.record.live_version { "v" (v) } @else { "-" }
                            @for d in &app.draining { " " span.badge.draining title={"v" (d.version) " drains: " (d.in_flight) " in flight"} { "v" (d.version) " draining" } }
                        }
                        td.num { (app.in_flight + app.draining.iter().map(|d| d.in_flight).sum::<usize>()) }
                        td.secondary { (time(Some(app.record.updated_at))) }
                        td.num { (app.calls) }
                        td.num { (app.errors) }
                    } } }
                } }
            }
        }
    };
    if given(query, "part").as_deref() == Some("live") {
        return layout::fragment(part);
    }
    chrome.live = Some("/apps?part=live".to_string());
    layout::page(
        "Apps",
        &chrome,
        html! {
            h1 { "Apps" span #live-status.badge.live title="updates itself" { "live" } }
            (part)
        },
    )
}
