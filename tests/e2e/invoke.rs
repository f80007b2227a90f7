//! Functions that call functions (examples/fanout): map, spawn and get,
//! calls into another app and their grants, deadlines, depth limits, the
//! tree of records; a redeploy during a fan-out, a SIGKILL under a spawned
//! nested call, the host's memory during a 10,000-input fan-out.

use crate::server::Server;
use modal_host::{DeployRequest, Execution, Platform, PlatformConfig, Trigger};
use modal_test_support::{FANOUT, HELLO, rss, wasm};
use std::time::{Duration, Instant};

async fn platform(dir: &std::path::Path) -> Platform {
    Platform::open(dir, crate::small_config(), PlatformConfig::default(), None)
        .await
        .expect("the platform opens")
}

async fn deploy(platform: &Platform, example: &str, name: &str, callers: &[&str]) -> u64 {
    let request = DeployRequest {
        name: name.into(),
        allow_callers: callers.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    };
    platform
        .deploy(&wasm(example), request)
        .await
        .expect("deploys")
        .version
}

async fn call(platform: &Platform, function: &str, input: &str) -> Execution {
    platform
        .call("fanout", function, input.as_bytes(), None, Trigger::Call)
        .await
        .expect("the call runs")
}

/// The output of a call that succeeded, as text.
async fn ok(platform: &Platform, function: &str, input: &str) -> String {
    let execution = call(platform, function, input).await;
    match execution.outcome {
        Ok(output) => String::from_utf8(output).unwrap(),
        Err(e) => panic!("{function}({input}) failed: {e}"),
    }
}

