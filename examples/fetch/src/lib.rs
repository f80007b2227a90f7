//! The fetch app: outbound HTTP from a guest. `get` fetches a URL with
//! `wasi:http/outgoing-handler` and returns `STATUS BODY`. The host denies
//! every request unless the app was granted the host at deploy:
//! `modal run fetch.wasm::get '"http://127.0.0.1:8080/"' --allow-http 127.0.0.1:8080`.

#[modal_guest::app]
mod fetch {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    use wasip2::io::streams::StreamError;

    /// Fetches `url` (http or https) and returns `STATUS BODY`.
    #[function(timeout = "30s")]
    fn get(url: String) -> Result<String, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` is not an http(s) URL"))?;
        let scheme = match scheme {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(format!("unsupported scheme `{other}`")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let request = OutgoingRequest::new(Fields::new());
        let set = request.set_scheme(Some(&scheme)).is_ok()
            && request.set_authority(Some(authority)).is_ok()
            && request.set_path_with_query(Some(path)).is_ok()
            && request.set_method(&Method::Get).is_ok();
        if !set {
            return Err(format!("`{url}` is not a valid request target"));
        }
        let body = request.body().map_err(|()| "no request body".to_string())?;
        OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
        let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
        let response = loop {
            match pending.get() {
                Some(result) => break result,
                None => pending.subscribe().block(),
            }
        };
        let response = response
            .map_err(|()| "the response was already taken".to_string())?
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        let incoming = response.consume().map_err(|()| "no response body".to_string())?;
        let stream = incoming.stream().map_err(|()| "no response stream".to_string())?;
        let mut bytes = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
            }
        }
        Ok(format!("{status} {}", String::from_utf8_lossy(&bytes)))
    }
}
