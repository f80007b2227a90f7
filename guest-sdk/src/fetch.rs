//! Outbound HTTP: [`fetch`] sends one request with
//! `wasi:http/outgoing-handler` and reads the whole response, blocking;
//! [`fetch_async`] does the same on the async runtime of `async fn`
//! functions, so that several requests are in flight at once.

use crate::Response;
use crate::web::{READ_CHUNK, WRITE_CHUNK, read_to_end};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, FutureIncomingResponse, IncomingBody, IncomingResponse, Method, OutgoingBody,
    OutgoingRequest, Scheme,
};
use wasip2::io::streams::InputStream;
use wstd::io::{AsyncInputStream, AsyncOutputStream};
use wstd::runtime::AsyncPollable;

/// What the host's denial of an ungranted destination reads as.
const DENIED: &str = "the host denied the request (grant it at deploy with --allow-http HOST:PORT)";

/// Where a request goes, read from its URL.
struct Target<'u> {
    https: bool,
    authority: &'u str,
    path_with_query: String,
}

/// Splits an `http://` or `https://` URL into scheme, authority and path
/// (with the query), or says why it is not one.
fn target(url: &str) -> Result<Target<'_>, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not an http(s) URL"))?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        other => return Err(format!("unsupported scheme `{other}` in `{url}`")),
    };
    let (authority, path_with_query) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    Ok(Target {
        https,
        authority,
        path_with_query,
    })
}

/// The request for `method url` with `headers` and a body of `body_len`
/// bytes, ready to be handed to the host. A body goes with its
/// `content-length` unless `headers` give one: without it the body would
/// be sent chunked, which some servers refuse.
fn outgoing(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body_len: usize,
) -> Result<OutgoingRequest, String> {
    let target = target(url)?;
    let scheme = if target.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let mut entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    if body_len > 0
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        entries.push(("content-length".into(), body_len.to_string().into_bytes()));
    }
    let fields = Fields::from_list(&entries).map_err(|e| format!("invalid header: {e:?}"))?;
    let request = OutgoingRequest::new(fields);
    let set = request.set_scheme(Some(&scheme)).is_ok()
        && request.set_authority(Some(target.authority)).is_ok()
        && request
            .set_path_with_query(Some(&target.path_with_query))
            .is_ok()
        && request.set_method(&method_of(method)).is_ok();
    if !set {
        return Err(format!("`{method} {url}` is not a valid request"));
    }
    Ok(request)
}

/// Hands the request for `method url` to the host: it is sent at once,
/// its body (to be written and finished) streams after it.
fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body_len: usize,
) -> Result<(OutgoingBody, FutureIncomingResponse), String> {
    let request = outgoing(method, url, headers, body_len)?;
    let body = request.body().map_err(|()| "no request body".to_string())?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| describe(&e))?;
    Ok((body, pending))
}

/// A response whose body is still to be read. The fields drop in order:
/// the stream before the body it belongs to, the body before the response.
struct Receiving {
    stream: InputStream,
    _body: IncomingBody,
    _response: IncomingResponse,
    /// The status and headers, and the body as it is read.
    out: Response,
}

/// What the host answered, once it answered: the response (or the error
/// that ended the request, which wins over `sent`, the outcome of sending
/// the body: a denied request closes the body's stream too).
fn receive(
    pending: &FutureIncomingResponse,
    sent: Result<(), String>,
) -> Result<Receiving, String> {
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(describe(&code)),
        Some(Err(())) => return Err("the response was already taken".to_string()),
        None => return Err("the response is not there yet".to_string()),
    };
    sent?;
    let mut out = Response::new(response.status());
    for (name, value) in response.headers().entries() {
        out.headers
            .push((name, String::from_utf8_lossy(&value).into_owned()));
    }
    let body = response
        .consume()
        .map_err(|()| "no response body".to_string())?;
    let stream = body
        .stream()
        .map_err(|()| "no response stream".to_string())?;
    Ok(Receiving {
        stream,
        _body: body,
        _response: response,
        out,
    })
}

