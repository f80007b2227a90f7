//! Schedules through `modal server`: firing every second, retries and the
//! failure webhook, redeploys and restarts without doubled fire times,
//! stop, pause and resume, run-now, and invalid cron expressions.

use crate::http::Http;
use crate::server::Server;
use modal_test_support::{BAD_SCHEDULE, CRON};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Scheduled executions of `function`, oldest first.
pub(crate) fn runs(server: &Server, function: &str) -> Vec<Value> {
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

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// The time now, in Unix milliseconds (the server's clock: the same
/// machine).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Unix milliseconds of an RFC 3339 time.
fn rfc3339_ms(text: &str) -> Option<u64> {
    let time = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    u64::try_from(time.timestamp_millis()).ok()
}

/// What the scheduled records of a function every second say became of
/// its fire times (Unix ms). A fire time runs; or it is skipped, recorded
/// as such, when the previous run is still going (as on a busy machine);
/// or it is recorded missed, with the others of a span while the host was
/// down or the scheduler held up.
#[derive(Debug, Default)]
pub(crate) struct Fates {
    /// The fire time of each run (whatever its outcome), run-now excluded.
    pub(crate) ran: Vec<u64>,
    /// The fire times recorded as skipped.
    pub(crate) skipped: Vec<u64>,
    /// The spans recorded as missed: first, last, and their count.
    pub(crate) missed: Vec<(u64, u64, u64)>,
}

impl Fates {
    pub(crate) fn of(runs: &[Value]) -> Fates {
        let mut fates = Fates::default();
        for run in runs {
            if let Some(at) = fire_time(run) {
                fates.ran.push(at);
                continue;
            }
            let error = run["error"].as_str().unwrap_or_default();
            if let Some(rest) = error.strip_prefix("skipped the fire time ") {
                let at = rest.split_once(": ").and_then(|(at, _)| rfc3339_ms(at));
                fates
                    .skipped
                    .push(at.unwrap_or_else(|| panic!("no fire time in {error:?}")));
            } else if let Some(rest) = error.strip_prefix("missed ") {
                let span = || {
                    let count = rest.split(' ').next()?.parse().ok()?;
                    let (_, span) = rest.split_once(", from ")?;
                    let (first, last) = span.split_once("; ")?.0.split_once(" to ")?;
                    Some((rfc3339_ms(first)?, rfc3339_ms(last)?, count))
                };
                fates
                    .missed
                    .push(span().unwrap_or_else(|| panic!("no span in {error:?}")));
            }
        }
        fates
    }

    /// No fire time ran twice or has two fates, each is a whole second,
    /// and each missed span counts its fire times.
    pub(crate) fn consistent(&self) -> Result<BTreeMap<u64, Vec<&'static str>>, String> {
        let mut fates: BTreeMap<u64, Vec<&'static str>> = BTreeMap::new();
        for &at in &self.ran {
            fates.entry(at).or_default().push("ran");
        }
        for &at in &self.skipped {
            fates.entry(at).or_default().push("skipped");
        }
        for &(first, last, count) in &self.missed {
            if first > last || (last - first) / 1000 + 1 != count {
                return Err(format!(
                    "the missed span {first}..={last} does not hold {count}: {self:?}"
                ));
            }
            for at in (first..=last).step_by(1000) {
                fates.entry(at).or_default().push("missed");
            }
        }
        for (at, what) in &fates {
            if at % 1000 != 0 {
                return Err(format!("{at} is not a whole second: {self:?}"));
            }
            if what.len() > 1 {
                return Err(format!("fire time {at} {what:?}: {self:?}"));
            }
        }
        Ok(fates)
    }

    /// Consistent, and every fire time from the first to the last that ran
    /// has a fate: none was lost.
    pub(crate) fn complete(&self) -> Result<(), String> {
        let fates = self.consistent()?;
        let (Some(&first), Some(&last)) = (self.ran.iter().min(), self.ran.iter().max()) else {
            return Ok(());
        };
        match (first..=last)
            .step_by(1000)
            .find(|at| !fates.contains_key(at))
        {
            Some(lost) => Err(format!(
                "fire time {lost} neither ran nor was recorded skipped or missed: {self:?}"
            )),
            None => Ok(()),
        }
    }
}

/// The scheduled records of `tick` once `ready` accepts them; its error
/// says what is still missing when fifteen seconds pass.
fn tick_runs_once(server: &Server, ready: impl Fn(&[Value]) -> Result<(), String>) -> Vec<Value> {
    crate::eventually(Duration::from_secs(15), || {
        let runs = runs(server, "tick");
        ready(&runs).map(|()| runs)
    })
}

/// The fire times of `tick` after `at` that ran or were skipped (none
/// should once it is stopped or paused).
fn fired_after(server: &Server, at: u64) -> Vec<u64> {
    let fates = Fates::of(&runs(server, "tick"));
    let fired = fates.ran.into_iter().chain(fates.skipped);
    fired.filter(|&t| t > at).collect()
}

