//! The server attacked as an outsider would (loopback only): idle and
//! trickling connections, abandoned requests, guests that do not answer,
//! a second server on the same state, shutdown under load, loose routing,
//! talkative errors, bad deploy input. Each test names the fault it pins.

use crate::http::{Http, get};
use crate::observe::{executions, wait_for};
use crate::schedule::{Fates, now_ms, runs};
use crate::server::{Server, wait_running};
use modal_test_support::{BAD_SCHEDULE, COUNTER, CRON, FAULTY, HELLO, HTTP_PLAIN};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Sends raw bytes on a fresh connection and reads the answer until the
/// server closes or `wait` passes.
pub(crate) fn raw(addr: &str, request: &str, wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The newest recorded execution of `function` once `accept` holds for it.
fn record_of(server: &Server, app: &str, function: &str, accept: impl Fn(&Value) -> bool) -> Value {
    crate::eventually(Duration::from_secs(10), || {
        let all = executions(server, app);
        let found = all
            .iter()
            .rev()
            .find(|e| e["function"] == function && accept(e));
        found
            .cloned()
            .ok_or_else(|| format!("no matching record of {app}.{function} in {all:?}"))
    })
}

// 1. Idle connections are closed and cannot lock clients out.
#[test]
fn silent_connections_cannot_lock_out_a_new_client() {
    let _ = rlimit::increase_nofile_limit(4096);
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_limited(state.path(), &["--header-timeout", "3s"], 512);
    server.ok(&["deploy", HELLO]);
    let mut silent = Vec::new();
    for i in 0..500 {
        let mut stream = TcpStream::connect(&server.addr).unwrap();
        if i % 3 == 1 {
            // Half an HTTP/2 preface, then nothing.
            stream.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
        } else if i % 3 == 2 {
            stream
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .unwrap();
        }
        silent.push(stream);
    }
    let started = Instant::now();
    let answer = raw(
        &server.addr,
        "GET /?name=Ann HTTP/1.1\r\nHost: hello--greet.localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    // A loaded machine may stream the body chunked instead of with a
    // length: either way the client is answered.
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("Hello, Ann!"),
        "no answer: {answer:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a new client waited {:?}",
        started.elapsed()
    );
    // The silent ones are closed once the header timeout passes.
    std::thread::sleep(Duration::from_secs(4));
    // The newest ones were not shed; each kind is closed by now.
    for stream in silent.iter_mut().rev().take(3) {
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 256];
        let mut closed = false;
        // An HTTP/2 connection may get the server's SETTINGS (and a
        // GOAWAY) before the end.
        for _ in 0..4 {
            match stream.read(&mut buf) {
                Ok(0) => closed = true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed = true,
                Err(e) => panic!("still open after the header timeout: {e}"),
            }
            break;
        }
        assert!(closed, "the connection was not closed");
    }
}

// 1. A request body that stalls ends with 408.
#[test]
fn a_stalled_request_body_ends_with_408() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(state.path(), &["--body-timeout", "1s"]);
    server.ok(&["deploy", HELLO]);
    let started = Instant::now();
    let answer = raw(
        &server.addr,
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 16384\r\n\r\ntoken=abc",
        Duration::from_secs(10),
    );
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let answer = raw(
        &server.addr,
        "POST / HTTP/1.1\r\nHost: hello--greet.localhost\r\nContent-Length: 100\r\n\r\nhello",
        Duration::from_secs(10),
    );
    assert_eq!(status_of(&answer), 408, "{answer}");
}

