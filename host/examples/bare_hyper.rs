//! The machine's limit for `host/benches/web.sh`: a bare hyper server of
//! the same shape as modal's web front (HTTP/1.1 keep-alive, `TCP_NODELAY`,
//! one tokio worker per core) answering every request with a fixed
//! `Hello, world!`, with no WebAssembly and no recording. What modal
//! reaches of its req/s is what the host's work costs.
//!
//! `--spin-ns N` makes it spin N ns before each answer, standing for a
//! host's own work per request: with N the CPU time of one bare
//! `wasi:http` call (`bare_wasi_http --calls`), its req/s is the most any
//! `wasi:http` host on this wasmtime can reach here.
//!
//! You can execute this example with
//! `cargo run --release --example bare_hyper -- 127.0.0.1:18185 [--spin-ns N]`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18185".into());
    let spin = match (args.next().as_deref(), args.next()) {
        (None, _) => Duration::ZERO,
        (Some("--spin-ns"), Some(n)) => match n.parse() {
            Ok(n) => Duration::from_nanos(n),
            Err(e) => return Err(std::io::Error::other(format!("--spin-ns {n}: {e}"))),
        },
        _ => {
            return Err(std::io::Error::other(
                "usage: bare_hyper [ADDR [--spin-ns N]]",
            ));
        }
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service =
                        service_fn(move |_req: Request<hyper::body::Incoming>| async move {
                            if !spin.is_zero() {
                                let start = Instant::now();
                                while start.elapsed() < spin {
                                    std::hint::spin_loop();
                                }
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"Hello, world!",
                            ))))
                        });
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
}
