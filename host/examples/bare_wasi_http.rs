//! The floor of a `wasi:http` host on this wasmtime, for
//! `host/benches/web.sh`: the bare hyper server of `bare_hyper.rs` that
//! answers each request by calling a component's `wasi:http` handler, on
//! an instance kept warm for the next request (one per request in flight),
//! and nothing else: no routing, no limits, no timeouts (so no epoch
//! checks), no recording, no metrics (`benches/bare/http.rs`). Imports the
//! `wasi:http/proxy` world lacks (the SDK's `modal:app/*`) trap when
//! called.
//!
//! With `--calls N` instead of an address it serves no socket: it prints
//! the CPU time of one of N requests handed straight to a warm instance
//! (request in, answer and body out; `$HOST` and `$PATH_AND_QUERY` set
//! them): the least any `wasi:http` host on this wasmtime spends per
//! request besides its HTTP server.
//!
//! You can execute this example with
//! `cargo run --release --example bare_wasi_http -- (127.0.0.1:18187 | --calls N) app.wasm`.

#[path = "../benches/bare/http.rs"]
mod http;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::Arc;

fn main() -> wasmtime::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (calls, wasm) = match &args[..] {
        [flag, n, wasm] if flag == "--calls" => (Some(n.parse::<u32>()?), wasm),
        [_, wasm] => (None, wasm),
        _ => wasmtime::bail!("usage: bare_wasi_http (ADDR | --calls N) COMPONENT.wasm"),
    };
    let server = Arc::new(http::BareHttp::new(&std::fs::read(wasm)?)?);
    if let Some(calls) = calls {
        let host = std::env::var("HOST").unwrap_or_else(|_| "localhost".into());
        let path = std::env::var("PATH_AND_QUERY").unwrap_or_else(|_| "/".into());
        let one = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(server.time_calls(calls, &host, &path))?;
        println!("{:.2}", one.as_secs_f64() * 1e6);
        return Ok(());
    }
    let addr = args[0].clone();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let server = server.clone();
                        async move { server.handle(request).await }
                    });
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
}