// 1. A connection whose answer still streams is not idle: it is never shed.
#[test]
fn a_streaming_answer_is_not_shed_for_a_new_connection() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(state.path(), &["--max-connections", "2"]);
    server.ok(&["deploy", HTTP_PLAIN, "--name", "echo"]);
    // A streams: the echo answers each chunk of its body as it comes.
    let mut a = TcpStream::connect(&server.addr).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    a.write_all(
        b"POST / HTTP/1.1\r\nHost: echo--web.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("first") {
        let n = a.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    // B has finished its request and idles; C needs a place.
    let mut b = TcpStream::connect(&server.addr).unwrap();
    b.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = b.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let answer = raw(
        &server.addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A still streams.
    a.write_all(b"6\r\nsecond\r\n").unwrap();
    seen.clear();
    while !String::from_utf8_lossy(&seen).contains("second") {
        let n = a.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "the streaming connection was shed");
        seen.extend_from_slice(&buf[..n]);
    }
}

// 1 and 13. A request the guest cannot be given costs no instance.
#[test]
fn an_unreadable_host_is_refused_without_touching_an_instance() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", HTTP_PLAIN, "--name", "plain"]);
    assert_eq!(
        get(&server.addr, "plain--web.localhost", "/count"),
        (200, "1\n".into())
    );
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(
            b"GET /web/plain/web/count HTTP/1.1\r\nHost: a\xffb\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert_eq!(status_of(&String::from_utf8_lossy(&answer)), 400);
    assert_eq!(
        get(&server.addr, "plain--web.localhost", "/count"),
        (200, "2\n".into()),
        "the warm instance is still there"
    );
}

// 2. A client that goes away before the response cancels the guest.
#[test]
fn an_abandoned_web_request_is_cancelled() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", FAULTY]);
    {
        let mut stream = TcpStream::connect(&server.addr).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: faulty--hang.localhost\r\n\r\n")
            .unwrap();
        // The client leaves once the guest runs.
        wait_running(&server, "faulty", "hang", 1);
    }
    // Stopped when the client left, not at the 1 s timeout.
    let record = record_of(&server, "faulty", "hang", |_| true);
    assert_eq!(record["outcome"], "cancelled", "{record}");
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    modal_test_support::rss(Some(pid))
}

// 3. Host memory a guest holds counts against its limit.
#[test]
fn host_side_resources_count_against_the_memory_limit() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(state.path(), &["--memory", "64"]);
    server.ok(&["deploy", HTTP_PLAIN, "--name", "plain"]);
    let host = "plain--web.localhost";
    assert_eq!(
        get(&server.addr, host, "/headers?n=10"),
        (200, "10\n".into())
    );
    let before = rss(server.pid());
    let (status, _) = get(&server.addr, host, "/headers?n=20000");
    assert_eq!(status, 500);
    let record = record_of(&server, "plain", "web", |e| e["outcome"] != "ok");
    assert_eq!(record["outcome"], "memory_limit", "{record}");
    let grown = rss(server.pid()).saturating_sub(before);
    assert!(
        grown < 2 * (64 << 20),
        "the server grew by {} MiB for a guest limited to 64 MiB",
        grown >> 20
    );
    // The instance is gone and the next request is served.
    assert_eq!(get(&server.addr, host, "/headers?n=1"), (200, "1\n".into()));
}

// 4. Memory of dropped instances goes back to the kernel.
#[test]
fn memory_of_dropped_bombs_is_returned_while_idle() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(state.path(), &["--memory", "128"]);
    server.ok(&["deploy", FAULTY]);
    server.ok(&["call", "faulty", "echo", "1"]);
    let before = rss(server.pid());
    let ids: Vec<String> = (0..6)
        .map(|_| server.ok(&["spawn", "faulty", "hog"]).trim().to_string())
        .collect();
    for id in &ids {
        let err = server.err(&["result", id, "--wait", "30s"]);
        assert!(err.contains("memory limit"), "{err}");
    }
    // Six bombs of 128 MiB ran; with nothing running, their memory must
    // not stay resident (the host idles: nothing else would free it).
    crate::eventually(Duration::from_secs(30), || {
        match rss(server.pid()).saturating_sub(before) {
            grown if grown < 300 << 20 => Ok(()),
            grown => Err(format!(
                "{} MiB still resident after the bombs were dropped",
                grown >> 20
            )),
        }
    });
}

