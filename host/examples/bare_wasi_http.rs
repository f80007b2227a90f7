//! The floor of a `wasi:http` host on this wasmtime, for
//! `host/benches/web.sh`: hyper answering each request by calling a
//! component's `wasi:http` handler, on an instance kept warm for the next
//! request (one per request in flight), and nothing else: no routing, no
//! limits, no timeouts (so no epoch checks), no recording, no metrics
//! (`benches/bare/http.rs`). It is served in the shape of modal's web
//! front (one pinned single-threaded lane per core, `TCP_NODELAY`,
//! keep-alive, mimalloc, a finished answer sent with its length in one
//! write, answers batched with modal's own `Batched`), so that modal's
//! req/s beside it is what modal's own work costs. Imports the
//! `wasi:http/proxy` world lacks (the SDK's `modal:app/*`) trap when
//! called.
//!
//! With `--record DIR` after the address it also records every request
//! the way modal does at the least: an execution record per request
//! (app, function, start, duration, outcome, status) sent to a writer
//! thread that stores what gathered every 20 ms in one transaction of
//! modal's own SQLite store (`DIR/executions.db`: its schema, indexes and
//! batched inserts). Its req/s is the most a host that records every
//! execution in modal's store can reach here.
//!
//! With `--calls N` instead of an address it serves no socket: it prints
//! the CPU time of one of N requests handed straight to a warm instance
//! (request in, answer and body out; `$HOST` and `$PATH_AND_QUERY` set
//! them): the least any `wasi:http` host on this wasmtime spends per
//! request besides its HTTP server.
//!
//! You can execute this example with
//! `cargo run --release --example bare_wasi_http -- (127.0.0.1:18187 [--record DIR] | --calls N) app.wasm`.

#[path = "../src/server/batched.rs"]
mod batched;
#[path = "../benches/bare/http.rs"]
mod http;
#[path = "../benches/bare/record.rs"]
mod record;

use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use modal_host::platform::{ExecutionRecord, RecordStore, SqliteRecords};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// The `modal` binary's allocator, so that the two differ only in the
/// host's own work.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> wasmtime::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (calls, record, wasm) = match &args[..] {
        [flag, n, wasm] if flag == "--calls" => (Some(n.parse::<u32>()?), None, wasm),
        [_, flag, dir, wasm] if flag == "--record" => (None, Some(dir), wasm),
        [_, wasm] => (None, None, wasm),
        _ => wasmtime::bail!(
            "usage: bare_wasi_http (ADDR [--record DIR] | --calls N) COMPONENT.wasm"
        ),
    };
    let wasm = std::fs::read(wasm).map_err(|e| wasmtime::format_err!("reading {wasm}: {e}"))?;
    if let Some(calls) = calls {
        let server = http::BareHttp::new(&wasm)?;
        let host = std::env::var("HOST").unwrap_or_else(|_| "localhost".into());
        let path = std::env::var("PATH_AND_QUERY").unwrap_or_else(|_| "/".into());
        let one = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(server.time_calls(calls, &host, &path))?;
        println!("{:.2}", one.as_secs_f64() * 1e6);
        return Ok(());
    }
    // modal's serving shape: one thread per core, pinned to it, each with
    // a single-threaded runtime, its own listener on the shared port and
    // its own warm instances, so that a request never leaves the core it
    // arrived on.
    let addr: std::net::SocketAddr = args[0].parse()?;
    let recorder = record.map(|dir| start_writer(dir.into())).transpose()?;
    let cores = core_affinity::get_core_ids()
        .filter(|cores| !cores.is_empty())
        .ok_or_else(|| wasmtime::format_err!("could not read this process's CPU set"))?;
    let threads: Vec<_> = cores
        .into_iter()
        .map(|core| {
            let server = http::BareHttp::new(&wasm).map(Arc::new);
            let recorder = recorder.clone();
            std::thread::spawn(move || {
                core_affinity::set_for_current(core);
                serve_lane(addr, core.id, server?, recorder)
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| wasmtime::format_err!("a lane panicked"))??;
    }
    Ok(())
}

/// Accepts and serves connections on this thread (pinned to `cpu`) until
/// an error. Its listener asks for the connections whose packets arrive on
/// `cpu` (`SO_INCOMING_CPU` in a `SO_REUSEPORT` group), as modal's acceptor
/// hands a connection to the lane on its packets' CPU.
fn serve_lane(
    addr: std::net::SocketAddr,
    cpu: usize,
    server: Arc<http::BareHttp>,
    recorder: Option<mpsc::Sender<ExecutionRecord>>,
) -> wasmtime::Result<()> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.set_cpu_affinity(cpu)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::from_std(socket.into())?;
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                let server = server.clone();
                let recorder = recorder.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let server = server.clone();
                        let recorder = recorder.clone();
                        async move {
                            let (started_at, start) = (SystemTime::now(), Instant::now());
                            // The handler has returned, so its whole answer
                            // is waiting: it goes out with its length in one
                            // write, as modal sends a finished answer.
                            let (parts, body) = server.handle(request).await?.into_parts();
                            let body = body.collect().await?.to_bytes();
                            if let Some(recorder) = &recorder {
                                let _ = recorder.send(execution(started_at, start, parts.status));
                            }
                            Ok::<_, wasmtime::Error>(hyper::Response::from_parts(
                                parts,
                                Full::new(body),
                            ))
                        }
                    });
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .writev(false)
                        .serve_connection(TokioIo::new(batched::Batched::new(stream)), service)
                        .await;
                });
            }
        })
}

/// The record of a web execution that started at `started_at` (and
/// `start`) and answered `status`; the writer numbers it.
fn execution(started_at: SystemTime, start: Instant, status: hyper::StatusCode) -> ExecutionRecord {
    let started_at = started_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let duration_ms = start.elapsed().as_secs_f64() * 1e3;
    record::web_execution(0, "bench", started_at, duration_ms, status.as_u16())
}

/// Starts the thread that stores the records sent to the returned sender
/// in `dir/executions.db`: what gathered in 20 ms, in one transaction,
/// numbered in order (as modal's record writer does).
fn start_writer(dir: std::path::PathBuf) -> wasmtime::Result<mpsc::Sender<ExecutionRecord>> {
    std::fs::create_dir_all(&dir)
        .map_err(|e| wasmtime::format_err!("creating {}: {e}", dir.display()))?;
    let store = SqliteRecords::open(&dir.join("executions.db"))?;
    let (sender, receiver) = mpsc::channel::<ExecutionRecord>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        let mut next = 1;
        while let Ok(first) = receiver.recv() {
            std::thread::sleep(Duration::from_millis(20));
            let mut batch: Vec<ExecutionRecord> =
                std::iter::once(first).chain(receiver.try_iter()).collect();
            for record in &mut batch {
                record.id = next;
                next += 1;
            }
            if let Err(e) = runtime.block_on(store.insert_executions(batch)) {
                eprintln!("storing executions: {e}");
            }
        }
    });
    Ok(sender)
}
