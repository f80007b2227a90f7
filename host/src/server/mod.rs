//! The HTTP front of `modal server`: one listener for the control API
//! (token required), web endpoints routed by deployment name (public), and
//! health. HTTP/1.1 with keep-alive and HTTP/2 (h2c) on the same port.

mod api;
mod auth;
mod batched;
mod conn;
mod cpus;
mod pages;
mod web;

pub use auth::{TOKEN_FILE, load_or_create_token, new_token};
pub use conn::default_max_connections;

/// A request's body as the handlers read it: fails when it stalls.
pub(crate) type RequestBody = conn::TimedBody;

use crate::platform::Platform;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Time a client has to send a request's headers; a slower client is cut
/// off so that it cannot hold a connection (slowloris).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a graceful shutdown waits for requests in progress.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Longest wait for the next piece of a request body before the request
/// ends with 408 (a client trickling its body cannot hold a request).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Interval of HTTP/2 keep-alive pings, and how long an answer may take
/// before the connection is closed as dead.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// A response body: buffered JSON or a guest's streamed body.
pub type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Settings of the HTTP front.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The control API token.
    pub token: String,
    /// The domain under which web endpoints are reached:
    /// `{app}--{function}.{domain}`.
    pub domain: String,
    /// Time a client has to send request headers; also bounds the wait
    /// for a new connection's first request (either protocol).
    pub header_read_timeout: Duration,
    /// Longest stall while reading a request body (then 408).
    pub body_timeout: Duration,
    /// Connections open at once; past it idle ones are shed, oldest first.
    pub max_connections: usize,
    /// An app whose single web function also answers at the root of the
    /// bare address (what `modal serve` sets).
    pub root_app: Option<String>,
    /// Pins the connection threads one per CPU (when the process owns
    /// exactly one CPU per thread) and gives each connection to the thread
    /// on the CPU its packets arrive on; off, the kernel places them and
    /// connections are shared out evenly.
    pub pin_threads: bool,
}

impl ServerConfig {
    /// The defaults, with `token` for the control API: domain
    /// `localhost`, the default timeouts, and a connection cap from the
    /// file-descriptor limit ([`default_max_connections`]).
    pub fn new(token: String) -> ServerConfig {
        ServerConfig {
            token,
            domain: "localhost".into(),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: default_max_connections(),
            root_app: None,
            pin_threads: true,
        }
    }
}

pub(crate) struct State {
    pub(crate) platform: Platform,
    /// Logged-in page sessions by id.
    sessions: std::sync::Mutex<std::collections::HashMap<String, pages::Session>>,
    /// The execution totals the apps list last read.
    pub(crate) totals: pages::Totals,
    pub(crate) config: ServerConfig,
    /// The address clients reach the server at, for URLs in responses.
    pub(crate) addr: SocketAddr,
}

impl State {
    pub(crate) fn sessions(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, pages::Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Base URL of the control API and pages.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of a web function.
    pub(crate) fn web_url(&self, app: &str, function: &str) -> String {
        let label = crate::spec::web_label(function);
        format!(
            "http://{app}--{label}.{}:{}/",
            self.config.domain,
            self.addr.port()
        )
    }
}

/// A bound, running server.
pub struct Server {
    state: Arc<State>,
    listener: TcpListener,
}

impl Server {
    /// Wraps a bound listener.
    pub fn new(
        platform: Platform,
        listener: TcpListener,
        config: ServerConfig,
    ) -> std::io::Result<Server> {
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Ok(Server {
            state: Arc::new(State {
                platform,
                sessions: Default::default(),
                totals: Default::default(),
                config,
                addr,
            }),
            listener,
        })
    }

