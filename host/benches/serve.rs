//! The host's own cost of one web request, without sockets: a request
//! handed to `Platform::serve_http` (routing to the live version, pool
//! checkout, the guest's `wasi:http` handler, check-in, recording) and its
//! body read to the end, for the plain wasi:http example and the SDK's
//! `greet`; the same through a `LoadedApp` with no recording, which
//! shows what recording an execution costs; and the same request in a
//! bare `wasi:http` host (`bare/http.rs`: a warm instance, nothing else),
//! the least any host on this wasmtime spends. Last, the storing half of
//! recording alone: SQLite inserting such executions, with and without
//! the two indexes the pages read an app's executions by.
//!
//! Run it with `cargo bench -p modal-host --bench serve` (release build).
//! `host/benches/web.sh` measures the whole path over loopback HTTP.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use modal_host::{AppMeta, DeployRequest, Host, HostConfig, Platform, PlatformConfig};
use modal_test_support::{HELLO, HTTP_PLAIN, wasm};
use std::time::{Duration, Instant};

/// The allocator of the `modal` binary, so that the figures are those of
/// a server (the record writer frees on another thread what the call
/// path allocated, which glibc's allocator makes several times dearer).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "bare/record.rs"]
mod record;

#[path = "bare/http.rs"]
#[allow(dead_code)] // `time_calls` is for examples/bare_wasi_http.rs
mod bare_http;

/// Rounds and requests per round; `MODAL_BENCH_REQUESTS` overrides the
/// latter (e.g. for a run under `valgrind --tool=callgrind`).
const ROUNDS: usize = 5;
fn requests() -> u32 {
    std::env::var("MODAL_BENCH_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

fn request(path: &str) -> hyper::Request<Empty<Bytes>> {
    hyper::Request::get(path)
        .header("host", "localhost")
        .body(Empty::new())
        .expect("request")
}

/// CPU time of this process so far (all threads, user + system), from
/// `/proc/self/stat` in clock ticks of 10 ms.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Mean wall time per request over `REQUESTS`, best of `ROUNDS` (the
/// least disturbed by the rest of the machine), and the process's CPU
/// time per request in that round (which includes the record writer's
/// thread).
async fn best<F, Fut>(mut serve: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = usize>,
{
    let requests = requests();
    for _ in 0..requests.min(5_000) {
        serve().await;
    }
    let mut best = (Duration::MAX, Duration::ZERO);
    for _ in 0..ROUNDS {
        // Let the previous round's records be written first.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (start, cpu) = (Instant::now(), cpu_time());
        for _ in 0..requests {
            assert!(serve().await > 0, "the endpoint answers with a body");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let wall = (start.elapsed() - Duration::from_millis(100)) / requests;
        if wall < best.0 {
            best = (wall, (cpu_time() - cpu) / requests);
        }
    }
    best
}

async fn body(response: modal_host::WebResponse) -> usize {
    assert_eq!(response.status(), 200);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    bytes.len()
}

async fn run() {
    let state = tempfile::tempdir().expect("temp dir");
    let platform = Platform::open(
        state.path(),
        HostConfig::default(),
        PlatformConfig::default(),
        None,
    )
    .await
    .expect("platform opens");
    let host = Host::new(HostConfig::default()).expect("host");
    println!(
        "{:<56} {:>10} {:>10}",
        "one web request, in process (best of 5 × 50k)", "wall µs", "cpu µs"
    );
    for (app, file, function, path) in [
        ("plain", HTTP_PLAIN, "web", "/"),
        ("hello", HELLO, "greet", "/?name=bench"),
    ] {
        platform
            .deploy(
                &wasm(file),
                DeployRequest {
                    name: app.into(),
                    deployer: "bench".into(),
                    ..DeployRequest::default()
                },
            )
            .await
            .expect("deploys");
        let recorded = best(|| async {
            let response = platform
                .serve_http(app, function, request(path))
                .await
                .expect("answers");
            body(response).await
        })
        .await;
        let loaded = host
            .load(&wasm(file), AppMeta::new(app, 1))
            .await
            .expect("loads");
        let bare = best(|| async {
            let response = loaded
                .serve_http(function, request(path))
                .await
                .expect("answers");
            body(response).await
        })
        .await;
        let floor = bare_http::BareHttp::new(&wasm(file)).expect("bare host");
        let floor = best(|| async {
            let response = floor.handle(request(path)).await.expect("answers");
            body(response).await
        })
        .await;
        let us = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e6);
        for (what, (wall, cpu)) in [
            ("platform, recorded", recorded),
            ("loaded app, not recorded", bare),
            ("bare wasi:http host (floor)", floor),
        ] {
            println!(
                "{:<56} {:>10} {:>10}",
                format!("{app} {function}: {what}"),
                us(wall),
                us(cpu)
            );
        }
    }
    platform.shutdown(Duration::from_secs(5)).await;
    for (what, drop) in [
        ("as shipped", ""),
        (
            "without the by-app indexes",
            "DROP INDEX executions_by_app; DROP INDEX executions_by_app_time;",
        ),
    ] {
        let (wall, cpu) = store_alone(drop).await;
        println!(
            "{:<56} {:>10.2} {:>10.2}",
            format!("storing a web execution, SQLite {what}"),
            wall.as_secs_f64() * 1e6,
            cpu.as_secs_f64() * 1e6
        );
    }
}

/// Wall and CPU time per record of `SqliteRecords::insert_executions`
/// for records like those of the plain example's web requests, in batches
/// as the writer sends them under load (of varying size: what gathered
/// in its 20 ms): the storing half of recording.
/// `drop` is run on the fresh database first (to show what an index
/// costs).
async fn store_alone(drop: &str) -> (Duration, Duration) {
    use modal_host::platform::{ExecutionRecord, RecordStore, SqliteRecords};
    let state = tempfile::tempdir().expect("temp dir");
    let store = SqliteRecords::open(&state.path().join("executions.db")).expect("opens");
    // 200 batches of 400 to 599 records, 100,000 in all.
    let sizes: Vec<u64> = (0..200u64).map(|b| 400 + (b * 37) % 200).collect();
    let firsts: Vec<u64> = sizes
        .iter()
        .scan(0, |next, size| Some(std::mem::replace(next, *next + size)))
        .collect();
    let batch = |(first, size): (u64, u64)| -> Vec<ExecutionRecord> {
        (first..first + size)
            .map(|i| record::web_execution(i + 1, "plain", 1_700_000_000_000 + i / 40, 0.01, 200))
            .collect()
    };
    rusqlite::Connection::open(state.path().join("executions.db"))
        .and_then(|c| c.execute_batch(drop))
        .expect("drops");
    let all: Vec<Vec<ExecutionRecord>> = firsts.into_iter().zip(sizes).map(batch).collect();
    let n = all.iter().map(Vec::len).sum::<usize>() as u32;
    let (start, cpu) = (Instant::now(), cpu_time());
    for records in all {
        store.insert_executions(records).await.expect("stores");
    }
    (start.elapsed() / n, (cpu_time() - cpu) / n)
}
