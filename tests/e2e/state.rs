//! Key-value state (examples/state): buckets of an app that outlive calls,
//! instances, redeploys, rollbacks and restarts; `modal dict`; the limits;
//! acknowledged writes across a SIGKILL.

use crate::server::Server;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use modal_test_support::STATE;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn state_outlives_calls_instances_deploys_and_restarts() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", STATE]);
    assert_eq!(server.ok(&["call", "state", "visit", "\"ada\""]), "1\n");
    assert_eq!(server.ok(&["call", "state", "visit", "\"ada\""]), "2\n");

    // Instances share it: concurrent increments all count.
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..5 {
                    server.ok(&["call", "state", "visit", "\"bob\""]);
                }
            });
        }
    });
    assert_eq!(server.ok(&["call", "state", "visit", "\"bob\""]), "41\n");

    // Versions share it, and rollbacks.
    server.ok(&["deploy", STATE]);
    assert_eq!(server.ok(&["call", "state", "visit", "\"ada\""]), "3\n");
    server.ok(&["app", "rollback", "state"]);
    assert_eq!(server.ok(&["call", "state", "visit", "\"ada\""]), "4\n");
    let put = r#"{"key": "k", "value": {"a": [1, 2]}}"#;
    assert_eq!(server.ok(&["call", "state", "put", put]), "null\n");

    // And a SIGKILL.
    let server = server.restart();
    assert_eq!(server.ok(&["call", "state", "visit", "\"ada\""]), "5\n");
    assert_eq!(
        server.ok(&["call", "state", "get", "\"k\""]),
        "{\"a\":[1,2]}\n"
    );

    // `modal dict` sees and changes the same buckets.
    let list = server.ok(&["dict", "list", "state"]);
    let rows: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["bucket", "keys"],
            vec!["notes", "1"],
            vec!["visits", "2"]
        ]
    );
    assert_eq!(server.ok(&["dict", "get", "state", "visits", "ada"]), "5\n");
    assert_eq!(
        server.ok(&["dict", "keys", "state", "visits"]),
        "ada\nbob\n"
    );
    server.ok(&["dict", "put", "state", "notes", "j", "\"from the CLI\""]);
    assert_eq!(
        server.ok(&["call", "state", "get", "\"j\""]),
        "\"from the CLI\"\n"
    );
    assert_eq!(
        server.err(&["dict", "get", "state", "notes", "nope"]),
        "error: no key `nope` in bucket `notes`"
    );
    assert_eq!(
        server.err(&["dict", "get", "other", "notes", "k"]),
        "error: no app named `other`"
    );
    server.ok(&["dict", "clear", "state", "notes"]);
    assert_eq!(server.ok(&["call", "state", "get", "\"k\""]), "null\n");

    // Limits and names give clear errors, to guests and to the CLI.
    assert_eq!(
        server.ok(&["call", "state", "store_bytes", &(9 << 20).to_string()]),
        "\"a value is at most 8 MiB; this one has 9437184 bytes\"\n"
    );
    assert_eq!(
        server.ok(&["call", "state", "store_bytes", &(8 << 20).to_string()]),
        "\"stored\"\n"
    );
    assert_eq!(
        server.ok(&["call", "state", "open_bucket", "\"no spaces\""]),
        "\"invalid bucket name `no spaces`: use 1 to 63 letters, digits, `-`, `_` or `.`\"\n"
    );
    let long_key = "k".repeat(1025);
    assert_eq!(
        server.err(&["dict", "put", "state", "notes", &long_key, "1"]),
        "error: bad input: a key is at most 1024 bytes; this one has 1025"
    );
}

/// A `put` through the API that the server answered is stored: the server
/// is SIGKILLed during a burst of writes from several clients, and every
/// write that was answered is there after the restart.
#[test]
fn every_acknowledged_put_survives_a_sigkill() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", STATE]);
    let (addr, token) = (server.addr.clone(), server.token());
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (addr, token, acked) = (addr.clone(), token.clone(), acknowledged.clone());
            runtime.spawn(async move {
                let Ok(stream) = tokio::net::TcpStream::connect(&addr).await else {
                    return;
                };
                let Ok((mut sender, conn)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                else {
                    return;
                };
                tokio::spawn(conn);
                for i in 0.. {
                    let key = format!("w{w}-{i}");
                    let body = format!(r#"{{"key": "{key}", "value": {i}}}"#);
                    let request = hyper::Request::post("/api/v1/apps/state/functions/put/call")
                        .header("host", &addr)
                        .header("authorization", format!("Bearer {token}"))
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                    if sender.ready().await.is_err() {
                        return;
                    }
                    let Ok(response) = sender.send_request(request).await else {
                        return;
                    };
                    let ok = response.status() == 200;
                    if response.into_body().collect().await.is_err() || !ok {
                        return;
                    }
                    acked.lock().unwrap().push(key);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    // The writes go on until there were enough of them (a busy machine
    // acknowledges fewer).
    crate::eventually(Duration::from_secs(20), || {
        match acknowledged.lock().unwrap().len() {
            51.. => Ok(()),
            n => Err(format!("only {n} puts acknowledged")),
        }
    });
    let server = {
        let restarted = server.restart();
        runtime.block_on(async {
            for w in writers {
                let _ = w.await;
            }
        });
        restarted
    };
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 50,
        "only {} puts before the kill",
        acknowledged.len()
    );
    let stored = server.ok(&["dict", "keys", "state", "notes"]);
    let stored: std::collections::HashSet<&str> = stored.lines().collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|k| !stored.contains(k.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged puts lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

/// A stopped app's buckets go when garbage collection forgets the app: a
/// new app of the same name starts with none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_are_deleted_with_the_collected_app() {
    use modal_host::{DeployRequest, Platform, PlatformConfig};
    let dir = tempfile::tempdir().unwrap();
    let config = PlatformConfig {
        retention: Duration::ZERO,
        ..PlatformConfig::default()
    };
    let platform = Platform::open(dir.path(), crate::small_config(), config, None)
        .await
        .unwrap();
    let deploy = || DeployRequest {
        name: "state".into(),
        ..Default::default()
    };
    platform
        .deploy(&modal_test_support::wasm(STATE), deploy())
        .await
        .unwrap();
    platform
        .dict_put("state", "notes", "k", b"1".to_vec())
        .await
        .unwrap();
    platform.stop("state").await.unwrap();
    // Stopped, not yet collected: the buckets stay.
    assert_eq!(
        platform.dicts("state").await.unwrap(),
        [("notes".to_string(), 1)]
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = platform.gc().await.unwrap();
    assert_eq!(report.apps, ["state"]);
    platform
        .deploy(&modal_test_support::wasm(STATE), deploy())
        .await
        .unwrap();
    assert!(platform.dicts("state").await.unwrap().is_empty());
    assert_eq!(
        platform.dict_get("state", "notes", "k").await.unwrap(),
        None
    );
}
