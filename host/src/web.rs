//! Serving one HTTP request with a web function through `wasi:http`.

use crate::app::{LoadedApp, Trigger};
use crate::error::Error;
use crate::pool::{Instance, Lease, Pool};
use bytes::Bytes;
use http::HeaderValue;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

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
        let (request, head_request, exceeded) = self.guest_request(&pool, request);
        let timeout = pool.settings.timeout;
        let (sender, mut receiver) = tokio::sync::oneshot::channel();
        let instance = lease.instance();
        instance.begin(timeout);
        let handed = {
            let mut http = instance.store.data_mut().http();
            http.new_incoming_request(Scheme::Http, request)
                .and_then(|incoming| Ok((incoming, http.new_response_outparam(sender)?)))
        };
        let (incoming, outparam) = match handed {
            Ok(handed) => handed,
            Err(e) => {
                // The guest has not run: a request it cannot be given (an
                // unreadable Host, say) leaves the instance as it was; one
                // whose resources no longer fit its table drops it.
                let full = crate::app::holds_too_many_resources(&e);
                pool.checkin(lease, !full);
                return Err(if full {
                    Error::MemoryLimit {
                        function: function.to_string(),
                        limit: pool.prepared.memory_limit,
                    }
                } else {
                    Error::BadInput(format!("the request cannot be handed to the guest: {e:#}"))
                });
            }
        };
        let instance = lease.instance();
        let Some(proxy) = instance.proxy.take() else {
            return Err(Error::WrongKind(format!(
                "`{function}` cannot serve HTTP: the component has no `wasi:http/incoming-handler` export"
            )));
        };

        // The handler runs in this task until it sets the response; if it
        // then keeps writing the body it moves to a task of its own. Most
        // handlers finish in their first poll, so they cost no spawn and no
        // wake-up of another worker thread.
        let cancel = self.clone();
        let handler_name = name.clone();
        let handler = async move {
            let instance: &mut Instance = lease.instance();
            let handle = proxy.wasi_http_incoming_handler().call_handle(
                &mut instance.store,
                incoming,
                outparam,
            );
            // Polling the handler first means one that finishes at once
            // never registers the timer or the cancellation waiter.
            let result = tokio::select! {
                biased;
                result = handle => Ok(Ok(result)),
                () = tokio::time::sleep(timeout) => Ok(Err(())),
                reason = cancel.inner.cancel.cancelled() => Err(reason.to_string()),
            };
            instance.proxy = Some(proxy);
            let name = handler_name.to_string();
            let outcome = match result {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(trap))) => Err(crate::app::classify(trap, instance, &name, timeout)),
                Ok(Err(_)) => Err(Error::Timeout {
                    function: name,
                    limit: timeout,
                }),
                Err(reason) => Err(Error::Cancelled {
                    function: name,
                    reason,
                }),
            };
            (lease, outcome)
        };
        let ending = Ending {
            app: self.clone(),
            pool: pool.clone(),
            name: name.clone(),
            started_at,
            start,
            error_id,
        };
        let mut run = Detached::new(handler, ending, pool.prepared.clone());
        let first = std::future::poll_fn(|cx| {
            if let Poll::Ready(handled) = run.poll(cx) {
                return Poll::Ready(Ok(handled));
            }
            Pin::new(&mut receiver).poll(cx).map(Err)
        })
        .await;
        let too_large = || Error::TooLarge {
            limit: self.inner.max_request_body as usize,
        };
        let handled = match first {
            Ok(handled) => handled,
            Err(Ok(head)) => {
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
                return head.map_err(|code| Error::Failed {
                    function: function.to_string(),
                    message: format!("the handler answered with error {code:?}"),
                });
            }
            // The guest dropped the response without setting it.
            Err(Err(_)) => std::future::poll_fn(|cx| run.poll(cx)).await,
        };
        // The handler has returned: settle what the client gets, then
        // check the instance in and record the execution with it.
        let (lease, outcome) = handled;
        let head = receiver.try_recv().ok();
        let (outcome, answer) = match (outcome, head) {
            _ if exceeded.load(Ordering::Acquire) => (Err(too_large()), None),
            (outcome, Some(Ok(response))) => (outcome, Some(response)),
            (Ok(()), Some(Err(code))) => (
                Err(Error::Failed {
                    function: function.to_string(),
                    message: format!("the handler answered with error {code:?}"),
                }),
                None,
            ),
            (Ok(()), None) => (
                Err(Error::NoResponse {
                    function: function.to_string(),
                }),
                None,
            ),
            (Err(e), _) => (Err(e), None),
        };
        let status = match (&answer, &outcome) {
            (Some(response), _) => response.status().as_u16(),
            (None, Err(e)) => e.http_status(),
            (None, Ok(())) => 500,
        };
        let outcome = run.finish((lease, outcome), Some(status));
        match (answer, outcome) {
            // A handler that has finished has written its whole body: it
            // goes out with its length, in one piece, instead of chunked.
            (Some(response), Ok(())) if !head_request => Ok(settle(response)),
            (Some(response), _) => Ok(response),
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Err(Error::NoResponse {
                function: function.to_string(),
            }),
        }
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
}

