//! The frame every page shares (header with logout, notice, styles, the
//! live-update script), the error and confirmation pages, and the small
//! formatting helpers of the tables.

use super::super::{Body, full};
use crate::error::Outcome;
use crate::platform::{AppState, AppStatus};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Response, StatusCode};
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// How often a live page asks for its fresh parts: often enough that a
/// new execution shows within a breath, rarely enough that an open tab
/// costs the server one small query every few seconds.
pub(super) const LIVE_INTERVAL_MS: u64 = 2_000;

/// Every how many refreshes a live page also asks for its slow parts
/// (`&slow=1`: the charts, whose minutes change slowly and whose query
/// reads up to 200,000 executions): every 30 s.
pub(super) const LIVE_SLOW_EVERY: u64 = 15;

/// What the frame of a page shows beyond its body.
#[derive(Clone, Debug, Default)]
pub(super) struct Chrome {
    /// The session's CSRF token: set when logged in (the header then has
    /// the logout button).
    pub(super) csrf: Option<String>,
    /// What the last action did, shown once.
    pub(super) notice: Option<String>,
    /// The URL whose `[data-part]` elements replace this page's every
    /// [`LIVE_INTERVAL_MS`], for a page that updates itself.
    pub(super) live: Option<String>,
}

const CSS: &str = "
*{box-sizing:border-box}body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.7rem 1.2rem;display:flex;gap:.8rem;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none;font-weight:600}header .spacer{flex:1}
header button{background:transparent;color:#fff;border-color:#5b6475;padding:.25rem .7rem}
main{padding:1rem 1.2rem;max-width:1100px;margin:auto}
h1{font-size:1.4rem;margin:.2rem 0 1rem;display:flex;gap:.6rem;align-items:center;flex-wrap:wrap;word-break:break-word}
h2{font-size:1.1rem;margin:1.6rem 0 .5rem;display:flex;gap:.6rem;align-items:baseline;flex-wrap:wrap}
a{color:#1f5fbf}nav.tabs{display:flex;gap:.3rem;margin:-.4rem 0 1rem;flex-wrap:wrap}
nav.tabs a{padding:.3rem .8rem;border-radius:4px;text-decoration:none;color:#1d2330;border:1px solid #dde1e7;background:#fff}
nav.tabs a.current{background:#1d2330;color:#fff;border-color:#1d2330}
.scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e7}
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #eceef2;vertical-align:top;white-space:nowrap}
td.wrap{white-space:normal;word-break:break-word;min-width:10rem}th{font-size:.8rem;text-transform:uppercase;color:#5b6475;background:#fafbfc}
td.num,th.num{text-align:right}
.badge{font-size:.75rem;padding:.15rem .5rem;border-radius:1rem;background:#e4e8ee;color:#333;font-weight:600;white-space:nowrap}
.execution{background:#fff;border:1px solid #eceef2;border-radius:4px;padding:.4rem .6rem;margin:.3rem 0;overflow-wrap:anywhere}
.execution.nested{border-left:3px solid #c9d2de}
.deployed,.live,.ok{background:#dcf5e3;color:#176b34}
.stopped,.error,.trap,.timeout,.memory_limit,.cancelled,.no_response{background:#fde2e1;color:#a21a14}
.draining,.rejected,.paused{background:#fff1d6;color:#8a5a00}
pre{background:#11151c;color:#d8dee9;padding:.6rem;border-radius:4px;overflow-x:auto;margin:.3rem 0 0;font-size:.8rem;white-space:pre-wrap;overflow-wrap:anywhere}
code{overflow-wrap:anywhere}
button,.button{font:inherit;font-size:.9rem;padding:.4rem .9rem;border-radius:4px;border:1px solid #aab;background:#fff;cursor:pointer;text-decoration:none;color:inherit;display:inline-block;white-space:nowrap}
.button.small{padding:.15rem .5rem;font-size:.8rem}
.danger{background:#d92d20;border-color:#b42318;color:#fff;font-weight:600}.primary{background:#1f5fbf;border-color:#1a4f9f;color:#fff}
form.inline{display:inline}.actions{display:flex;gap:.4rem;flex-wrap:wrap}
.card{background:#fff;border:1px solid #dde1e7;padding:1rem;border-radius:6px;max-width:520px}
input[type=password]{width:100%;padding:.5rem;font:inherit;margin:.4rem 0 .8rem}.muted{color:#6b7385}.error-text{color:#a21a14;overflow-wrap:anywhere}
.notice{background:#dcf5e3;border:1px solid #a7e0b8;color:#145a2c;padding:.6rem .8rem;border-radius:4px;margin:0 0 1rem;overflow-wrap:anywhere}
form.filters{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;background:#fff;border:1px solid #dde1e7;padding:.6rem;border-radius:6px;margin:0 0 .8rem}
form.filters label{display:flex;flex-direction:column;font-size:.75rem;color:#5b6475;text-transform:uppercase;min-width:0}
form.filters select,form.filters input{font:inherit;font-size:.9rem;padding:.3rem;max-width:100%;min-width:0}
.pager{display:flex;gap:.6rem;margin:.8rem 0;flex-wrap:wrap;align-items:center}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,420px),1fr));gap:.8rem}
figure{margin:0;background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.5rem;min-width:0}
figcaption{font-size:.85rem;font-weight:600;margin-bottom:.2rem}
figure svg{width:100%;height:auto;display:block}svg text{font:10px system-ui,sans-serif;fill:#6b7385}
ul.legend{list-style:none;padding:0;margin:.5rem 0;display:flex;flex-wrap:wrap;gap:.3rem .9rem;font-size:.85rem}
.swatch{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.3rem;vertical-align:-1px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;background:#fff;border:1px solid #dde1e7;padding:.8rem;border-radius:6px;margin:0}
dl.facts dt{color:#5b6475}dl.facts dd{margin:0;overflow-wrap:anywhere}
@media (max-width:600px){main{padding:.6rem}th,td{padding:.35rem .4rem;font-size:.85rem}.secondary{display:none}
header{padding:.6rem}dl.facts{grid-template-columns:1fr}dl.facts dt{font-size:.75rem;text-transform:uppercase}}
";

/// Replaces the `[data-part]` elements of the page with those of the
/// page's live URL, every interval, while the tab is visible; stops when
/// the session ends (a redirect to the login page).
const LIVE_JS: &str = r#"
(function () {
  var root = document.querySelector('[data-live]');
  if (!root || !window.fetch || !window.DOMParser) return;
  var url = root.getAttribute('data-live');
  var every = parseInt(root.getAttribute('data-live-ms'), 10) || 2000;
  var slowEvery = parseInt(root.getAttribute('data-live-slow'), 10) || 0;
  var ticks = 0;
  var badge = document.getElementById('live-status');
  var busy = false, timer = null;
  function show(text, cls) { if (badge) { badge.textContent = text; badge.className = 'badge ' + cls; } }
  function tick() {
    if (busy || document.hidden) return;
    busy = true;
    ticks += 1;
    var slow = slowEvery > 0 && ticks % slowEvery === 0;
    fetch(slow ? url + (url.indexOf('?') < 0 ? '?' : '&') + 'slow=1' : url, {credentials: 'same-origin', redirect: 'manual', cache: 'no-store'})
      .then(function (r) {
        if (r.type === 'opaqueredirect' || r.status === 401) { clearInterval(timer); show('logged out', 'stopped'); return null; }
        if (!r.ok) { show('offline', 'draining'); return null; }
        return r.text();
      })
      .then(function (text) {
        if (text === null) return;
        var fresh = new DOMParser().parseFromString(text, 'text/html');
        fresh.querySelectorAll('[data-part]').forEach(function (part) {
          var here = document.getElementById(part.id);
          if (here && here.innerHTML !== part.innerHTML) here.innerHTML = part.innerHTML;
        });
        show('live', 'live');
        if (badge) badge.title = 'updated ' + new Date().toLocaleTimeString();
      })
      .catch(function () { show('offline', 'draining'); })
      .then(function () { busy = false; });
  }
  timer = setInterval(tick, every);
})();
"#;

fn html_response(status: StatusCode, markup: Markup) -> Response<Body> {
    let mut response = Response::new(full(markup.into_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Pages show live state behind a session: never from a cache.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A whole page.
pub(super) fn page(title: &str, chrome: &Chrome, body: Markup) -> Response<Body> {
    page_with(StatusCode::OK, title, chrome, body)
}

/// A whole page answered with `status`.
pub(super) fn page_with(
    status: StatusCode,
    title: &str,
    chrome: &Chrome,
    body: Markup,
) -> Response<Body> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · modal" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    a href="/apps" { "modal" }
                    span.muted { "apps" }
                    span.spacer {}
                    @if let Some(csrf) = &chrome.csrf {
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button #logout type="submit" { "Log out" }
                        }
                    }
                }
                main data-live=[chrome.live.as_deref()] data-live-ms=[chrome.live.as_ref().map(|_| LIVE_INTERVAL_MS)] data-live-slow=[chrome.live.as_ref().map(|_| LIVE_SLOW_EVERY)] {
                    @if let Some(notice) = &chrome.notice { div #notice.notice role="status" { (notice) } }
                    (body)
                }
                @if chrome.live.is_some() { script { (PreEscaped(LIVE_JS)) } }
            }
        }
    };
    html_response(status, markup)
}

/// Only the live parts of a page (what [`LIVE_JS`] asks for).
pub(super) fn fragment(parts: Markup) -> Response<Body> {
    html_response(
        StatusCode::OK,
        html! { (DOCTYPE) html { body { (parts) } } },
    )
}

/// A styled error page: `title` as its heading, `message` below, a way
/// back to the apps.
pub(super) fn error_page(
    status: StatusCode,
    chrome: &Chrome,
    title: &str,
    message: &str,
) -> Response<Body> {
    let chrome = Chrome {
        live: None,
        ..chrome.clone()
    };
    page_with(
        status,
        title,
        &chrome,
        html! {
            div.card #error data-status=(status.as_u16()) {
                h1 { (title) " " span.badge.error { (status.as_u16()) } }
                p.error-text { (message) }
                p { a.button href="/apps" { "All apps" } }
            }
        },
    )
}

/// The styled page of a platform error (its own status: 404 for an
/// unknown app, 400 for a bad request, ...).
pub(super) fn platform_error(chrome: &Chrome, e: &crate::Error) -> Response<Body> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        s if s.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    error_page(status, chrome, title, &e.to_string())
}

/// The styled 404 of a path that is no page.
pub(super) fn no_such_page(chrome: &Chrome) -> Response<Body> {
    error_page(
        StatusCode::NOT_FOUND,
        chrome,
        "Not found",
        "There is no such page.",
    )
}

/// A page asking to confirm an action: its form posts to `action` with
/// the CSRF token; Cancel goes back to `back`.
pub(super) struct Confirm<'a> {
    /// The page's title and heading.
    pub(super) title: String,
    /// What will happen.
    pub(super) explain: Markup,
    /// Where the form posts.
    pub(super) action: String,
    /// The button's label.
    pub(super) button: String,
    /// The button's id.
    pub(super) button_id: &'a str,
    /// Whether the button is red.
    pub(super) danger: bool,
    /// Where Cancel goes.
    pub(super) back: String,
}

impl Confirm<'_> {
    /// The page.
    pub(super) fn page(&self, chrome: &Chrome) -> Response<Body> {
        let csrf = chrome.csrf.as_deref().unwrap_or("");
        page(
            &self.title,
            chrome,
            html! {
                div.card #confirmation {
                    h1 { (self.title) }
                    p { (self.explain) }
                    div.actions {
                        form.inline method="post" action=(self.action) {
                            input type="hidden" name="csrf" value=(csrf);
                            button.danger[self.danger].primary[!self.danger] id=(self.button_id) type="submit" { (self.button) }
                        }
                        a.button href=(self.back) { "Cancel" }
                    }
                }
            },
        )
    }
}

/// A redirect (303: the next request is a GET).
pub(super) fn redirect(to: &str) -> Response<Body> {
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// A Unix time in ms as a UTC date and time, `-` when absent.
pub(super) fn time(ms: Option<u64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// A Unix time in ms as a UTC date and time whose date is hidden on a
/// narrow screen (the time stays; the whole is its tooltip).
pub(super) fn short_time(ms: u64) -> Markup {
    let Some(t) = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64) else {
        return html! { "-" };
    };
    html! {
        span title=(time(Some(ms))) {
            span.secondary { (t.format("%Y-%m-%d ").to_string()) }
            (t.format("%H:%M:%S").to_string())
        }
    }
}

/// A Unix time in ms as `HH:MM` (UTC).
pub(super) fn clock(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_default()
}

/// A duration in ms, with a precision that suits its size.
pub(super) fn millis(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1e3)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// Bytes as MiB.
pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// The badge of an outcome.
pub(super) fn outcome_badge(outcome: Outcome) -> Markup {
    html! { span class={"badge " (outcome.as_str())} data-outcome=(outcome.as_str()) { (outcome.as_str()) } }
}

/// The badge of an app's state.
pub(super) fn state_badge(app: &AppStatus) -> Markup {
    let (class, label) = match app.record.state {
        AppState::Deployed => ("deployed", "deployed"),
        AppState::Stopped => ("stopped", "stopped"),
    };
    html! { span class={"badge " (class)} data-state=(label) { (label) } }
}

/// The names of the functions of every version, sorted, once each.
pub(super) fn function_names(versions: &[crate::platform::VersionStatus]) -> Vec<String> {
    let mut names: Vec<String> = versions
        .iter()
        .flat_map(|v| v.record.spec.names())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The tabs of an app's pages, `current` highlighted.
pub(super) fn app_tabs(app: &str, current: &str) -> Markup {
    html! {
        nav.tabs {
            a.current[current == "overview"] href={"/apps/" (app)} { "Overview" }
            a #logs-tab.current[current == "logs"] href={"/apps/" (app) "/logs"} { "Logs" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_keep_a_precision_that_suits_them() {
        assert_eq!(millis(0.042), "0.04 ms");
        assert_eq!(millis(1.25), "1.2 ms");
        assert_eq!(millis(99.94), "99.9 ms");
        assert_eq!(millis(250.4), "250 ms");
        assert_eq!(millis(12_345.0), "12.3 s");
    }

    #[tokio::test]
    async fn error_pages_are_styled_and_escape_their_message() {
        use http_body_util::BodyExt;
        let response = error_page(
            StatusCode::NOT_FOUND,
            &Chrome::default(),
            "Not found",
            "no app named `<script>`",
        );
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("no app named `&lt;script&gt;`"), "{body}");
        assert!(
            body.contains("<header>") && body.contains("data-status=\"404\""),
            "{body}"
        );
        assert!(
            !body.contains("logout"),
            "no session, no logout button: {body}"
        );
    }
}
