//! Web endpoints through `modal server`: statuses for every failure,
//! streaming bodies, HTTP/2 cleartext, slow and malformed clients, and a
//! redeploy under HTTP load.

use crate::http::{Http, get};
use crate::server::Server;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use modal_test_support::{FAULTY, HELLO, HTTP_PLAIN};
use serde_json::Value;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn error_of(body: &str) -> Value {
    serde_json::from_str::<Value>(body).unwrap_or_else(|_| panic!("not JSON: {body}"))["error"]
        .clone()
}

#[test]
fn failures_get_clear_statuses() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(state.path(), &["--max-request-body", "1"]);
    server.ok(&["deploy", FAULTY]);
    server.ok(&["deploy", HTTP_PLAIN, "--name", "plain"]);

    let start = Instant::now();
    let (status, body) = get(&server.addr, "faulty--hang.localhost", "/");
    assert_eq!(status, 504, "{body}");
    assert_eq!(
        error_of(&body)["message"],
        "function `hang` timed out after 1s"
    );
    assert!(start.elapsed() < Duration::from_secs(3));

    let (status, body) = get(&server.addr, "faulty--crash.localhost", "/");
    assert_eq!(status, 500, "{body}");
    let error = error_of(&body);
    assert_eq!(error["kind"], "trap");
    let id = error["id"].as_str().unwrap_or_default();
    assert_eq!(id.len(), 12, "an error id: {error}");
    assert_eq!(
        error["message"],
        format!("the web function failed; error id {id} in the app's logs says why"),
        "the guest's own words stay in its logs"
    );

    let (status, body) = get(&server.addr, "plain--web.localhost", "/silent");
    assert_eq!(status, 500, "{body}");
    assert_eq!(error_of(&body)["kind"], "no_response");

    // A handler that fails after part of its body: the connection is
    // closed, never a shorter body that looks complete.
    {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /partial HTTP/1.1\r\nHost: plain--web.localhost\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .expect("the server closes the connection");
        let answer = String::from_utf8_lossy(&answer);
        // hyper drops the connection, with or without the head sent.
        assert!(
            answer.is_empty() || answer.contains("content-length: 1000\r\n"),
            "{answer}"
        );
        assert!(!answer.contains("content-length: 5\r\n"), "{answer}");
    }

    let (status, body) = get(&server.addr, "nope--web.localhost", "/");
    assert_eq!(status, 404);
    assert_eq!(error_of(&body)["message"], "no app named `nope`");

    // Over the body limit: declared up front, and streamed without a length.
    let big = vec![b'x'; (1 << 20) + 1];
    let rt = runtime();
    let (status, body) = rt.block_on(async {
        let mut http = Http::connect(&server.addr, "").await;
        http.request("POST", "plain--web.localhost", "/", &big, false)
            .await
    });
    assert_eq!(status, 413, "{body}");
    // Without a declared length (chunked), the limit cuts the stream; the
    // SDK's handler fails to read the body and the host answers 413. The
    // client is still sending (24 MiB, far past what socket buffers hold)
    // and must get the answer, not a reset.
    let status = rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let body = Chunks {
            left: 384,
            chunk: Bytes::from(vec![b'y'; 64 << 10]),
        };
        let request = hyper::Request::post("/")
            .header("host", "faulty--crash.localhost")
            .body(body)
            .unwrap();
        sender
            .send_request(request)
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    });
    assert_eq!(status, 413);

    server.ok(&["app", "stop", "plain"]);
    let (status, body) = get(&server.addr, "plain--web.localhost", "/");
    assert_eq!(status, 410);
    assert_eq!(
        error_of(&body)["message"],
        "app `plain` is stopped; deploy it again to restart it"
    );
}

/// A body of `left` equal chunks with no declared length (sent chunked).
struct Chunks {
    left: usize,
    chunk: Bytes,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(self.chunk.clone()))))
    }
}

