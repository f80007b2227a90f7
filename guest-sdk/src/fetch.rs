//! Outbound HTTP: [`fetch`] sends one request with
//! `wasi:http/outgoing-handler` and reads the whole response.

use crate::Response;
use crate::web::{WRITE_CHUNK, read_to_end};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

/// Sends a `method` request for `url` (`http://` or `https://`) with
/// `headers` and `body`, and returns the response with its whole body.
///
/// The host denies every request unless the app was granted the
/// destination at deploy (`--allow-http HOST:PORT`); a denial, a bad URL or
/// a network failure is an `Err` with one line saying which. A response
/// with any status (404 too) is `Ok`.
///
/// ```ignore
/// let key = std::env::var("API_KEY").map_err(|_| "API_KEY is not set")?;
/// let auth = format!("Bearer {key}");
/// let feed = modal_guest::fetch("GET", "https://example.com/feed.json", &[("authorization", &auth)], b"")?;
/// ```
pub fn fetch(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not an http(s) URL"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(format!("unsupported scheme `{other}` in `{url}`")),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    let fields = Fields::from_list(&entries).map_err(|e| format!("invalid header: {e:?}"))?;
    let request = OutgoingRequest::new(fields);
    let set = request.set_scheme(Some(&scheme)).is_ok()
        && request.set_authority(Some(authority)).is_ok()
        && request.set_path_with_query(Some(&path)).is_ok()
        && request.set_method(&method_of(method)).is_ok();
    if !set {
        return Err(format!("`{method} {url}` is not a valid request"));
    }
    let outgoing = request.body().map_err(|()| "no request body".to_string())?;
    // The request is sent as soon as it is handed over; the body streams
    // after it.
    let pending = outgoing_handler::handle(request, None).map_err(|e| describe(&e))?;
    {
        let stream = outgoing
            .write()
            .map_err(|()| "no request body stream".to_string())?;
        for chunk in body.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("sending the request body failed: {e:?}"))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| describe(&e))?;
    let response = loop {
        match pending.get() {
            Some(result) => break result,
            None => pending.subscribe().block(),
        }
    };
    let response = response
        .map_err(|()| "the response was already taken".to_string())?
        .map_err(|e| describe(&e))?;
    let mut out = Response::new(response.status());
    for (name, value) in response.headers().entries() {
        out.headers
            .push((name, String::from_utf8_lossy(&value).into_owned()));
    }
    let incoming = response
        .consume()
        .map_err(|()| "no response body".to_string())?;
    let stream = incoming
        .stream()
        .map_err(|()| "no response stream".to_string())?;
    read_to_end(&stream, &mut out.body).map_err(|e| format!("reading the response failed: {e}"))?;
    Ok(out)
}

fn method_of(method: &str) -> Method {
    match method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    }
}

/// One line for a `wasi:http` error code (`HttpRequestDenied` says the
/// app lacks the grant).
fn describe(code: &wasip2::http::types::ErrorCode) -> String {
    use wasip2::http::types::ErrorCode;
    match code {
        ErrorCode::HttpRequestDenied => {
            "the host denied the request (grant it at deploy with --allow-http HOST:PORT)".into()
        }
        other => format!("the request failed: {other:?}"),
    }
}
