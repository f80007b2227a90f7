//! Deployment figures: deploy time of `examples/hello` (cold compile and
//! cached), redeploy time, start time of a platform with 100 deployed apps,
//! and memory per idle deployed app.
//!
//! Run it with `cargo bench -p modal-host --bench deploy` (release build).

use modal_host::{AppMeta, DeployRequest, Host, HostConfig, Platform, PlatformConfig};
use modal_test_support::{COUNTER, HELLO, wasm};
use std::time::{Duration, Instant};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

fn request(name: &str) -> DeployRequest {
    DeployRequest {
        name: name.to_string(),
        deployer: "bench".into(),
        ..DeployRequest::default()
    }
}

/// A distinct component with the same behaviour: `wasm` plus a custom
/// section naming `n`, so every app has its own digest and compiled code.
fn variant(wasm: &[u8], n: usize) -> Vec<u8> {
    fn leb(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = format!("bench-variant-{n}");
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn open(state: &std::path::Path) -> Platform {
    Platform::open(
        state,
        HostConfig::default(),
        PlatformConfig::default(),
        None,
    )
    .await
    .expect("platform opens")
}

/// Warm calls per second of `incr` on `app`, over `n` calls.
async fn throughput(app: &modal_host::LoadedApp, n: u32) -> f64 {
    for _ in 0..10_000 {
        app.call("incr", b"").await.outcome.expect("incr");
    }
    let start = Instant::now();
    for _ in 0..n {
        app.call("incr", b"").await.outcome.expect("incr");
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

async fn run() {
    let hello = wasm(HELLO);
    // Execution recording: the same warm call with and without it.
    {
        let state = tempfile::tempdir().expect("temp dir");
        let platform = open(state.path()).await;
        platform
            .deploy(&wasm(COUNTER), request("counter"))
            .await
            .expect("deploys");
        let recorded = platform.live("counter").expect("live");
        let host = Host::new(HostConfig::default()).expect("host");
        let bare = host
            .load(&wasm(COUNTER), AppMeta::new("counter", 1))
            .await
            .expect("loads");
        let n = 300_000;
        let off = throughput(&bare, n).await;
        let on = throughput(&recorded, n).await;
        println!(
            "{:<52} {:>12}",
            "warm calls/s, recording off",
            format!("{off:.0}")
        );
        println!(
            "{:<52} {:>12}",
            "warm calls/s, recording on (stored, counted)",
            format!("{on:.0}")
        );
        println!(
            "{:<52} {:>12}",
            "recording on / off",
            format!("{:.2}", on / off)
        );
    }
    println!("{:<52} {:>12}", "measure", "figure");

    let mut cold = Vec::new();
    for _ in 0..3 {
        let state = tempfile::tempdir().expect("temp dir");
        let platform = open(state.path()).await;
        let start = Instant::now();
        let d = platform
            .deploy(&hello, request("hello"))
            .await
            .expect("deploys");
        assert!(!d.compiled_from_cache);
        cold.push(start.elapsed());
    }
    println!(
        "{:<52} {:>12}",
        "deploy hello, cold (compile), median of 3",
        ms(median(cold))
    );

    let state = tempfile::tempdir().expect("temp dir");
    let platform = open(state.path()).await;
    platform
        .deploy(&hello, request("hello"))
        .await
        .expect("deploys");
    let mut cached = Vec::new();
    for i in 0..20 {
        let start = Instant::now();
        let d = platform
            .deploy(&hello, request(&format!("copy-{i}")))
            .await
            .expect("deploys");
        assert!(d.compiled_from_cache);
        cached.push(start.elapsed());
    }
    println!(
        "{:<52} {:>12}",
        "deploy hello as a new app, cached code, median",
        ms(median(cached))
    );

    let mut redeploys = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        platform
            .deploy(&hello, request("hello"))
            .await
            .expect("redeploys");
        redeploys.push(start.elapsed());
    }
    println!(
        "{:<52} {:>12}",
        "redeploy hello (new version live), median",
        ms(median(redeploys))
    );
    drop(platform);

    // 100 idle apps, each its own component: memory and start time.
    let state = tempfile::tempdir().expect("temp dir");
    let platform = open(state.path()).await;
    platform
        .deploy(&hello, request("warmup"))
        .await
        .expect("deploys");
    let variants: Vec<Vec<u8>> = (0..100).map(|i| variant(&hello, i)).collect();
    let before = rss();
    for (i, wasm) in variants.iter().enumerate() {
        platform
            .deploy(wasm, request(&format!("app-{i}")))
            .await
            .expect("deploys");
    }
    let after = rss();
    println!(
        "{:<52} {:>12}",
        "memory per idle deployed app (100 distinct, RSS delta)",
        format!(
            "{:.0} KiB",
            (after.saturating_sub(before)) as f64 / 100.0 / 1024.0
        )
    );
    drop(platform);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut starts = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let platform = open(state.path()).await;
        starts.push(start.elapsed());
        assert_eq!(platform.apps().await.expect("lists").len(), 101);
        drop(platform);
    }
    println!(
        "{:<52} {:>12}",
        "start with 101 deployed apps (open + load all), median",
        ms(median(starts))
    );
}
