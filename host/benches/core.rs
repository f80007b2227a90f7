//! Core figures of the host, printed as a table: compile and cached-load
//! time of `examples/hello`, instantiation from `InstancePre` with the
//! pooling allocator, warm-call latency through the pool (checkout, call,
//! check-in) and cold-call latency (fresh instance + call); calls between
//! functions (`examples/fanout`, through a `Platform`): a nested warm call
//! against a plain one, and the throughput of `map`; warm key-value `get`
//! and `put` from a guest on the SQLite store.
//!
//! Run it with `cargo bench -p modal-host --bench core` (release build).

use modal_host::{AppMeta, DeployRequest, Host, HostConfig, Platform, PlatformConfig, Trigger};
use modal_test_support::{COUNTER, FANOUT, HELLO, STATE, wasm};
use std::time::{Duration, Instant};

mod bare;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
    // Calls between functions run as the server runs them: on a runtime
    // with a worker thread per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(calls_between_functions());
}

/// Mean time of `n` calls of `function` with `input`, after a warm-up.
async fn mean_call(platform: &Platform, function: &str, input: &[u8], n: u32) -> Duration {
    let call = || platform.call("fanout", function, input, None, Trigger::Call);
    for _ in 0..n / 10 {
        call().await.expect("runs").outcome.expect(function);
    }
    let start = Instant::now();
    for _ in 0..n {
        call().await.expect("runs").outcome.expect(function);
    }
    start.elapsed() / n
}

