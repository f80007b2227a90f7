//! Serving one HTTP request with a web function through `wasi:http`: the
//! request handed to the guest, its handler run in the caller's task
//! until it answers, then detached while it streams (`body.rs` holds the
//! body adapters).

use crate::app::{LoadedApp, Trigger};
use crate::error::Error;
use crate::pool::{Instance, Lease, Pool};
use bytes::Bytes;
use http::HeaderValue;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

mod body;

pub(crate) use body::discard;
use body::{CappedBody, settle};

/// The header in which the host tells the guest which web function a
/// request is for, when the app has several (see `wit/modal.wit`). A
/// client's own is always removed.
pub(crate) const FUNCTION_HEADER: &str = "modal-function";

/// The body of a web function's response, streamed from the guest.
pub type WebBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A web function's response.
pub type WebResponse = hyper::Response<WebBody>;

/// An id for the failure of a web request, set by the caller as a request
/// extension: when the execution fails, a line with it is added to the
/// execution's logs, so the id in an error answer leads to the logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorId(pub String);

impl LoadedApp {
    /// Serves `request` with the web function `function`. The response is
    /// returned as soon as the guest sets it; its body streams while the
    /// guest keeps writing. The execution is recorded when the guest's
    /// handler returns.
    pub async fn serve_http<B>(
        &self,
        function: &str,
        mut request: hyper::Request<B>,
    ) -> Result<WebResponse, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let error_id = request.extensions_mut().remove::<ErrorId>();
        self.try_serve_http(function, request, error_id)
            .await
            .map_err(|(e, _)| e)
    }

    /// Like [`serve_http`](Self::serve_http), but when this version no
    /// longer takes requests (it was just replaced) the untouched request
    /// comes back with the error, so the caller can retry on the new one.
    pub(crate) async fn try_serve_http<B>(
        &self,
        function: &str,
        request: hyper::Request<B>,
        error_id: Option<ErrorId>,
    ) -> Result<WebResponse, (Error, Option<Box<hyper::Request<B>>>)>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let started_at = SystemTime::now();
        let start = Instant::now();
        let (name, pool) = match self.pool(function) {
            Ok((name, pool)) => (name.clone(), pool.clone()),
            Err(e) => return Err((e, None)),
        };
        if !pool.web {
            let e = Error::WrongKind(format!(
                "`{function}` is not a web function: call it with `modal call` instead"
            ));
            return Err((e, None));
        }
        let limit = self.inner.max_request_body;
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            discard(request.into_body()).await;
            return Err((
                Error::TooLarge {
                    limit: limit as usize,
                },
                None,
            ));
        }
        let lease = match pool.checkout().await {
            Ok(lease) => lease,
            Err(e @ Error::ShuttingDown(_)) => return Err((e, Some(Box::new(request)))),
            Err(e) => return Err((e, None)),
        };
        let timing = (started_at, start);
        self.serve_leased(&name, (pool, lease), request, error_id, timing)
            .await
            .map_err(|e| (e, None))
    }

    async fn serve_leased<B>(
        &self,
        name: &Arc<str>,
        (pool, mut lease): (Arc<Pool>, Lease),
        request: hyper::Request<B>,
        error_id: Option<ErrorId>,
        (started_at, start): (SystemTime, Instant),
    ) -> Result<WebResponse, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let function: &str = name;
        let line = crate::app::RequestLine {
            method: request.method().clone(),
            uri: request.uri().clone(),
        };
        let (request, head_request, exceeded) = self.guest_request(&pool, request);
        let timeout = pool.settings.timeout;
        let (sender, mut receiver) = tokio::sync::oneshot::channel();
        let instance = lease.instance();
        instance.begin(timeout);
        instance.store.data_mut().frame = crate::sandbox::Frame {
            app: Some(self.clone()),
            ..Default::default()
        };
        let handed = {
            let mut http = instance.store.data_mut().http();
            http.new_incoming_request(Scheme::Http, request)
                .and_then(|incoming| Ok((incoming, http.new_response_outparam(sender)?)))
        };
        let handed = match handed {
            Ok(handed) => handed,
            Err(e) => return Err(handover_failed(function, &pool, lease, &e)),
        };
        let Some(proxy) = lease.instance().proxy.take() else {
            return Err(no_handler(function));
        };

        // The handler runs in this task until it sets the response; if it
        // then keeps writing the body it moves to a task of its own. Most
        // handlers finish in their first poll, so they cost no spawn and no
        // wake-up of another worker thread.
        let handler = run_handler(self.clone(), name.clone(), lease, proxy, handed, timeout);
        let ending = Ending {
            app: self.clone(),
            pool: pool.clone(),
            name: name.clone(),
            started_at,
            start,
            error_id,
            line,
        };
        let mut run = Detached::new(handler, ending, pool.prepared.clone());
        let too_large = || Error::TooLarge {
            limit: self.inner.max_request_body as usize,
        };
        let handled = match first_answer(&mut run, &mut receiver).await {
            First::Returned(handled) => handled,
            First::Head(Ok(head)) => {
                // The head is ready while the handler still writes the body.
                let status = match &head {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 500,
                };
                run.detach(status);
                if exceeded.load(Ordering::Acquire) {
                    // A guest that answers after its body was cut off
                    // answers the failed read: the client is told why.
                    return Err(too_large());
                }
                return head.map_err(|code| answered_with(function, code));
            }
            // The guest dropped the response without setting it.
            First::Head(Err(_)) => std::future::poll_fn(|cx| run.poll(cx)).await,
        };
        let head = receiver.try_recv().ok();
        let exceeded = exceeded.load(Ordering::Acquire).then(too_large);
        conclude(function, run, handled, head, exceeded, head_request)
    }

    /// The request as the guest sees it: the function header set (or a
    /// client's own removed), a Host when there is none, the body capped
    /// at the limit. Also whether it is a HEAD request, and the flag set
    /// when the body passed the limit.
    fn guest_request<B>(
        &self,
        pool: &Pool,
        request: hyper::Request<B>,
    ) -> (hyper::Request<CappedBody<B>>, bool, Arc<AtomicBool>) {
        let (mut parts, body) = request.into_parts();
        let head_request = parts.method == http::Method::HEAD;
        match &pool.header {
            Some(name) => drop(parts.headers.insert(FUNCTION_HEADER, name.clone())),
            None => drop(parts.headers.remove(FUNCTION_HEADER)),
        }
        if !parts.headers.contains_key(http::header::HOST) && parts.uri.authority().is_none() {
            parts
                .headers
                .insert(http::header::HOST, HeaderValue::from_static("localhost"));
        }
        let exceeded = Arc::new(AtomicBool::new(false));
        let body = CappedBody {
            inner: body,
            left: self.inner.max_request_body,
            limit: self.inner.max_request_body,
            exceeded: exceeded.clone(),
        };
        (
            hyper::Request::from_parts(parts, body),
            head_request,
            exceeded,
        )
    }
}

