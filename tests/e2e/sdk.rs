//! The Rust SDK's web return values (examples/json-api: JSON for
//! `Serialize` values, 200/500 for `Result`s, text for `String`) and its
//! `async fn` functions (examples/async-fetch: two outbound fetches in
//! flight at once, an awaited call to another function, an async
//! scheduled function).

use crate::http::{Http, get};
use crate::server::Server;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use modal_test_support::{ASYNC_FETCH, JSON_API};
use serde_json::Value;
use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Status, content type and body of a web function's answer to `method
/// path`.
async fn answer(
    app: &modal_host::LoadedApp,
    function: &str,
    method: &str,
    path: &str,
) -> (u16, String, String) {
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = app
        .serve_http(function, request)
        .await
        .expect("the web function answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_functions_return_json_results_and_text() {
    let host = crate::host();
    let app = crate::load(&host, JSON_API, "json-api").await;
    let json = "application/json";
    let text = "text/plain; charset=utf-8";
    let catalogue = r#"[{"id":1,"name":"kettle"},{"id":2,"name":"teapot"}]"#;
    // -> Vec<Item> and -> Item: JSON, no annotation.
    assert_eq!(
        answer(&app, "items", "GET", "/").await,
        (200, json.into(), catalogue.into())
    );
    assert_eq!(
        answer(&app, "first", "GET", "/").await,
        (200, json.into(), r#"{"id":1,"name":"kettle"}"#.into())
    );
    // -> Result<Item, String>: Ok as JSON, Err as a 500 with its text.
    assert_eq!(
        answer(&app, "item", "GET", "/?id=2").await,
        (200, json.into(), r#"{"id":2,"name":"teapot"}"#.into())
    );
    assert_eq!(
        answer(&app, "item", "GET", "/?id=9").await,
        (500, text.into(), "no item 9".into())
    );
    // -> Result<Response, String>: the response as built.
    let request = hyper::Request::post("/?id=1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let created = app.serve_http("create", request).await.unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["location"], "/items/1");
    assert_eq!(
        answer(&app, "create", "POST", "/?id=5").await,
        (500, text.into(), "no item 5".into())
    );
    // Response::json of a Result: its Ok, or a 500 with the error as JSON
    // (not serde's {"Ok": ...}).
    assert_eq!(
        answer(&app, "lookup", "GET", "/?id=1").await,
        (200, json.into(), r#"{"id":1,"name":"kettle"}"#.into())
    );
    assert_eq!(
        answer(&app, "lookup", "GET", "/?id=x").await,
        (500, json.into(), r#""give ?id=N""#.into())
    );
    // -> String stays text.
    assert_eq!(
        answer(&app, "motto", "GET", "/").await,
        (200, text.into(), "tea, earl grey, hot".into())
    );
}

/// How long the barrier server holds a request while waiting for the
/// other one; a request still alone then is answered `alone`.
const BARRIER_WAIT: Duration = Duration::from_secs(5);

/// An HTTP server on 127.0.0.1 that answers `together PATH` to a request
/// only once a second request has arrived while the first was held (for
/// up to [`BARRIER_WAIT`]), else `alone PATH`: two fetches made one after
/// the other can never both read `together`.
fn barrier_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let arrived = Arc::new((Mutex::new(0usize), Condvar::new()));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let arrived = arrived.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("?").to_string();
                let (count, wake) = &*arrived;
                let mut count = count.lock().unwrap();
                *count += 1;
                wake.notify_all();
                let (count, _) = wake
                    .wait_timeout_while(count, BARRIER_WAIT, |c| *c < 2)
                    .unwrap();
                let word = if *count >= 2 { "together" } else { "alone" };
                drop(count);
                let body = format!("{word} {path}");
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// The body `counting_server` answers with after the count: large enough
/// to take many reads.
const COUNTED_TAIL: usize = 200_000;

/// An HTTP server on 127.0.0.1 that reads a request's whole body (by its
/// `content-length`) and answers `N ` (the bytes it got) followed by
/// [`COUNTED_TAIL`] bytes of `y`.
fn counting_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut got = Vec::new();
                let mut buf = [0u8; 64 * 1024];
                let (head_len, length) = loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while got.len() < head_len + length {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("{} {}", got.len() - head_len, "y".repeat(COUNTED_TAIL));
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// Scheduled runs of `heartbeat` that succeeded.
fn heartbeats(server: &Server) -> Vec<Value> {
    let path = "/api/v1/apps/async-fetch/logs?limit=100&function=heartbeat";
    let body = Http::blocking_get_json(&server.addr, &server.token(), path);
    body["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["trigger"] == "schedule" && e["outcome"] == "ok")
        .cloned()
        .collect()
}

#[test]
fn async_functions_fetch_concurrently_await_calls_and_run_on_schedules() {
    let port = barrier_server();
    let counting = format!("127.0.0.1:{}", counting_server());
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    let grant = format!("127.0.0.1:{port}");
    server.ok(&[
        "deploy",
        ASYNC_FETCH,
        "--name",
        "async-fetch",
        "--allow-http",
        &grant,
        "--allow-http",
        &counting,
    ]);

    // An async web function awaits two fetches at once: each is held by
    // the server until the other arrives.
    let host = "async-fetch--both.localhost";
    let path = format!("/?a=http://{grant}/a&b=http://{grant}/b");
    let started = Instant::now();
    let (status, body) = get(&server.addr, host, &path);
    assert_eq!(status, 200, "{body}");
    let both: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(both["a"]["body"], "together /a", "{both}");
    assert_eq!(both["b"]["body"], "together /b", "{both}");
    assert_eq!(
        (both["a"]["status"].as_u64(), both["b"]["status"].as_u64()),
        (Some(200), Some(200))
    );
    assert!(started.elapsed() < BARRIER_WAIT, "{:?}", started.elapsed());
    // The async client's errors read as the blocking one's.
    let denied = format!(
        "/?a=http://127.0.0.1:{0}/a&b=http://127.0.0.1:{0}/b",
        port.wrapping_add(1)
    );
    assert_eq!(
        get(&server.addr, host, &denied),
        (
            500,
            "the host denied the request (grant it at deploy with --allow-http HOST:PORT)".into()
        )
    );

    // Bodies of many writes and reads each way.
    let input = format!(r#"{{"url": "http://{counting}/upload", "size": 300000}}"#);
    let answer: String =
        serde_json::from_str(&server.ok(&["call", "async-fetch", "post", &input])).unwrap();
    let expected = format!("200 300000 {}", "y".repeat(COUNTED_TAIL));
    assert!(
        answer == expected,
        "{} bytes: {}…",
        answer.len(),
        &answer[..40.min(answer.len())]
    );

    // An async plain function awaits calls to another function.
    assert_eq!(
        server.ok(&["call", "async-fetch", "fourth_power", "3"]),
        "81\n"
    );

    // An async scheduled function runs every second and awaits a timer.
    let runs = crate::eventually(Duration::from_secs(10), || {
        let runs = heartbeats(&server);
        match runs.is_empty() {
            true => Err("no successful heartbeat".into()),
            false => Ok(runs),
        }
    });
    let logs = runs[0]["logs"].as_str().unwrap_or_default();
    assert!(
        logs.contains("heartbeat after an awaited timer (run run-async-fetch-heartbeat-"),
        "{logs}"
    );
}