    /// The address clients reach it at.
    pub fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    /// Serves until `shutdown` resolves, then stops accepting, waits for
    /// requests in progress and shuts the platform down ([`Platform::
    /// shutdown`]), all within `grace` in total; then closes what is left.
    pub async fn run(self, shutdown: impl Future<Output = ()>, grace: Duration) {
        let graceful = Arc::new(GracefulShutdown::new());
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let placement = Arc::new(cpus::Placement::new(threads, self.state.config.pin_threads));
        let lanes: Vec<Lane> = (0..threads)
            .filter_map(|i| Lane::start(i, self.state.clone(), placement.clone()))
            .collect();
        // A lane that could not start shifts the ones after it: connections
        // then go to the least busy lane, whatever their CPU.
        let placement = (lanes.len() == threads).then_some(placement);
        let acceptor = Acceptor {
            state: self.state.clone(),
            graceful: graceful.clone(),
            lanes: lanes
                .iter()
                .map(|lane| (lane.sender.clone(), Arc::new(AtomicUsize::new(0))))
                .collect(),
            placement,
            connections: conn::Connections::new(self.state.config.max_connections),
            main: tokio::runtime::Handle::current(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        match Acceptor::start(acceptor, self.listener, stopped) {
            Ok(thread) => {
                shutdown.await;
                let _ = stop.send(());
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            Err(e) => tracing::error!("could not start the accept thread; not serving: {e}"),
        }
        let deadline = tokio::time::Instant::now() + grace;
        match Arc::try_unwrap(graceful) {
            Ok(graceful) => {
                if tokio::time::timeout_at(deadline, graceful.shutdown())
                    .await
                    .is_err()
                {
                    tracing::warn!("grace period over; closing connections still open");
                }
            }
            Err(_) => tracing::warn!("connections were still being accepted at shutdown"),
        }
        // The platform stops while the lanes still run: work that started
        // on a lane (a streaming web handler and its timers) ends there
        // normally, cancelled and recorded, never on a dropped runtime.
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.state.platform.shutdown(remaining).await;
        // Closing their channels ends the lanes; each drops its open
        // connections (cancelling the executions still waiting for an
        // answer, which are recorded) before its thread ends.
        let threads: Vec<_> = lanes.into_iter().map(|lane| lane.thread).collect();
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        });
        if tokio::time::timeout(LANE_STOP, joined).await.is_err() {
            tracing::warn!("connection threads did not stop in time");
        }
    }
}

/// The accept loop, on a thread of its own (with a runtime of its own), so
/// that guests computing on the platform's runtime never delay accepting a
/// connection: each accepted connection goes to a lane (`cpus::pick`).
struct Acceptor {
    state: Arc<State>,
    graceful: Arc<GracefulShutdown>,
    /// Each lane's channel and the connections it holds.
    lanes: Vec<(LaneSender, Arc<AtomicUsize>)>,
    /// Where the lanes run, when every lane started.
    placement: Option<Arc<cpus::Placement>>,
    connections: Arc<conn::Connections>,
    /// Serves connections when no lane could start.
    main: tokio::runtime::Handle,
}

impl Acceptor {
    fn start(
        self,
        listener: TcpListener,
        stopped: tokio::sync::oneshot::Receiver<()>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let listener = listener.into_std()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("modal-accept".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => self.run(listener, stopped).await,
                        Err(e) => tracing::error!("could not take over the listener: {e}"),
                    }
                });
            })
    }

    async fn run(self, listener: TcpListener, mut stopped: tokio::sync::oneshot::Receiver<()>) {
        let open: Vec<Arc<AtomicUsize>> = self.lanes.iter().map(|(_, n)| n.clone()).collect();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = &mut stopped => return,
            };
            let (stream, _) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // E.g. out of file descriptors: free one if an idle
                    // connection holds it, and back off instead of spinning.
                    let shed = self.connections.shed_idle();
                    tracing::warn!(shed, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(if shed { 5 } else { 50 })).await;
                    continue;
                }
            };
            let Some(admitted) = self.connections.admit() else {
                tracing::warn!(
                    "connection limit reached with every connection busy; a new one is closed"
                );
                continue;
            };
            let _ = stream.set_nodelay(true);
            // Hand the connection to its lane; serve it on the main
            // runtime when there is none (a lane that cannot start is
            // logged and skipped).
            let preferred = (self.placement.as_deref()).and_then(|p| cpus::preferred(p, &stream));
            let chosen = cpus::pick(preferred, &open);
            let Some((lane, count)) = self.lanes.get(chosen) else {
                let handover = (self.graceful.watcher(), admitted, cpus::Seat::none());
                self.main
                    .spawn(serve_connection(self.state.clone(), stream, handover));
                continue;
            };
            let handover = (self.graceful.watcher(), admitted, cpus::Seat::take(count));
            match stream.into_std() {
                Ok(stream) => {
                    if lane.send((stream, handover)).is_err() {
                        tracing::warn!("a connection thread is gone; a connection is dropped");
                    }
                }
                Err(e) => tracing::warn!("could not hand a connection over: {e}"),
            }
        }
    }
}