/// What a guest's handler leaves: its lease and how it ended.
type Handled = (Lease, Result<(), Error>);

/// A guest's handler, run until it returns.
type HandlerRun = Pin<Box<dyn Future<Output = Handled> + Send>>;

/// The end of one web execution: check-in and record.
struct Ending {
    app: LoadedApp,
    pool: Arc<Pool>,
    name: Arc<str>,
    started_at: SystemTime,
    start: Instant,
    error_id: Option<ErrorId>,
    line: crate::app::RequestLine,
}

impl Ending {
    /// Checks the instance in (dropped unless it answered and stayed
    /// healthy) and records the execution with the HTTP status the client
    /// got. Returns the execution's error, if any.
    fn finish(self, (mut lease, outcome): Handled, status: Option<u16>) -> Result<(), Error> {
        let frame = std::mem::take(&mut lease.instance().store.data_mut().frame);
        let mut logs = lease.instance().take_logs();
        let secrets = &self.app.inner.meta.secrets;
        let outcome = outcome.map_err(|e| secrets.mask_error(crate::trap::refine(e, &logs)));
        if let (Err(e), Some(ErrorId(id))) = (&outcome, &self.error_id) {
            logs.push_str(&format!("[modal] error {id}: {e}\n"));
        }
        // An instance that trapped, or returned without answering, is not
        // trusted with another request (some toolchains' guests answer
        // only once per instance).
        let healthy = match &outcome {
            Err(e) => !e.poisons_instance() && !matches!(e, Error::NoResponse { .. }),
            Ok(()) => true,
        };
        let cold = lease.fresh;
        let memory = lease.instance().memory_size();
        // Recorded before the instance goes back (see `LoadedApp::execute`).
        let pool = self.pool.clone();
        let ran = Ran {
            logs,
            cold,
            memory,
            status,
            frame,
        };
        let outcome = self.record(outcome.map(|()| Vec::new()), ran);
        pool.checkin(lease, healthy);
        outcome
    }

