//! The control API (`/api/v1/...`, token required): deploy, list, history,
//! stop, rollback, call, gc. JSON in and out; errors are
//! `{"error": {"kind", "message"}}` with a matching status.

use super::RequestBody;
use super::{Body, State, json};
use crate::app::Trigger;
use crate::error::Error;
use crate::platform::{DeployRequest, GitInfo};
use http_body_util::{BodyExt, Limited};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

fn error(e: &Error) -> Response<Body> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(
        status,
        &json!({"error": {"kind": e.kind(), "message": e.to_string()}}),
    )
}

fn not_found(what: &str) -> Response<Body> {
    json(
        StatusCode::NOT_FOUND,
        &json!({"error": {"kind": "no_route", "message": format!("no such API route: {what}")}}),
    )
}

/// Decoded `key=value` pairs of a query string, in order.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 2;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn version_param(pairs: &[(String, String)]) -> Result<Option<u64>, Error> {
    match param(pairs, "version") {
        None | Some("") => Ok(None),
        Some(v) => v
            .trim_start_matches('v')
            .parse()
            .map(Some)
            .map_err(|_| Error::BadInput(format!("`{v}` is not a version number"))),
    }
}

/// Bytes of an oversized upload read (and discarded) before answering 413:
/// a client still sending its body would otherwise see a broken pipe
/// instead of the answer.
const DRAIN_CAP: u64 = 1 << 30;

async fn read_body(req: Request<RequestBody>, limit: usize) -> Result<bytes::Bytes, Error> {
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    if declared.is_none_or(|n| n <= limit as u64) {
        let mut limited = Limited::new(&mut body, limit);
        let mut bytes = bytes::BytesMut::new();
        loop {
            match limited.frame().await {
                None => return Ok(bytes.freeze()),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        bytes.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) if e.is::<http_body_util::LengthLimitError>() => break,
                Some(Err(e)) => {
                    return Err(Error::BadInput(format!(
                        "reading the request body failed: {e}"
                    )));
                }
            }
        }
    }
    let mut drained = 0u64;
    while drained < DRAIN_CAP {
        match body.frame().await {
            Some(Ok(frame)) => drained += frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => break,
        }
    }
    Err(Error::TooLarge { limit })
}

pub(crate) async fn handle(state: &State, rest: &str, req: Request<RequestBody>) -> Response<Body> {
    let method = req.method().clone();
    let pairs = query_pairs(req.uri().query());
    let route: Vec<String> = rest
        .trim_end_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let route: Vec<&str> = route.iter().map(String::as_str).collect();
    let result = match (&method, route.as_slice()) {
        (&Method::GET, ["apps"]) => list(state).await,
        (&Method::GET, ["apps", name]) => detail(state, name).await,
        (&Method::GET, ["apps", name, "history"]) => history(state, name).await,
        (&Method::POST, ["apps", name, "deploy"]) => deploy(state, name, &pairs, req).await,
        (&Method::POST, ["apps", name, "stop"]) => state
            .platform
            .stop(name)
            .await
            .map(|()| json!({"app": name, "state": "stopped"})),
        (&Method::POST, ["apps", name, "rollback"]) => rollback(state, name, &pairs).await,
        (&Method::POST, ["apps", name, "functions", function, "call"]) => {
            return call(state, name, function, &pairs, req).await;
        }
        (&Method::POST, ["gc"]) => state.platform.gc().await.map(|r| json!(r)),
        (&Method::POST, ["apps", name, "functions", function, "spawn"]) => {
            spawn(state, name, function, &pairs, req).await
        }
        (&Method::GET, ["calls", id]) => result(state, id, &pairs).await,
        (&Method::GET, ["apps", name, "logs"])
            if param(&pairs, "follow").is_some_and(|f| f == "1" || f == "true") =>
        {
            return follow(state, name, param(&pairs, "function")).await;
        }
        (&Method::GET, ["apps", name, "logs"]) => logs(state, name, &pairs).await,
        (&Method::GET, ["apps", name, "stats"]) => state
            .platform
            .usage(name)
            .await
            .map(|u| json!({"usage": u})),
        (&Method::GET, ["apps", name, "schedules"]) => state
            .platform
            .app(name)
            .await
            .map(|a| json!({"schedules": a.schedules})),
        (&Method::POST, ["apps", name, "schedules", function, "pause"]) => state
            .platform
            .set_paused(name, function, true)
            .await
            .map(|()| json!({"paused": true})),
        (&Method::POST, ["apps", name, "schedules", function, "resume"]) => state
            .platform
            .set_paused(name, function, false)
            .await
            .map(|()| json!({"paused": false})),
        (&Method::POST, ["apps", name, "schedules", function, "run"]) => state
            .platform
            .run_now(name, function)
            .await
            .map(|id| json!({"run_id": id})),
        _ => return not_found(&format!("{method} /api/v1/{rest}")),
    };
    match result {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => error(&e),
    }
}

