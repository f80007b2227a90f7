//! A plain `wasi:http/proxy` component, built without modal-guest. Such a
//! component deploys as an app with one web function, `web`:
//! `modal run http_plain.wasm::web /some/path`.
//!
//! - `GET` any path: `Hello from wasi:http! You asked for PATH`.
//! - `POST`: streams the request body back as it arrives, chunk by chunk.
//! - `/silent`: returns without ever setting a response.
//! - `/partial`: promises 1000 bytes, sends 5, then traps.
//! - `/count`: how many `/count` requests this instance has served.
//! - `/fail`: answers 503 on its own.
//! - `/headers?n=N`: builds N header maps of 120 KiB each (host memory),
//!   keeps them all, then answers how many it built.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::{OutputStream, StreamError};

/// Bytes written per `blocking-write-and-flush` (the most it takes).
const CHUNK: usize = 4096;

struct Handler;

fn write_all(stream: &OutputStream, bytes: &[u8]) -> bool {
    bytes
        .chunks(CHUNK)
        .all(|chunk| stream.blocking_write_and_flush(chunk).is_ok())
}

impl Guest for Handler {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        if path == "/silent" {
            return;
        }
        if let Some(n) = path.strip_prefix("/headers?n=") {
            let value = vec![b'a'; 120 << 10];
            let mut kept = Vec::new();
            for _ in 0..n.parse::<usize>().unwrap_or(0) {
                match Fields::from_list(&[("x-big".to_string(), value.clone())]) {
                    Ok(fields) => kept.push(fields),
                    Err(_) => break,
                }
            }
            let response = OutgoingResponse::new(Fields::new());
            let Ok(body) = response.body() else { return };
            ResponseOutparam::set(out, Ok(response));
            if let Ok(stream) = body.write() {
                let _ = write_all(&stream, format!("{}\n", kept.len()).as_bytes());
            }
            let _ = OutgoingBody::finish(body, None);
            return;
        }
        if path == "/count" || path == "/fail" {
            use std::sync::atomic::{AtomicU64, Ordering};
            static SERVED: AtomicU64 = AtomicU64::new(0);
            let (status, text) = match path.as_str() {
                "/fail" => (503, "unavailable on purpose\n".to_string()),
                _ => (200, format!("{}\n", SERVED.fetch_add(1, Ordering::Relaxed) + 1)),
            };
            let response = OutgoingResponse::new(Fields::new());
            let _ = response.set_status_code(status);
            let Ok(body) = response.body() else { return };
            ResponseOutparam::set(out, Ok(response));
            if let Ok(stream) = body.write() {
                let _ = write_all(&stream, text.as_bytes());
            }
            let _ = OutgoingBody::finish(body, None);
            return;
        }
        if path == "/partial" {
            let headers = Fields::from_list(&[("content-length".to_string(), b"1000".to_vec())])
                .unwrap_or_else(|_| Fields::new());
            let response = OutgoingResponse::new(headers);
            let Ok(body) = response.body() else { return };
            ResponseOutparam::set(out, Ok(response));
            if let Ok(stream) = body.write() {
                let _ = stream.blocking_write_and_flush(b"short");
            }
            panic!("the partial endpoint fails after part of its body on purpose");
        }
        let echo = matches!(request.method(), Method::Post);
        let content_type = if echo { "application/octet-stream" } else { "text/plain" };
        let headers = Fields::from_list(&[("content-type".to_string(), content_type.as_bytes().to_vec())])
            .unwrap_or_else(|_| Fields::new());
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        let Ok(stream) = body.write() else { return };
        if echo {
            let Ok(incoming) = request.consume() else { return };
            let Ok(input) = incoming.stream() else { return };
            loop {
                match input.blocking_read(64 * 1024) {
                    Ok(chunk) => {
                        if !write_all(&stream, &chunk) {
                            return;
                        }
                    }
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(_)) => return,
                }
            }
        } else if !write_all(&stream, format!("Hello from wasi:http! You asked for {path}\n").as_bytes()) {
            return;
        }
        drop(stream);
        let _ = OutgoingBody::finish(body, None);
    }
}

wasip2::http::proxy::export!(Handler);
