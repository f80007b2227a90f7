//! Schedules through `modal server`: firing every second, retries and the
//! failure webhook, redeploys and restarts without doubled fire times,
//! stop, pause and resume, run-now, and invalid cron expressions.

use crate::http::Http;
use crate::server::Server;
use modal_test_support::{BAD_SCHEDULE, CRON};
use serde_json::Value;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Scheduled executions of `function`, oldest first.
fn runs(server: &Server, function: &str) -> Vec<Value> {
    let path = format!("/api/v1/apps/cron/logs?limit=1000&function={function}");
    let body = Http::blocking_get_json(&server.addr, &server.token(), &path);
    body["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["trigger"] == "schedule")
        .cloned()
        .collect()
}

/// The fire time (ms) of a run, from its run id `run-APP-FUNCTION-MS`.
fn fire_time(run: &Value) -> Option<u64> {
    run["run_id"].as_str()?.rsplit('-').next()?.parse().ok()
}

fn ok_runs(server: &Server, function: &str) -> Vec<Value> {
    runs(server, function)
        .into_iter()
        .filter(|r| r["outcome"] == "ok")
        .collect()
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Asserts the fire times of `tick`'s runs are distinct whole seconds.
fn assert_no_double_fire(runs: &[Value]) -> Vec<u64> {
    let times: Vec<u64> = runs.iter().filter_map(fire_time).collect();
    assert_eq!(times.len(), runs.len(), "every run has a run id");
    let distinct: HashSet<u64> = times.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        times.len(),
        "a fire time ran twice: {times:?}"
    );
    assert!(times.iter().all(|t| t % 1000 == 0), "{times:?}");
    times
}

#[test]
fn tick_runs_every_second_and_redeploys_neither_skip_nor_double_a_fire() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", CRON]);
    sleep_ms(3500);
    let first = ok_runs(&server, "tick");
    assert!(
        (2..=5).contains(&first.len()),
        "{} runs in 3.5 s",
        first.len()
    );
    assert!(
        first[0]["logs"]
            .as_str()
            .unwrap()
            .contains("(run run-cron-tick-"),
        "the guest sees its run id"
    );
    server.ok(&["deploy", CRON]);
    sleep_ms(2000);
    let all = ok_runs(&server, "tick");
    let times = assert_no_double_fire(&all);
    for pair in times.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1000,
            "no fire time was skipped: {times:?}"
        );
    }
    let versions: HashSet<u64> = all.iter().map(|r| r["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, HashSet::from([1, 2]), "the schedule moved to v2");
    let list = server.ok(&["app", "list"]);
    assert!(
        list.contains("UTC (flaky)") || list.contains("UTC (tick)"),
        "the next fire time is shown: {list}"
    );

    server.ok(&["app", "stop", "cron"]);
    sleep_ms(300);
    let stopped = ok_runs(&server, "tick").len();
    sleep_ms(1500);
    assert_eq!(
        ok_runs(&server, "tick").len(),
        stopped,
        "stop ends the schedule"
    );
}

#[test]
fn pause_resume_and_run_now() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", CRON]);
    server.ok(&["schedule", "pause", "cron", "tick"]);
    sleep_ms(300);
    let paused_at = ok_runs(&server, "tick").len();
    sleep_ms(1500);
    assert_eq!(
        ok_runs(&server, "tick").len(),
        paused_at,
        "no runs while paused"
    );
    let list = server.ok(&["schedule", "list", "cron"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("tick") && l.contains("paused")),
        "{list}"
    );

    let run_id = server
        .ok(&["schedule", "run", "cron", "tick"])
        .trim()
        .to_string();
    assert!(run_id.ends_with("-now"), "{run_id}");
    sleep_ms(500);
    let runs_now: Vec<Value> = ok_runs(&server, "tick")
        .into_iter()
        .filter(|r| r["run_id"] == run_id.as_str())
        .collect();
    assert_eq!(runs_now.len(), 1, "run-now fires once");

    server.ok(&["schedule", "resume", "cron", "tick"]);
    sleep_ms(1600);
    assert!(
        ok_runs(&server, "tick").len() >= paused_at + 2,
        "runs again after resume"
    );
    let history = server.ok(&["schedule", "history", "cron", "tick", "-n", "2"]);
    assert_eq!(history.matches("[schedule] ok").count(), 2, "{history}");
}