    /// Records an execution whose client went away before the response:
    /// the guest was stopped and its instance dropped.
    fn cancelled(self) {
        let e = Error::Cancelled {
            function: self.name.to_string(),
            reason: "the client went away before the response".into(),
        };
        let _ = self.record(Err(e), Ran::default());
    }

    fn record(self, outcome: Result<Vec<u8>, Error>, ran: Ran) -> Result<(), Error> {
        let Ending {
            app,
            name,
            started_at,
            start,
            line,
            ..
        } = self;
        let Ran {
            logs,
            cold,
            memory,
            status,
            frame,
        } = ran;
        let mut execution =
            app.execution(&name, Trigger::Web, started_at, start, outcome, logs, cold);
        execution.memory = memory;
        execution.http_status = status;
        execution.request = Some(line);
        // A handler that called other functions is the root of their tree.
        execution.call_id = frame.call_id;
        execution.root_call_id = frame.root_call_id;
        app.record(&execution);
        execution.outcome.map(drop)
    }
}

/// What a web execution left besides its outcome.
#[derive(Default)]
struct Ran {
    logs: String,
    cold: bool,
    memory: usize,
    status: Option<u16>,
    frame: crate::sandbox::Frame,
}

/// A guest handler run in the caller's task. When the caller stops polling
/// it after the response head was sent (its body streams) it moves to a
/// task of its own and runs to its end; when the caller goes away before
/// that (the client left), the guest is stopped, its instance dropped and
/// the execution recorded as cancelled.
struct Detached {
    future: Option<HandlerRun>,
    ending: Option<Ending>,
    /// Where the rest runs: the host's runtime, which outlives connection
    /// threads, so the platform's shutdown waits for it.
    prepared: Arc<crate::pool::Prepared>,
}

impl Detached {
    fn new(
        future: impl Future<Output = Handled> + Send + 'static,
        ending: Ending,
        prepared: Arc<crate::pool::Prepared>,
    ) -> Self {
        Detached {
            future: Some(Box::pin(future)),
            ending: Some(ending),
            prepared,
        }
    }

    /// Polls the handler; pending forever once it has returned.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Handled> {
        let Some(future) = self.future.as_mut() else {
            return Poll::Pending;
        };
        let done = future.as_mut().poll(cx);
        if done.is_ready() {
            self.future = None;
        }
        done
    }

    /// Checks in and records a handler that has returned.
    fn finish(&mut self, handled: Handled, status: Option<u16>) -> Result<(), Error> {
        match self.ending.take() {
            Some(ending) => ending.finish(handled, status),
            None => Ok(()),
        }
    }

    /// Lets the rest run in a task of its own; the client was answered
    /// with `status`.
    fn detach(&mut self, status: u16) {
        if let (Some(future), Some(ending)) = (self.future.take(), self.ending.take()) {
            self.prepared.spawn(async move {
                let handled = future.await;
                let _ = ending.finish(handled, Some(status));
            });
        }
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        // Still running with no answer sent: the client went away.
        if let Some(future) = self.future.take() {
            drop(future);
            if let Some(ending) = self.ending.take() {
                ending.cancelled();
            }
        }
    }
}

/// The request and response resources handed to the guest.
type Handed = (
    Resource<wasmtime_wasi_http::p2::types::HostIncomingRequest>,
    Resource<wasmtime_wasi_http::p2::types::HostResponseOutparam>,
);

/// Runs the guest's handler on the leased instance until it returns, its
/// timeout passes or its version is cancelled; gives the lease back with
/// the outcome.
async fn run_handler(
    app: LoadedApp,
    name: Arc<str>,
    mut lease: Lease,
    proxy: Proxy,
    (incoming, outparam): Handed,
    timeout: Duration,
) -> (Lease, Result<(), Error>) {
    let instance: &mut Instance = lease.instance();
    let handle =
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut instance.store, incoming, outparam);
    // Polling the handler first means one that finishes at once never
    // registers the timer or the cancellation waiter.
    let result = tokio::select! {
        biased;
        result = handle => Ok(Ok(result)),
        () = tokio::time::sleep(timeout) => Ok(Err(())),
        reason = app.inner.cancel.cancelled() => Err(reason.to_string()),
    };
    instance.proxy = Some(proxy);
    let function = name.to_string();
    let outcome = match result {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(trap))) => Err(crate::trap::classify(trap, instance, &function, timeout)),
        Ok(Err(())) => Err(Error::Timeout {
            function,
            limit: timeout,
        }),
        Err(reason) => Err(Error::Cancelled { function, reason }),
    };
    (lease, outcome)
}

