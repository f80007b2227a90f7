//! The control API (`/api/v1/...`, token required): deploy, list, history,
//! stop, rollback, call, gc. JSON in and out, as the types of
//! [`crate::api`]; errors are [`ErrorBody`] with a matching status.

use super::RequestBody;
use super::{Body, State, json};
use crate::api::query::{MAX_LOGS, Pairs};
use crate::api::{
    ApiError, AppDetail, AppList, CallResult, CallStatus, DeployQuery, Deployed, DictChanged,
    DictInfo, DictKeys, DictValue, Dicts, ErrorBody, Executions, History, LogsQuery, Output,
    Paused, ResultQuery, RollbackQuery, RunStarted, Schedules, SecretCreate, SecretDeleted,
    Secrets, Spawned, Stats, Stopped, VersionQuery, WebUrl, sse,
};
use crate::app::Trigger;
use crate::error::Error;
use crate::platform::{AppState, ExecutionRecord};
use http_body_util::{BodyExt, Limited};
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde::Serialize;

fn status_of(e: &Error) -> StatusCode {
    StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn error(e: &Error) -> Response<Body> {
    json(status_of(e), &ErrorBody::from(ApiError::from(e)))
}

fn ok(value: impl Serialize) -> Response<Body> {
    json(StatusCode::OK, &value)
}

fn not_found(what: &str) -> Response<Body> {
    json(
        StatusCode::NOT_FOUND,
        &ErrorBody::from(ApiError::no_route(what)),
    )
}

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
    crate::web::discard(body).await;
    Err(Error::TooLarge { limit })
}