/// The error of a call that failed, as text.
async fn fails(platform: &Platform, function: &str, input: &str) -> String {
    match call(platform, function, input).await.outcome {
        Ok(output) => panic!(
            "{function}({input}) succeeded with {}",
            String::from_utf8_lossy(&output)
        ),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_call_functions_of_their_app() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(dir.path()).await;
    deploy(&platform, FANOUT, "fanout", &[]).await;

    assert_eq!(ok(&platform, "sum_squares", "[1, 2, 3]").await, "14");
    assert_eq!(ok(&platform, "sum_squares", "[]").await, "0");
    assert_eq!(ok(&platform, "spawn_and_get", "9").await, "81");
    // The callee's trap reaches the caller as a trap, with its message.
    assert_eq!(
        ok(&platform, "catch_boom", "3").await,
        "\"trap: function `boom` trapped: panicked: boom at 3\""
    );

    // Without end, or in a cycle: stopped by the depth limit, quickly.
    let depth = "failed: depth exceeded: calling `forever` would nest calls deeper than 8";
    let started = Instant::now();
    let error = fails(&platform, "forever", "0").await;
    assert!(error.contains(depth), "{error}");
    let error = fails(&platform, "ping", "0").await;
    assert!(
        error.contains("depth exceeded: calling `p") && error.contains("deeper than 8"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // A nested call gets no more than its caller's remaining time: the
    // caller's 1 s, not its own 60 s.
    let started = Instant::now();
    let error = fails(&platform, "impatient", "5000").await;
    assert_eq!(error, "function `impatient` timed out after 1s");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert_eq!(ok(&platform, "impatient", "10").await, "10");
    assert!(started.elapsed() < Duration::from_secs(1));

    // Every nested execution is recorded under its caller.
    let root = call(&platform, "sum_squares", "[4, 5]").await;
    let root_id = root.call_id.clone().expect("a call has an id");
    assert_eq!(root.root_call_id.as_deref(), Some(root_id.as_str()));
    let tree = platform.tree(&root_id).await.unwrap();
    let mut children: Vec<_> = tree
        .iter()
        .filter(|r| r.function == "square")
        .map(|r| (r.parent_call_id.clone(), r.root_call_id.clone(), r.depth))
        .collect();
    children.dedup();
    let under_root = (Some(root_id.clone()), Some(root_id.clone()), 1);
    assert_eq!(children, [under_root]);
    assert_eq!(tree.len(), 3, "{tree:#?}");
    assert_eq!(tree.last().unwrap().function, "sum_squares");
    assert_eq!(tree.last().unwrap().depth, 0);
}

/// Callers waiting for their callees hold no host thread: with eight of
/// them waiting on this two-thread runtime, other calls still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_callers_hold_no_thread() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(dir.path()).await;
    deploy(&platform, FANOUT, "fanout", &[]).await;
    // Warm instances for the call made meanwhile.
    assert_eq!(ok(&platform, "sum_squares", "[3]").await, "9");
    // Each caller waits three seconds for its one callee (no deadline of
    // its own to race).
    let waiting: Vec<_> = (0..8)
        .map(|_| {
            let platform = platform.clone();
            tokio::spawn(async move { ok(&platform, "versions", r#"{"n": 1, "ms": 3000}"#).await })
        })
        .collect();
    // Wait until all eight callees run, so that all eight callers wait.
    crate::eventually_async(Duration::from_secs(10), || async {
        let stats = platform.stats("fanout").unwrap();
        let callees = stats.iter().find(|s| s.function == "version_after");
        match callees {
            Some(s) if s.busy == 8 && s.created >= 8 => Ok(()),
            _ => Err(format!("{stats:?}")),
        }
    })
    .await;
    assert_eq!(ok(&platform, "sum_squares", "[3]").await, "9");
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "the call ran only once a caller had finished"
    );
    for w in waiting {
        assert_eq!(w.await.unwrap(), r#"[["1"],1]"#);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_into_another_app_need_its_grant() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(dir.path()).await;
    deploy(&platform, FANOUT, "fanout", &[]).await;
    let refused = "failed: not found: no app named `hello`";

    // Absent, and present without a grant, read the same.
    assert!(fails(&platform, "via_hello", "7").await.contains(refused));
    deploy(&platform, HELLO, "hello", &[]).await;
    assert!(fails(&platform, "via_hello", "7").await.contains(refused));
    deploy(&platform, HELLO, "hello", &["other"]).await;
    assert!(fails(&platform, "via_hello", "7").await.contains(refused));

    deploy(&platform, HELLO, "hello", &["fanout"]).await;
    assert_eq!(ok(&platform, "via_hello", "7").await, "49");
    deploy(&platform, HELLO, "hello", &["*"]).await;
    assert_eq!(ok(&platform, "via_hello", "8").await, "64");

    // A function reads the spawned calls of its app, not those of others.
    let own = ok(&platform, "spawn_sleepy", "5").await;
    assert_eq!(ok(&platform, "result_of", &own).await, "5");
    let theirs = platform.spawn("hello", "square", b"3", None).await.unwrap();
    assert_eq!(
        platform
            .result(&theirs, Duration::from_secs(10))
            .await
            .unwrap()
            .output
            .as_deref(),
        Some(&b"9"[..])
    );
    let error = fails(&platform, "result_of", &format!("{theirs:?}")).await;
    assert_eq!(
        error,
        format!("function `result_of` failed: not found: no spawned call with id `{theirs}`")
    );

    // A rollback keeps the grant of the version it brings back.
    platform.rollback("hello", Some(2), "test").await.unwrap();
    assert!(fails(&platform, "via_hello", "7").await.contains(refused));

    let bad = DeployRequest {
        name: "hello".into(),
        allow_callers: vec!["Not An App".into()],
        ..Default::default()
    };
    let error = platform.deploy(&wasm(HELLO), bad).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "bad input: --allow-caller `Not An App`: expected an app name or `*`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_during_a_fan_out_mixes_no_versions() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(dir.path()).await;
    assert_eq!(deploy(&platform, FANOUT, "fanout", &[]).await, 1);
    // 10,000 inputs of 1 ms on 8 instances: over a second of fan-out.
    let fan_out = {
        let platform = platform.clone();
        tokio::spawn(async move { ok(&platform, "versions", r#"{"n": 10000, "ms": 1}"#).await })
    };
    // Redeploy once the fan-out is under way.
    crate::eventually_async(Duration::from_secs(10), || async {
        let stats = platform.stats("fanout").unwrap();
        match stats
            .iter()
            .any(|s| s.function == "version_after" && s.busy > 0)
        {
            true => Ok(()),
            false => Err(format!("the fan-out never started: {stats:?}")),
        }
    })
    .await;
    assert_eq!(deploy(&platform, FANOUT, "fanout", &[]).await, 2);
    assert!(
        !fan_out.is_finished(),
        "the fan-out ended before the redeploy"
    );
    assert_eq!(fan_out.await.unwrap(), r#"[["1"],10000]"#);
    // New calls run on the new version.
    assert_eq!(
        ok(&platform, "versions", r#"{"n": 20, "ms": 0}"#).await,
        r#"[["2"],20]"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_platform_an_app_calls_only_itself() {
    let host = crate::host();
    let app = crate::load(&host, FANOUT, "fanout").await;
    let out = app.call("sum_squares", b"[1, 2, 3]").await.outcome.unwrap();
    assert_eq!(out, b"14");
    // Spawned calls run in the process (not stored).
    let out = app.call("spawn_and_get", b"9").await.outcome.unwrap();
    assert_eq!(out, b"81");
    let error = app.call("via_hello", b"7").await.outcome.unwrap_err();
    assert_eq!(
        error.to_string(),
        "function `via_hello` failed: error: calling another app needs a platform \
         (`modal server`, or `Platform` when embedding)"
    );
}

/// The CLI and the server: the examples as a user runs them, the tree in
/// the logs and in `modal result --tree`, the web function that calls.
#[test]
fn fanout_through_the_server() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", FANOUT]);
    assert_eq!(
        server.ok(&["call", "fanout", "sum_squares", "[1,2,3]"]),
        "14\n"
    );

    server.ok(&["deploy", HELLO]);
    assert_eq!(
        server.err(&["call", "fanout", "via_hello", "7"]),
        "error: function `via_hello` failed: not found: no app named `hello`"
    );
    server.ok(&["deploy", HELLO, "--allow-caller", "fanout"]);
    assert_eq!(server.ok(&["call", "fanout", "via_hello", "7"]), "49\n");
    assert_eq!(
        server.err(&["deploy", HELLO, "--allow-caller", "Bad_Name"]),
        "error: bad input: --allow-caller `Bad_Name`: expected an app name or `*`"
    );

    assert_eq!(
        crate::http::get(&server.addr, "fanout--squared.localhost", "/?x=12"),
        (200, "144".to_string())
    );

    // The logs show the calls a function made under it.
    let logs = server.ok(&[
        "app",
        "logs",
        "fanout",
        "--function",
        "via_hello",
        "-n",
        "1",
    ]);
    assert!(logs.contains("via_hello [call] ok"), "{logs}");
    let logs = crate::eventually(Duration::from_secs(10), || {
        let logs = server.ok(&["app", "logs", "fanout", "-n", "3"]);
        match logs.contains("squared [web]") {
            true => Ok(logs),
            false => Err(logs),
        }
    });
    let lines: Vec<&str> = logs.lines().collect();
    let web = lines
        .iter()
        .position(|l| l.contains("squared [web]"))
        .unwrap();
    assert!(lines[web + 1].contains("  └ v1 square [call] ok"), "{logs}");
    let root = lines[web]
        .split_whitespace()
        .find(|w| w.starts_with("call-"))
        .unwrap_or_else(|| panic!("no call id in {logs}"));
    let tree = server.ok(&["result", root, "--tree"]);
    let tree: Vec<&str> = tree.lines().collect();
    assert_eq!(tree.len(), 2, "{tree:?}");
    assert!(tree[0].contains("v1 squared [web] ok") && tree[0].contains("HTTP 200"));
    assert!(tree[1].contains("  └ v1 square [call] ok"), "{tree:?}");
}

/// A call spawned by a function is stored like one spawned through the
/// API: a SIGKILL before it ran does not lose it.
#[test]
fn a_spawned_nested_call_survives_a_sigkill() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", FANOUT]);
    let id = server.ok(&["call", "fanout", "spawn_sleepy", "3000"]);
    let id = id.trim().trim_matches('"').to_string();
    assert!(id.starts_with("call-"), "{id}");
    assert_eq!(server.modal(&["result", &id]).status.code(), Some(3));
    let server = server.restart();
    assert_eq!(server.ok(&["result", &id, "--wait", "30s"]), "3000\n");
    // Its execution after the restart keeps its place under its caller.
    let tree = server.ok(&["result", &id, "--tree"]);
    assert!(tree.contains("sleepy [spawn] ok"), "{tree}");
}

/// A fan-out of 10,000 inputs is bounded by `max_instances`, not copied
/// all at once: the host's memory grows by far less than 200 MB.
#[test]
fn a_large_fan_out_stays_within_memory() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", FANOUT]);
    assert_eq!(
        server.ok(&["call", "fanout", "versions", r#"{"n": 100, "ms": 0}"#]),
        "[[\"1\"],100]\n"
    );
    let start = rss(Some(server.pid()));
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(start));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (peak.clone(), done.clone(), server.pid());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                peak.fetch_max(rss(Some(pid)), std::sync::atomic::Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    for _ in 0..3 {
        assert_eq!(
            server.ok(&["call", "fanout", "versions", r#"{"n": 10000, "ms": 0}"#]),
            "[[\"1\"],10000]\n"
        );
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    sampler.join().unwrap();
    let grown = peak
        .load(std::sync::atomic::Ordering::Acquire)
        .saturating_sub(start);
    assert!(grown < 200 << 20, "the host grew by {} MiB", grown >> 20);
}