// 5. Nothing in the state directory is readable by others.
#[test]
fn the_state_directory_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("artifacts")).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(state.join("artifacts/old.txt"), b"x").unwrap();
    std::fs::set_permissions(
        state.join("artifacts/old.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let server = Server::start(&state);
    server.ok(&["deploy", HELLO, "--env", "SECRET=hunter2"]);
    server.ok(&["call", "hello", "square", "3"]);
    wait_for(&server, "hello", 1);
    let mut seen = 0;
    let mut stack = vec![state.clone()];
    while let Some(dir) = stack.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", entry.path().display());
                seen += 1;
            }
        }
    }
    assert!(
        seen >= 6,
        "registry, executions, token, lock, artifact, compiled code"
    );
}

// 6. A second server on the same state directory exits at once.
#[test]
fn a_second_server_on_the_same_state_exits_naming_the_holder() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    let mut second = Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["server", "--listen", "127.0.0.1:0", "--state"])
        .arg(state.path())
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while second.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second server on the same state directory kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = second.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&state.path().display().to_string()), "{err}");
    assert!(err.contains(&format!("pid {}", server.pid())), "{err}");
    // Commands that only read the compiled-code cache still work beside it.
    let run = Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["run", &format!("{HELLO}::square"), "4"])
        .env("MODAL_STATE", state.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "16\n");
    // The first server is unharmed.
    server.ok(&["deploy", HELLO]);
}

/// Spawns the counter app's `slow` for `ms` milliseconds; its call id.
async fn spawn_slow(http: &mut Http, ms: u64) -> String {
    let input = format!(r#"{{"ms": {ms}}}"#);
    let (status, body) = http
        .post(
            "/api/v1/apps/counter/functions/slow/spawn",
            input.as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    body["call_id"].as_str().unwrap().to_string()
}

// 7. Accepted spawned calls wait for capacity instead of failing.
#[test]
fn accepted_spawned_calls_all_run_under_load() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(state.path(), &["--queue-timeout", "1s"]);
    server.ok(&["deploy", COUNTER]);
    let token = server.token();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // All 70 are accepted at once, more than the 64 instances can run.
    let ids: Vec<String> = runtime.block_on(async {
        let mut http = Http::connect(&server.addr, &token).await;
        let mut ids = Vec::new();
        for _ in 0..70 {
            ids.push(spawn_slow(&mut http, 2500).await);
        }
        ids
    });
    for id in &ids {
        assert_eq!(
            server.ok(&["result", id, "--wait", "30s"]),
            "{\"version\":\"1\"}\n",
            "{id}"
        );
    }
}

// 7b. `--instance-slots` bounds the instances alive at once: warm ones
// make room, busy ones make a call wait and then refuse it.
#[test]
fn instance_slots_bound_the_instances_alive_at_once() {
    for (flag, bad) in [
        ("--instance-slots", "0"),
        ("--instance-slots", "20001"),
        ("--instance-slots", "many"),
        ("--warm-memory", "0"),
        ("--warm-memory", "-5"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_modal"))
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                &format!("{flag}={bad}"),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {bad}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {bad}: {stderr}");
    }
    // Slots whose memory mappings could pass the kernel's limit are
    // refused at start, with the way out.
    let max_map_count: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if max_map_count < 20_000 * 7 {
        let out = Command::new(env!("CARGO_BIN_EXE_modal"))
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--instance-slots",
                "20000",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("vm.max_map_count") && stderr.contains("sysctl"),
            "{stderr}"
        );
    }
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        state.path(),
        &["--instance-slots", "1", "--queue-timeout", "1s"],
    );
    server.ok(&["deploy", COUNTER]);
    server.ok(&["deploy", HELLO]);
    // One slot serves both apps in turn: each warm instance makes room.
    assert_eq!(server.ok(&["call", "hello", "square", "3"]), "9\n");
    assert_eq!(server.ok(&["call", "counter", "incr"]), "1\n");
    assert_eq!(server.ok(&["call", "hello", "square", "4"]), "16\n");
    // With the slot busy, a call waits the queue timeout, then is refused.
    let token = server.token();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let id = runtime.block_on(async {
        let mut http = Http::connect(&server.addr, &token).await;
        spawn_slow(&mut http, 3000).await
    });
    wait_running(&server, "counter", "slow", 1);
    let asked = Instant::now();
    let refused = server.modal(&["call", "hello", "square", "5"]);
    let waited = asked.elapsed();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("limit of 1"), "{stderr}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "waited {waited:?} for a 1 s queue timeout"
    );
    assert_eq!(
        server.ok(&["result", &id, "--wait", "30s"]),
        "{\"version\":\"1\"}\n"
    );
    assert_eq!(server.ok(&["call", "hello", "square", "6"]), "36\n");
}

