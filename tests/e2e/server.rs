//! `modal server` with the real `modal` CLI: deploys, zero-downtime
//! redeploys under load, restarts (graceful and SIGKILL), stop, rollback,
//! bad input.

use crate::http::{Http, get};
use modal_test_support::{COUNTER, CRON, FAULTY, HELLO, HTTP_PLAIN};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A `modal server` child process on 127.0.0.1 (port chosen by the OS),
/// killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    pub state: PathBuf,
    extra: Vec<String>,
    /// Where the server's log goes (at `debug`), if not to the test's
    /// stderr (at `error`).
    log: Option<PathBuf>,
}

impl Server {
    pub fn start(state: &Path) -> Server {
        Server::start_with(state, &[])
    }

    pub fn start_with(state: &Path, extra: &[&str]) -> Server {
        Server::start_in(
            Command::new(env!("CARGO_BIN_EXE_modal")),
            state,
            "127.0.0.1:0",
            extra,
            None,
        )
    }

    /// A server that appends its whole log (`RUST_LOG=debug`) to `log`,
    /// for tests of what the log must never hold.
    pub fn start_logged(state: &Path, extra: &[&str], log: &Path) -> Server {
        let command = Command::new(env!("CARGO_BIN_EXE_modal"));
        Server::start_in(command, state, "127.0.0.1:0", extra, Some(log))
    }

    /// A server whose process may open at most `nofile` files.
    pub fn start_limited(state: &Path, extra: &[&str], nofile: u32) -> Server {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_modal"));
        Server::start_in(command, state, "127.0.0.1:0", extra, None)
    }

    /// A server whose process may run on one CPU only (the first this
    /// test may use), so it has a single connection thread.
    pub fn start_on_one_cpu(state: &Path, extra: &[&str]) -> Server {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let cpu = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .and_then(|list| list.trim().split([',', '-']).next())
            .expect("the CPUs this test may use")
            .to_string();
        let mut command = Command::new("taskset");
        command.args(["-c", &cpu]).arg(env!("CARGO_BIN_EXE_modal"));
        Server::start_in(command, state, "127.0.0.1:0", extra, None)
    }

