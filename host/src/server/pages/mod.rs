//! The apps pages: `/apps` and `/apps/{name}`, server-rendered HTML behind
//! a login with the control token (an HttpOnly, SameSite=Strict session
//! cookie); the Stop button asks for confirmation and its form carries a
//! per-session CSRF token.

use super::RequestBody;
use super::{Body, State, full, text};
use crate::platform::{AppState, AppStatus};
use cookie::{Cookie, SameSite};
use http_body_util::{BodyExt, Limited};
use hyper::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The session cookie's name.
const COOKIE_NAME: &str = "modal_session";
/// Largest login or stop form accepted.
const FORM_LIMIT: usize = 16 << 10;
/// Executions shown on an app's page.
const RECENT: usize = 20;

/// What a URL component (a query value or a path segment) is
/// percent-encoded with: everything but RFC 3986's unreserved characters
/// (letters, digits, `-`, `.`, `_`, `~`). `/` is encoded too (`%2F`), so a
/// value never reads as more path segments; the control API and the CLI
/// follow the same rule. Query strings and form bodies are decoded as
/// `application/x-www-form-urlencoded` ([`pairs`]).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The `key=value` pairs of a query string or form body, in order and
/// decoded: `+` is a space, `%XX` a byte (`%2F` is `/`), an invalid escape
/// such as `%zz` stays as written, and bytes that are not UTF-8 become
/// U+FFFD.
fn pairs(input: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(input).into_owned().collect()
}