/// The CPUs each connection thread of server `pid` may run on.
fn connection_thread_cpus(pid: u32) -> Vec<String> {
    let mut cpus = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("modal-http-") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap();
        let allowed = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_string();
        cpus.push(allowed);
    }
    cpus.sort();
    cpus
}

#[test]
fn connection_threads_are_pinned_one_per_cpu_unless_told_not_to() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let owned = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    let owned_count: usize = owned
        .split(',')
        .map(|range| match range.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
            None => 1,
        })
        .sum();
    // The threads once each has started (and pinned itself).
    let settled = |pid: u32, pinned: bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let threads = connection_thread_cpus(pid);
            let distinct: std::collections::BTreeSet<_> = threads.iter().collect();
            if threads.len() == cpus && (!pinned || distinct.len() == cpus)
                || Instant::now() > deadline
            {
                return threads;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Pinned only when the process owns exactly one CPU per thread (as on
    // CI); a CPU quota below the CPU set leaves them to the kernel.
    let pins = cpus > 1 && owned_count == cpus;
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(state.path(), &[]);
    server.ok(&["deploy", HELLO]);
    let (status, answer) = get(&server.addr, "hello--greet.localhost", "/?name=Ada");
    assert_eq!((status, answer.as_str()), (200, "Hello, Ada!"));
    let threads = settled(server.pid(), pins);
    assert_eq!(
        threads.len(),
        cpus,
        "one connection thread per CPU: {threads:?}"
    );
    if pins {
        let distinct: std::collections::BTreeSet<_> = threads.iter().collect();
        assert_eq!(distinct.len(), cpus, "a CPU each: {threads:?}");
        assert!(
            threads.iter().all(|t| !t.contains([',', '-'])),
            "{threads:?}"
        );
    } else {
        assert!(
            threads.iter().all(|t| *t == owned),
            "{threads:?} vs {owned}"
        );
    }
    drop(server);

    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(state.path(), &["--no-pin-threads"]);
    server.ok(&["deploy", HELLO]);
    let (status, answer) = get(&server.addr, "hello--greet.localhost", "/?name=Ada");
    assert_eq!((status, answer.as_str()), (200, "Hello, Ada!"));
    let threads = settled(server.pid(), false);
    assert_eq!(threads.len(), cpus, "{threads:?}");
    assert!(
        threads.iter().all(|t| *t == owned),
        "{threads:?} vs {owned}"
    );
}

// 8. Shutdown keeps to its grace, records what it cut, and flushes.
#[test]
fn shutdown_keeps_to_the_grace_and_records_what_it_cuts() {
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_modal"))
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--grace",
            "2s",
            "--state",
        ])
        .arg(state.path())
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = crate::stdout_lines(&mut child);
    let first = lines.recv_timeout(Duration::from_secs(60)).unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_modal"))
            .args(args)
            .env("MODAL_SERVER", format!("http://{addr}"))
            .env("MODAL_STATE", state.path())
            .output()
            .unwrap()
    };
    assert!(cli(&["deploy", COUNTER]).status.success());
    let call = {
        let (addr, state) = (addr.clone(), state.path().to_path_buf());
        std::thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_modal"))
                .args(["call", "counter", "slow", r#"{"ms": 20000}"#])
                .env("MODAL_SERVER", format!("http://{addr}"))
                .env("MODAL_STATE", state)
                .output()
                .unwrap()
        })
    };
    // Wait until the call runs.
    crate::eventually(Duration::from_secs(20), || {
        let list = cli(&["app", "list", "--json"]);
        let apps: Value = serde_json::from_slice(&list.stdout).unwrap_or_default();
        match apps[0]["in_flight"].as_u64() {
            Some(1) => Ok(()),
            _ => Err(format!("the call never started: {apps}")),
        }
    });
    let asked = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let took = asked.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} with a 2 s grace"
    );
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!call.join().unwrap().status.success());
    let server = Server::start(state.path());
    let record = record_of(&server, "counter", "slow", |_| true);
    assert_eq!(record["outcome"], "cancelled", "{record}");
}

