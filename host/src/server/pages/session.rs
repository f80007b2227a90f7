//! Logging in and out: the session cookie (HttpOnly, SameSite=Strict),
//! the per-session CSRF token and the one-shot notice an action leaves.

use super::super::{Body, RequestBody, State};
use super::form::{self, field};
use super::layout::{self, Chrome};
use cookie::{Cookie, SameSite};
use hyper::header::{COOKIE, SET_COOKIE};
use hyper::{Request, Response, StatusCode};
use maud::html;

/// The session cookie's name.
const COOKIE_NAME: &str = "modal_session";

/// Most sessions kept at once: every login (with the token) adds one;
/// past this the oldest is dropped, so memory stays bounded however
/// often a script logs in.
const MAX_SESSIONS: usize = 1024;

/// One logged-in browser.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    /// The token every form of this session carries.
    pub(crate) csrf: String,
    /// What the last action did, shown once on the next page.
    pub(crate) notice: Option<String>,
    /// When it started (for dropping the oldest).
    started: std::time::Instant,
}

/// The session id in the request's cookies, if it is a live session.
pub(super) fn session<B>(state: &State, req: &Request<B>) -> Option<String> {
    let id = session_id(req)?;
    state.sessions().contains_key(&id).then_some(id)
}

/// The value of the session cookie among the request's `Cookie` headers;
/// cookies that do not parse are skipped.
pub(super) fn session_id<B>(req: &Request<B>) -> Option<String> {
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
pub(super) fn session_cookie(id: &str) -> String {
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

/// Only local paths under /apps are followed after login.
pub(super) fn safe_next(next: &str) -> &str {
    if next.starts_with("/apps") && !next.contains("//") && !next.contains('\\') {
        next
    } else {
        "/apps"
    }
}

/// `GET /login`.
pub(super) fn login_page<B>(req: &Request<B>) -> Response<Body> {
    let query = form::query(req);
    login_form(field(&query, "next"), false)
}

/// `POST /login`: a right token starts a session and goes on to `next`.
pub(super) async fn log_in(state: &State, req: Request<RequestBody>) -> Response<Body> {
    let pairs = form::form(req).await;
    let given = field(&pairs, "token").trim();
    let next = safe_next(field(&pairs, "next")).to_string();
    if given.is_empty() || !super::super::auth::token_matches(given, &state.config.token) {
        let mut response = login_form(&next, true);
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    }
    let id = random_hex(32);
    {
        let mut sessions = state.sessions();
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        let session = Session {
            csrf: random_hex(16),
            notice: None,
            started: std::time::Instant::now(),
        };
        sessions.insert(id.clone(), session);
    }
    let mut response = layout::redirect(&next);
    if let Ok(value) = hyper::header::HeaderValue::from_str(&session_cookie(&id)) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

/// `POST /logout`: ends the session (its form carries the CSRF token).
pub(super) async fn log_out(state: &State, req: Request<RequestBody>) -> Response<Body> {
    let Some(id) = session(state, &req) else {
        return layout::redirect("/login");
    };
    let chrome = chrome(state, &id, false);
    let pairs = form::form(req).await;
    if let Some(refused) = refuse_without_csrf(&chrome, &pairs) {
        return refused;
    }
    state.sessions().remove(&id);
    layout::redirect("/login")
}

/// The chrome of a page for session `id`; `take_notice` takes its notice
/// (shown once).
pub(super) fn chrome(state: &State, id: &str, take_notice: bool) -> Chrome {
    let mut sessions = state.sessions();
    let Some(session) = sessions.get_mut(id) else {
        return Chrome::default();
    };
    Chrome {
        csrf: Some(session.csrf.clone()),
        notice: if take_notice {
            session.notice.take()
        } else {
            None
        },
        live: None,
    }
}

/// Leaves `notice` for the next page of session `id`.
pub(super) fn leave_notice(state: &State, id: &str, notice: String) {
    if let Some(session) = state.sessions().get_mut(id) {
        session.notice = Some(notice);
    }
}

/// `None` when the form carries the session's CSRF token, else the
/// styled 403 page that refuses it.
pub(super) fn refuse_without_csrf(
    chrome: &Chrome,
    pairs: &[(String, String)],
) -> Option<Response<Body>> {
    match &chrome.csrf {
        Some(csrf)
            if !csrf.is_empty()
                && super::super::auth::token_matches(field(pairs, "csrf"), csrf) =>
        {
            None
        }
        _ => Some(layout::error_page(
            StatusCode::FORBIDDEN,
            chrome,
            "Form refused",
            "This form has expired or comes from another site. Reload the page and try again.",
        )),
    }
}

fn login_form(next: &str, failed: bool) -> Response<Body> {
    layout::page(
        "Log in",
        &Chrome::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn only_local_app_pages_are_followed_after_login() {
        assert_eq!(safe_next("/apps/hello/logs?q=x"), "/apps/hello/logs?q=x");
        for bad in [
            "https://evil.example/apps",
            "//evil.example",
            "/apps//evil",
            "/apps\\x",
            "/login",
        ] {
            assert_eq!(safe_next(bad), "/apps", "{bad}");
        }
    }
}