const CSS: &str = "
*{box-sizing:border-box}body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.8rem 1.2rem;display:flex;gap:1rem;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none;font-weight:600}main{padding:1rem 1.2rem;max-width:1100px;margin:auto}
h1{font-size:1.4rem;margin:.2rem 0 1rem;display:flex;gap:.6rem;align-items:center;flex-wrap:wrap}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e7}
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #eceef2;vertical-align:top;white-space:nowrap}
td.wrap{white-space:normal;word-break:break-all}th{font-size:.8rem;text-transform:uppercase;color:#5b6475;background:#fafbfc}
.badge{font-size:.75rem;padding:.15rem .5rem;border-radius:1rem;background:#e4e8ee;color:#333;font-weight:600}
.execution.nested{border-left:2px solid #c9d2de;padding-left:.6rem}
.deployed,.live,.ok{background:#dcf5e3;color:#176b34}.stopped,.error,.trap,.timeout,.memory_limit,.cancelled{background:#fde2e1;color:#a21a14}
.draining,.rejected{background:#fff1d6;color:#8a5a00}
pre{background:#11151c;color:#d8dee9;padding:.6rem;border-radius:4px;overflow-x:auto;margin:.3rem 0 0;font-size:.8rem;white-space:pre-wrap}
button,.button{font:inherit;padding:.45rem 1rem;border-radius:4px;border:1px solid #aab;background:#fff;cursor:pointer;text-decoration:none;color:inherit}
.danger{background:#d92d20;border-color:#b42318;color:#fff;font-weight:600}form.inline{display:inline}
.card{background:#fff;border:1px solid #dde1e7;padding:1rem;border-radius:6px;max-width:420px}
input[type=password]{width:100%;padding:.5rem;font:inherit;margin:.4rem 0 .8rem}.muted{color:#6b7385}.error-text{color:#a21a14}
@media (max-width:600px){main{padding:.6rem}th,td{padding:.35rem .4rem;font-size:.85rem}}
";

fn page(title: &str, body: Markup) -> Response<Body> {
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
                header { a href="/apps" { "modal" } span.muted { "apps" } }
                main { (body) }
            }
        }
    };
    let mut response = Response::new(full(markup.into_string()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn redirect(to: &str) -> Response<Body> {
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = hyper::header::HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// The session id in the request's cookies, if it is a live session.
fn session<B>(state: &State, req: &Request<B>) -> Option<String> {
    let id = session_id(req)?;
    state.sessions().contains_key(&id).then_some(id)
}

/// The value of the session cookie among the request's `Cookie` headers;
/// cookies that do not parse are skipped.
fn session_id<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE_NAME)
        .map(|c| c.value().to_string())
}

/// The `Set-Cookie` value of a new session: sent back on every path, never
/// readable by scripts, never sent with a request from another site.
fn session_cookie(id: &str) -> String {
    Cookie::build((COOKIE_NAME, id))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .build()
        .to_string()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let _ = getrandom::fill(&mut buf);
    hex::encode(buf)
}

async fn form(req: Request<RequestBody>) -> Vec<(String, String)> {
    match Limited::new(req.into_body(), FORM_LIMIT).collect().await {
        Ok(body) => pairs(&body.to_bytes()),
        Err(_) => Vec::new(),
    }
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Only local paths under /apps are followed after login.
fn safe_next(next: &str) -> &str {
    if next.starts_with("/apps") && !next.contains("//") {
        next
    } else {
        "/apps"
    }
}

/// Serves the pages; `None` when the path is not one of them.
pub(crate) async fn handle(
    state: &State,
    path: &str,
    req: Request<RequestBody>,
) -> Option<Response<Body>> {
    let method = req.method().clone();
    let response = match (&method, path) {
        (&Method::GET, "/login") => {
            let next = pairs(req.uri().query().unwrap_or("").as_bytes());
            login_page(field(&next, "next"), false)
        }
        (&Method::POST, "/login") => {
            let pairs = form(req).await;
            let given = field(&pairs, "token").trim();
            let next = safe_next(field(&pairs, "next")).to_string();
            if given.is_empty() || !super::auth::token_matches(given, &state.config.token) {
                let mut response = login_page(&next, true);
                *response.status_mut() = StatusCode::UNAUTHORIZED;
                return Some(response);
            }
            let id = random_hex(32);
            state.sessions().insert(id.clone(), random_hex(16));
            let mut response = redirect(&next);
            if let Ok(value) = hyper::header::HeaderValue::from_str(&session_cookie(&id)) {
                response.headers_mut().insert(SET_COOKIE, value);
            }
            response
        }
        (&Method::POST, "/logout") => {
            if let Some(id) = session(state, &req) {
                state.sessions().remove(&id);
            }
            redirect("/login")
        }
        (_, p) if p == "/apps" || p.starts_with("/apps/") => {
            let Some(id) = session(state, &req) else {
                let next = utf8_percent_encode(p, COMPONENT);
                return Some(redirect(&format!("/login?next={next}")));
            };
            let csrf = state.sessions().get(&id).cloned().unwrap_or_default();
            let rest: Vec<&str> = p
                .trim_start_matches("/apps")
                .trim_matches('/')
                .split('/')
                .collect();
            match (&method, rest.as_slice()) {
                (&Method::GET, [""]) => list_page(state).await,
                (&Method::GET, [name]) => app_page(state, name, &csrf).await,
                (&Method::GET, [name, "stop"]) => confirm_stop_page(state, name, &csrf).await,
                (&Method::POST, [name, "stop"]) => {
                    let name = name.to_string();
                    let pairs = form(req).await;
                    if field(&pairs, "csrf") != csrf || csrf.is_empty() {
                        return Some(text(
                            StatusCode::FORBIDDEN,
                            "this form has expired or comes from another site; reload the page\n",
                        ));
                    }
                    match state.platform.stop(&name).await {
                        Ok(_) => redirect(&format!("/apps/{name}")),
                        Err(e) => text(
                            StatusCode::from_u16(e.http_status())
                                .unwrap_or(StatusCode::BAD_REQUEST),
                            format!("{e}\n"),
                        ),
                    }
                }
                _ => text(StatusCode::NOT_FOUND, "no such page\n"),
            }
        }
        _ => return None,
    };
    Some(response)
}

fn login_page(next: &str, failed: bool) -> Response<Body> {
    page(
        "Log in",
        html! {
            div.card {
                h1 { "Log in" }
                p.muted { "Paste the control token (the " code { "token" } " file in the server's state directory)." }
                @if failed { p.error-text { "That token is not right." } }
                form method="post" action="/login" {
                    input type="hidden" name="next" value=(safe_next(next));
                    label for="token" { "Token" }
                    input #token type="password" name="token" autocomplete="current-password" required;
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

fn time(ms: Option<u64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn state_badge(app: &AppStatus) -> Markup {
    let (class, label) = match app.record.state {
        AppState::Deployed => ("deployed", "deployed"),
        AppState::Stopped => ("stopped", "stopped"),
    };
    html! { span class={"badge " (class)} data-state=(label) { (label) } }
}

async fn list_page(state: &State) -> Response<Body> {
    let apps = match state.platform.apps().await {
        Ok(apps) => apps,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    };
    page(
        "Apps",
        html! {
            h1 { "Apps" }
            @if apps.is_empty() {
                p.muted { "No apps yet. Deploy one with " code { "modal deploy APP.wasm" } "." }
            } @else {
                div.scroll { table #apps {
                    thead { tr { th { "Name" } th { "State" } th { "Live version" } th { "Deployed" } th { "Calls" } th { "Errors" } } }
                    tbody { @for app in &apps { tr data-app=(app.record.name) {
                        td { a href={"/apps/" (app.record.name)} { (app.record.name) } }
                        td { (state_badge(app)) }
                        td { @if let Some(v) = app.record.live_version { "v" (v) } @else { "-" } }
                        td { (time(Some(app.record.updated_at))) }
                        td { (app.calls) }
                        td { (app.errors) }
                    } } }
                } }
            }
        },
    )
}

async fn confirm_stop_page(state: &State, name: &str, csrf: &str) -> Response<Body> {
    if let Err(e) = state.platform.app(name).await {
        return text(StatusCode::NOT_FOUND, format!("{e}\n"));
    }
    page(
        "Stop app",
        html! {
            div.card {
                h1 { "Stop " (name) "?" }
                p { "Its web endpoints stop answering, its schedules stop and calls in progress drain. Deploy it again to restart it." }
                form.inline method="post" action={"/apps/" (name) "/stop"} {
                    input type="hidden" name="csrf" value=(csrf);
                    button #confirm-stop.danger type="submit" { "Yes, stop " (name) }
                }
                " "
                a.button href={"/apps/" (name)} { "Cancel" }
            }
        },
    )
}

async fn app_page(state: &State, name: &str, csrf: &str) -> Response<Body> {
    let platform = &state.platform;
    let app = match platform.app(name).await {
        Ok(app) => app,
        Err(e) => return text(StatusCode::NOT_FOUND, format!("{e}\n")),
    };
    let versions = platform.history(name).await.unwrap_or_default();
    let executions = platform.logs(name, None, RECENT).await.unwrap_or_default();
    let usage = platform.usage(name).await.unwrap_or_default();
    let live = platform.live(name).ok();
    let _ = csrf;
    page(
        name,
        html! {
            h1 { (name) " " (state_badge(&app))
                @if app.record.state == AppState::Deployed {
                    a.button.danger #stop href={"/apps/" (name) "/stop"} { "Stop" }
                }
            }
            @if let Some(e) = &app.load_error { p.error-text { "The live version failed to load: " (e) } }
            h2 { "Functions" }
            @if let Some(live) = &live {
                div.scroll { table #functions {
                    thead { tr { th { "Function" } th { "Kind" } th { "Where / when" } th { "Next fire" } } }
                    tbody { @for f in &live.spec().functions { tr {
                        td { (f.name) }
                        td { (f.kind.name()) }
                        td.wrap { @match &f.kind {
                            crate::spec::FunctionKind::Web { .. } => {
                                @let url = state.web_url(name, &f.name);
                                a.web-url href=(url) { (url) }
                            }
                            crate::spec::FunctionKind::Scheduled { schedule } => { (schedule.to_string()) }
                            crate::spec::FunctionKind::Plain => { code { "modal call " (name) " " (f.name) } }
                        } }
                        td { @if let Some(s) = app.schedules.iter().find(|s| s.function == f.name) {
                            @if s.paused { "paused" } @else { (time(s.next_fire)) }
                        } @else { "-" } }
                    } } }
                } }
            } @else { p.muted { "No version is serving." } }
            h2 { "Versions" }
            div.scroll { table #versions {
                thead { tr { th { "Version" } th { "Status" } th { "Instances" } th { "In flight" } th { "Deployed" } th { "By" } th { "Tag" } } }
                tbody { @for v in versions.iter().rev() { tr {
                    td { "v" (v.record.version) }
                    td { span class={"badge " (v.status.as_str())} { (v.status.as_str()) } }
                    td { (v.instances) }
                    td { (v.in_flight) }
                    td { (time(Some(v.record.deployed_at))) }
                    td { (v.record.deployer) }
                    td { (v.record.tag.as_deref().unwrap_or("-")) }
                } } }
            } }
            h2 { "Usage" }
            div.scroll { table #usage {
                thead { tr { th { "Version" } th { "Function" } th { "Calls" } th { "Errors" } th { "p50" } th { "p99" } th { "Peak memory" } } }
                tbody { @for u in &usage { tr {
                    td { "v" (u.version) } td { (u.function) } td { (u.calls) } td { (u.errors) }
                    td { (format!("{:.2} ms", u.p50_ms)) } td { (format!("{:.2} ms", u.p99_ms)) }
                    td { (format!("{:.1} MiB", u.peak_memory as f64 / 1048576.0)) }
                } } }
            } }
            h2 { "Recent executions" }
            @if executions.is_empty() { p.muted { "None yet." } }
            div #executions {
                @for (indent, e) in crate::platform::tree_order(&executions, true) {
                    div.execution.nested[indent > 0] style=[(indent > 0).then(|| format!("margin-left: {}em", 2 * indent))] {
                        span class={"badge " (e.outcome.as_str())} { (e.outcome.as_str()) }
                        " " strong { (e.function) } " "
                        span.muted { "v" (e.version) " · " (e.trigger.as_str()) " · " (time(Some(e.started_at))) " · " (format!("{:.1} ms", e.duration_ms)) @if let Some(status) = e.http_status { " · HTTP " (status) } @if let (Some(id), Some(_)) = (&e.call_id, &e.root_call_id) { " · " code { (id) } } }
                        @if let Some(err) = &e.error { div.error-text { (err) } }
                        @if !e.logs.is_empty() { pre { (e.logs) } }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(input: &str) -> Vec<(String, String)> {
        pairs(input.as_bytes())
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn a_plus_is_a_space_and_an_escaped_plus_is_a_plus() {
        assert_eq!(decoded("q=a+b%2Bc"), [pair("q", "a b+c")]);
    }

    #[test]
    fn an_escaped_slash_is_a_slash() {
        assert_eq!(
            decoded("next=%2Fapps%2Fhello&x=/a/b"),
            [pair("next", "/apps/hello"), pair("x", "/a/b")]
        );
    }

    #[test]
    fn invalid_escapes_stay_as_written() {
        assert_eq!(
            decoded("a=%zz&b=100%&c=%4"),
            [pair("a", "%zz"), pair("b", "100%"), pair("c", "%4")]
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_characters() {
        assert_eq!(decoded("a=%FF%FEx"), [pair("a", "\u{fffd}\u{fffd}x")]);
        assert_eq!(pairs(b"a=\xffx"), [pair("a", "\u{fffd}x")]);
        assert_eq!(decoded("name=caf%C3%A9"), [pair("name", "café")]);
    }

    #[test]
    fn empty_pairs_are_skipped_and_a_bare_key_has_an_empty_value() {
        assert_eq!(decoded("&a&&b=&"), [pair("a", ""), pair("b", "")]);
        assert_eq!(decoded(""), []);
    }

    #[test]
    fn components_encode_everything_but_unreserved_characters() {
        let encoded = utf8_percent_encode("/apps/my app?x=1&y=a+b~ü", COMPONENT).to_string();
        assert_eq!(encoded, "%2Fapps%2Fmy%20app%3Fx%3D1%26y%3Da%2Bb~%C3%BC");
        assert_eq!(
            decoded(&format!("next={encoded}")),
            [pair("next", "/apps/my app?x=1&y=a+b~ü")]
        );
        assert_eq!(
            utf8_percent_encode("AZaz09-._~", COMPONENT).to_string(),
            "AZaz09-._~"
        );
    }

    #[test]
    fn the_session_cookie_keeps_its_attributes() {
        let cookie = session_cookie("abc123");
        assert!(cookie.starts_with("modal_session=abc123;"), "{cookie}");
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(cookie.split("; ").any(|a| a == attribute), "{cookie}");
        }
        assert!(
            !cookie.contains("Secure") && !cookie.contains("Max-Age"),
            "{cookie}"
        );
    }

    #[test]
    fn the_session_is_found_among_other_cookies() {
        let req = Request::builder()
            .header(COOKIE, "theme=dark; modal_session=abc; other")
            .header(COOKIE, "x=1")
            .body(())
            .unwrap();
        assert_eq!(session_id(&req).as_deref(), Some("abc"));
        let split = Request::builder()
            .header(COOKIE, "theme=dark")
            .header(COOKIE, "modal_session=def")
            .body(())
            .unwrap();
        assert_eq!(session_id(&split).as_deref(), Some("def"));
        let none = Request::builder()
            .header(COOKIE, "modal_sessionx=abc; =; ;")
            .body(())
            .unwrap();
        assert_eq!(session_id(&none), None);
    }
}