/// What a lane gets with an accepted connection: the graceful-shutdown
/// watcher, its place under the connection cap and in its lane's count.
type Handover = (Watcher, conn::Admitted, cpus::Seat);

/// Where the acceptor hands a lane its connections.
type LaneSender = tokio::sync::mpsc::UnboundedSender<(std::net::TcpStream, Handover)>;

/// A thread with its own single-threaded runtime serving the connections
/// handed to it: each request is parsed, run and answered on one thread,
/// with no work stealing and no wake-ups across threads.
struct Lane {
    sender: LaneSender,
    thread: std::thread::JoinHandle<()>,
}

/// How long a stopping server waits for its connection threads to drop
/// the connections still open (and record the executions they cut).
const LANE_STOP: Duration = Duration::from_secs(2);

impl Lane {
    fn start(i: usize, state: Arc<State>, placement: Arc<cpus::Placement>) -> Option<Lane> {
        // tokio's default event interval: a lane looks at its sockets after
        // up to 61 task polls, so under load one look finds many ready
        // connections. A computing guest does not stretch that to 61 epoch
        // ticks: its yield lets the lane look first (see `sandbox`).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| tracing::warn!("could not start connection thread {i}: {e}"))
            .ok()?;
        let (sender, mut handed) =
            tokio::sync::mpsc::unbounded_channel::<(std::net::TcpStream, Handover)>();
        let thread = std::thread::Builder::new()
            .name(format!("modal-http-{i}"))
            .spawn(move || {
                placement.enter(i);
                runtime.block_on(async move {
                    while let Some((stream, handover)) = handed.recv().await {
                        match TcpStream::from_std(stream) {
                            Ok(stream) => {
                                tokio::spawn(serve_connection(state.clone(), stream, handover));
                            }
                            Err(e) => tracing::warn!("could not take over a connection: {e}"),
                        }
                    }
                });
            })
            .map_err(|e| tracing::warn!("could not start connection thread {i}: {e}"))
            .ok()?;
        Some(Lane { sender, thread })
    }
}