pub(crate) async fn handle(state: &State, rest: &str, req: Request<RequestBody>) -> Response<Body> {
    let method = req.method().clone();
    let pairs = Pairs::parse(req.uri().query());
    let route: Vec<String> = rest
        .trim_end_matches('/')
        .split('/')
        .map(|segment| percent_decode_str(segment).decode_utf8_lossy().into_owned())
        .collect();
    let route: Vec<&str> = route.iter().map(String::as_str).collect();
    let result = match (&method, route.as_slice()) {
        (&Method::GET, ["apps"]) => list(state).await.map(ok),
        (&Method::GET, ["hosts"]) => state
            .platform
            .hosts()
            .await
            .map(|hosts| ok(crate::api::HostList { hosts })),
        (&Method::GET, ["apps", name]) => detail(state, name).await.map(ok),
        (&Method::GET, ["apps", name, "history"]) => history(state, name).await.map(ok),
        (&Method::POST, ["apps", name, "deploy"]) => deploy(state, name, &pairs, req).await.map(ok),
        (&Method::POST, ["apps", name, "stop"]) => state.platform.stop(name).await.map(|hosts| {
            ok(Stopped {
                app: name.to_string(),
                state: AppState::Stopped,
                hosts,
            })
        }),
        (&Method::POST, ["apps", name, "rollback"]) => rollback(state, name, &pairs).await.map(ok),
        (&Method::POST, ["apps", name, "functions", function, "call"]) => {
            return call(state, name, function, &pairs, req).await;
        }
        (&Method::POST, ["gc"]) => state.platform.gc().await.map(ok),
        (&Method::POST, ["apps", name, "functions", function, "spawn"]) => {
            spawn(state, name, function, &pairs, req).await.map(ok)
        }
        (&Method::GET, ["calls", id]) => result(state, id, &pairs).await.map(ok),
        (&Method::GET, ["calls", id, "tree"]) => state
            .platform
            .tree(id)
            .await
            .map(|executions| ok(Executions { executions })),
        (&Method::GET, ["apps", name, "logs"]) => {
            let query = LogsQuery::parse(&pairs);
            if query.follow {
                return follow(state, name, query.function, last_event_id(&req)).await;
            }
            logs(state, name, &query).await.map(ok)
        }
        (&Method::HEAD | &Method::GET, ["archives", digest]) => {
            match state.platform.has_archive(digest).await {
                Ok(true) => Ok(ok(serde_json::json!({ "digest": digest }))),
                Ok(false) => return not_found(&format!("archive {digest}")),
                Err(e) => Err(e),
            }
        }
        (&Method::PUT, ["archives", digest]) => {
            let limit = state.platform.config().max_upload;
            match read_body(req, limit).await {
                Ok(body) => {
                    let digest = digest.to_string();
                    state.platform.put_archive(body).await.and_then(|info| {
                        if info.digest == digest {
                            Ok(ok(info))
                        } else {
                            Err(Error::BadInput(format!(
                                "the archive's SHA-256 is {}, not {digest}",
                                info.digest
                            )))
                        }
                    })
                }
                Err(e) => Err(e),
            }
        }
        (&Method::GET, ["secrets"]) => state
            .platform
            .secrets()
            .await
            .map(|secrets| ok(Secrets { secrets })),
        (&Method::POST, ["secrets", name]) => create_secret(state, name, &pairs, req).await.map(ok),
        (&Method::DELETE, ["secrets", name]) => state
            .platform
            .delete_secret(name, pairs.get("force") == Some("true"))
            .await
            .map(|()| {
                ok(SecretDeleted {
                    name: name.to_string(),
                })
            }),
        (&Method::GET, ["apps", name, "dicts"]) => state.platform.dicts(name).await.map(|d| {
            ok(Dicts {
                dicts: d
                    .into_iter()
                    .map(|(name, keys)| DictInfo { name, keys })
                    .collect(),
            })
        }),
        (&Method::GET, ["apps", name, "dicts", bucket]) => {
            let cursor = match pairs.get("cursor").map(str::parse::<u64>) {
                None => Ok(0),
                Some(Ok(cursor)) => Ok(cursor),
                Some(Err(_)) => Err(Error::BadInput("`cursor` is a whole number".into())),
            };
            match cursor {
                Ok(cursor) => state
                    .platform
                    .dict_keys(name, bucket, cursor)
                    .await
                    .map(|(keys, cursor)| ok(DictKeys { keys, cursor })),
                Err(e) => Err(e),
            }
        }
        (&Method::DELETE, ["apps", name, "dicts", bucket]) => {
            state.platform.dict_clear(name, bucket).await.map(|()| {
                ok(DictChanged {
                    dict: bucket.to_string(),
                })
            })
        }
        (&Method::GET, ["apps", name, "dicts", bucket, "keys", key]) => {
            match state.platform.dict_get(name, bucket, key).await {
                Ok(Some(value)) => Ok(ok(DictValue {
                    key: key.to_string(),
                    value: Output::from_bytes(&value),
                })),
                Ok(None) => Err(Error::KeyNotFound {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                }),
                Err(e) => Err(e),
            }
        }
        (&Method::PUT, ["apps", name, "dicts", bucket, "keys", key]) => {
            match read_body(req, crate::kv::MAX_VALUE + 1).await {
                Ok(value) => state
                    .platform
                    .dict_put(name, bucket, key, value.to_vec())
                    .await
                    .map(|()| {
                        ok(DictChanged {
                            dict: bucket.to_string(),
                        })
                    }),
                Err(e) => Err(e),
            }
        }
        (&Method::DELETE, ["apps", name, "dicts", bucket, "keys", key]) => state
            .platform
            .dict_delete(name, bucket, key)
            .await
            .map(|()| {
                ok(DictChanged {
                    dict: bucket.to_string(),
                })
            }),
        (&Method::GET, ["apps", name, "stats"]) => state
            .platform
            .usage(name)
            .await
            .map(|usage| ok(Stats { usage })),
        (&Method::GET, ["apps", name, "schedules"]) => state.platform.app(name).await.map(|a| {
            ok(Schedules {
                schedules: a.schedules,
            })
        }),
        (&Method::POST, ["apps", name, "schedules", function, "pause"]) => {
            set_paused(state, name, function, true).await
        }
        (&Method::POST, ["apps", name, "schedules", function, "resume"]) => {
            set_paused(state, name, function, false).await
        }
        (&Method::POST, ["apps", name, "schedules", function, "run"]) => state
            .platform
            .run_now(name, function)
            .await
            .map(|run_id| ok(RunStarted { run_id })),
        _ => return not_found(&format!("{method} /api/v1/{rest}")),
    };
    result.unwrap_or_else(|e| error(&e))
}

async fn list(state: &State) -> Result<AppList, Error> {
    Ok(AppList {
        apps: state.platform.apps().await?,
    })
}