// 9. The control API answers while guests compute on every core.
#[test]
fn the_control_api_answers_while_guests_compute() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", FAULTY]);
    server.ok(&["deploy", HELLO]);
    let token = server.token();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    for _ in 0..cores {
        server.ok(&["spawn", "faulty", "spin"]);
    }
    wait_running(&server, "faulty", "spin", cores as u64);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut times: Vec<Duration> = runtime.block_on(async {
        let mut times = Vec::new();
        for _ in 0..40 {
            // A new connection each time, as the CLI makes.
            let started = Instant::now();
            let mut http = Http::connect(&server.addr, &token).await;
            let (status, _) = http
                .post("/api/v1/apps/hello/functions/square/call", b"3")
                .await;
            assert_eq!(status, 200);
            times.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        times
    });
    // The guests spin for two seconds, so the samples are few: the median
    // and the 90th percentile, not the slowest, which a busy machine may
    // delay now and then.
    times.sort();
    let median = times[times.len() / 2];
    let p90 = times[times.len() * 90 / 100];
    assert!(
        median < Duration::from_millis(100) && p90 < Duration::from_millis(250),
        "API median {median:?} and p90 {p90:?} while guests compute: {times:?}"
    );
}

// 10. No fire time is lost across a restart.
#[test]
fn every_fire_time_across_a_restart_runs_or_is_recorded_missed() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", CRON]);
    crate::eventually(Duration::from_secs(15), || {
        match Fates::of(&runs(&server, "tick")) {
            fates if fates.ran.len() >= 2 => Ok(()),
            fates => Err(format!("tick never ran twice: {fates:?}")),
        }
    });
    // Down for more than two seconds after the last fire time it took:
    // the gap always holds a fire time older than a second (missed) and,
    // at start-up, one from the last second (which must run, late).
    assert!(server.terminate().success());
    std::thread::sleep(Duration::from_millis(2100));
    let restarted = now_ms();
    let server = Server::start(state.path());
    // Every fire time from the first to the last that ran either ran once,
    // was skipped while the previous run went on, or is recorded missed.
    crate::eventually(Duration::from_secs(15), || {
        let fates = Fates::of(&runs(&server, "tick"));
        let after = fates.ran.iter().filter(|&&t| t > restarted).count();
        let complete = fates.complete();
        if complete.is_ok() && after >= 2 && !fates.missed.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{complete:?}; {after} runs after the restart; {fates:?}"
        ))
    });
}

