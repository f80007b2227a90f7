//! Web endpoints: `http://{app}--{function}.{domain}/...` by Host header,
//! and `/web/{app}/{function}/...` on the bare address.

use super::{Body, State, json};
use crate::error::Error;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

/// The app and function named by the Host header, when it is
/// `{app}--{function}.{domain}[:port]`.
pub(crate) fn target_from_host<B>(req: &Request<B>, domain: &str) -> Option<(String, String)> {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())?;
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let label = host.strip_suffix(domain)?.strip_suffix('.')?;
    let (app, function) = label.split_once("--")?;
    (!app.is_empty() && !function.is_empty() && !function.contains('.'))
        .then(|| (app.to_ascii_lowercase(), function.to_ascii_lowercase()))
}

/// `/web/{app}/{function}/rest...`: serves with the prefix stripped.
pub(crate) async fn serve_path(
    state: &State,
    rest: &str,
    req: Request<Incoming>,
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

/// Serves a request with web function `label` (a function's URL label) of
/// `app`'s live version; `path` replaces the request path when given.
pub(crate) async fn serve(
    state: &State,
    app: &str,
    label: &str,
    mut req: Request<Incoming>,
    path: Option<String>,
) -> Response<Body> {
    let live = match state.platform.live(app) {
        Ok(live) => live,
        Err(e) => return failure(&e),
    };
    let Some(function) = live
        .spec()
        .functions
        .iter()
        .find(|f| {
            crate::spec::web_label(&f.name) == label
                && matches!(f.kind, crate::spec::FunctionKind::Web { .. })
        })
        .map(|f| f.name.clone())
    else {
        let e = Error::UnknownFunction {
            name: label.to_string(),
            available: live.spec().names(),
        };
        return failure(&e);
    };
    if let Some(path) = path {
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        match format!("{path}{query}").parse() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return super::text(StatusCode::BAD_REQUEST, "invalid request path\n"),
        }
    }
    match state.platform.serve_http(app, &function, req).await {
        Ok(response) => response.map(|body| {
            body.map_err(|code| format!("{code:?}").into())
                .boxed_unsync()
        }),
        Err(e) => failure(&e),
    }
}

fn failure(e: &Error) -> Response<Body> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(
        status,
        &json!({"error": {"kind": e.kind(), "message": e.to_string()}}),
    )
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
    }
}