/// A server on `state` with the `cron` example deployed, once `tick` has
/// run.
fn cron_after_a_tick(state: &std::path::Path) -> Server {
    let server = Server::start(state);
    server.ok(&["deploy", CRON]);
    tick_runs_once(&server, |runs| match ok_count(runs, |_| true) {
        0 => Err(format!("tick never ran: {runs:?}")),
        _ => Ok(()),
    });
    server
}

fn ok_count(runs: &[Value], accept: impl Fn(&Value) -> bool) -> usize {
    runs.iter()
        .filter(|r| r["outcome"] == "ok" && accept(r))
        .count()
}

/// The runs that succeeded.
fn ok_runs(runs: &[Value]) -> Vec<Value> {
    runs.iter()
        .filter(|r| r["outcome"] == "ok")
        .cloned()
        .collect()
}

/// Whether a span missed while the scheduler was held up is recorded.
fn held_up_recorded(runs: &[Value]) -> bool {
    runs.iter().any(|r| {
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("while the scheduler was held up"))
    })
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
    let deployed_at = now_ms();
    server.ok(&["deploy", CRON]);
    let first = tick_runs_once(&server, |runs| match ok_count(runs, |_| true) {
        2.. => Ok(()),
        n => Err(format!("{n} runs: {runs:?}")),
    });
    let first = ok_runs(&first);
    assert!(
        first[0]["logs"]
            .as_str()
            .unwrap()
            .contains("(run run-cron-tick-"),
        "the guest sees its run id"
    );
    // Distinct whole seconds since the deploy: no more than one a second.
    let (times, now) = (assert_no_double_fire(&first), now_ms());
    assert!(
        times.iter().all(|&t| t > deployed_at && t <= now),
        "fire times {times:?} not between {deployed_at} and {now}"
    );
    server.ok(&["deploy", CRON]);
    // The schedule moves to v2, and no fire time is lost or doubled on the
    // way: each ran, or was skipped because the previous run still went
    // on (a busy machine).
    let all = tick_runs_once(&server, |runs| {
        Fates::of(runs).complete()?;
        match ok_count(runs, |r| r["version"] == 2) {
            2.. => Ok(()),
            n => Err(format!("{n} runs on v2: {runs:?}")),
        }
    });
    // (A machine busy enough to hold the scheduler up past a fire time
    // has it recorded missed, which `complete` accounts for.)
    let all = ok_runs(&all);
    assert_no_double_fire(&all);
    let versions: HashSet<u64> = all.iter().map(|r| r["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, HashSet::from([1, 2]), "the schedule moved to v2");
    let list = server.ok(&["app", "list"]);
    assert!(
        list.contains("UTC (flaky)") || list.contains("UTC (tick)"),
        "the next fire time is shown: {list}"
    );

    server.ok(&["app", "stop", "cron"]);
    let stopped_at = now_ms();
    sleep_ms(1500);
    let after = fired_after(&server, stopped_at);
    assert!(
        after.is_empty(),
        "stop ends the schedule: fire times {after:?} after {stopped_at}"
    );
}

#[test]
fn pause_resume_and_run_now() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", CRON]);
    server.ok(&["schedule", "pause", "cron", "tick"]);
    let paused_at = now_ms();
    sleep_ms(1500);
    let after = fired_after(&server, paused_at);
    assert!(
        after.is_empty(),
        "no runs while paused: fire times {after:?} after {paused_at}"
    );
    let list = server.ok(&["schedule", "list", "cron"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("tick") && l.contains("paused")),
        "{list}"
    );

    // A run from before the pause may still be going on a busy machine.
    let run_id = crate::eventually(Duration::from_secs(10), || {
        let out = server.modal(&["schedule", "run", "cron", "tick"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        assert!(stderr.contains("has a run in progress"), "{stderr}");
        Err(stderr)
    });
    assert!(run_id.ends_with("-now"), "{run_id}");
    let of_run_now = |runs: &[Value]| -> Vec<Value> {
        runs.iter()
            .filter(|r| r["run_id"] == run_id.as_str())
            .cloned()
            .collect()
    };
    let runs_now = of_run_now(&tick_runs_once(&server, |runs| {
        match of_run_now(runs).len() {
            0 => Err(format!("no run {run_id}: {runs:?}")),
            _ => Ok(()),
        }
    }));
    assert_eq!(runs_now.len(), 1, "run-now fires once");
    assert_eq!(runs_now[0]["outcome"], "ok", "{runs_now:?}");

    server.ok(&["schedule", "resume", "cron", "tick"]);
    let resumed_at = now_ms();
    tick_runs_once(&server, |runs| {
        let after = ok_count(runs, |r| fire_time(r).is_some_and(|t| t > resumed_at));
        match after {
            0 => Err(format!("no run after the resume: {runs:?}")),
            _ => Ok(()),
        }
    });
    // The latest two: the newest may be a skip while a run goes on.
    crate::eventually(Duration::from_secs(15), || {
        let history = server.ok(&["schedule", "history", "cron", "tick", "-n", "2"]);
        assert_eq!(history.matches("[schedule] ").count(), 2, "{history}");
        match history.matches("[schedule] ok").count() {
            2 => Ok(()),
            _ => Err(history),
        }
    });
    assert_eq!(
        of_run_now(&runs(&server, "tick")).len(),
        1,
        "run-now fired once, still"
    );
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
    let hook = crate::eventually(Duration::from_secs(15), || {
        let received = received.lock().unwrap();
        received.first().cloned().ok_or_else(|| "no webhook".into())
    });
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
    let attempts = |runs: &[Value]| {
        runs.iter()
            .filter(|r| r["run_id"] == hook["run_id"])
            .count()
    };
    let flaky = crate::eventually(Duration::from_secs(5), || {
        let flaky = runs(&server, "flaky");
        match attempts(&flaky) {
            3.. => Ok(flaky),
            n => Err(format!("{n} attempts recorded: {flaky:?}")),
        }
    });
    assert_eq!(attempts(&flaky), 3);
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
    let server = cron_after_a_tick(state.path());
    let server = server.restart();
    sleep_ms(100);
    // Down for a while: those fire times are recorded as missed.
    let state_dir = server.state.clone();
    server.kill();
    sleep_ms(2500);
    let restarted = now_ms();
    let server = Server::start(&state_dir);
    let all = tick_runs_once(&server, |runs| {
        let fates = Fates::of(runs);
        let after = ok_count(runs, |r| fire_time(r).is_some_and(|t| t > restarted));
        if after >= 2 && ok_count(runs, |_| true) >= 3 && !fates.missed.is_empty() {
            Ok(())
        } else {
            Err(format!("{after} runs after the restart: {fates:?}"))
        }
    });
    assert_no_double_fire(&ok_runs(&all));
    // A SIGKILL may take the record of a run with it, so fire times may
    // be unaccounted for; none ran twice or both ran and was missed.
    let fates = Fates::of(&all);
    if let Err(e) = fates.consistent() {
        panic!("{e}");
    }
    // One record for each start that found fire times missed: the last,
    // and maybe the one right after the first kill if it came slowly.
    let missed: Vec<&Value> = all
        .iter()
        .filter(|r| {
            r["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("missed "))
        })
        .collect();
    assert!(
        (1..=2).contains(&missed.len()),
        "a record of the missed fire times for each start: {missed:?}"
    );
    assert!(missed.iter().all(|m| {
        m["error"]
            .as_str()
            .unwrap()
            .contains("they are not replayed")
    }));
}

/// Sends the server the signal `name` (`-STOP`, `-CONT`) with `kill`.
fn signal(server: &Server, name: &str) {
    let status = std::process::Command::new("kill")
        .args([name, &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {name}");
}

#[test]
fn fire_times_passed_while_the_host_was_paused_are_recorded_missed() {
    let state = tempfile::tempdir().unwrap();
    let server = cron_after_a_tick(state.path());
    // Stopped for three seconds (a paused VM, an overloaded host): the
    // scheduler wakes well past several fire times.
    signal(&server, "-STOP");
    let stopped = now_ms();
    sleep_ms(3000);
    signal(&server, "-CONT");
    let resumed = now_ms();
    let all = tick_runs_once(&server, |runs| {
        let fates = Fates::of(runs);
        fates.complete()?;
        let after = ok_count(runs, |r| fire_time(r).is_some_and(|t| t > resumed));
        if after >= 1 && !fates.missed.is_empty() {
            Ok(())
        } else {
            Err(format!("{after} runs after the pause: {fates:?}"))
        }
    });
    // Only the latest fire time passed on waking ran; the earlier ones of
    // the pause are in one missed span, which says why.
    let fates = Fates::of(&all);
    assert_eq!(fates.missed.len(), 1, "{fates:?}");
    let (first, last, count) = fates.missed[0];
    assert!(
        first > stopped && last < resumed && count >= 1,
        "the missed span {first}..={last} lies within the pause {stopped}..{resumed}"
    );
    assert!(held_up_recorded(&all), "{all:?}");
    assert_no_double_fire(&ok_runs(&all));
}

#[test]
fn a_host_killed_after_recording_a_missed_span_does_not_record_it_again() {
    let state = tempfile::tempdir().unwrap();
    let server = cron_after_a_tick(state.path());
    signal(&server, "-STOP");
    sleep_ms(3000);
    // Woken just after a whole second, and killed as soon as the missed
    // span is stored: before the next fire time (a second later) is.
    sleep_ms(1050 - now_ms() % 1000);
    signal(&server, "-CONT");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !held_up_recorded(&runs(&server, "tick")) {
        assert!(Instant::now() < deadline, "no missed span was recorded");
        sleep_ms(5);
    }
    let state_dir = server.state.clone();
    server.kill();
    let restarted = now_ms();
    let server = Server::start(&state_dir);
    let all = tick_runs_once(&server, |runs| {
        let after = ok_count(runs, |r| fire_time(r).is_some_and(|t| t > restarted));
        if after >= 1 {
            Ok(())
        } else {
            Err(format!("no run after the restart: {:?}", Fates::of(runs)))
        }
    });
    // The restart records what passed while the host was down, not again
    // the fire times the held-up span already holds.
    let fates = Fates::of(&all);
    if let Err(e) = fates.consistent() {
        panic!("{e}");
    }
    assert_no_double_fire(&ok_runs(&all));
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
