//! The apps pages, a dashboard in the spirit of Modal's: server-rendered
//! HTML behind a login with the control token (an HttpOnly,
//! SameSite=Strict session cookie). One file per page or concern:
//!
//! - `session.rs` — login, logout, the session and its CSRF token;
//! - `apps.rs` — `/apps`, every app, live;
//! - `app.rs` — `/apps/{name}`: functions, versions, usage, recent
//!   executions (live) and the charts (`charts.rs`, inline SVG);
//! - `logs.rs` — `/apps/{name}/logs`: filters, search, pages by cursor;
//! - `execution.rs` — `/apps/{name}/executions/{id}`, with its parent and
//!   the calls it made;
//! - `actions.rs` — stop, pause / resume / run now, rollback: a
//!   confirmation, then a POST that carries the CSRF token;
//! - `layout.rs` — the frame, the error pages, the live-update script;
//!   `form.rs` — query strings, forms and URLs.

mod actions;
mod app;
mod apps;
mod charts;
mod execution;
mod form;
mod layout;
mod logs;
mod session;

pub(crate) use apps::Totals;
pub(crate) use session::Session;

use super::{Body, RequestBody, State};
use actions::Action;
use hyper::{Method, Request, Response};

/// Serves the pages; `None` when the path is not one of them.
pub(crate) async fn handle(
    state: &State,
    path: &str,
    req: Request<RequestBody>,
) -> Option<Response<Body>> {
    let method = req.method().clone();
    let response = match (&method, path) {
        (&Method::GET, "/login") => session::login_page(&req),
        (&Method::POST, "/login") => session::log_in(state, req).await,
        (&Method::POST, "/logout") => session::log_out(state, req).await,
        (_, p) if p == "/apps" || p.starts_with("/apps/") => apps_pages(state, p, req).await,
        _ => return None,
    };
    Some(response)
}

/// Whether the client asked for HTML (a browser's `Accept`).
pub(crate) fn wants_html<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// The styled 404 of a path that is no page, API route or endpoint.
pub(crate) fn not_found() -> Response<Body> {
    layout::error_page(
        hyper::StatusCode::NOT_FOUND,
        &layout::Chrome::default(),
        "Not found",
        "Nothing lives here: the apps are under /apps, the control API under /api/v1/, web \
         endpoints at http://{app}--{function}.{domain}/ or /web/{app}/{function}/.",
    )
}

/// Everything under `/apps`, for a logged-in session (others are sent
/// to the login page, which comes back here).
async fn apps_pages(state: &State, path: &str, req: Request<RequestBody>) -> Response<Body> {
    let Some(id) = session::session(state, &req) else {
        let next = form::encode(&match req.uri().query() {
            Some(q) if req.method() == Method::GET => format!("{path}?{q}"),
            _ => path.to_string(),
        });
        return layout::redirect(&format!("/login?next={next}"));
    };
    let query = form::query(&req);
    let live_part = form::given(&query, "part").is_some();
    let is_get = req.method() == Method::GET;
    let chrome = session::chrome(state, &id, is_get && !live_part);
    let rest: Vec<String> = path
        .trim_start_matches("/apps")
        .trim_matches('/')
        .split('/')
        .map(form::segment)
        .collect();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (is_get, rest.as_slice()) {
        (true, [""]) => apps::page(state, chrome, &query).await,
        (true, [name]) => app::page(state, name, chrome, &query).await,
        (true, [name, "logs"]) => logs::page(state, name, chrome, &query).await,
        (true, [name, "executions", id]) => execution::page(state, name, id, chrome).await,
        (_, [name, action @ ..]) if !name.is_empty() => {
            let action: Vec<String> = action.iter().map(|s| s.to_string()).collect();
            let Some(action) = Action::parse(&action) else {
                return layout::no_such_page(&chrome);
            };
            if is_get {
                return action.confirm(state, name, &chrome).await;
            }
            if req.method() != Method::POST {
                return layout::no_such_page(&chrome);
            }
            let pairs = form::form(req).await;
            if let Some(refused) = session::refuse_without_csrf(&chrome, &pairs) {
                return refused;
            }
            match action.run(state, name).await {
                Ok(notice) => {
                    session::leave_notice(state, &id, notice);
                    layout::redirect(&format!("/apps/{name}"))
                }
                Err(e) => layout::platform_error(&chrome, &e),
            }
        }
        _ => layout::no_such_page(&chrome),
    }
}