async fn detail(state: &State, name: &str) -> Result<AppDetail, Error> {
    let app = state.platform.app(name).await?;
    let versions = state.platform.history(name).await?;
    let pools = state.platform.stats(name).unwrap_or_default();
    let web = state
        .platform
        .live(name)
        .map(|live| web_urls(state, name, live.spec()))
        .unwrap_or_default();
    Ok(AppDetail {
        app,
        versions,
        pools,
        web,
        app_url: app_url(state, name),
    })
}

fn app_url(state: &State, app: &str) -> String {
    format!("{}/apps/{app}", state.base_url())
}

fn web_urls(state: &State, app: &str, spec: &crate::spec::AppSpec) -> Vec<WebUrl> {
    spec.functions
        .iter()
        .filter(|f| matches!(f.kind, crate::spec::FunctionKind::Web { .. }))
        .map(|f| WebUrl {
            function: f.name.clone(),
            url: state.web_url(app, &f.name),
        })
        .collect()
}

async fn history(state: &State, name: &str) -> Result<History, Error> {
    Ok(History {
        app: state.platform.app(name).await?,
        versions: state.platform.history(name).await?,
    })
}

async fn deploy(
    state: &State,
    name: &str,
    pairs: &Pairs,
    req: Request<RequestBody>,
) -> Result<Deployed, Error> {
    crate::platform::validate_app_name(name)?;
    let request = DeployQuery::parse(pairs)?.into_request(name);
    let wasm = read_body(req, state.platform.config().max_upload).await?;
    let deployment = state.platform.deploy_bytes(wasm, request).await?;
    Ok(deployed(state, deployment))
}

fn deployed(state: &State, deployment: crate::platform::Deployment) -> Deployed {
    Deployed {
        web: web_urls(state, &deployment.app, &deployment.spec),
        app_url: app_url(state, &deployment.app),
        deployment,
    }
}

async fn rollback(state: &State, name: &str, pairs: &Pairs) -> Result<Deployed, Error> {
    let query = RollbackQuery::parse(pairs)?;
    let deployment = state
        .platform
        .rollback(name, query.version, &query.deployer)
        .await?;
    Ok(deployed(state, deployment))
}

async fn set_paused(
    state: &State,
    app: &str,
    function: &str,
    paused: bool,
) -> Result<Response<Body>, Error> {
    state.platform.set_paused(app, function, paused).await?;
    Ok(ok(Paused { paused }))
}

