//! Modal's example app on this platform (examples/podcasts): deployed with
//! its mounts and secret, fed by `modal schedule run`, searched through a
//! call and the web API, its frontend served from the mount, its index
//! kept across a restart, its feed fetched over HTTP with the API key,
//! and the key shown nowhere.

use crate::http::get;
use crate::server::Server;
use modal_test_support::{PODCASTS, PODCASTS_FEED, PODCASTS_FRONTEND};
use serde_json::Value;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "pk-live-7f3a9c1e5b20";
const NEW_KEY: &str = "pk-live-rotated-93d1c0";

/// `--mount` values of the frontend and the sample feed.
fn mounts() -> [String; 4] {
    [
        "--mount".into(),
        format!("{PODCASTS_FRONTEND}:/assets"),
        "--mount".into(),
        format!("{PODCASTS_FEED}:/feed"),
    ]
}

/// Fires `function`'s schedule now and waits for the run to end; returns
/// its execution record (the last attempt's).
pub(crate) fn run_schedule(server: &Server, function: &str) -> Value {
    let run = server
        .ok(&["schedule", "run", "podcasts", function])
        .trim()
        .to_string();
    let path = format!("/api/v1/apps/podcasts/logs?limit=100&function={function}");
    crate::eventually(Duration::from_secs(60), || {
        let logs = crate::http::Http::blocking_get_json(&server.addr, &server.token(), &path);
        logs["executions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["run_id"] == run.as_str())
            .cloned()
            .ok_or_else(|| format!("run {run} did not end: {logs}"))
    })
}

/// Creates the secret, deploys the app with its mounts and fills its
/// index: what a user does first.
pub(crate) fn deploy_and_index(server: &Server) -> String {
    server.ok(&[
        "secret",
        "create",
        "podcast-feed",
        &format!("PODCAST_API_KEY={KEY}"),
    ]);
    let mut args = vec!["deploy", PODCASTS];
    let mounts = mounts();
    args.extend(mounts.iter().map(String::as_str));
    let out = server.ok(&args);
    for run in ["fetch_episodes", "refresh_index"] {
        let execution = run_schedule(server, run);
        assert_eq!(execution["outcome"], "ok", "{execution}");
    }
    out
}

/// The logs of the last `n` executions of `function`.
fn logs(server: &Server, function: &str, n: usize) -> String {
    let n = n.to_string();
    server.ok(&["app", "logs", "podcasts", "--function", function, "-n", &n])
}

fn search(server: &Server, query: &str) -> Vec<Value> {
    let input = serde_json::to_string(query).unwrap();
    let out = server.ok(&["call", "podcasts", "search_podcast", &input]);
    serde_json::from_str(&out).unwrap()
}

fn episodes(results: &[Value]) -> Vec<&str> {
    results
        .iter()
        .map(|r| r["episode"].as_str().unwrap())
        .collect()
}

/// A feed server on 127.0.0.1 that answers `GET /feed.json` with `feed`
/// only to `Authorization: Bearer NEW_KEY`; it records the authorization
/// headers it saw.
fn feed_server(feed: String) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let auth = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("authorization")
                        .then(|| value.trim().to_string())
                })
                .unwrap_or_default();
            let authorized = auth == format!("Bearer {NEW_KEY}");
            log.lock().unwrap().push(auth);
            let (status, body) = if !head.starts_with("GET /feed.json ") {
                ("404 Not Found", "{}".to_string())
            } else if authorized {
                ("200 OK", feed.clone())
            } else {
                ("401 Unauthorized", "{}".to_string())
            };
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    (port, seen)
}

