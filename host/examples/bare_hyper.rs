//! The machine's limit for `host/benches/web.sh`: a bare hyper server of
//! the same shape as modal's web front (HTTP/1.1 keep-alive, `TCP_NODELAY`,
//! one tokio worker per core) answering every request with a fixed
//! `Hello, world!`, with no WebAssembly and no recording. What modal
//! reaches of its req/s is what the host's work costs.
//!
//! You can execute this example with
//! `cargo run --release --example bare_hyper -- 127.0.0.1:18185`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18185".into());
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