async fn list(state: &State) -> Result<Value, Error> {
    Ok(json!({"apps": state.platform.apps().await?}))
}

async fn detail(state: &State, name: &str) -> Result<Value, Error> {
    let status = state.platform.app(name).await?;
    let versions = state.platform.history(name).await?;
    let pools = state.platform.stats(name).unwrap_or_default();
    let web: Vec<Value> = state
        .platform
        .live(name)
        .map(|live| web_urls(state, name, live.spec()))
        .unwrap_or_default();
    Ok(json!({
        "app": status,
        "versions": versions,
        "pools": pools,
        "web": web,
        "app_url": format!("{}/apps/{name}", state.base_url()),
    }))
}

fn web_urls(state: &State, app: &str, spec: &crate::spec::AppSpec) -> Vec<Value> {
    spec.functions
        .iter()
        .filter(|f| matches!(f.kind, crate::spec::FunctionKind::Web { .. }))
        .map(|f| json!({"function": f.name, "url": state.web_url(app, &f.name)}))
        .collect()
}

async fn history(state: &State, name: &str) -> Result<Value, Error> {
    let app = state.platform.app(name).await?;
    Ok(json!({"app": app, "versions": state.platform.history(name).await?}))
}

async fn deploy(
    state: &State,
    name: &str,
    pairs: &[(String, String)],
    req: Request<RequestBody>,
) -> Result<Value, Error> {
    crate::platform::validate_app_name(name)?;
    let mut env = Vec::new();
    for (k, v) in pairs.iter().filter(|(k, _)| k == "env") {
        let _ = k;
        match v.split_once('=') {
            Some((key, value)) if !key.is_empty() => env.push((key.to_string(), value.to_string())),
            _ => {
                return Err(Error::BadInput(format!(
                    "environment entries are KEY=VALUE, got `{v}`"
                )));
            }
        }
    }
    crate::platform::validate_env(&env)?;
    let git = param(pairs, "git_commit")
        .filter(|c| !c.is_empty())
        .map(|commit| GitInfo {
            commit: commit.to_string(),
            dirty: param(pairs, "git_dirty") == Some("true"),
        });
    let allow_http = pairs
        .iter()
        .filter(|(k, _)| k == "allow_http")
        .map(|(_, v)| v.clone())
        .collect();
    let request = DeployRequest {
        name: name.to_string(),
        env,
        allow_http,
        notify: param(pairs, "notify")
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        tag: param(pairs, "tag")
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        deployer: param(pairs, "deployer").unwrap_or("unknown").to_string(),
        git,
        pool: pool_settings(pairs)?,
    };
    let wasm = read_body(req, state.platform.config().max_upload).await?;
    let deployment = state.platform.deploy(&wasm, request).await?;
    Ok(deployed(state, deployment))
}

/// `timeout`, `min_warm`, `max_instances`, `max_requests` of a deploy.
fn pool_settings(pairs: &[(String, String)]) -> Result<crate::spec::PoolSettings, Error> {
    let count = |name: &str| -> Result<Option<u32>, Error> {
        param(pairs, name)
            .map(|v| {
                v.parse().map_err(|_| {
                    Error::BadInput(format!("`{name}` must be a whole number, got `{v}`"))
                })
            })
            .transpose()
    };
    Ok(crate::spec::PoolSettings {
        timeout: param(pairs, "timeout")
            .map(|v| {
                crate::spec::parse_duration(v)
                    .map_err(|e| Error::BadInput(format!("`timeout`: {e}")))
            })
            .transpose()?,
        min_warm: count("min_warm")?,
        max_instances: count("max_instances")?,
        max_requests: count("max_requests")?,
    })
}

fn deployed(state: &State, deployment: crate::platform::Deployment) -> Value {
    let web = web_urls(state, &deployment.app, &deployment.spec);
    let app_url = format!("{}/apps/{}", state.base_url(), deployment.app);
    json!({"deployment": deployment, "web": web, "app_url": app_url})
}

async fn rollback(state: &State, name: &str, pairs: &[(String, String)]) -> Result<Value, Error> {
    let version = version_param(pairs)?;
    let deployer = param(pairs, "deployer").unwrap_or("unknown");
    let deployment = state.platform.rollback(name, version, deployer).await?;
    Ok(deployed(state, deployment))
}