    fn start_in(
        mut command: Command,
        state: &Path,
        listen: &str,
        extra: &[&str],
        log: Option<&Path>,
    ) -> Server {
        command
            .args(["server", "--listen", listen, "--state"])
            .arg(state)
            .args(extra)
            .env_remove("MODAL_SERVER")
            .env_remove("MODAL_TOKEN")
            .stdout(Stdio::piped());
        match log {
            Some(file) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                    .expect("the log file opens");
                command.env("RUST_LOG", "debug").stderr(file)
            }
            None => command.env("RUST_LOG", "error").stderr(Stdio::inherit()),
        };
        let mut child = command.spawn().expect("modal server starts");
        // The reader keeps draining, so the server never blocks on a full pipe.
        let rx = crate::stdout_lines(&mut child);
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server prints its address");
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_string();
        Server {
            child,
            addr,
            state: state.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log: log.map(Path::to_path_buf),
        }
    }

    /// Runs the `modal` CLI against this server.
    pub fn modal(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_modal"))
            .args(args)
            .env("MODAL_SERVER", format!("http://{}", self.addr))
            .env("MODAL_STATE", &self.state)
            .env_remove("MODAL_TOKEN")
            .output()
            .expect("modal runs")
    }

    /// Runs the CLI and returns stdout, failing the test if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.modal(args);
        assert!(
            out.status.success(),
            "modal {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI, expects failure, returns its last stderr line.
    pub fn err(&self, args: &[&str]) -> String {
        let out = self.modal(args);
        assert!(!out.status.success(), "modal {args:?} should fail");
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).expect("JSON output")
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.state.join("token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// SIGKILL, no goodbye.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the process to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.signal_term();
        self.child.wait().expect("server exits")
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts a new server on the same state directory.
    pub fn restart(self) -> Server {
        let (state, log) = (self.state.clone(), self.log.clone());
        let extra = self.extra.clone();
        self.kill();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let command = Command::new(env!("CARGO_BIN_EXE_modal"));
        Server::start_in(command, &state, "127.0.0.1:0", &extra, log.as_deref())
    }

    /// SIGKILL, then a new server on the same state directory and address.
    pub fn restart_on_same_address(self) -> Server {
        let (state, addr, log) = (self.state.clone(), self.addr.clone(), self.log.clone());
        let extra = self.extra.clone();
        self.kill();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let command = Command::new(env!("CARGO_BIN_EXE_modal"));
        Server::start_in(command, &state, &addr, &extra, log.as_deref())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Name, state, live version and function count of every app.
fn summary(server: &Server) -> Vec<(String, String, u64, u64)> {
    let apps = server.json(&["app", "list", "--json"]);
    apps.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let text = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            let number = |k: &str| a[k].as_u64().unwrap_or_default();
            (
                text("name"),
                text("state"),
                number("live_version"),
                number("functions"),
            )
        })
        .collect()
}

/// Waits (ten seconds at most) until `n` calls of `function` of `app` run
/// at once, each on an instance made for it: the function must have had
/// no instance of its own before these calls.
pub(crate) fn wait_running(server: &Server, app: &str, function: &str, n: u64) {
    let token = server.token();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let detail = Http::blocking_get_json(&server.addr, &token, &format!("/api/v1/apps/{app}"));
        let pool = detail["pools"]
            .as_array()
            .and_then(|pools| pools.iter().find(|p| p["function"] == function))
            .cloned()
            .unwrap_or_default();
        let (busy, created) = (pool["busy"].as_u64(), pool["created"].as_u64());
        if busy == Some(n) && created.is_some_and(|c| c >= n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} calls of {app}.{function} never ran at once: {detail}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn live_version(server: &Server, app: &str) -> Option<u64> {
    let apps = server.json(&["app", "list", "--json"]);
    apps.as_array()?.iter().find(|a| a["name"] == app)?["live_version"].as_u64()
}

#[test]
fn deploy_call_redeploy_call() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    let out = server.ok(&["deploy", COUNTER, "--tag", "first"]);
    assert!(out.contains("✓ App deployed as counter v1"), "{out}");
    assert!(out.contains("🔨 Created function incr."), "{out}");
    assert_eq!(
        server.ok(&["call", "counter", "slow", r#"{"ms": 1}"#]),
        "{\"version\":\"1\"}\n"
    );
    assert_eq!(server.ok(&["call", "counter", "incr"]), "1\n");
    assert_eq!(
        server.ok(&["call", "counter", "incr"]),
        "2\n",
        "a warm instance served the second call"
    );
    let out = server.ok(&["deploy", COUNTER]);
    assert!(
        out.contains("✓ App deployed as counter v2, replacing v1"),
        "{out}"
    );
    assert!(out.contains("✓ Compiled (from cache"), "{out}");
    assert_eq!(
        server.ok(&["call", "counter", "slow", r#"{"ms": 1}"#]),
        "{\"version\":\"2\"}\n"
    );
    assert_eq!(
        server.ok(&["call", "counter", "incr"]),
        "1\n",
        "v2 runs on new instances"
    );
    assert_eq!(live_version(&server, "counter"), Some(2));
    let history = server.ok(&["app", "history", "counter"]);
    assert!(history.contains("v2       live"), "{history}");
    assert!(history.contains("first"), "{history}");
    // Pinned to a kept version.
    assert_eq!(
        server.ok(&["call", "counter", "slow", r#"{"ms": 1}"#, "--version", "1"]),
        "{\"version\":\"1\"}\n"
    );
    assert_eq!(
        server.err(&["call", "counter", "incr", "--version", "9"]),
        "error: app `counter` has no version 9"
    );
}

#[test]
fn web_functions_are_reached_by_deployment_name() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    let out = server.ok(&["deploy", HELLO]);
    let url = format!(
        "http://hello--greet.localhost:{}/",
        server.addr.rsplit(':').next().unwrap()
    );
    assert!(
        out.contains(&format!("Created web function greet => {url}")),
        "{out}"
    );
    let (status, body) = get(&server.addr, "hello--greet.localhost", "/?name=Ann");
    assert_eq!((status, body.as_str()), (200, "Hello, Ann!"));
    let (status, body) = get(&server.addr, &server.addr, "/web/hello/greet/?name=Bo");
    assert_eq!((status, body.as_str()), (200, "Hello, Bo!"));
    server.ok(&["deploy", HTTP_PLAIN, "--name", "plain"]);
    let (status, body) = get(&server.addr, "plain--web.localhost", "/a/b?c=d");
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from wasi:http! You asked for /a/b?c=d\n")
    );
    let (status, body) = get(&server.addr, "nope--greet.localhost", "/");
    assert_eq!(status, 404);
    assert!(body.contains("no app named `nope`"), "{body}");
}

#[test]
fn redeploy_under_load_fails_no_call() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", COUNTER]);
    let token = server.token();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    // Clients that have had an answer from v3.
    let on_v3 = Arc::new(AtomicU64::new(0));
    let path = "/api/v1/apps/counter/functions/slow/call";
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (addr, token, stop, calls, on_v3) = (
                server.addr.clone(),
                token.clone(),
                stop.clone(),
                calls.clone(),
                on_v3.clone(),
            );
            runtime.spawn(async move {
                let mut http = Http::connect(&addr, &token).await;
                let mut newest = 0u64;
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = http.post(path, br#"{"ms": 2}"#).await;
                    calls.fetch_add(1, Ordering::Relaxed);
                    if status != 200 {
                        failures.push(format!("{status}: {body}"));
                        continue;
                    }
                    let v: Value = serde_json::from_str(&body).unwrap();
                    let version: u64 = v["output"]["version"].as_str().unwrap().parse().unwrap();
                    assert!(
                        version >= newest,
                        "a call went back from v{newest} to v{version}"
                    );
                    if version == 3 && newest < 3 {
                        on_v3.fetch_add(1, Ordering::Relaxed);
                    }
                    newest = version;
                }
                (failures, newest)
            })
        })
        .collect();
    // A long call that starts on v1 and must finish there.
    let long = {
        let (addr, token) = (server.addr.clone(), token.clone());
        runtime.spawn(async move {
            Http::connect(&addr, &token)
                .await
                .post(path, br#"{"ms": 3500}"#)
                .await
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    let out = server.ok(&["deploy", COUNTER]);
    assert!(out.contains("v2, replacing v1"), "{out}");
    // The short calls still on v1 finish within moments (on a busy machine
    // the first listing may still count some); the long one stays.
    let deadline = Instant::now() + Duration::from_millis(2500);
    loop {
        let list = server.ok(&["app", "list"]);
        if list.contains("v1 draining (1 in flight)") {
            break;
        }
        assert!(
            list.contains("v1 draining (") && Instant::now() < deadline,
            "draining is visible, down to the long call: {list}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(700));
    server.ok(&["deploy", COUNTER]);
    assert_eq!(
        server.ok(&["call", "counter", "slow", r#"{"ms": 1}"#]),
        "{\"version\":\"3\"}\n"
    );
    // The load goes on until every client has had an answer from v3 and
    // the load was real (or a client ended early: its panic is shown below).
    crate::eventually(Duration::from_secs(20), || {
        let (on_v3, calls) = (on_v3.load(Ordering::Relaxed), calls.load(Ordering::Relaxed));
        match (on_v3 >= 32 && calls > 500) || clients.iter().any(|c| c.is_finished()) {
            true => Ok(()),
            false => Err(format!(
                "{on_v3} of 32 clients reached v3 after {calls} calls"
            )),
        }
    });
    stop.store(true, Ordering::Relaxed);
    let mut total_failures = Vec::new();
    for client in clients {
        let (failures, newest) = runtime.block_on(client).unwrap();
        total_failures.extend(failures);
        assert_eq!(newest, 3, "every client ended on v3");
    }
    assert!(
        total_failures.is_empty(),
        "failed calls: {total_failures:?}"
    );
    assert!(
        calls.load(Ordering::Relaxed) > 500,
        "the load was real: {} calls",
        calls.load(Ordering::Relaxed)
    );
    let (status, body) = runtime.block_on(long).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["output"]["version"], "1", "the long call finished on v1");
    // v1 and v2 drain to zero instances.
    crate::eventually(Duration::from_secs(10), || {
        let history = server.json(&["app", "history", "counter", "--json"]);
        let mut old = history
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["version"] != 3);
        match old.all(|v| v["status"] == "retired" && v["instances"] == 0) {
            true => Ok(()),
            false => Err(format!("old versions did not drain: {history}")),
        }
    });
}

fn compiled_files(state: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut found = Vec::new();
    let mut dirs = vec![state.join("compiled")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push((path.clone(), entry.metadata().unwrap().modified().unwrap()));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn restarts_keep_apps_and_do_not_recompile() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", HELLO]);
    server.ok(&["deploy", COUNTER]);
    server.ok(&["deploy", COUNTER]);
    let compiled = compiled_files(state.path());
    assert_eq!(compiled.len(), 2);
    let before = summary(&server);

    // A graceful stop lets a call in progress finish; then a SIGKILL: both
    // come back the same.
    let slow = Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["call", "counter", "slow", r#"{"ms": 800}"#])
        .env("MODAL_SERVER", format!("http://{}", server.addr))
        .env("MODAL_STATE", &server.state)
        .stderr(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_running(&server, "counter", "slow", 1);
    assert!(server.terminate().success());
    let out = slow.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"version\":\"2\"}\n",
        "the call in progress finished"
    );
    let server = Server::start(state.path());
    assert_eq!(summary(&server), before);
    assert_eq!(server.ok(&["call", "hello", "square", "12"]), "144\n");
    let server = server.restart();
    assert_eq!(summary(&server), before);
    assert_eq!(
        server.ok(&["call", "counter", "slow", r#"{"ms": 1}"#]),
        "{\"version\":\"2\"}\n"
    );
    let (status, body) = get(&server.addr, "hello--greet.localhost", "/?name=again");
    assert_eq!((status, body.as_str()), (200, "Hello, again!"));
    assert_eq!(
        compiled_files(state.path()),
        compiled,
        "no recompilation after restarts"
    );
}

#[test]
fn a_deploy_killed_midway_leaves_the_old_or_the_new_version() {
    let state = tempfile::tempdir().unwrap();
    let mut server = Server::start(state.path());
    server.ok(&["deploy", HELLO, "--name", "app"]);
    // Each component is new to the cache, so compiling takes long enough
    // for the kill to land in the middle of the deploy.
    let cases = [(COUNTER, 30), (FAULTY, 120), (CRON, 60), (HTTP_PLAIN, 250)];
    for (wasm, delay_ms) in cases {
        let before = live_version(&server, "app").unwrap();
        let deploy = Command::new(env!("CARGO_BIN_EXE_modal"))
            .args(["deploy", wasm, "--name", "app"])
            .env("MODAL_SERVER", format!("http://{}", server.addr))
            .env("MODAL_STATE", &server.state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        server = server.restart();
        let mut deploy = deploy;
        let _ = deploy.wait();
        let after = live_version(&server, "app").unwrap();
        assert!(
            after == before || after == before + 1,
            "v{before} became v{after}"
        );
        let history = server.json(&["app", "history", "app", "--json"]);
        assert_eq!(
            history.as_array().unwrap().len() as u64,
            after,
            "no half-recorded version"
        );
        let detail = Http::blocking_get_json(&server.addr, &server.token(), "/api/v1/apps/app");
        assert!(
            detail["app"]["load_error"].is_null(),
            "the live version loads: {detail}"
        );
        assert!(detail["app"]["functions"].as_u64().unwrap() > 0);
    }
}

#[test]
fn bad_deploys_change_nothing() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(state.path(), &["--max-upload", "1"]);
    server.ok(&["deploy", HELLO]);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    };
    let text = write("notes.wasm", b"not wasm at all\n");
    let core = write("core.wasm", b"\0asm\x01\0\0\0");
    let empty = write("empty.wasm", b"\0asm\x0d\0\x01\0");
    let mut big = std::fs::read(HELLO).unwrap();
    big.resize(2 << 20, 0);
    let big = write("big.wasm", &big);
    let n = ["--name", "hello"];
    assert_eq!(
        server.err(&["deploy", &text, n[0], n[1]]),
        "error: not a WebAssembly file: it looks like a text file"
    );
    assert!(
        server
            .err(&["deploy", &core, n[0], n[1]])
            .starts_with("error: this is a core WebAssembly module")
    );
    assert!(
        server
            .err(&["deploy", &empty, n[0], n[1]])
            .starts_with("error: the component exports neither")
    );
    assert_eq!(
        server.err(&["deploy", &big, n[0], n[1]]),
        "error: the request body is larger than the limit of 1 MiB"
    );
    assert!(
        server
            .err(&["deploy", HELLO, "--name", "Bad_Name"])
            .starts_with("error: invalid app name `Bad_Name`")
    );
    let out = Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["deploy", HELLO, "--token", "wrong"])
        .env("MODAL_SERVER", format!("http://{}", server.addr))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: the token is wrong"
    );
    let (status, _) = Http::blocking_raw(&server.addr, None, "GET", "/api/v1/apps");
    assert_eq!(status, 401, "no token, no API");
    let apps = server.json(&["app", "list", "--json"]);
    assert_eq!(apps.as_array().unwrap().len(), 1, "{apps}");
    assert_eq!(live_version(&server, "hello"), Some(1));
    assert_eq!(
        server
            .json(&["app", "history", "hello", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(server.ok(&["call", "hello", "square", "3"]), "9\n");
}

#[test]
fn stop_refuses_calls_and_rollback_brings_back_older_code() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", HELLO, "--name", "app", "--tag", "hello"]);
    server.ok(&["deploy", COUNTER, "--name", "app"]);
    assert_eq!(server.ok(&["call", "app", "incr"]), "1\n");
    assert_eq!(
        server.err(&["call", "app", "square", "3"]),
        "error: no function named `square`; the app has `entered`, `incr`, `once`, `slow`"
    );
    let out = server.ok(&["app", "rollback", "app"]);
    assert!(out.contains("✓ Restored the code of v1"), "{out}");
    assert!(
        out.contains("✓ App deployed as app v3, replacing v2"),
        "{out}"
    );
    assert_eq!(server.ok(&["call", "app", "square", "3"]), "9\n");
    let history = server.ok(&["app", "history", "app"]);
    assert!(history.contains("hello (rollback to v1)"), "{history}");
    let out = server.ok(&["app", "rollback", "app", "--version", "2"]);
    assert!(out.contains("as app v4"), "{out}");
    assert_eq!(server.ok(&["call", "app", "incr"]), "1\n");

    server.ok(&["app", "stop", "app"]);
    assert_eq!(
        server.err(&["call", "app", "incr"]),
        "error: app `app` is stopped; deploy it again to restart it"
    );
    assert_eq!(
        server.ok(&["app", "stop", "app"]),
        "✓ App app is already stopped.\n",
        "stopping a stopped app is not a failure"
    );
    assert!(
        server
            .err(&["app", "stop", "nope"])
            .contains("no app named `nope`")
    );
    server.ok(&["deploy", HELLO, "--name", "web"]);
    server.ok(&["app", "stop", "web"]);
    let (status, body) = get(&server.addr, "web--greet.localhost", "/");
    assert_eq!(status, 410);
    assert!(body.contains("app `web` is stopped"), "{body}");
    let list = server.ok(&["app", "list"]);
    let row: Vec<&str> = list
        .lines()
        .find(|l| l.starts_with("app "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[..4], ["app", "stopped", "v4", "stopped"], "{list}");
}

#[test]
fn stopped_apps_are_garbage_collected_after_the_retention() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(state.path(), &["--retention", "0s"]);
    server.ok(&["deploy", HELLO]);
    server.ok(&["deploy", COUNTER]);
    server.ok(&["app", "stop", "hello"]);
    let artifacts = || {
        std::fs::read_dir(state.path().join("artifacts"))
            .unwrap()
            .count()
    };
    assert_eq!(artifacts(), 2);
    let report = Http::blocking_post_json(&server.addr, &server.token(), "/api/v1/gc");
    assert_eq!(report["apps"], serde_json::json!(["hello"]));
    assert_eq!(report["artifacts"], 1);
    assert_eq!(artifacts(), 1);
    assert_eq!(
        compiled_files(state.path()).len(),
        1,
        "the compiled code went with it"
    );
    assert_eq!(
        server.err(&["app", "history", "hello"]),
        "error: no app named `hello`"
    );
    assert_eq!(server.ok(&["call", "counter", "incr"]), "1\n");
}

#[test]
fn calls_still_running_at_the_drain_deadline_are_cancelled() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(state.path(), &["--drain-timeout", "1s"]);
    server.ok(&["deploy", COUNTER]);
    let straggler = Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["call", "counter", "slow", r#"{"ms": 20000}"#])
        .env("MODAL_SERVER", format!("http://{}", server.addr))
        .env("MODAL_STATE", &server.state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_running(&server, "counter", "slow", 1);
    let start = Instant::now();
    server.ok(&["deploy", COUNTER]);
    let out = straggler.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.lines().last().unwrap_or_default(),
        "error: function `slow` was cancelled: its version was replaced and the drain deadline passed"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(
        server.ok(&["call", "counter", "slow", r#"{"ms": 1}"#]),
        "{\"version\":\"2\"}\n"
    );
}
