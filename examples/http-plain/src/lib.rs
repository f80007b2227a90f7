//! A plain `wasi:http/proxy` component, built without modal-guest: it
//! answers every request with `Hello from wasi:http! You asked for PATH`.
//! Such a component deploys as an app with one web function, `web`:
//! `modal run http_plain.wasm::web /some/path`.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Handler;

impl Guest for Handler {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let body_text = format!("Hello from wasi:http! You asked for {path}\n");
        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
            .unwrap_or_else(|_| Fields::new());
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = body.write() {
            for chunk in body_text.as_bytes().chunks(4096) {
                if stream.blocking_write_and_flush(chunk).is_err() {
                    return;
                }
            }
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

wasip2::http::proxy::export!(Handler);
