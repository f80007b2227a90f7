//! Resident memory after memory bombs: a host runs rounds of `faulty.hog`
//! (each grows its instance to the memory limit and is dropped), then
//! idles. Prints the resident set before, right after the bombs and after
//! the idle time, for the default decommit batch (1) and for batched
//! decommits (32), each measured in a process of its own (RSS is per
//! process), in alternating order.
//!
//! `cargo bench -p modal-host --bench memory`; `MODAL_BENCH_IDLE` sets the
//! idle time in seconds (default 30), `MODAL_BENCH_BOMBS` the bombs per
//! round (default 8, all at once).

use modal_host::{AppMeta, Host, HostConfig, PoolingLimits};
use modal_test_support::{FAULTY, wasm};
use std::time::Duration;

const CHILD: &str = "MODAL_BENCH_DECOMMIT_BATCH";

fn main() {
    if let Ok(batch) = std::env::var(CHILD) {
        child(batch.parse().expect("a batch size"));
        return;
    }
    println!(
        "{:<16} {:>12} {:>14} {:>14} {:>16}",
        "decommit batch", "before MiB", "after MiB", "idle MiB", "idle - before"
    );
    for round in 0..2 {
        let order: [usize; 2] = if round % 2 == 0 { [1, 32] } else { [32, 1] };
        for batch in order {
            let out = std::process::Command::new(std::env::current_exe().expect("own path"))
                .env(CHILD, batch.to_string())
                .output()
                .expect("child runs");
            let text = String::from_utf8_lossy(&out.stdout);
            let figures: Vec<u64> = text
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            let [before, after, idle] = figures[..] else {
                panic!("child said: {text}{}", String::from_utf8_lossy(&out.stderr));
            };
            println!(
                "{batch:<16} {:>12} {:>14} {:>14} {:>16}",
                before >> 20,
                after >> 20,
                idle >> 20,
                (idle as i64 - before as i64) >> 20
            );
        }
    }
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    modal_test_support::rss(None)
}

fn child(batch: usize) {
    let idle: u64 = std::env::var("MODAL_BENCH_IDLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let bombs: usize = std::env::var("MODAL_BENCH_BOMBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let host = Host::new(HostConfig {
            pooling: Some(PoolingLimits {
                decommit_batch: batch,
                ..Default::default()
            }),
            ..HostConfig::default()
        })
        .expect("host");
        let app = host
            .load(&wasm(FAULTY), AppMeta::new("faulty", 1))
            .await
            .expect("loads");
        app.call("echo", b"1").await.outcome.expect("echo");
        let before = rss();
        for _ in 0..2 {
            let calls: Vec<_> = (0..bombs)
                .map(|_| {
                    let app = app.clone();
                    tokio::spawn(async move { app.call("hog", b"").await })
                })
                .collect();
            for call in calls {
                let execution = call.await.expect("joins");
                assert!(execution.outcome.is_err(), "hog hits the limit");
            }
        }
        let after = rss();
        tokio::time::sleep(Duration::from_secs(idle)).await;
        let idle = rss();
        println!("{before} {after} {idle}");
    });
}