// 11. A rejected deploy leaves nothing behind.
#[test]
fn a_rejected_deploy_leaves_no_artifact() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.err(&["deploy", BAD_SCHEDULE]);
    let artifacts: Vec<_> = std::fs::read_dir(state.path().join("artifacts"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(artifacts.is_empty(), "{artifacts:?}");
}

// 12 and 13. Web outcomes carry their status; an instance that did not
// answer is not reused; plain components take pool settings at deploy.
#[test]
fn web_outcomes_are_recorded_with_their_status() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", HTTP_PLAIN, "--name", "plain"]);
    let host = "plain--web.localhost";
    assert_eq!(get(&server.addr, host, "/count"), (200, "1\n".into()));
    assert_eq!(get(&server.addr, host, "/count"), (200, "2\n".into()));
    assert_eq!(get(&server.addr, host, "/silent").0, 500);
    assert_eq!(
        get(&server.addr, host, "/count"),
        (200, "1\n".into()),
        "the instance that did not answer was dropped"
    );
    assert_eq!(get(&server.addr, host, "/fail").0, 503);
    let records = wait_for(&server, "plain", 5);
    let find = |status: u64| {
        records
            .iter()
            .find(|e| e["http_status"] == status)
            .unwrap_or_else(|| panic!("no record with status {status}: {records:?}"))
    };
    assert_eq!(find(503)["outcome"], "error");
    assert_eq!(find(500)["outcome"], "no_response");
    assert_eq!(find(200)["outcome"], "ok");
    let stats = server.json(&["app", "stats", "plain", "--json"]);
    assert_eq!(stats[0]["errors"], 2, "{stats}");
    let (_, metrics) = get(&server.addr, &server.addr, "/metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with(r#"modal_executions_total{host=""#)
            && l.ends_with(r#"",app="plain",version="1",function="web",trigger="web",outcome="no_response"} 1"#)),
        "{metrics}"
    );
    let logs = server.ok(&["app", "logs", "plain"]);
    assert!(logs.contains("HTTP 503"), "{logs}");

    server.ok(&[
        "deploy",
        HTTP_PLAIN,
        "--name",
        "fresh",
        "--max-requests",
        "1",
    ]);
    for _ in 0..3 {
        assert_eq!(
            get(&server.addr, "fresh--web.localhost", "/count"),
            (200, "1\n".into())
        );
    }
    let err = server.err(&["deploy", HELLO, "--max-requests", "1"]);
    assert!(err.contains("for plain wasi:http components"), "{err}");
    let err = server.err(&[
        "deploy",
        HTTP_PLAIN,
        "--min-warm",
        "5",
        "--max-instances",
        "2",
    ]);
    assert!(err.contains("cannot exceed"), "{err}");
    // The settings survive a restart.
    let server = server.restart();
    for _ in 0..2 {
        assert_eq!(
            get(&server.addr, "fresh--web.localhost", "/count"),
            (200, "1\n".into())
        );
    }
}

// 14. Retries apply to calls and spawned calls, each attempt recorded.
#[test]
fn calls_are_retried_as_their_function_says() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", FAULTY]);
    assert_eq!(server.ok(&["call", "faulty", "flaky"]), "3\n");
    let records = wait_for(&server, "faulty", 3);
    let attempts: Vec<&Value> = records
        .iter()
        .filter(|e| e["function"] == "flaky")
        .collect();
    assert_eq!(attempts.len(), 3, "{records:?}");
    let call_id = attempts[0]["call_id"].as_str().unwrap();
    assert!(call_id.starts_with("call-"), "{call_id}");
    assert!(attempts.iter().all(|e| e["call_id"] == call_id));
    assert_eq!(
        attempts
            .iter()
            .map(|e| e["outcome"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["error", "error", "ok"]
    );
    // A spawned call is retried too: on the same warm instance, the
    // counter is past its failures now, so a fresh app shows it.
    server.ok(&["deploy", FAULTY, "--name", "other"]);
    let id = server.ok(&["spawn", "other", "flaky"]).trim().to_string();
    assert_eq!(server.ok(&["result", &id, "--wait", "20s"]), "3\n");
    let records = wait_for(&server, "other", 3);
    assert!(
        records.iter().all(|e| e["call_id"] == id.as_str()),
        "{records:?}"
    );
}

// 15. Host routing is exact.
#[test]
fn host_routing_is_case_insensitive_and_strict() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", HELLO]);
    let wait = Duration::from_secs(5);
    for host in ["Hello--Greet.LOCALHOST", "hello--greet.localhost."] {
        let answer = raw(
            &server.addr,
            &format!("GET /?name=A HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            wait,
        );
        assert_eq!(status_of(&answer), 200, "{host}: {answer}");
    }
    let answer = raw(
        &server.addr,
        "GET /?name=A HTTP/1.1\r\nHost: hello--greet.localhost\r\nHost: other.localhost\r\nConnection: close\r\n\r\n",
        wait,
    );
    assert_eq!(status_of(&answer), 400, "{answer}");
    let answer = raw(
        &server.addr,
        "GET http://hello--greet.localhost/?name=Abs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        wait,
    );
    // (The body may come chunked when the guest's answer is not complete
    // by the time its head is sent.)
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(answer.contains("Hello, Abs!"), "{answer}");
}

// 16. Public errors say what the client needs and no more.
#[test]
fn public_error_bodies_keep_guest_details_private() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", FAULTY]);
    let (status, body) = get(&server.addr, "faulty--crash.localhost", "/");
    assert_eq!(status, 500);
    assert!(!body.contains("wasm"), "{body}");
    assert!(!body.contains("panics on purpose"), "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["error"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let record = record_of(&server, "faulty", "crash", |_| true);
    assert!(record["logs"].as_str().unwrap().contains(&id), "{record}");
    let (status, body) = get(&server.addr, "faulty--nope.localhost", "/");
    assert_eq!(status, 404);
    assert!(!body.contains("echo") && !body.contains("spin"), "{body}");
}

// 17. Deploy-time environment is checked.
#[test]
fn reserved_and_malformed_environment_names_are_rejected() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    let out = server.modal(&["deploy", HELLO, "--env", "MODAL_APP_NAME=evil"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("names starting with `MODAL_` are set by the host"),
        "{err}"
    );
    let out = server.modal(&["deploy", HELLO, "--env", "HAS SPACE=1"]);
    assert!(!out.status.success());
    let token = server.token();
    for env in ["MODAL_FUNCTION%3Dx", "A%20B%3D1", "A%00B%3D1", "OK%3Da%00b"] {
        let (status, body) = Http::blocking_raw(
            &server.addr,
            Some(&token),
            "POST",
            &format!("/api/v1/apps/hello/deploy?env={env}"),
        );
        assert_eq!(status, 400, "{env}: {body}");
    }
    assert_eq!(
        server.json(&["app", "list", "--json"]),
        serde_json::json!([])
    );
}

// 19. A closed pipe ends the CLI quietly.
#[test]
fn the_cli_ends_quietly_on_a_closed_pipe() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", COUNTER]);
    server.ok(&["call", "counter", "incr"]);
    let mut piped = Command::new("bash")
        .args([
            "-o",
            "pipefail",
            "-c",
            "\"$0\" app logs counter --follow | head -n 1",
        ])
        .arg(env!("CARGO_BIN_EXE_modal"))
        .env("MODAL_SERVER", format!("http://{}", server.addr))
        .env("MODAL_STATE", state.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..3 {
        server.ok(&["call", "counter", "incr"]);
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = crate::eventually(Duration::from_secs(10), || {
        piped
            .try_wait()
            .unwrap()
            .ok_or_else(|| "the CLI kept running after its pipe closed".into())
    });
    let mut stderr = String::new();
    piped
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.trim().is_empty(), "not quiet: {stderr}");
    assert_ne!(status.code(), Some(101), "{stderr}");
}