#[test]
fn a_computing_guest_does_not_hold_up_the_requests_of_its_connection_thread() {
    // One CPU, so one connection thread: every request below shares it
    // with `hang`, which computes until its 1 s timeout, and one after
    // another keeps the thread computing throughout.
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_on_one_cpu(state.path(), &[]);
    server.ok(&["deploy", FAULTY]);
    server.ok(&["deploy", HTTP_PLAIN, "--name", "plain"]);
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let (addr, stop) = (server.addr.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(get(&addr, "faulty--hang.localhost", "/").0, 504);
                }
            })
        })
        .collect();
    crate::server::wait_running(&server, "faulty", "hang", 1);
    // Each on a new connection: handed to the thread, registered with its
    // poller, read and answered while the guest computes.
    let mut times: Vec<Duration> = (0..8)
        .map(|_| {
            let start = Instant::now();
            let (status, body) = get(&server.addr, "plain--web.localhost", "/");
            assert_eq!(status, 200, "{body}");
            start.elapsed()
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    for spinner in spinners {
        spinner.join().unwrap();
    }
    times.sort();
    // A guest yields every epoch tick (10 ms); a thread that ran it again
    // before looking at its sockets would leave these waiting for many
    // ticks (~0.6 s with tokio's defaults).
    assert!(
        times[times.len() / 2] < Duration::from_millis(150),
        "requests beside a computing guest took {times:?}"
    );
}

#[test]
fn bodies_of_several_mib_stream_intact_both_ways() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", HTTP_PLAIN, "--name", "echo"]);
    let payload: Vec<u8> = (0..(6 << 20))
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let rt = runtime();
    let (status, body) = rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let request = hyper::Request::post("/")
            .header("host", "echo--web.localhost")
            .body(Full::new(Bytes::from(payload.clone())))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    });
    assert_eq!(status, 200);
    assert_eq!(body.len(), payload.len());
    assert!(body == payload, "the echoed body differs");
}

#[test]
fn http2_cleartext_and_keep_alive_are_served() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", HELLO]);
    let rt = runtime();
    let bodies = rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut bodies = Vec::new();
        for name in ["a", "b", "c"] {
            let request =
                hyper::Request::get(format!("http://hello--greet.localhost/?name={name}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.version(), hyper::Version::HTTP_2);
            bodies.push(response.into_body().collect().await.unwrap().to_bytes());
        }
        bodies
    });
    assert_eq!(bodies, ["Hello, a!", "Hello, b!", "Hello, c!"]);
    // HTTP/1.1 keep-alive: several requests on one connection.
    let replies = rt.block_on(async {
        let mut http = Http::connect(&server.addr, "").await;
        let mut replies = Vec::new();
        for name in ["x", "y"] {
            replies.push(
                http.request(
                    "GET",
                    "hello--greet.localhost",
                    &format!("/?name={name}"),
                    b"",
                    false,
                )
                .await,
            );
        }
        replies
    });
    assert_eq!(
        replies,
        [
            (200, "Hello, x!".to_string()),
            (200, "Hello, y!".to_string())
        ]
    );
    // A handler that finished before its answer went out: the body is sent
    // with its length, not chunked. A client's own `modal-function` header
    // does not steer the request to another function. (On a busy machine
    // an epoch tick can pause the handler after it set the head: then the
    // body streams, chunked, which is valid; a few tries see it finish.)
    use std::io::{Read, Write};
    let with_length = (0..5).any(|_| {
        let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
        stream
            .write_all(
                b"GET /?name=z HTTP/1.1\r\nHost: hello--greet.localhost\r\nModal-Function: square\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        if answer.contains("transfer-encoding: chunked\r\n") {
            assert!(answer.contains("\r\nHello, z!\r\n"), "{answer}");
            return false;
        }
        assert!(answer.contains("content-length: 9\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nHello, z!"), "{answer}");
        true
    });
    assert!(
        with_length,
        "five answers of a finished handler were chunked"
    );
}