async fn call(
    state: &State,
    app: &str,
    function: &str,
    pairs: &Pairs,
    req: Request<RequestBody>,
) -> Response<Body> {
    let version = match VersionQuery::parse(pairs) {
        Ok(q) => q.version,
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
    let (status, output, error) = match &execution.outcome {
        Ok(output) => (StatusCode::OK, Some(Output::from_bytes(output)), None),
        Err(e) => (status_of(e), None, Some(ApiError::from(e))),
    };
    let body = CallResult {
        app: execution.app.to_string(),
        version: execution.version,
        function: execution.function.to_string(),
        duration_ms: execution.duration.as_secs_f64() * 1e3,
        logs: execution.logs.clone(),
        output,
        error,
    };
    json(status, &body)
}

async fn spawn(
    state: &State,
    app: &str,
    function: &str,
    pairs: &Pairs,
    req: Request<RequestBody>,
) -> Result<Spawned, Error> {
    let version = VersionQuery::parse(pairs)?.version;
    let input = read_body(req, state.platform.config().max_upload).await?;
    let call_id = state.platform.spawn(app, function, &input, version).await?;
    Ok(Spawned { call_id })
}

/// Most bytes of a secret's variables.
const MAX_SECRET: usize = 1 << 20;

async fn create_secret(
    state: &State,
    name: &str,
    pairs: &Pairs,
    req: Request<RequestBody>,
) -> Result<crate::platform::SecretInfo, Error> {
    let body = read_body(req, MAX_SECRET).await?;
    // The body's text is never echoed: it holds the values.
    let create: SecretCreate = serde_json::from_slice(&body).map_err(|_| {
        Error::BadInput(r#"the body is not {"vars": {"KEY": "VALUE", ...}}"#.into())
    })?;
    let force = pairs.get("force") == Some("true");
    let vars = create.vars.into_iter().collect();
    state.platform.create_secret(name, vars, force).await
}

async fn result(state: &State, id: &str, pairs: &Pairs) -> Result<CallStatus, Error> {
    let wait = ResultQuery::parse(pairs).wait()?;
    Ok(state.platform.result(id, wait).await?.into())
}

async fn logs(state: &State, app: &str, query: &LogsQuery) -> Result<Executions, Error> {
    let executions = state
        .platform
        .logs(app, query.function.as_deref(), query.limit())
        .await?;
    Ok(Executions { executions })
}

/// The id a reconnecting event-stream client saw last.
fn last_event_id(req: &Request<RequestBody>) -> Option<u64> {
    req.headers()
        .get(sse::LAST_EVENT_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// How often a follower reads the stored executions for those it was not
/// sent live (another host's, in a cluster).
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The latest stored executions a follower compares with what it sent.
const FOLLOW_POLL_LIMIT: usize = 200;

/// The ids of the executions a follower sent (the latest few thousand).
#[derive(Default)]
struct Sent {
    ids: std::collections::HashSet<u64>,
    order: std::collections::VecDeque<u64>,
}

impl Sent {
    /// Remembers `id`; false when it was sent already.
    fn insert(&mut self, id: u64) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > 4 * FOLLOW_POLL_LIMIT
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

/// How often an idle event stream sends a comment, so that proxies and
/// clients see the connection is alive.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// Streams new executions of `app` as server-sent events, each with its
/// record id. After `last_id` (a reconnect), the stored executions newer
/// than it come first (the first [`MAX_LOGS`] of them).
async fn follow(
    state: &State,
    app: &str,
    function: Option<String>,
    last_id: Option<u64>,
) -> Response<Body> {
    if let Err(e) = state.platform.app(app).await {
        return error(&e);
    }
    // Subscribe before reading the stored ones, so that nothing recorded
    // in between is missed; what both hold is sent once.
    let mut records = state.platform.follow();
    let replay = match last_id {
        Some(after) => {
            let replay = state
                .platform
                .logs_after(app, function.as_deref(), after, MAX_LOGS)
                .await;
            match replay {
                Ok(replay) => replay,
                Err(e) => return error(&e),
            }
        }
        None => Vec::new(),
    };
    // What is stored now was not sent live: the stored records polled
    // later (other hosts' executions) are compared with it.
    let stored_now = match state
        .platform
        .logs(app, function.as_deref(), FOLLOW_POLL_LIMIT)
        .await
    {
        Ok(stored) => stored,
        Err(e) => return error(&e),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    let app = app.to_string();
    let platform = state.platform.clone();
    tokio::spawn(async move {
        let mut sent = Sent::default();
        for record in &stored_now {
            sent.insert(record.id);
        }
        for record in &replay {
            sent.insert(record.id);
            if tx.send(record_event(record)).await.is_err() {
                return;
            }
        }
        if replay.len() >= MAX_LOGS {
            // More were missed than one replay holds: say so, as for a
            // follower that lagged.
            let gap = sse::comment("more executions were missed than can be replayed");
            if tx.send(gap.into()).await.is_err() {
                return;
            }
        }
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        let mut poll = tokio::time::interval(FOLLOW_POLL);
        poll.tick().await;
        loop {
            let events: Vec<bytes::Bytes> = tokio::select! {
                record = records.recv() => match record {
                    Ok(r) if r.app == app
                        && function.as_ref().is_none_or(|f| *f == r.function)
                        && sent.insert(r.id) => vec![record_event(&r)],
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        vec![sse::comment(&format!("{n} executions skipped")).into()]
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = poll.tick() => {
                    // Executions of the other hosts on the same stores
                    // reach this one only through the store.
                    let stored = platform
                        .logs(&app, function.as_deref(), FOLLOW_POLL_LIMIT)
                        .await
                        .unwrap_or_default();
                    stored
                        .iter()
                        .filter(|r| sent.insert(r.id))
                        .map(record_event)
                        .collect()
                }
                _ = keepalive.tick() => vec![sse::comment("keep-alive").into()],
            };
            for event in events {
                if tx.send(event).await.is_err() {
                    return;
                }
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

fn record_event(record: &ExecutionRecord) -> bytes::Bytes {
    let data = serde_json::to_string(record).unwrap_or_default();
    sse::event(record.id, &data).into()
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
