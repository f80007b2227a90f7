//! `/apps`: every app with its state, live version, in-flight calls and
//! totals; the table updates itself.

use super::super::{Body, State};
use super::form::{Pairs, given};
use super::layout::{self, Chrome, state_badge, time};
use crate::platform::Platform;
use hyper::Response;
use maud::html;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How old the execution totals of a list that updates itself may be:
/// counting them reads every stored execution, so an open tab (asking
/// every 2 s) reads them at most this often; loading the page reads them
/// afresh.
const TOTALS_MAX_AGE: Duration = Duration::from_secs(15);

/// Executions and failed executions per app.
type Counts = Arc<BTreeMap<String, (u64, u64)>>;

/// The execution totals per app the list last read (and when), shared by
/// the sessions of one server.
#[derive(Default)]
pub(crate) struct Totals(Mutex<Option<(Instant, Counts)>>);

impl Totals {
    /// The totals, read again if they are older than `max_age`.
    async fn get(&self, platform: &Platform, max_age: Duration) -> Result<Counts, crate::Error> {
        let cached = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((_, totals)) = cached.filter(|(at, _)| at.elapsed() <= max_age) {
            return Ok(totals);
        }
        let totals = Arc::new(platform.totals().await?);
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), totals.clone()));
        Ok(totals)
    }
}

/// `GET /apps` (or only its live part with `part=live`).
pub(super) async fn page(state: &State, mut chrome: Chrome, query: &Pairs) -> Response<Body> {
    let live = given(query, "part").as_deref() == Some("live");
    let max_age = if live { TOTALS_MAX_AGE } else { Duration::ZERO };
    let totals = match state.totals.get(&state.platform, max_age).await {
        Ok(totals) => totals,
        Err(e) => return layout::platform_error(&chrome, &e),
    };
    let apps = match state.platform.apps_with(&totals).await {
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
    if live {
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