/// Serves HTTP/1.1 (keep-alive) and h2c on one connection until it
/// closes, is shed for a newer one, or sends no request in time.
async fn serve_connection(
    state: Arc<State>,
    stream: TcpStream,
    (watcher, admitted, _seat): Handover,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout)
        // One buffer per response instead of a vectored write of its
        // pieces: cheaper in the kernel for the small answers of most
        // endpoints; large bodies still go out as they stream.
        .writev(false)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE);
    let first_request = state.config.header_read_timeout;
    let conn = admitted.conn.clone();
    let service = service_fn(move |req| {
        let state = state.clone();
        let request = conn.request();
        async move {
            // The request counts as in progress until its response body
            // has been sent (or dropped): a streaming answer is never shed
            // as idle.
            let response = route(&state, req).await.map(|body| {
                // A body of known length goes out with the head (no box
                // needed on the hot path); one that streams keeps the guard.
                if hyper::body::Body::size_hint(&body).exact().is_some() {
                    drop(request);
                    body
                } else {
                    conn::Guarded::new(body, request).boxed_unsync()
                }
            });
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let served = builder
        .serve_connection_with_upgrades(TokioIo::new(batched::Batched::new(stream)), service);
    tokio::select! {
        result = watcher.watch(served.into_owned()) => {
            if let Err(e) = result {
                tracing::debug!("connection ended: {e}");
            }
        }
        () = admitted.conn.closing(first_request) => {}
    }
}

async fn route(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let mut hosts = req.headers().get_all(hyper::header::HOST).iter();
    if hosts.next().is_some_and(|h| h.to_str().is_err()) {
        return text(StatusCode::BAD_REQUEST, "the Host header is not ASCII\n");
    }
    if hosts.next().is_some() {
        // RFC 9112 §3.2: a request with more than one Host is rejected.
        return text(StatusCode::BAD_REQUEST, "more than one Host header\n");
    }
    // A public form is small: it must arrive whole within the body
    // timeout, so a client trickling it cannot hold a request.
    let form =
        is_page(req.uri().path()) && web::target_from_host(&req, &state.config.domain).is_none();
    let (parts, body) = req.into_parts();
    let (mut body, stalled) = conn::TimedBody::new(body, state.config.body_timeout);
    if form {
        body = body.within(state.config.body_timeout);
    }
    let response = dispatch(state, Request::from_parts(parts, body)).await;
    if stalled.load(std::sync::atomic::Ordering::Acquire) {
        let mut timeout = text(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body stalled for more than {:?}\n",
                state.config.body_timeout
            ),
        );
        timeout.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
        return timeout;
    }
    response
}

async fn dispatch(state: &Arc<State>, req: Request<RequestBody>) -> Response<Body> {
    if let Some((app, function)) = web::target_from_host(&req, &state.config.domain) {
        return web::serve(state, &app, &function, req, None).await;
    }
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        return text(StatusCode::OK, "ok\n");
    }
    if path == "/metrics" {
        let mut response = text(StatusCode::OK, state.platform.metrics());
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return response;
    }
    if let Some(rest) = path.strip_prefix("/web/") {
        return web::serve_path(state, rest, req).await;
    }
    if is_page(&path) {
        return on_platform(state, move |state| async move {
            match pages::handle(&state, &path, req).await {
                Some(response) => response,
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            }
        })
        .await;
    }
    if let Some(rest) = path.strip_prefix("/api/v1/") {
        if let Some(response) = auth::reject(&req, &state.config.token) {
            return response;
        }
        let rest = rest.to_string();
        return on_platform(state, move |state| async move {
            api::handle(&state, &rest, req).await
        })
        .await;
    }
    if let Some(app) = &state.config.root_app {
        return web::serve_root(state, app, req).await;
    }
    if pages::wants_html(&req) {
        // A browser gets the styled page, with the way to the apps.
        return pages::not_found();
    }
    text(
        StatusCode::NOT_FOUND,
        "not found: the control API is under /api/v1/, web endpoints at http://{app}--{function}.{domain}/ or /web/{app}/{function}/\n",
    )
}

/// Whether `path` is one of the server-rendered pages.
fn is_page(path: &str) -> bool {
    path == "/apps" || path.starts_with("/apps/") || path == "/login" || path == "/logout"
}

/// Runs the control API and the pages on the platform's runtime, whose
/// worker threads share the load: a deploy runs `describe` and starts warm
/// instances, a listing serializes every app, and a spawned call's
/// background work belongs there; none of it may stall the web requests of
/// a connection thread. (Storage queries themselves run on the blocking
/// pool.)
async fn on_platform<F, Fut>(state: &Arc<State>, handle: F) -> Response<Body>
where
    F: FnOnce(Arc<State>) -> Fut,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    match state.platform.runtime().spawn(handle(state.clone())).await {
        Ok(response) => response,
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request failed: {e}\n"),
        ),
    }
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(full(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|e| {
        format!("{{\"error\":{{\"kind\":\"internal\",\"message\":\"{e}\"}}}}").into_bytes()
    });
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