/// Sends a `method` request for `url` (`http://` or `https://`) with
/// `headers` and `body`, and returns the response with its whole body.
///
/// The host denies every request unless the app was granted the
/// destination at deploy (`--allow-http HOST:PORT`); a denial, a bad URL or
/// a network failure is an `Err` with one line saying which. A response
/// with any status (404 too) is `Ok`. A body is sent with its
/// `content-length` unless `headers` give one.
///
/// It blocks the guest until the response is read; inside an `async fn`,
/// use [`fetch_async`] so that other tasks go on meanwhile.
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
    let (outgoing, pending) = send(method, url, headers, body.len())?;
    let sent = (|| {
        let stream = outgoing
            .write()
            .map_err(|()| "no request body stream".to_string())?;
        for chunk in body.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("sending the request body failed: {e:?}"))?;
        }
        drop(stream);
        OutgoingBody::finish(outgoing, None).map_err(|e| describe(&e))
    })();
    pending.subscribe().block();
    let mut receiving = receive(&pending, sent)?;
    read_to_end(&receiving.stream, &mut receiving.out.body)
        .map_err(|e| format!("reading the response failed: {e}"))?;
    Ok(receiving.out)
}

/// [`fetch`] for `async fn` functions: the same request, answer and
/// errors, but it waits on the runtime (`wstd`) instead of blocking the
/// guest, so that other tasks run meanwhile and several requests are in
/// flight at once:
///
/// ```ignore
/// let (a, b) = futures_lite::future::zip(
///     modal_guest::fetch_async("GET", "https://example.com/a", &[], b""),
///     modal_guest::fetch_async("GET", "https://example.com/b", &[], b""),
/// )
/// .await;
/// ```
///
/// Await it inside an `async` function of the app (or a task it spawned
/// with `modal_guest::wstd::runtime::spawn`): it needs that runtime, and
/// panics outside it.
pub async fn fetch_async(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let (outgoing, pending) = send(method, url, headers, body.len())?;
    let sent = async {
        let stream = AsyncOutputStream::new(
            outgoing
                .write()
                .map_err(|()| "no request body stream".to_string())?,
        );
        // Even an empty write waits for the stream, which a refused
        // request has closed: write only what there is.
        if !body.is_empty() {
            stream
                .write_all(body)
                .await
                .map_err(|e| format!("sending the request body failed: {e}"))?;
        }
        // The stream is a child of the body: gone before the body ends.
        drop(stream);
        OutgoingBody::finish(outgoing, None).map_err(|e| describe(&e))
    }
    .await;
    AsyncPollable::new(pending.subscribe()).wait_for().await;
    let mut receiving = receive(&pending, sent)?;
    // Declared after `receiving`, so dropped before the rest of it.
    let stream = AsyncInputStream::new(receiving.stream);
    let mut chunk = vec![0; READ_CHUNK as usize];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => receiving.out.body.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the response failed: {e}")),
        }
    }
    Ok(receiving.out)
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
        ErrorCode::HttpRequestDenied => DENIED.into(),
        other => format!("the request failed: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let t = target("https://example.com:8443/a/b?c=d").unwrap();
        assert!(t.https);
        assert_eq!(
            (t.authority, t.path_with_query.as_str()),
            ("example.com:8443", "/a/b?c=d")
        );
        let t = target("HTTP://h?q=1").unwrap();
        assert!(!t.https);
        assert_eq!((t.authority, t.path_with_query.as_str()), ("h", "/?q=1"));
        assert_eq!(target("http://h").unwrap().path_with_query, "/");
        assert_eq!(
            target("example.com").err().unwrap(),
            "`example.com` is not an http(s) URL"
        );
        assert_eq!(
            target("ftp://h/x").err().unwrap(),
            "unsupported scheme `ftp` in `ftp://h/x`"
        );
    }
}