/// Collects the bodies POSTed to a local webhook receiver.
fn webhook_receiver() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut data = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&data);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        if let Ok(json) = serde_json::from_str::<Value>(&body[..length]) {
                            sink.lock().unwrap().push(json);
                        }
                        break;
                    }
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
        }
    });
    (port, received)
}

#[test]
fn a_failing_run_is_retried_then_reported_to_the_webhook() {
    let (port, received) = webhook_receiver();
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&[
        "deploy",
        CRON,
        "--notify",
        &format!("http://127.0.0.1:{port}/hook"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while received.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no webhook within 15 s");
        sleep_ms(100);
    }
    let hook = received.lock().unwrap()[0].clone();
    assert_eq!(hook["app"], "cron");
    assert_eq!(hook["version"], 1);
    assert_eq!(hook["function"], "flaky");
    assert_eq!(hook["attempts"], 3, "one run and its two retries");
    assert_eq!(
        hook["error"],
        "function `flaky` failed: flaky failed, as it always does"
    );
    assert!(
        hook["log_tail"]
            .as_str()
            .unwrap()
            .contains("flaky is about to fail")
    );
    let fire = hook["fire_time_ms"].as_u64().unwrap();
    assert_eq!(hook["run_id"], format!("run-cron-flaky-{fire}"));
    assert!(hook["fire_time"].as_str().unwrap().ends_with('Z'));
    // Each attempt is recorded (records are written in batches, so allow
    // them a moment), and so are the fire times skipped meanwhile.
    let deadline = Instant::now() + Duration::from_secs(5);
    let flaky = loop {
        let flaky = runs(&server, "flaky");
        let attempts = flaky
            .iter()
            .filter(|r| r["run_id"] == hook["run_id"])
            .count();
        if attempts >= 3 || Instant::now() > deadline {
            assert_eq!(attempts, 3);
            break flaky;
        }
        sleep_ms(50);
    };
    assert!(flaky.iter().any(|r| {
        r["outcome"] == "rejected"
            && r["error"]
                .as_str()
                .unwrap()
                .contains("the previous run is still going")
    }));
    let logs = server.ok(&["app", "logs", "cron", "--function", "flaky"]);
    assert!(logs.contains("[schedule] error"), "{logs}");
}

#[test]
fn a_restart_resumes_schedules_without_running_a_fire_time_twice() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", CRON]);
    sleep_ms(1600);
    let server = server.restart();
    sleep_ms(100);
    // Down for a while: those fire times are recorded as missed.
    let state_dir = server.state.clone();
    server.kill();
    sleep_ms(2500);
    let server = Server::start(&state_dir);
    sleep_ms(2200);
    let all = ok_runs(&server, "tick");
    let times = assert_no_double_fire(&all);
    assert!(times.len() >= 3, "{times:?}");
    let missed: Vec<Value> = runs(&server, "tick")
        .into_iter()
        .filter(|r| {
            r["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("missed "))
        })
        .collect();
    assert_eq!(missed.len(), 1, "one record of the missed fire times");
    assert!(
        missed[0]["error"]
            .as_str()
            .unwrap()
            .contains("they are not replayed")
    );
}

#[test]
fn an_invalid_cron_expression_is_rejected_at_deploy() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    let err = server.err(&["deploy", BAD_SCHEDULE]);
    assert!(
        err.starts_with(
            "error: invalid app spec: function `never`: invalid cron expression `0 0 12 * * FUNDAY`"
        ),
        "{err}"
    );
    assert_eq!(
        server.json(&["app", "list", "--json"]),
        serde_json::json!([])
    );
}