#[test]
fn slow_and_malformed_clients_do_not_disturb_others() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(state.path(), &["--header-timeout", "1s"]);
    server.ok(&["deploy", HELLO]);
    // A client that never finishes its headers is cut off...
    let mut slow = std::net::TcpStream::connect(&server.addr).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: hello--greet.localhost\r\n")
        .unwrap();
    // ...a malformed request gets 400...
    let mut bad = std::net::TcpStream::connect(&server.addr).unwrap();
    bad.write_all(b"THIS IS NOT HTTP\r\n\r\n").unwrap();
    let mut answer = String::new();
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = bad.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    // ...and everyone else is served meanwhile.
    assert_eq!(
        get(&server.addr, "hello--greet.localhost", "/?name=ok"),
        (200, "Hello, ok!".to_string())
    );
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "the slow client was cut off"
    );
}

#[test]
fn a_redeploy_under_http_load_fails_no_request() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", HELLO]);
    let rt = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..32)
        .map(|i| {
            let (addr, stop, count) = (server.addr.clone(), stop.clone(), count.clone());
            rt.spawn(async move {
                let mut http = Http::connect(&addr, "").await;
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let reply = http
                        .request(
                            "GET",
                            "hello--greet.localhost",
                            &format!("/?name=c{i}"),
                            b"",
                            false,
                        )
                        .await;
                    count.fetch_add(1, Ordering::Relaxed);
                    if reply != (200, format!("Hello, c{i}!")) {
                        failures.push(reply);
                    }
                }
                failures
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(600));
    server.ok(&["deploy", HELLO]);
    std::thread::sleep(Duration::from_millis(600));
    server.ok(&["deploy", HELLO]);
    std::thread::sleep(Duration::from_millis(600));
    // The load goes on until it was real (a busy machine serves fewer).
    crate::eventually(Duration::from_secs(20), || {
        match count.load(Ordering::Relaxed) {
            501.. => Ok(()),
            n => Err(format!("{n} requests")),
        }
    });
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<_> = clients
        .into_iter()
        .flat_map(|c| rt.block_on(c).unwrap())
        .collect();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(
        count.load(Ordering::Relaxed) > 500,
        "{} requests",
        count.load(Ordering::Relaxed)
    );
}

#[test]
fn modal_serve_redeploys_on_change_without_dropping_requests() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.wasm");
    std::fs::copy(HELLO, &file).unwrap();
    let state = dir.path().join("state");
    let serve = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_modal"))
            .args(["serve", file.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .arg("--state")
            .arg(&state)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = serve();
    let rx = crate::stdout_lines(&mut child);
    let console = crate::stderr_lines(&mut child);
    let first = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(first.contains("(compiled in "), "{first}");
    let addr = crate::served_address(&first);
    let lines: Vec<String> = (0..3)
        .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
        .collect();
    assert!(
        lines[0].contains("greet => http://app--greet.localhost:"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains(&format!("greet also answers at http://{addr}/")),
        "{lines:?}"
    );
    assert_eq!(
        get(&addr, &addr, "/?name=dev"),
        (200, "Hello, dev!".to_string())
    );
    // One line per request on the console (the path, not the query).
    let line = console.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        line.starts_with("GET / 200 ") && line.ends_with(" ms"),
        "{line}"
    );

    let rt = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (addr, stop) = (addr.clone(), stop.clone());
        rt.spawn(async move {
            let mut http = Http::connect(&addr, "").await;
            let mut failures = Vec::new();
            let mut answers = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = http.request("GET", &addr, "/", b"", false).await;
                if status != 200 {
                    failures.push((status, body));
                } else {
                    answers.insert(body);
                }
            }
            (failures, answers)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let tmp = dir.path().join("app.wasm.tmp");
    std::fs::copy(HTTP_PLAIN, &tmp).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let redeployed = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(redeployed.starts_with("✓ Redeployed as v2"), "{redeployed}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (failures, answers) = rt.block_on(load).unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(answers.contains("Hello, world!"), "{answers:?}");
    assert!(
        answers.contains("Hello from wasi:http! You asked for /\n"),
        "{answers:?}"
    );
    // A broken file keeps the running version.
    std::fs::write(&tmp, b"broken").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let refused = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(refused.starts_with("✗ Not redeployed"), "{refused}");
    assert_eq!(get(&addr, &addr, "/x").0, 200);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    // It names itself on the way out, not the server.
    let rest: Vec<String> =
        std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(5)).ok()).collect();
    assert!(
        rest.iter()
            .any(|l| l.starts_with("modal serve shutting down"))
            && rest.last().is_some_and(|l| l == "modal serve stopped")
            && !rest.iter().any(|l| l.contains("modal server")),
        "{rest:?}"
    );
    // Started again on the same state: nothing to compile.
    std::fs::copy(HELLO, &file).unwrap();
    let mut child = serve();
    let rx = crate::stdout_lines(&mut child);
    let first = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(first.contains("(compiled code from the cache)"), "{first}");
    let _ = child.kill();
    let _ = child.wait();
}

/// A one-route HTTP server on 127.0.0.1 answering `pong`, for outbound
/// requests; it runs on its own thread until the test ends.
fn pong_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\npong",
            );
        }
    });
    port
}