impl Ending {
    /// Checks the instance in (dropped unless it answered and stayed
    /// healthy) and records the execution with the HTTP status the client
    /// got. Returns the execution's error, if any.
    fn finish(self, (mut lease, outcome): Handled, status: Option<u16>) -> Result<(), Error> {
        let mut logs = lease.instance().take_logs();
        let outcome = outcome.map_err(|e| crate::app::refine(e, &logs));
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
        let outcome = self.record(outcome.map(|()| Vec::new()), logs, cold, memory, status);
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
        let _ = self.record(Err(e), String::new(), false, 0, None);
    }

    fn record(
        self,
        outcome: Result<Vec<u8>, Error>,
        logs: String,
        cold: bool,
        memory: usize,
        status: Option<u16>,
    ) -> Result<(), Error> {
        let Ending {
            app,
            name,
            started_at,
            start,
            ..
        } = self;
        let mut execution =
            app.execution(&name, Trigger::Web, started_at, start, outcome, logs, cold);
        execution.memory = memory;
        execution.http_status = status;
        app.record(&execution);
        execution.outcome.map(drop)
    }
}

/// Largest finished body sent with its length rather than chunked.
const SETTLE_LIMIT: usize = 256 * 1024;

/// The body of a handler that has returned: its frames are all waiting in
/// the channel, so they are taken now and sent as one buffer with a
/// `content-length` (hyper adds it for a body of known size). Anything
/// unexpected (trailers, an error, a frame not yet there, a large body)
/// keeps what was read in front of the rest, streamed as before.
fn settle(response: WebResponse) -> WebResponse {
    let (parts, body) = response.into_parts();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()));
    WebResponse::from_parts(parts, settle_body(body, declared))
}

/// See [`settle`]; `declared` is the guest's `content-length` header, if
/// it set one (`Some(None)` when unreadable). A body that does not match it
/// streams as it is, and hyper deals with the mismatch as before.
fn settle_body(mut body: WebBody, declared: Option<Option<u64>>) -> WebBody {
    use http_body_util::BodyExt;
    use hyper::body::Body;
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut size = 0;
    let unsettled = loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(None) => break None,
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    size += data.len();
                    chunks.push(data);
                    if size > SETTLE_LIMIT {
                        break Some(None);
                    }
                }
                Err(frame) => break Some(Some(Ok(frame))),
            },
            Poll::Ready(Some(Err(e))) => break Some(Some(Err(e))),
            Poll::Pending => break Some(None),
        }
    };
    let matches = declared.is_none_or(|d| d == Some(size as u64));
    match unsettled {
        None if matches => {
            let data = match chunks.len() {
                0 => Bytes::new(),
                1 => chunks.pop().unwrap_or_default(),
                _ => Bytes::from(chunks.concat()),
            };
            http_body_util::Full::new(data)
                .map_err(|never| match never {})
                .boxed_unsync()
        }
        next => {
            let mut frames: std::collections::VecDeque<_> = chunks
                .into_iter()
                .map(|c| Ok(hyper::body::Frame::data(c)))
                .collect();
            frames.extend(next.flatten());
            Prefixed { frames, rest: body }.boxed_unsync()
        }
    }
}

/// Frames already taken from a body, then the rest of it.
struct Prefixed {
    frames:
        std::collections::VecDeque<Result<hyper::body::Frame<Bytes>, wasmtime_wasi_http::Error>>,
    rest: WebBody,
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match this.frames.pop_front() {
            Some(frame) => Poll::Ready(Some(frame)),
            None => Pin::new(&mut this.rest).poll_frame(cx),
        }
    }
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

/// A request body cut off at the limit: past it the guest's stream fails
/// and the flag tells the host to answer 413.
struct CappedBody<B> {
    inner: B,
    left: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl<B> hyper::body::Body for CappedBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > this.left {
                    this.exceeded.store(true, Ordering::Release);
                    let error = wasmtime_wasi_http::Error::HttpRequestBodySize(Some(this.limit));
                    return Poll::Ready(Some(Err(error)));
                }
                this.left -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::InternalError(Some(
                    format!("reading the request body: {e}"),
                )))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