async fn calls_between_functions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = HostConfig {
        cache_dir: Some(dir.path().join("compiled")),
        ..HostConfig::default()
    };
    let platform = Platform::open(dir.path(), config, PlatformConfig::default(), None)
        .await
        .expect("platform");
    let request = DeployRequest {
        name: "fanout".into(),
        ..Default::default()
    };
    platform
        .deploy(&wasm(FANOUT), request)
        .await
        .expect("deploys");

    // The same work, once called directly and once through a nested call,
    // in alternating rounds (the machine drifts between runs).
    let (mut plain, mut nested) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        plain.push(mean_call(&platform, "square", b"7", 20_000).await);
        nested.push(mean_call(&platform, "square_via", b"7", 20_000).await);
    }
    plain.sort();
    nested.sort();
    let (plain, nested) = (percentile(&plain, 0.5), percentile(&nested, 0.5));
    row(
        "warm call through the platform (median of 5 means)",
        format!("{:.2} µs", micros(plain)),
        "",
    );
    row(
        "nested warm call: guest -> host -> guest, extra",
        format!("{:.2} µs", micros(nested.saturating_sub(plain))),
        "<= 5 µs",
    );

    // `map` of 1,000 trivial inputs on `square`'s 8 instances.
    let inputs = format!(
        "[{}]",
        (1..=1000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let per_map = mean_call(&platform, "sum_squares", inputs.as_bytes(), 200).await;
    row(
        "map of 1,000 trivial inputs, 8 instances",
        format!("{:.0}k inputs/s", 1000.0 / per_map.as_secs_f64() / 1e3),
        ">= 200k inputs/s",
    );
    key_value(&platform).await;
    platform.shutdown(Duration::from_secs(5)).await;
}

/// Warm `get` and `put` from a guest on the SQLite store (`kv.db`, WAL):
/// a guest loop of many operations, so the call's own cost is spread.
async fn key_value(platform: &Platform) {
    let request = DeployRequest {
        name: "state".into(),
        ..Default::default()
    };
    platform
        .deploy(&wasm(STATE), request)
        .await
        .expect("deploys");
    let call = |function: &'static str, n: u32| async move {
        let input = n.to_string();
        let start = Instant::now();
        platform
            .call("state", function, input.as_bytes(), None, Trigger::Call)
            .await
            .expect("runs")
            .outcome
            .expect(function);
        start.elapsed() / n
    };
    call("puts", 1_000).await;
    let mut puts: Vec<Duration> = Vec::new();
    let mut gets: Vec<Duration> = Vec::new();
    for _ in 0..5 {
        puts.push(call("puts", 5_000).await);
        gets.push(call("gets", 50_000).await);
    }
    puts.sort();
    gets.sort();
    row(
        "key-value get from a guest (median of 5 x 50,000)",
        format!("{:.2} µs", micros(percentile(&gets, 0.5))),
        "<= 10 µs",
    );
    row(
        "key-value put from a guest (median of 5 x 5,000)",
        format!("{:.2} µs", micros(percentile(&puts, 0.5))),
        "<= 50 µs",
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn row(what: &str, value: String, target: &str) {
    println!("{what:<48} {value:>14}   {target}");
}

async fn run() {
    let hello = wasm(HELLO);
    let counter = wasm(COUNTER);
    println!("{:<48} {:>14}   target", "measure", "figure");

    // Compile: a host without a cache compiles every time.
    let uncached = Host::new(HostConfig {
        cache_dir: None,
        ..HostConfig::default()
    })
    .expect("host");
    let mut compiles: Vec<Duration> = Vec::new();
    for _ in 0..5 {
        compiles.push(uncached.precompile(&hello).await.expect("compiles").elapsed);
    }
    compiles.sort();
    row(
        "compile hello (Cranelift, median of 5)",
        format!("{:.1} ms", percentile(&compiles, 0.5).as_secs_f64() * 1e3),
        "",
    );

    // Load of cached compiled code (mmap of the serialized component).
    let dir = tempfile::tempdir().expect("temp dir");
    let cached = Host::new(HostConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..HostConfig::default()
    })
    .expect("host");
    cached.precompile(&hello).await.expect("compiles");
    let mut loads = Vec::new();
    for _ in 0..50 {
        let stats = cached.precompile(&hello).await.expect("loads");
        assert!(stats.cached);
        loads.push(stats.elapsed);
    }
    loads.sort();
    row(
        "load cached compiled hello (median of 50)",
        format!("{:.3} ms", percentile(&loads, 0.5).as_secs_f64() * 1e3),
        "<= 1 ms",
    );

    // Instantiation from InstancePre (pooling allocator), including the
    // store, WASI context and the `enter` hook call.
    let mut per_instance = Vec::new();
    for round in 0..20 {
        let app = cached
            .load(&counter, AppMeta::new("bench", round))
            .await
            .expect("loads");
        let start = Instant::now();
        let started = app.warm("incr", 64).await.expect("warms");
        per_instance.push(start.elapsed() / started);
        app.drain().await;
    }
    per_instance.sort();
    row(
        "scale-out: instance in a fresh pool slot, with enter hook (median)",
        format!("{:.1} µs", micros(percentile(&per_instance, 0.5))),
        "",
    );

    // Warm calls through the pool.
    let app = cached
        .load(&counter, AppMeta::new("bench", 100))
        .await
        .expect("loads");
    for _ in 0..10_000 {
        app.call("incr", b"").await.outcome.expect("incr");
    }
    let n = 200_000;
    let mut samples = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let execution = app.call("incr", b"").await;
        samples.push(t.elapsed());
        debug_assert!(execution.outcome.is_ok());
    }
    let mean = start.elapsed() / n as u32;
    samples.sort();
    row(
        "warm call through the pool (mean)",
        format!("{:.2} µs", micros(mean)),
        "<= 2 µs",
    );
    row(
        "warm call p50 / p99",
        format!(
            "{:.2} / {:.2} µs",
            micros(percentile(&samples, 0.5)),
            micros(percentile(&samples, 0.99))
        ),
        "",
    );

    // Cold calls: `once` has max_requests = 1, so every call creates a
    // fresh instance, calls it and drops it.
    let n = 5_000;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        app.call("once", b"").await.outcome.expect("once");
        samples.push(t.elapsed());
    }
    samples.sort();
    let mean: Duration = samples.iter().sum::<Duration>() / n as u32;
    row(
        "cold call: fresh instance + call (mean)",
        format!("{:.1} µs", micros(mean)),
        "<= 25 µs",
    );
    row(
        "cold call p50 / p99",
        format!(
            "{:.1} / {:.1} µs",
            micros(percentile(&samples, 0.5)),
            micros(percentile(&samples, 0.99))
        ),
        "p50 <= 20 µs",
    );
    app.drain().await;

    // The same cold calls with the decommit of dropped instances batched
    // (32 regions) or not (the default, 1), and the same work in a bare
    // wasmtime embedding, in alternating rounds on one machine state; see
    // `cargo bench --bench memory` for what batching keeps resident.
    let defaults = modal_host::PoolingLimits::default();
    let mut variants: Vec<(&str, modal_host::PoolingLimits, Vec<Duration>)> = vec![
        ("decommit batch 1", defaults.clone(), Vec::new()),
        (
            "decommit batch 32",
            modal_host::PoolingLimits {
                decommit_batch: 32,
                ..defaults.clone()
            },
            Vec::new(),
        ),
    ];
    let (mut floor, mut steps) = (Vec::new(), <[Vec<Duration>; 5]>::default());
    for round in 0..6 {
        for (_, limits, samples) in variants.iter_mut() {
            let host = Host::new(HostConfig {
                cache_dir: Some(dir.path().to_path_buf()),
                pooling: Some(limits.clone()),
                ..HostConfig::default()
            })
            .expect("host");
            let app = host
                .load(&counter, AppMeta::new("bench", 200 + round))
                .await
                .expect("loads");
            for _ in 0..2_000 {
                let t = Instant::now();
                app.call("once", b"").await.outcome.expect("once");
                samples.push(t.elapsed());
            }
            app.drain().await;
        }
        bare_wasmtime_cold_calls(&counter, 2_000, &mut floor, &mut steps).await;
    }
    variants.push(("floor: bare wasmtime, same work", defaults, floor));
    for (label, _, samples) in &mut variants {
        samples.sort();
        let mean: Duration = samples.iter().sum::<Duration>() / samples.len() as u32;
        row(
            &format!("cold call, {label}: mean, p50 / p99"),
            format!(
                "{:.1}, {:.1} / {:.1} µs",
                micros(mean),
                micros(percentile(samples, 0.5)),
                micros(percentile(samples, 0.99))
            ),
            "",
        );
    }
    // Where the floor's time goes, step by step.
    let medians: Vec<String> = steps
        .iter_mut()
        .map(|step| {
            step.sort();
            format!("{:.1}", micros(percentile(step, 0.5)))
        })
        .collect();
    row(
        "cold call floor by step (p50 µs): store, instance, enter, call, drop",
        medians.join(" / "),
        "",
    );
}

/// The floor under the cold call: `n` times the same work in a bare
/// wasmtime embedding (see `bare`), appended to `totals`, with the time of
/// each of its steps appended to `steps`.
async fn bare_wasmtime_cold_calls(
    wasm: &[u8],
    n: usize,
    totals: &mut Vec<Duration>,
    steps: &mut [Vec<Duration>; 5],
) {
    let engine = bare::engine();
    let component = wasmtime::component::Component::new(&engine, wasm).expect("compiles");
    let app = bare::BareApp::new(&engine, &component);
    for _ in 0..n {
        let took = app.cold_call("once").await;
        totals.push(took.iter().sum());
        for (all, one) in steps.iter_mut().zip(took) {
            all.push(one);
        }
    }
}
