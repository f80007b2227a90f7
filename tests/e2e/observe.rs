//! Invoking and observing through `modal server`: spawn and result (also
//! across a SIGKILL), execution records and logs for each trigger, `logs
//! --follow`, usage and Prometheus metrics.

use crate::http::{Http, get};
use crate::server::Server;
use modal_test_support::{COUNTER, FAULTY};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn spawn_returns_an_id_and_result_waits_for_it() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", COUNTER]);
    // Long enough to be still pending when the next command asks.
    let id = server
        .ok(&["spawn", "counter", "slow", r#"{"ms": 3000}"#])
        .trim()
        .to_string();
    assert!(id.starts_with("call-"), "{id}");
    let pending = server.modal(&["result", &id]);
    assert_eq!(pending.status.code(), Some(3), "still pending");
    assert_eq!(
        server.ok(&["result", &id, "--wait", "20s"]),
        "{\"version\":\"1\"}\n"
    );
    assert_eq!(
        server.ok(&["result", &id]),
        "{\"version\":\"1\"}\n",
        "results are kept"
    );
    let failed = server
        .ok(&["spawn", "counter", "slow", "\"not an object\""])
        .trim()
        .to_string();
    let err = server.err(&["result", &failed, "--wait", "10s"]);
    assert!(
        err.starts_with("error: bad input: invalid argument args: SlowArgs for `slow`"),
        "{err}"
    );
    assert_eq!(
        server.err(&["spawn", "counter", "nope"]),
        "error: no function named `nope`; the app has `entered`, `incr`, `once`, `slow`"
    );
}

#[test]
fn a_spawned_call_survives_a_sigkill_of_the_server() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", COUNTER]);
    let id = server
        .ok(&["spawn", "counter", "slow", r#"{"ms": 3000}"#])
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_millis(300));
    let server = server.restart();
    assert_eq!(
        server.ok(&["result", &id, "--wait", "20s"]),
        "{\"version\":\"1\"}\n"
    );
}

pub(crate) fn executions(server: &Server, app: &str) -> Vec<Value> {
    let body = Http::blocking_get_json(
        &server.addr,
        &server.token(),
        &format!("/api/v1/apps/{app}/logs?limit=100"),
    );
    body["executions"].as_array().unwrap().clone()
}

/// Waits until `app` has `n` recorded executions (the writer batches).
pub(crate) fn wait_for(server: &Server, app: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = executions(server, app);
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_execution_is_recorded_with_its_outcome_and_logs() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start_with(state.path(), &["--memory", "64"]);
    server.ok(&["deploy", FAULTY]);
    server.ok(&["call", "faulty", "echo", "1"]);
    server.err(&["call", "faulty", "trap"]);
    server.err(&["call", "faulty", "spin"]);
    server.err(&["call", "faulty", "hog"]);
    let id = server
        .ok(&["spawn", "faulty", "echo", "2"])
        .trim()
        .to_string();
    server.ok(&["result", &id, "--wait", "10s"]);
    assert_eq!(get(&server.addr, "faulty--crash.localhost", "/").0, 500);
    let records = wait_for(&server, "faulty", 6);
    let summary: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (s("function"), s("trigger"), s("outcome"))
        })
        .collect();
    let expected = [
        ("echo", "call", "ok"),
        ("trap", "call", "trap"),
        ("spin", "call", "timeout"),
        ("hog", "call", "memory_limit"),
        ("echo", "spawn", "ok"),
        ("crash", "web", "trap"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(summary, expected);
    assert!(
        records[1]["logs"]
            .as_str()
            .unwrap()
            .contains("the trap function panics on purpose")
    );
    assert_eq!(
        records[1]["error"],
        "function `trap` trapped: panicked: the trap function panics on purpose"
    );
    assert!(
        records[5]["logs"]
            .as_str()
            .unwrap()
            .contains("[modal] error "),
        "the error id is in the logs"
    );
    assert!(records[0]["memory"].as_u64().unwrap() > 0);
    let out = server.ok(&["app", "logs", "faulty", "--function", "trap"]);
    assert!(out.contains("v1 trap [call] trap"), "{out}");
    assert!(
        out.contains("    the trap function panics on purpose"),
        "{out}"
    );
    let stats = server.json(&["app", "stats", "faulty", "--json"]);
    let echo = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["function"] == "echo")
        .unwrap();
    assert_eq!(
        (echo["calls"].as_u64(), echo["errors"].as_u64()),
        (Some(2), Some(0))
    );
    let list = server.json(&["app", "list", "--json"]);
    assert_eq!(
        (list[0]["calls"].as_u64(), list[0]["errors"].as_u64()),
        (Some(6), Some(4))
    );
}

/// A server with the counter app called once, and `app logs counter
/// --follow` running against it, its first line (that call) read.
fn following_counter(
    state: &std::path::Path,
) -> (
    Server,
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
) {
    let server = Server::start(state);
    server.ok(&["deploy", COUNTER]);
    server.ok(&["call", "counter", "incr"]);
    // Records are written in batches: wait until this one is stored.
    wait_for(&server, "counter", 1);
    let mut child = Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["app", "logs", "counter", "--follow"])
        .env("MODAL_SERVER", format!("http://{}", server.addr))
        .env("MODAL_STATE", &server.state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = crate::stdout_lines(&mut child);
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(first.contains("v1 incr [call] ok"), "{first}");
    (server, child, rx)
}