#[test]
fn the_podcast_app_fetches_transcribes_indexes_and_serves_its_frontend() {
    let state = tempfile::tempdir().unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let server_log = log_dir.path().join("server.log");
    let server = Server::start_logged(state.path(), &[], &server_log);

    // The secret the code names must exist before the deploy.
    let mut args = vec!["deploy", PODCASTS];
    let mounts = mounts();
    args.extend(mounts.iter().map(String::as_str));
    assert_eq!(
        server.err(&args),
        "error: bad input: no secret named `podcast-feed`; create it with \
         `modal secret create podcast-feed KEY=VALUE`"
    );
    let out = deploy_and_index(&server);
    // The deploy output lists the functions, the web URL and the mounts.
    for line in [
        "├── 🔨 Created scheduled function fetch_episodes (every 1h).",
        "├── 🔨 Created function populate_podcast_metadata.",
        "├── 🔨 Created function transcribe_episode.",
        "├── 🔨 Created function transcribe_segment.",
        "├── 🔨 Created scheduled function refresh_index (every 10m).",
        "├── 🔨 Created function search_podcast.",
        &format!(
            "├── 🔨 Created web function web => http://podcasts--web.{}/",
            server.addr.replace("127.0.0.1", "localhost")
        ),
        &format!("├── 🔨 Mounted {PODCASTS_FRONTEND} at /assets (3 files, "),
        &format!("├── 🔨 Mounted {PODCASTS_FEED} at /feed (1 file, "),
        "└── 🔨 Attached secret podcast-feed (revision 1)",
    ] {
        assert!(out.contains(line), "no `{line}` in:\n{out}");
    }

    // fetch_episodes stored every podcast and transcribed every episode,
    // fanning out over the segments; the key it logged is masked.
    assert_eq!(
        server.ok(&["dict", "keys", "podcasts", "transcripts"]),
        "night-sky-7\nnight-sky-8\nserverless-stories-40\nserverless-stories-41\n\
         wasm-hour-12\nwasm-hour-13\n"
    );
    let fetched = logs(&server, "fetch_episodes", 1);
    assert!(
        fetched.contains("fetching the feed with api key ***"),
        "{fetched}"
    );
    assert!(
        fetched.contains("6 episodes in the feed, 6 newly transcribed"),
        "{fetched}"
    );
    let segments = logs(&server, "transcribe_segment", 100);
    assert!(
        segments.matches("transcribe_segment").count() >= 18,
        "{segments}"
    );
    let wasm = server.ok(&["dict", "get", "podcasts", "podcasts", "wasm-hour"]);
    let wasm: Value = serde_json::from_str(&wasm).unwrap();
    assert_eq!(
        (wasm["title"].as_str(), wasm["episodes"].as_u64()),
        (Some("The Wasm Hour"), Some(2))
    );
    // A second fetch transcribes nothing again.
    assert_eq!(run_schedule(&server, "fetch_episodes")["outcome"], "ok");
    let again = logs(&server, "fetch_episodes", 1);
    assert!(again.contains("0 newly transcribed"), "{again}");

    // Search, as a call and through the web API.
    assert_eq!(
        episodes(&search(&server, "component model"))[0],
        "wasm-hour-12"
    );
    assert_eq!(episodes(&search(&server, "ORION rigel")), ["night-sky-7"]);
    assert!(search(&server, "orion kubernetes").is_empty());
    assert!(search(&server, "").is_empty());
    let (status, body) = get(
        &server.addr,
        &server.addr,
        "/web/podcasts/web/api/search?q=meteor+shower",
    );
    assert_eq!(status, 200, "{body}");
    let results: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(episodes(&results), ["night-sky-8"]);
    assert!(
        results[0]["text"]
            .as_str()
            .unwrap()
            .contains("meteor shower"),
        "{body}"
    );

    // The frontend comes from the mount, through the web URL.
    let (status, page) = get(
        &server.addr,
        &server.addr,
        "/web/podcasts/web/assets/index.html",
    );
    assert_eq!(status, 200);
    assert!(page.contains("<title>Podcast search</title>"), "{page}");
    let (status, script) = get(
        &server.addr,
        &server.addr,
        "/web/podcasts/web/assets/app.js",
    );
    assert_eq!(status, 200);
    assert!(script.contains("../api/search"), "{script}");
    let (status, _) = get(
        &server.addr,
        &server.addr,
        "/web/podcasts/web/assets/../../feed/episodes.json",
    );
    assert_eq!(status, 404, "nothing outside the frontend mount is served");

    // The index is durable: a SIGKILL and a restart keep it.
    let server = server.restart();
    assert_eq!(
        episodes(&search(&server, "winter hexagon")),
        ["night-sky-7"]
    );
    let (status, body) = get(&server.addr, &server.addr, "/web/podcasts/web/api/status");
    assert_eq!(status, 200);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["transcribed"], 6, "{status}");
    assert!(status["index"]["terms"].as_u64().unwrap() > 200, "{status}");

    // The feed over outbound HTTP, with the rotated key from the secret:
    // the new revision takes effect at the next deploy.
    let mut feed: Value =
        serde_json::from_slice(&std::fs::read(format!("{PODCASTS_FEED}/episodes.json")).unwrap())
            .unwrap();
    feed["podcasts"][0]["episodes"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": "wasm-hour-14",
            "title": "Resources and handles",
            "published": "2026-10-20",
            "audio": "resources are handles owned by one component and lent to another",
        }));
    let (port, seen) = feed_server(feed.to_string());
    server.ok(&[
        "secret",
        "create",
        "podcast-feed",
        &format!("PODCAST_API_KEY={NEW_KEY}"),
        &format!("FEED_URL=http://127.0.0.1:{port}/feed.json"),
        "--force",
    ]);
    let grant = format!("127.0.0.1:{port}");
    let mut args = vec!["deploy", PODCASTS, "--allow-http", &grant];
    args.extend(mounts.iter().map(String::as_str));
    let out = server.ok(&args);
    assert!(
        out.contains("🔨 Attached secret podcast-feed (revision 2)"),
        "{out}"
    );
    assert_eq!(run_schedule(&server, "fetch_episodes")["outcome"], "ok");
    assert_eq!(*seen.lock().unwrap(), [format!("Bearer {NEW_KEY}")]);
    assert_eq!(run_schedule(&server, "refresh_index")["outcome"], "ok");
    assert_eq!(episodes(&search(&server, "handles lent")), ["wasm-hour-14"]);

    // A rollback brings back revision 1 of the secret, without FEED_URL:
    // the sample feed again, and no request to the feed server.
    server.ok(&["app", "rollback", "podcasts"]);
    assert_eq!(run_schedule(&server, "fetch_episodes")["outcome"], "ok");
    assert_eq!(seen.lock().unwrap().len(), 1);

    // The keys are in no output, page, stored log, file or server log.
    for key in [KEY, NEW_KEY] {
        crate::secrets::assert_nowhere(&server, "podcasts", key);
        let log = std::fs::read_to_string(&server_log).unwrap();
        assert!(!log.contains(key), "the server log holds {key}");
    }
    assert!(
        std::fs::metadata(&server_log).unwrap().len() > 0,
        "the server logged something"
    );
}
