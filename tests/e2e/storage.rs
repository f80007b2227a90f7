//! State written by an earlier release: the stores' schemas are versioned
//! and a state directory from before versioning opens with everything in
//! it.

use modal_host::platform::AppState;
use modal_host::{AppMeta, Platform, PlatformConfig};
use modal_test_support::{CRON, HELLO, wasm};
use rusqlite::{Connection, params};
use sha2::Digest;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// The spec a component describes, as the registry stores it.
async fn spec_json(wasm: &[u8]) -> String {
    let app = crate::host()
        .load(wasm, AppMeta::new("fixture", 1))
        .await
        .expect("example loads");
    serde_json::to_string(app.spec()).expect("spec serializes")
}

/// Writes a state directory as the release before versioned schemas did:
/// hello (v1, and v2 live with the same code), cron (v1, `tick` paused),
/// three executions of hello, a finished and a pending spawned call.
async fn old_state(dir: &std::path::Path, at: u64) {
    let (hello, cron) = (wasm(HELLO), wasm(CRON));
    let artifacts = dir.join("artifacts");
    std::fs::create_dir(&artifacts).unwrap();
    let mut digests = Vec::new();
    for bytes in [&hello, &cron] {
        let digest = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(artifacts.join(format!("{digest}.wasm")), bytes).unwrap();
        digests.push(digest);
    }
    let registry = Connection::open(dir.join("registry.db")).unwrap();
    registry
        .execute_batch(include_str!("fixtures/registry-v0.sql"))
        .unwrap();
    registry
        .execute_batch(&format!(
            "INSERT INTO apps VALUES ('hello', 'deployed', 2, {at}, {at});
             INSERT INTO apps VALUES ('cron', 'deployed', 1, {at}, {at});
             INSERT INTO schedules VALUES ('cron', 'tick', {at}, 1);"
        ))
        .unwrap();
    let version = "INSERT INTO versions (app, version, digest, spec, env, deployed_at, deployer, tag, allow_http)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'ann', ?7, '[\"example.com\"]')";
    let hello_spec = spec_json(&hello).await;
    for (v, tag) in [(1, None), (2, Some("second"))] {
        let env = r#"[["GREETING","hi"]]"#;
        let row = params!["hello", v, digests[0], hello_spec, env, at + v, tag];
        registry.execute(version, row).unwrap();
    }
    let row = params![
        "cron",
        1,
        digests[1],
        spec_json(&cron).await,
        "[]",
        at,
        None::<&str>
    ];
    registry.execute(version, row).unwrap();
    let records = Connection::open(dir.join("executions.db")).unwrap();
    records
        .execute_batch(include_str!("fixtures/executions-v0.sql"))
        .unwrap();
    for (id, outcome, error) in [
        (1, "ok", None),
        (2, "error", Some("bad input")),
        (3, "ok", None),
    ] {
        records
            .execute(
                "INSERT INTO executions VALUES (?1, 'hello', 2, 'square', 'call', ?2, 1.5, ?3, ?4, 'log line', 65536, NULL)",
                params![id, at + id, outcome, error],
            )
            .unwrap();
    }
    records
        .execute_batch(&format!(
            "INSERT INTO calls (id, app, function, input, state, output, created_at, finished_at)
               VALUES ('call-done', 'hello', 'square', x'34', 'succeeded', x'3136', {at}, {at});
             INSERT INTO calls (id, app, function, input, state, created_at)
               VALUES ('call-pending', 'hello', 'square', x'39', 'pending', {at});"
        ))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_directory_from_before_versioned_schemas_opens_with_everything() {
    let dir = tempfile::tempdir().unwrap();
    let at = now_ms() - 60_000;
    old_state(dir.path(), at).await;
    let config = crate::small_config();
    let platform = Platform::open(dir.path(), config, PlatformConfig::default(), None)
        .await
        .expect("the old state directory opens");

    let apps = platform.apps().await.unwrap();
    let names: Vec<&str> = apps.iter().map(|a| a.record.name.as_str()).collect();
    assert_eq!(names, ["cron", "hello"]);
    let hello = &apps[1];
    assert_eq!(hello.record.state, AppState::Deployed);
    assert_eq!(hello.record.live_version, Some(2));
    assert_eq!((hello.calls, hello.errors), (3, 1));

    let history = platform.history("hello").await.unwrap();
    let versions: Vec<(u64, &str, Option<&str>)> = history
        .iter()
        .map(|v| (v.record.version, v.status.as_str(), v.record.tag.as_deref()))
        .collect();
    assert_eq!(
        versions,
        [(1, "retired", None), (2, "live", Some("second"))]
    );
    assert_eq!(history[1].record.env, [("GREETING".into(), "hi".into())]);
    assert_eq!(history[1].record.allow_http, ["example.com"]);
    assert!(history[1].record.pool.is_empty(), "no pool settings then");

    let schedules = platform.schedules("cron");
    let paused: Vec<(&str, bool)> = schedules
        .iter()
        .map(|s| (s.function.as_str(), s.paused))
        .collect();
    assert_eq!(paused, [("flaky", false), ("tick", true)]);

    let logs = platform.logs("hello", None, 10).await.unwrap();
    let ids: Vec<u64> = logs.iter().map(|e| e.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(logs[1].error.as_deref(), Some("bad input"));
    assert_eq!(
        (logs[0].call_id.as_deref(), logs[0].http_status),
        (None, None)
    );

    let done = platform.result("call-done", Duration::ZERO).await.unwrap();
    assert_eq!(
        (done.state.as_str(), done.output.as_deref()),
        ("succeeded", Some(&b"16"[..]))
    );
    // The call accepted before the upgrade still runs, on the live version.
    let pending = platform
        .result("call-pending", Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        (pending.state.as_str(), pending.output.as_deref()),
        ("succeeded", Some(&b"81"[..]))
    );

    // The live version serves, and new executions continue the old ids.
    let square = platform.function("hello", "square").unwrap();
    let execution = square.call(b"7").await.unwrap();
    assert_eq!(execution.outcome.unwrap(), b"49");
    let ids = crate::eventually_async(Duration::from_secs(10), || async {
        let logs = platform.logs("hello", None, 10).await.unwrap();
        let ids: Vec<u64> = logs.iter().map(|e| e.id).collect();
        match ids.len() {
            5.. => Ok(ids),
            _ => Err(format!("new executions never stored: {ids:?}")),
        }
    })
    .await;
    assert!(ids[..3] == [1, 2, 3] && ids[3] > 3, "{ids:?}");
    for db in ["registry.db", "executions.db"] {
        let version: u32 = Connection::open(dir.path().join(db))
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert!(version >= 2, "{db} is at schema version {version}");
    }
}

#[test]
fn a_state_directory_from_a_newer_release_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // The registry as a release with more migrations would leave it.
    let registry = Connection::open(dir.path().join("registry.db")).unwrap();
    registry
        .execute_batch(include_str!("fixtures/registry-v0.sql"))
        .unwrap();
    registry.pragma_update(None, "user_version", 99).unwrap();
    drop(registry);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["server", "--listen", "127.0.0.1:0", "--state"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a newer state directory must not open"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("registry.db")
            && errors[0].contains("schema version 99 is newer than this release knows")
            && errors[0].contains("upgrade modal"),
        "{stderr}"
    );
    // Nothing was changed: the newer release can still open it.
    let version: u32 = Connection::open(dir.path().join("registry.db"))
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_whose_caller_stops_waiting_still_runs() {
    use modal_host::{DeployRequest, Trigger};
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::open(
        dir.path(),
        crate::small_config(),
        PlatformConfig::default(),
        None,
    )
    .await
    .unwrap();
    let request = DeployRequest {
        name: "hello".into(),
        ..Default::default()
    };
    platform.deploy(&wasm(HELLO), request).await.unwrap();
    // The caller gives up at its first wait, while the call is being
    // stored: once stored it must run (not wait for a restart). On a busy
    // machine the store can finish within that first poll, so spawn until
    // one caller really gave up; every spawn must run, that one too.
    let mut spawns = 0;
    loop {
        let mut spawn = Box::pin(platform.spawn("hello", "square", b"6", None));
        let first =
            std::future::poll_fn(|cx| std::task::Poll::Ready(spawn.as_mut().poll(cx))).await;
        spawns += 1;
        if first.is_pending() {
            break;
        }
        assert!(spawns < 5, "every spawn answered in its first poll");
    }
    crate::eventually_async(Duration::from_secs(10), || async {
        let logs = platform.logs("hello", None, 10).await.unwrap();
        match logs.iter().filter(|e| e.trigger == Trigger::Spawn).count() {
            ran if ran == spawns => Ok(()),
            ran => Err(format!("{ran} of {spawns} accepted spawns ran: {logs:?}")),
        }
    })
    .await;
}
