//! A bare `wasi:http` host: a component's handler called per request on
//! an instance kept warm for the next one, and nothing else (no routing,
//! limits, timeouts, recording or metrics). `examples/bare_wasi_http.rs`
//! serves it over hyper; the core benchmark times its calls beside
//! modal's.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::sync::Mutex;
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// A store's data: WASI and `wasi:http` state over one resource table.
struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

/// A component's `wasi:http` handler, ready to instantiate, and its idle
/// warm instances.
pub struct BareHttp {
    pre: ProxyPre<State>,
    idle: Mutex<Vec<(Store<State>, Proxy)>>,
}

impl BareHttp {
    /// Compiles and links `wasm` on an engine with wasmtime's defaults (no
    /// epoch checks); imports beyond `wasi:http/proxy` trap when called.
    pub fn new(wasm: &[u8]) -> wasmtime::Result<BareHttp> {
        let engine = Engine::new(&Config::new())?;
        let component = Component::new(&engine, wasm)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        linker.define_unknown_imports_as_traps(&component)?;
        Ok(BareHttp {
            pre: ProxyPre::new(linker.instantiate_pre(&component)?)?,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Answers `request` on a warm instance (a new one when all are busy).
    pub async fn handle<B>(
        &self,
        request: hyper::Request<B>,
    ) -> wasmtime::Result<hyper::Response<HyperOutgoingBody>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let warm = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let (mut store, proxy) = match warm {
            Some(warm) => warm,
            None => {
                let state = State {
                    wasi: WasiCtx::builder().build(),
                    http: WasiHttpCtx::new(),
                    table: ResourceTable::new(),
                };
                let mut store = Store::new(self.pre.engine(), state);
                let proxy = self.pre.instantiate_async(&mut store).await?;
                (store, proxy)
            }
        };
        let (sender, mut receiver) = tokio::sync::oneshot::channel();
        let mut http = store.data_mut().http();
        let request = http.new_incoming_request(Scheme::Http, request)?;
        let out = http.new_response_outparam(sender)?;
        // The handler runs to its end in this task (the examples' handlers
        // answer in their first poll), then the instance is idle again.
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, request, out)
            .await?;
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((store, proxy));
        Ok(receiver.try_recv()??)
    }

    /// The CPU time of one of `calls` requests for `host` and `path`
    /// handed straight to a warm instance on this thread, answers and
    /// bodies read whole (after a warm-up); fails unless it answers 2xx.
    pub async fn time_calls(
        &self,
        calls: u32,
        host: &str,
        path: &str,
    ) -> wasmtime::Result<Duration> {
        let request = || {
            let body = Empty::<Bytes>::new().map_err(|never| -> hyper::Error { match never {} });
            hyper::Request::get(path).header("host", host).body(body)
        };
        let status = self.answer(request()?).await?;
        if !status.is_success() {
            wasmtime::bail!("the component answered {status}, not a success");
        }
        for _ in 0..1000 {
            self.answer(request()?).await?;
        }
        let start = cpu_time();
        for _ in 0..calls {
            self.answer(request()?).await?;
        }
        Ok((cpu_time() - start) / calls.max(1))
    }

    /// Handles `request` and reads the answer's body whole; returns its
    /// status.
    async fn answer<B>(&self, request: hyper::Request<B>) -> wasmtime::Result<hyper::StatusCode>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let response = self.handle(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// The CPU time the calling thread has used (`/proc/thread-self/schedstat`).
pub fn cpu_time() -> Duration {
    let nanos = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(nanos)
}
