//! Serving one HTTP request with a web function through `wasi:http`.

use crate::app::{LoadedApp, Trigger};
use crate::error::Error;
use crate::pool::{Instance, Lease, Pool};
use bytes::Bytes;
use http::HeaderValue;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

/// The header in which the host tells the guest which web function a
/// request is for (see `wit/modal.wit`). A client's own is removed.
pub(crate) const FUNCTION_HEADER: &str = "modal-function";

/// The body of a web function's response, streamed from the guest.
pub type WebBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A web function's response.
pub type WebResponse = hyper::Response<WebBody>;

impl LoadedApp {
    /// Serves `request` with the web function `function`. The response is
    /// returned as soon as the guest sets it; its body streams while the
    /// guest keeps writing. The execution is recorded when the guest's
    /// handler returns.
    pub async fn serve_http<B>(
        &self,
        function: &str,
        request: hyper::Request<B>,
    ) -> Result<WebResponse, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::fmt::Display,
    {
        self.try_serve_http(function, request)
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
    ) -> Result<WebResponse, (Error, Option<Box<hyper::Request<B>>>)>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::fmt::Display,
    {
        let started_at = SystemTime::now();
        let start = Instant::now();
        let (name, pool) = match self.pool(function) {
            Ok((name, pool)) => (name.clone(), pool.clone()),
            Err(e) => return Err((e, None)),
        };
        if !matches!(
            self.spec().function(function).map(|f| &f.kind),
            Some(crate::FunctionKind::Web { .. })
        ) {
            let e = Error::WrongKind(format!(
                "`{function}` is not a web function: call it with `modal call` instead"
            ));
            return Err((e, None));
        }
        let lease = match pool.checkout().await {
            Ok(lease) => lease,
            Err(e @ Error::ShuttingDown(_)) => return Err((e, Some(Box::new(request)))),
            Err(e) => return Err((e, None)),
        };
        let timing = (started_at, start);
        self.serve_leased(&name, pool, lease, request, timing)
            .await
            .map_err(|e| (e, None))
    }

    async fn serve_leased<B>(
        &self,
        name: &Arc<str>,
        pool: Arc<Pool>,
        mut lease: Lease,
        request: hyper::Request<B>,
        (started_at, start): (SystemTime, Instant),
    ) -> Result<WebResponse, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::fmt::Display,
    {
        let function: &str = name;
        let name = name.clone();
        let (mut parts, body) = request.into_parts();
        parts.headers.remove(FUNCTION_HEADER);
        let value = HeaderValue::from_str(function).map_err(|e| Error::Internal(e.to_string()))?;
        parts.headers.insert(FUNCTION_HEADER, value);
        if !parts.headers.contains_key(http::header::HOST) && parts.uri.authority().is_none() {
            parts
                .headers
                .insert(http::header::HOST, HeaderValue::from_static("localhost"));
        }
        let body = body.map_err(|e| {
            wasmtime_wasi_http::Error::InternalError(Some(format!("reading the request body: {e}")))
        });
        let request = hyper::Request::from_parts(parts, body);

        let timeout = pool.settings.timeout;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let instance = lease.instance();
        instance.begin(timeout);
        let internal = |e: wasmtime::Error| Error::Internal(format!("{e:#}"));
        let mut http = instance.store.data_mut().http();
        let incoming = http
            .new_incoming_request(Scheme::Http, request)
            .map_err(internal)?;
        let outparam = http.new_response_outparam(sender).map_err(internal)?;
        let Some(proxy) = instance.proxy.take() else {
            return Err(Error::WrongKind(format!(
                "`{function}` cannot serve HTTP: the component has no `wasi:http/incoming-handler` export"
            )));
        };

        // The handler runs in its own task: it keeps writing the body after
        // the response head has been returned to the client.
        let app = self.clone();
        let task = tokio::spawn(async move {
            let instance: &mut Instance = lease.instance();
            let handle = proxy.wasi_http_incoming_handler().call_handle(
                &mut instance.store,
                incoming,
                outparam,
            );
            let result = tokio::select! {
                result = tokio::time::timeout(timeout, handle) => Ok(result),
                reason = app.inner.cancel.cancelled() => Err(reason.to_string()),
            };
            instance.proxy = Some(proxy);
            let outcome = match result {
                Ok(Ok(Ok(()))) => Ok(Vec::new()),
                Ok(Ok(Err(trap))) => Err(crate::app::classify(trap, instance, &name, timeout)),
                Ok(Err(_)) => Err(Error::Timeout {
                    function: name.to_string(),
                    limit: timeout,
                }),
                Err(reason) => Err(Error::Cancelled {
                    function: name.to_string(),
                    reason,
                }),
            };
            let logs = instance.take_logs();
            let outcome = outcome.map_err(|e| crate::app::refine(e, &logs));
            let healthy = !matches!(&outcome, Err(e) if e.poisons_instance());
            let cold = lease.fresh;
            pool.checkin(lease, healthy);
            let execution =
                app.execution(&name, Trigger::Web, started_at, start, outcome, logs, cold);
            app.record(&execution);
            execution.outcome.map(drop)
        });

        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(Error::Failed {
                function: function.to_string(),
                message: format!("the handler answered with error {code:?}"),
            }),
            Err(_) => match task.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err(Error::NoResponse {
                    function: function.to_string(),
                }),
                Err(join) => Err(Error::Internal(format!("the handler task failed: {join}"))),
            },
        }
    }
}
