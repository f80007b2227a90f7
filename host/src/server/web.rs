//! Web endpoints: `http://{app}--{function}.{domain}/...` by Host header,
//! and `/web/{app}/{function}/...` on the bare address.

use super::RequestBody;
use super::{Body, State, json};
use crate::LoadedApp;
use crate::api::{ApiError, ErrorBody};
use crate::error::Error;
use http_body_util::BodyExt;
use hyper::{Request, Response, StatusCode};

/// The app and function named by the request's authority when it is
/// `{app}--{function}.{domain}[:port]` (any case, with or without a
/// trailing dot). The authority of an absolute-form target (or HTTP/2's
/// `:authority`) wins over the Host header, as RFC 9112 §3.2.2 says.
pub(crate) fn target_from_host<B>(req: &Request<B>, domain: &str) -> Option<(String, String)> {
    let host = match req.uri().authority() {
        Some(authority) => authority.host(),
        None => req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())?,
    };
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    let label = host.strip_suffix(&domain)?.strip_suffix('.')?;
    let (app, function) = label.split_once("--")?;
    (!app.is_empty() && !function.is_empty() && !function.contains('.'))
        .then(|| (app.to_string(), function.to_string()))
}

/// `/web/{app}/{function}/rest...`: serves with the prefix stripped.
pub(crate) async fn serve_path(
    state: &State,
    rest: &str,
    req: Request<RequestBody>,
) -> Response<Body> {
    let mut parts = rest.splitn(3, '/');
    let (Some(app), Some(function)) = (parts.next(), parts.next()) else {
        return super::text(
            StatusCode::NOT_FOUND,
            "web endpoints are at /web/{app}/{function}/\n",
        );
    };
    let path = format!("/{}", parts.next().unwrap_or(""));
    let (app, function) = (app.to_string(), function.to_string());
    serve(state, &app, &function, req, Some(path)).await
}

/// Serves a request at the root of the bare address with the single web
/// function of `app`.
pub(crate) async fn serve_root(
    state: &State,
    app: &str,
    req: Request<RequestBody>,
) -> Response<Body> {
    let single = |live: &LoadedApp| {
        let mut web = live
            .spec()
            .functions
            .iter()
            .filter(|f| matches!(f.kind, crate::spec::FunctionKind::Web { .. }));
        match (web.next(), web.next()) {
            (Some(f), None) => Some(f.name.clone()),
            _ => None,
        }
    };
    serve_picked(state, app, single, req, None)
        .await
        .unwrap_or_else(|| {
            super::text(
                StatusCode::NOT_FOUND,
                format!(
                    "`{app}` has no single web function to serve at /; use its function URLs\n"
                ),
            )
        })
}

/// Serves a request with web function `label` (a function's URL label) of
/// `app`'s live version; `path` replaces the request path when given.
pub(crate) async fn serve(
    state: &State,
    app: &str,
    label: &str,
    req: Request<RequestBody>,
    path: Option<String>,
) -> Response<Body> {
    let named = |live: &LoadedApp| {
        live.spec()
            .functions
            .iter()
            .find(|f| {
                matches!(f.kind, crate::spec::FunctionKind::Web { .. })
                    && crate::spec::is_web_label(&f.name, label)
            })
            .map(|f| f.name.clone())
    };
    serve_picked(state, app, named, req, path)
        .await
        .unwrap_or_else(|| {
            // The app's other functions are nobody's business here.
            super::text(
                StatusCode::NOT_FOUND,
                format!("app `{app}` has no web function `{label}`\n"),
            )
        })
}

/// Serves a request with the web function `pick` names in the version of
/// `app` that serves it (`None`: it named none); `path` replaces the
/// request path when given.
async fn serve_picked(
    state: &State,
    app: &str,
    pick: impl Fn(&LoadedApp) -> Option<String>,
    mut req: Request<RequestBody>,
    path: Option<String>,
) -> Option<Response<Body>> {
    if let Some(path) = path {
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        match format!("{path}{query}").parse() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => {
                return Some(super::text(
                    StatusCode::BAD_REQUEST,
                    "invalid request path\n",
                ));
            }
        }
    }
    let id = crate::web::ErrorId(error_id());
    match (state.platform)
        .serve_http_picked(app, pick, req, Some(id.clone()))
        .await
    {
        Ok(Some(response)) => Some(response.map(|body| {
            body.map_err(|code| format!("{code:?}").into())
                .boxed_unsync()
        })),
        Ok(None) => None,
        Err(e) => Some(failure_with_id(app, &e, &id.0)),
    }
}

/// The answer to a failed web request. A 503 says when to retry; a 500
/// carries an error id that is also in the execution's logs and in the
/// server's log line for it.
fn failure_with_id(app: &str, e: &Error, id: &str) -> Response<Body> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match e {
        // The app's other functions are nobody's business here.
        Error::UnknownFunction { name, .. } => format!("no web function `{name}`"),
        e => e.to_string(),
    };
    let mut error = ApiError::new(e.kind(), message);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        // What failed inside the guest (its trap, backtrace, panic text)
        // goes to the server log and the execution record, not to a
        // public client: the id leads there.
        tracing::error!(app, error_id = %id, "web request failed: {e}");
        error.message =
            format!("the web function failed; error id {id} in the app's logs says why");
        error.id = Some(id.to_string());
    }
    let mut response = json(status, &ErrorBody::from(error));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
    }
    response
}

/// A short unguessable id that ties an error answer to its log lines:
/// a counter mixed (splitmix64) with a random per-process key, so making
/// one costs no system call.
fn error_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEY: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let key = *KEY.get_or_init(|| {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    });
    let mut z = key.wrapping_add(
        NEXT.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    format!("{:012x}", z & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str) -> Option<(String, String)> {
        let req = Request::builder().header("host", h).body(()).unwrap();
        target_from_host(&req, "localhost")
    }

    #[test]
    fn deployment_names_are_read_from_the_host() {
        assert_eq!(
            host("hello--greet.localhost:8000"),
            Some(("hello".into(), "greet".into()))
        );
        assert_eq!(
            host("hello--greet.localhost"),
            Some(("hello".into(), "greet".into()))
        );
        assert_eq!(
            host("my-app--say-hi.localhost"),
            Some(("my-app".into(), "say-hi".into()))
        );
        assert_eq!(host("localhost:8000"), None);
        assert_eq!(host("127.0.0.1:8000"), None);
        assert_eq!(host("hello.localhost"), None);
        assert_eq!(host("hello--greet.example.com"), None);
        assert_eq!(
            host("Hello--Greet.LOCALHOST:8000"),
            Some(("hello".into(), "greet".into()))
        );
        assert_eq!(
            host("hello--greet.localhost."),
            Some(("hello".into(), "greet".into()))
        );
        assert_eq!(
            host("hello--greet.localhost.:80"),
            Some(("hello".into(), "greet".into()))
        );
    }

    #[test]
    fn an_absolute_target_wins_over_the_host_header() {
        let req = Request::builder()
            .uri("http://hello--greet.localhost:8000/x")
            .header("host", "other--fn.localhost")
            .body(())
            .unwrap();
        assert_eq!(
            target_from_host(&req, "localhost"),
            Some(("hello".into(), "greet".into()))
        );
    }
}