async fn call(
    state: &State,
    app: &str,
    function: &str,
    pairs: &[(String, String)],
    req: Request<RequestBody>,
) -> Response<Body> {
    let version = match version_param(pairs) {
        Ok(v) => v,
        Err(e) => return error(&e),
    };
    let input = match read_body(req, state.platform.config().max_upload).await {
        Ok(input) => input,
        Err(e) => return error(&e),
    };
    let execution = match state
        .platform
        .call(app, function, &input, version, Trigger::Call)
        .await
    {
        Ok(execution) => execution,
        Err(e) => return error(&e),
    };
    let mut body = json!({
        "app": &*execution.app,
        "version": execution.version,
        "function": &*execution.function,
        "duration_ms": execution.duration.as_secs_f64() * 1e3,
        "logs": execution.logs,
    });
    match &execution.outcome {
        Ok(output) => {
            match serde_json::from_slice::<Value>(output) {
                Ok(value) => body["output"] = value,
                Err(_) => {
                    body["output_text"] =
                        Value::String(String::from_utf8_lossy(output).into_owned())
                }
            }
            json(StatusCode::OK, &body)
        }
        Err(e) => {
            body["error"] = json!({"kind": e.kind(), "message": e.to_string()});
            let status =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json(status, &body)
        }
    }
}

async fn spawn(
    state: &State,
    app: &str,
    function: &str,
    pairs: &[(String, String)],
    req: Request<RequestBody>,
) -> Result<Value, Error> {
    let version = version_param(pairs)?;
    let input = read_body(req, state.platform.config().max_upload).await?;
    let id = state.platform.spawn(app, function, &input, version).await?;
    Ok(json!({"call_id": id}))
}

/// Longest `wait` a result request may ask for.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

async fn result(state: &State, id: &str, pairs: &[(String, String)]) -> Result<Value, Error> {
    let wait = match param(pairs, "wait") {
        None | Some("") => std::time::Duration::ZERO,
        Some(w) => crate::spec::parse_duration(w)
            .or_else(|_| {
                w.parse::<u64>()
                    .map(std::time::Duration::from_secs)
                    .map_err(|_| ())
            })
            .map_err(|()| Error::BadInput(format!("`{w}` is not a duration")))?,
    };
    let record = state.platform.result(id, wait.min(MAX_WAIT)).await?;
    let mut body = json!({
        "id": record.id,
        "app": record.app,
        "function": record.function,
        "state": record.state,
        "created_at": record.created_at,
        "finished_at": record.finished_at,
    });
    if let Some(output) = &record.output {
        match serde_json::from_slice::<Value>(output) {
            Ok(value) => body["output"] = value,
            Err(_) => {
                body["output_text"] = Value::String(String::from_utf8_lossy(output).into_owned())
            }
        }
    }
    if let Some(message) = &record.error {
        body["error"] = json!({"kind": record.error_kind, "message": message});
    }
    Ok(body)
}

/// Most executions one logs request returns.
const MAX_LOGS: usize = 1000;

async fn logs(state: &State, app: &str, pairs: &[(String, String)]) -> Result<Value, Error> {
    let limit = param(pairs, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(50)
        .min(MAX_LOGS);
    let function = param(pairs, "function").filter(|f| !f.is_empty());
    Ok(json!({"executions": state.platform.logs(app, function, limit).await?}))
}

/// Streams new executions of `app` as server-sent events.
async fn follow(state: &State, app: &str, function: Option<&str>) -> Response<Body> {
    if let Err(e) = state.platform.app(app).await {
        return error(&e);
    }
    let mut records = state.platform.follow();
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    let (app, function) = (
        app.to_string(),
        function.filter(|f| !f.is_empty()).map(str::to_string),
    );
    tokio::spawn(async move {
        let mut keepalive = tokio::time::interval(std::time::Duration::from_secs(15));
        loop {
            let event = tokio::select! {
                record = records.recv() => match record {
                    Ok(r) if r.app == app && function.as_ref().is_none_or(|f| *f == r.function) => {
                        format!("data: {}\n\n", serde_json::to_string(&r).unwrap_or_default())
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => format!(": {n} executions skipped\n\n"),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = keepalive.tick() => ": keep-alive\n\n".to_string(),
            };
            if tx.send(bytes::Bytes::from(event)).await.is_err() {
                return;
            }
        }
    });
    let mut response = Response::new(http_body_util::BodyExt::boxed_unsync(EventStream { rx }));
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    response
}

/// A response body fed by a channel of chunks.
struct EventStream {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
}

impl hyper::body::Body for EventStream {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(hyper::body::Frame::data(c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded() {
        let pairs = query_pairs(Some("env=A%3D1&env=B=2+3&tag=&x"));
        assert_eq!(
            pairs,
            [
                ("env".to_string(), "A=1".to_string()),
                ("env".to_string(), "B=2 3".to_string()),
                ("tag".to_string(), String::new()),
                ("x".to_string(), String::new()),
            ]
        );
        assert_eq!(
            version_param(&[("version".into(), "v3".into())]).unwrap(),
            Some(3)
        );
        assert!(version_param(&[("version".into(), "three".into())]).is_err());
    }
}