/// The handler has returned: settles what the client gets, then checks
/// the instance in and records the execution with it. `exceeded` is set
/// when the request body passed its limit.
fn conclude(
    function: &str,
    mut run: Detached,
    (lease, outcome): Handled,
    head: Option<Result<WebResponse, ErrorCode>>,
    exceeded: Option<Error>,
    head_request: bool,
) -> Result<WebResponse, Error> {
    let (outcome, answer) = match exceeded {
        Some(too_large) => (Err(too_large), None),
        None => settle_answer(function, outcome, head),
    };
    let status = match (&answer, &outcome) {
        (Some(response), _) => response.status().as_u16(),
        (None, Err(e)) => e.http_status(),
        (None, Ok(())) => 500,
    };
    let outcome = run.finish((lease, outcome), Some(status));
    match (answer, outcome) {
        // A handler that has finished has written its whole body: it goes
        // out with its length, in one piece, instead of chunked.
        (Some(response), Ok(())) if !head_request => Ok(settle(response)),
        (Some(response), _) => Ok(response),
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Err(Error::NoResponse {
            function: function.to_string(),
        }),
    }
}

/// The head the handler set, or the error it set instead; `Err` when it
/// dropped the response without setting it.
type Head = Result<Result<WebResponse, ErrorCode>, tokio::sync::oneshot::error::RecvError>;

/// What comes first from a running handler.
enum First {
    /// It returned (its body, if any, is all written).
    Returned(Handled),
    /// It set the head (or dropped the response) and may still write.
    Head(Head),
}

/// Polls the handler until it returns or sets the response head.
async fn first_answer(
    run: &mut Detached,
    receiver: &mut tokio::sync::oneshot::Receiver<Result<WebResponse, ErrorCode>>,
) -> First {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(handled) = run.poll(cx) {
            return Poll::Ready(First::Returned(handled));
        }
        Pin::new(&mut *receiver).poll(cx).map(First::Head)
    })
    .await
}

/// A component without a `wasi:http` handler asked to serve HTTP.
fn no_handler(function: &str) -> Error {
    Error::WrongKind(format!(
        "`{function}` cannot serve HTTP: the component has no `wasi:http/incoming-handler` export"
    ))
}

/// What a request that could not be handed to the guest fails with; the
/// instance goes back to its pool. The guest has not run: a request it
/// cannot be given (an unreadable Host, say) leaves the instance as it
/// was; one whose resources no longer fit its table drops it.
fn handover_failed(function: &str, pool: &Pool, lease: Lease, e: &wasmtime::Error) -> Error {
    let full = crate::trap::holds_too_many_resources(e);
    pool.checkin(lease, !full);
    if full {
        Error::MemoryLimit {
            function: function.to_string(),
            limit: pool.prepared.memory_limit,
        }
    } else {
        Error::BadInput(format!("the request cannot be handed to the guest: {e:#}"))
    }
}

/// A handler that set an error code instead of a response.
fn answered_with(function: &str, code: ErrorCode) -> Error {
    Error::Failed {
        function: function.to_string(),
        message: format!("the handler answered with error {code:?}"),
    }
}

/// The outcome of a handler that has returned and the response the client
/// gets, if any, from what it returned and the head it set.
fn settle_answer(
    function: &str,
    outcome: Result<(), Error>,
    head: Option<Result<WebResponse, ErrorCode>>,
) -> (Result<(), Error>, Option<WebResponse>) {
    match (outcome, head) {
        (outcome, Some(Ok(response))) => (outcome, Some(response)),
        (Ok(()), Some(Err(code))) => (Err(answered_with(function, code)), None),
        (Ok(()), None) => (
            Err(Error::NoResponse {
                function: function.to_string(),
            }),
            None,
        ),
        (Err(e), _) => (Err(e), None),
    }
}
