//! Web functions: the request and response types and the `wasi:http`
//! handler that routes a request to the function the host names.

use serde::de::DeserializeOwned;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::StreamError;

/// The request header in which the host names the web function a request
/// is for. The host removes any such header a client sent.
const FUNCTION_HEADER: &str = "modal-function";

/// Bytes written to the response stream at a time; `wasi:http` output
/// streams accept at most 4096 bytes per `blocking-write-and-flush`.
pub(crate) const WRITE_CHUNK: usize = 4096;

/// Bytes asked of a body stream at a time.
pub(crate) const READ_CHUNK: u64 = 64 * 1024;

/// An HTTP request as a web function sees it: the body is read whole.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Request {
    /// Builds a request by hand (for tests of your own handlers).
    pub fn new(method: &str, path_with_query: &str, body: impl Into<Vec<u8>>) -> Self {
        let (path, query) = match path_with_query.split_once('?') {
            Some((p, q)) => (p, q),
            None => (path_with_query, ""),
        };
        Request {
            method: method.to_ascii_uppercase(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            query: query.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        self
    }

    /// The method, upper case (`GET`, `POST`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path as the client sent it, without the query string.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query string, without the `?`.
    pub fn query_string(&self) -> &str {
        &self.query
    }

    /// The first value of query parameter `name`, decoded as
    /// `application/x-www-form-urlencoded` (the host's rule too): `+` is a
    /// space, `%XX` a byte (`%2F` is `/`), an invalid escape such as `%zz`
    /// stays as written, and bytes that are not UTF-8 become U+FFFD.
    pub fn query(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The first value of header `name` (case-insensitive), if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// All headers, names in lower case.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body decoded as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// An HTTP response from a web function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `200` plain-text response.
    pub fn text(body: impl Into<String>) -> Self {
        Response::new(200)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into().into_bytes())
    }

    /// A `200` HTML response.
    pub fn html(body: impl Into<String>) -> Self {
        Response::new(200)
            .with_header("content-type", "text/html; charset=utf-8")
            .with_body(body.into().into_bytes())
    }

    /// The same response with another status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The same response with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The same response with another body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// One web function as the generated handler registers it.
pub struct WebHandler {
    /// The function's name.
    pub name: &'static str,
    /// The method it accepts, if only one.
    pub method: Option<&'static str>,
    /// Runs the function.
    pub run: fn(Request) -> Response,
}

/// Serves one `wasi:http` request: picks the web function the host named,
/// reads the body, runs the function and writes its response.
pub fn serve(request: IncomingRequest, out: ResponseOutparam, handlers: &[WebHandler]) {
    let response = match read_request(&request) {
        Ok((target, req)) => route(target.as_deref(), req, handlers),
        Err(message) => Response::text(message).with_status(400),
    };
    write_response(out, response);
}

fn route(target: Option<&str>, req: Request, handlers: &[WebHandler]) -> Response {
    let handler = match target {
        Some(name) => handlers.iter().find(|h| h.name == name),
        None if handlers.len() == 1 => handlers.first(),
        None => None,
    };
    let Some(handler) = handler else {
        let name = target.unwrap_or("(none)");
        return Response::text(format!("no web function named `{name}`\n")).with_status(404);
    };
    match handler.method {
        Some(m) if !m.eq_ignore_ascii_case(&req.method) => {
            Response::text(format!("`{}` accepts {m} requests only\n", handler.name))
                .with_status(405)
                .with_header("allow", m)
        }
        _ => (handler.run)(req),
    }
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(m) => m.to_ascii_uppercase(),
    }
}

fn read_request(request: &IncomingRequest) -> Result<(Option<String>, Request), String> {
    let path_with_query = request.path_with_query().unwrap_or_else(|| "/".into());
    let mut req = Request::new(
        &method_name(&request.method()),
        &path_with_query,
        Vec::new(),
    );
    let mut target = None;
    for (name, value) in request.headers().entries() {
        if name.eq_ignore_ascii_case(FUNCTION_HEADER) {
            target = String::from_utf8(value).ok();
        } else {
            req.headers.push((name.to_ascii_lowercase(), value));
        }
    }
    let body = request
        .consume()
        .map_err(|()| "the request body was already taken".to_string())?;
    let stream = body
        .stream()
        .map_err(|()| "the request body stream was already taken".to_string())?;
    read_to_end(&stream, &mut req.body)
        .map_err(|e| format!("reading the request body failed: {e}"))?;
    drop(stream);
    Ok((target, req))
}

/// Appends everything `stream` yields to `into`, until it closes.
pub(crate) fn read_to_end(
    stream: &wasip2::io::streams::InputStream,
    into: &mut Vec<u8>,
) -> Result<(), String> {
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => into.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(()),
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
}

fn write_response(out: ResponseOutparam, response: Response) {
    let entries: Vec<(String, Vec<u8>)> = response
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    let (fields, status, body) = match Fields::from_list(&entries) {
        Ok(fields) => (fields, response.status, response.body),
        Err(e) => (
            Fields::new(),
            500,
            format!("the web function returned an invalid header: {e:?}\n").into_bytes(),
        ),
    };
    let outgoing = OutgoingResponse::new(fields);
    if outgoing.set_status_code(status).is_err() {
        let _ = outgoing.set_status_code(500);
    }
    let Ok(outgoing_body) = outgoing.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(outgoing));
    let Ok(stream) = outgoing_body.write() else {
        return;
    };
    for chunk in body.chunks(WRITE_CHUNK) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            // The client went away; nothing more to do.
            return;
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing_body, None);
}