#[test]
fn logs_follow_delivers_a_new_execution_promptly() {
    let state = tempfile::tempdir().unwrap();
    let (server, mut child, rx) = following_counter(state.path());
    std::thread::sleep(Duration::from_millis(500));
    server.ok(&["call", "counter", "slow", r#"{"ms": 1}"#]);
    // Timed from the call's answer, not from the start of the CLI process.
    let start = Instant::now();
    let line = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the new execution arrives");
    assert!(line.contains("v1 slow [call] ok"), "{line}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "it arrived after {:?}",
        start.elapsed()
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn logs_follow_keeps_printing_after_the_server_restarts() {
    let state = tempfile::tempdir().unwrap();
    let (server, mut child, rx) = following_counter(state.path());
    // The stream is open (a line arrived); the server dies and comes back
    // on the same state and address.
    let server = server.restart_on_same_address();
    // Made at once, this call most likely runs before the client is back,
    // so it arrives by replay after `Last-Event-ID`; either way, once.
    server.ok(&["call", "counter", "slow", r#"{"ms": 1}"#]);
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("an execution after the restart is printed");
    assert!(line.contains("v1 slow [call] ok"), "{line}");
    server.ok(&["call", "counter", "incr"]);
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the stream goes on");
    assert!(
        line.contains("v1 incr [call] ok"),
        "the next line is the next execution, not a repeat: {line}"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "--follow keeps running"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_the_calls() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", COUNTER]);
    for _ in 0..5 {
        server.ok(&["call", "counter", "incr"]);
    }
    server.err(&["call", "counter", "slow", "7"]);
    let (status, text) = get(&server.addr, &server.addr, "/metrics");
    assert_eq!(status, 200);
    let mut samples = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            assert!(
                comment.starts_with(" HELP ") || comment.starts_with(" TYPE "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(
            series[..name_end]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "{line}");
        }
        // Every series names the host first; the rest is compared below.
        let (name, labels) = series.split_at(name_end);
        let rest = labels
            .strip_prefix("{host=\"")
            .and_then(|l| l.split_once("\""))
            .map(|(host, rest)| {
                assert!(!host.is_empty(), "{line}");
                rest.strip_prefix(',').unwrap_or(rest).to_string()
            })
            .unwrap_or_else(|| panic!("no host label: {line}"));
        let series = match rest.as_str() {
            "}" => name.to_string(),
            rest => format!("{name}{{{rest}"),
        };
        samples.insert(series, value);
    }
    let labels =
        |f: &str| format!("{{app=\"counter\",version=\"1\",function=\"{f}\",trigger=\"call\"}}");
    let with_outcome = |f: &str, o: &str| {
        format!(
            "modal_executions_total{{app=\"counter\",version=\"1\",function=\"{f}\",trigger=\"call\",outcome=\"{o}\"}}"
        )
    };
    assert_eq!(samples[&with_outcome("incr", "ok")], 5.0);
    assert!(!samples.contains_key(&with_outcome("slow", "ok")));
    assert_eq!(
        samples[&format!("modal_execution_errors_total{}", labels("incr"))],
        0.0
    );
    let slow_series = "modal_executions_total{app=\"counter\",version=\"1\",function=\"slow\",trigger=\"call\",outcome=";
    let slow: f64 = samples
        .iter()
        .filter(|(k, _)| k.starts_with(slow_series))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(slow, 1.0, "one failed call of `slow`, under its outcome");
    assert_eq!(
        samples[&format!("modal_execution_errors_total{}", labels("slow"))],
        1.0
    );
    assert_eq!(samples["modal_deploys_total"], 1.0);
    assert_eq!(
        samples["modal_instances{app=\"counter\",version=\"1\"}"], 2.0,
        "incr and slow each have a warm instance"
    );
}

#[test]
fn metrics_forget_a_version_once_it_drained() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", COUNTER]);
    server.ok(&["call", "counter", "incr"]);
    let metrics = || get(&server.addr, &server.addr, "/metrics").1;
    let v1 = r#"app="counter",version="1",function="incr""#;
    assert!(metrics().contains(v1), "{}", metrics());
    server.ok(&["deploy", COUNTER]);
    server.ok(&["call", "counter", "incr"]);
    // v1 had nothing in flight: it drains at once, and its series go.
    crate::eventually(Duration::from_secs(5), || match metrics() {
        now if now.contains(r#"version="1""#) => Err(now),
        _ => Ok(()),
    });
    let now = metrics();
    assert!(
        now.contains(r#"app="counter",version="2",function="incr""#),
        "{now}"
    );
    assert!(now.contains("modal_deploys_total{host="), "{now}");
}

/// The example Grafana dashboard (`deploy/grafana/`) queries only series
/// `/metrics` has, with the labels it filters on.
#[test]
fn the_grafana_dashboard_queries_series_the_host_exports() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/modal-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", COUNTER]);
    server.ok(&["call", "counter", "incr"]);
    server.err(&["call", "counter", "slow", "7"]);
    let metrics = get(&server.addr, &server.addr, "/metrics").1;
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 6, "{exprs:?}");
    for expr in &exprs {
        for (at, _) in expr.match_indices("modal_") {
            let name: String = expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let exported = metrics
                .lines()
                .any(|l| l.starts_with(&format!("{name}{{host=\"")));
            assert!(
                exported,
                "{name} (in {expr}) is not in /metrics:\n{metrics}"
            );
        }
    }
}