#[test]
fn outbound_http_is_denied_unless_granted() {
    let port = pong_server();
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    let grant = format!("127.0.0.1:{port}");
    server.ok(&[
        "deploy",
        modal_test_support::FETCH,
        "--name",
        "granted",
        "--allow-http",
        &grant,
    ]);
    server.ok(&["deploy", modal_test_support::FETCH, "--name", "denied"]);
    let url = format!("\"http://127.0.0.1:{port}/ping\"");
    assert_eq!(
        server.ok(&["call", "granted", "get", &url]),
        "\"200 pong\"\n"
    );
    let err = server.err(&["call", "denied", "get", &url]);
    assert_eq!(
        err,
        "error: function `get` failed: the host denied the request (grant it at deploy with --allow-http HOST:PORT)"
    );
    let other = format!("\"http://127.0.0.1:{}/ping\"", port.wrapping_add(1));
    let err = server.err(&["call", "granted", "get", &other]);
    assert_eq!(
        err,
        "error: function `get` failed: the host denied the request (grant it at deploy with --allow-http HOST:PORT)",
        "only the granted port"
    );
    // A restart keeps the grant.
    let server = server.restart();
    assert_eq!(
        server.ok(&["call", "granted", "get", &url]),
        "\"200 pong\"\n"
    );
    // `modal run` takes the same flag.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modal"))
        .args([
            "run",
            &format!("{}::get", modal_test_support::FETCH),
            &url,
            "--allow-http",
            &grant,
        ])
        .env("MODAL_STATE", state.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "\"200 pong\"\n");
}

#[test]
fn a_flood_beyond_max_instances_gets_503_with_retry_after() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(state.path(), &["--queue-timeout", "200ms"]);
    server.ok(&["deploy", FAULTY]);
    let rt = runtime();
    let answers = rt.block_on(async {
        let requests: Vec<_> = (0..3)
            .map(|_| {
                let addr = server.addr.clone();
                tokio::spawn(async move {
                    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .unwrap();
                    tokio::spawn(conn);
                    let request = hyper::Request::get("/")
                        .header("host", "faulty--hang.localhost")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let response = sender.send_request(request).await.unwrap();
                    let retry = response
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string());
                    (response.status().as_u16(), retry)
                })
            })
            .collect();
        let mut answers = Vec::new();
        for r in requests {
            answers.push(r.await.unwrap());
        }
        answers.sort();
        answers
    });
    assert_eq!(
        answers,
        [
            (503, Some("1".to_string())),
            (503, Some("1".to_string())),
            (504, None)
        ],
        "one request ran (and timed out); the others were refused after queueing"
    );
}

#[test]
fn modal_serve_shows_guest_output_live_prefixed_with_the_function() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["serve", modal_test_support::CRON, "--listen", "127.0.0.1:0"])
        .arg("--state")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let console = crate::stderr_lines(&mut child);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let found = loop {
        let Ok(line) = console.recv_timeout(Duration::from_secs(10)) else {
            break false;
        };
        seen.push(line.clone());
        if line.starts_with("[tick] tick at ") {
            break true;
        }
        assert!(std::time::Instant::now() < deadline, "{seen:?}");
    };
    assert!(found, "the scheduled function's print shows: {seen:?}");
    // Then the execution's own line.
    let summary = console.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        summary.starts_with("tick [schedule] ok ") && summary.ends_with(" ms"),
        "{summary}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