/// Answers `req` with a file of the directory `dir` (a mount, e.g.
/// `/assets`): the part of the request path after `prefix` names the file
/// (`index.html` for a directory), percent-decoded. The content type
/// comes from the extension; an `ETag` lets clients revalidate (`If-None-Match` gets
/// 304). A missing file, or a path with `.` or `..` segments, is 404.
///
/// ```ignore
/// #[function(web(method = "GET"))]
/// fn site(req: Request) -> Response {
///     modal_guest::serve_dir(&req, "/assets", "/assets")
/// }
/// ```
pub fn serve_dir(req: &Request, prefix: &str, dir: &str) -> Response {
    let not_found = || Response::text("not found\n").with_status(404);
    let Some(rest) = req.path().strip_prefix(prefix.trim_end_matches('/')) else {
        return not_found();
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return not_found();
    }
    // Segments are percent-decoded (`my%20file.txt`); one that decodes to
    // `.`, `..`, a separator or a NUL cannot name a file of the mount.
    let mut segments = Vec::new();
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        let Ok(segment) = percent_encoding::percent_decode_str(raw).decode_utf8() else {
            return not_found();
        };
        if segment == "." || segment == ".." || segment.contains(['/', '\\', '\0']) {
            return not_found();
        }
        segments.push(segment.into_owned());
    }
    let mut path = std::path::PathBuf::from(dir);
    path.extend(&segments);
    if rest.is_empty() || rest.ends_with('/') || path.is_dir() {
        path.push("index.html");
    }
    let Ok(body) = std::fs::read(&path) else {
        return not_found();
    };
    let etag = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        format!("\"{:016x}\"", hasher.finish())
    };
    let fresh = req
        .header("if-none-match")
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if fresh {
        return Response::new(304).with_header("etag", &etag);
    }
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    Response::new(200)
        .with_header("content-type", mime.essence_str())
        .with_header("etag", &etag)
        .with_body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        let r = Request::new("get", "/hi?name=Ada%20L&x=1+2&empty&bad=%zz&cut=%4", "");
        assert_eq!(r.method(), "GET");
        assert_eq!(r.path(), "/hi");
        assert_eq!(r.query("name").as_deref(), Some("Ada L"));
        assert_eq!(r.query("x").as_deref(), Some("1 2"));
        assert_eq!(r.query("empty").as_deref(), Some(""));
        assert_eq!(r.query("bad").as_deref(), Some("%zz"));
        assert_eq!(r.query("cut").as_deref(), Some("%4"));
        assert_eq!(r.query("missing"), None);
    }

    #[test]
    fn query_edge_cases_follow_the_form_encoding() {
        let r = Request::new(
            "GET",
            "/?plus=a%2Bb+c&path=%2Fa%2Fb&raw=/a/b&bytes=%FFx&caf%C3%A9=1&dup=1&dup=2",
            "",
        );
        assert_eq!(r.query("plus").as_deref(), Some("a+b c"));
        assert_eq!(r.query("path").as_deref(), Some("/a/b"));
        assert_eq!(r.query("raw").as_deref(), Some("/a/b"));
        assert_eq!(r.query("bytes").as_deref(), Some("\u{fffd}x"));
        assert_eq!(r.query("café").as_deref(), Some("1"));
        assert_eq!(r.query("dup").as_deref(), Some("1"));
    }

    #[test]
    fn routing_checks_name_and_method() {
        fn ok(_: Request) -> Response {
            Response::text("ok")
        }
        let handlers = [
            WebHandler {
                name: "a",
                method: Some("GET"),
                run: ok,
            },
            WebHandler {
                name: "b",
                method: None,
                run: ok,
            },
        ];
        let get = || Request::new("GET", "/", "");
        assert_eq!(route(Some("a"), get(), &handlers).status, 200);
        assert_eq!(
            route(Some("a"), Request::new("POST", "/", ""), &handlers).status,
            405
        );
        assert_eq!(
            route(Some("b"), Request::new("POST", "/", ""), &handlers).status,
            200
        );
        assert_eq!(route(Some("c"), get(), &handlers).status, 404);
        assert_eq!(route(None, get(), &handlers).status, 404);
        assert_eq!(route(None, get(), &handlers[..1]).status, 200);
    }

    #[test]
    fn serve_dir_decodes_paths_and_refuses_escapes() {
        let dir = std::env::temp_dir().join(format!("serve-dir-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("my file.txt"), "spaced").unwrap();
        std::fs::write(dir.join("sub/index.html"), "<p>sub</p>").unwrap();
        let root = dir.to_str().unwrap();
        let get = |path: &str| serve_dir(&Request::new("GET", path, ""), "/assets", root);
        let found = get("/assets/my%20file.txt");
        assert_eq!((found.status, found.body.as_slice()), (200, &b"spaced"[..]));
        assert_eq!(found.header("content-type"), Some("text/plain"));
        assert_eq!(get("/assets/sub/").body, b"<p>sub</p>");
        assert_eq!(
            get("/assets/sub").status,
            200,
            "a directory serves its index"
        );
        for bad in [
            "/assets/%2e%2e/etc/passwd",
            "/assets/sub%2F..%2F..%2Fx",
            "/assets/../my%20file.txt",
            "/assets/%ff",
            "/assetsx/my%20file.txt",
            "/assets/missing",
        ] {
            assert_eq!(get(bad).status, 404, "{bad}");
        }
        let etag = found.header("etag").unwrap().to_string();
        let again =
            Request::new("GET", "/assets/my%20file.txt", "").with_header("if-none-match", &etag);
        assert_eq!(serve_dir(&again, "/assets", root).status, 304);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
