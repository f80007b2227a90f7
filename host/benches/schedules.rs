//! Scheduler figures with 10,000 schedules on one host: CPU use while idle
//! between fires, and fire-time lateness (p50, p99).
//!
//! Generates a guest with 250 functions scheduled `*/10 * * * * *` (built
//! with cargo for wasm32-wasip2), deploys 40 distinct copies of it, and
//! watches two rounds of fires: CPU in the quiet seconds between them, and
//! how late each run started after its fire time (with the targets of
//! issue 18). It does so on a host with the default instance slots, where
//! every run needs a fresh instance, and on one with a slot per schedule,
//! where the second round finds its instances warm. Then the floor of the
//! lateness of fresh instances: the same runs in a bare wasmtime
//! embedding. Run it with
//! `cargo bench -p modal-host --bench schedules`.

use modal_host::{DeployRequest, HostConfig, Platform, PlatformConfig};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod bare;

/// The allocator of the `modal` binary, so that the figures are those of
/// a server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FUNCTIONS: usize = 250;
const APPS: usize = 40;

fn build_guest(root: &Path) -> Vec<u8> {
    let dir = root.join("target/bench-guests/many-schedules");
    std::fs::create_dir_all(dir.join("src")).expect("guest dir");
    let sdk = root.join("guest-sdk");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"many-schedules\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n\
             [dependencies]\nmodal-guest = {{ path = \"{}\" }}\n\n[workspace]\n\n[profile.release]\nopt-level = \"s\"\n",
            sdk.display()
        ),
    )
    .expect("manifest");
    let mut src = String::from("#[modal_guest::app]\nmod many {\n");
    for i in 0..FUNCTIONS {
        src.push_str(&format!(
            "    #[function(schedule = cron(\"*/10 * * * * *\"))]\n    fn f{i}() {{}}\n"
        ));
    }
    src.push_str("}\n");
    std::fs::write(dir.join("src/lib.rs"), src).expect("source");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(root.join("target/bench-guests/target"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the generated guest failed");
    std::fs::read(root.join("target/bench-guests/target/wasm32-wasip2/release/many_schedules.wasm"))
        .expect("guest built")
}

/// A copy of `wasm` with its own digest (an extra custom section).
fn variant(wasm: &[u8], n: usize) -> Vec<u8> {
    let name = format!("variant-{n}");
    let mut out = wasm.to_vec();
    out.push(0);
    out.push((name.len() + 1) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out
}

/// CPU time (user + system) of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guest = build_guest(&root);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        row("schedules", (APPS * FUNCTIONS).to_string(), "");
        // Every scheduled function has its own pool, so 10,000 schedules
        // need 10,000 instances to all stay warm: with the default slots
        // the host reclaims idle instances of other pools for every run,
        // so every run starts a fresh instance.
        measure(&guest, modal_host::DEFAULT_INSTANCE_SLOTS, "default").await;
        // With a slot per schedule (`modal server --instance-slots`), the
        // first round after the deploy starts every instance and later
        // rounds find them warm.
        measure(&guest, 12_000, "one per schedule").await;

        // The floor: the same 10,000 runs, each on a fresh instance, in a
        // bare wasmtime embedding on the same two worker threads, all due
        // at once, with no scheduler, records or warm instances; then on
        // one thread.
        let engine = bare::engine();
        let mut compiles = Vec::new();
        for i in 0..APPS {
            let (engine, wasm) = (engine.clone(), variant(&guest, i));
            compiles.push(tokio::task::spawn_blocking(move || {
                let component =
                    wasmtime::component::Component::new(&engine, &wasm).expect("compiles");
                std::sync::Arc::new(bare::BareApp::new(&engine, &component))
            }));
        }
        let mut apps = Vec::new();
        for compile in compiles {
            apps.push(compile.await.expect("compile task"));
        }
        let two = floor(&apps, 2).await;
        let one = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime")
                .block_on(floor(&apps, 2))
        })
        .join()
        .expect("floor thread");
        for (threads, starts) in [(2, two), (1, one)] {
            let at = |p: f64| starts[((starts.len() - 1) as f64 * p).round() as usize];
            row(
                &format!("floor, bare wasmtime, {threads} thread(s): start p50 / p99"),
                format!(
                    "{:.0} / {:.0} ms",
                    at(0.5).as_secs_f64() * 1e3,
                    at(0.99).as_secs_f64() * 1e3
                ),
                "",
            );
        }
    });
}

fn row(name: &str, figure: String, target: &str) {
    println!("{name:<56} {figure:>14}   {target}");
}

/// Deploys the 40 apps on a fresh platform whose host has `slots`
/// instance slots, then prints the idle CPU between two rounds of fires
/// and the lateness of each round's runs.
async fn measure(guest: &[u8], slots: u32, label: &str) {
    let state = tempfile::tempdir().expect("temp dir");
    let config = HostConfig {
        pooling: Some(modal_host::PoolingLimits::for_instances(slots)),
        // 10,000 warm instances of this guest count ~11 GiB of memory size
        // (~0.6 GB resident), more than the default budget of a machine
        // with less than 22 GiB: a server given `--warm-memory` above it.
        warm_memory: None,
        ..HostConfig::default()
    };
    let platform = Platform::open(state.path(), config, PlatformConfig::default(), None)
        .await
        .expect("platform");
    let start = Instant::now();
    for i in 0..APPS {
        let request = DeployRequest {
            name: format!("s{i}"),
            deployer: "bench".into(),
            ..DeployRequest::default()
        };
        platform
            .deploy(&variant(guest, i), request)
            .await
            .expect("deploys");
    }
    println!(
        "{slots} instance slots ({label}): deployed {} schedules in {:.1?}",
        APPS * FUNCTIONS,
        start.elapsed()
    );
    // Align to just after a round of fires, then measure a quiet window.
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let next_round = (now_ms() / 10_000 + 1) * 10_000;
    tokio::time::sleep(Duration::from_millis(next_round + 3_000 - now_ms())).await;
    let cpu = cpu_time();
    let wall = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let idle = (cpu_time() - cpu).as_secs_f64() / wall.elapsed().as_secs_f64() * 100.0;
    tokio::time::sleep(Duration::from_millis(
        (next_round + 12_000).saturating_sub(now_ms()),
    ))
    .await;
    // The two rounds after every app was deployed: 10,000 fires each.
    let rounds = [next_round, next_round + 10_000];
    let mut lateness = [Vec::new(), Vec::new()];
    let mut seen = std::collections::HashSet::new();
    for i in 0..APPS {
        let logs = platform.logs(&format!("s{i}"), None, 1000).await;
        for e in logs.expect("logs") {
            let Some(round) = e
                .run_id
                .as_deref()
                .and_then(|r| r.rsplit('-').next())
                .and_then(|t| t.parse::<u64>().ok())
                .and_then(|fire| rounds.iter().position(|r| *r == fire))
            else {
                continue;
            };
            // A run that failed to start counts as lost.
            if e.error.is_none() && seen.insert((i, e.function.to_string(), round)) {
                lateness[round].push(e.started_at.saturating_sub(rounds[round]));
            }
        }
    }
    let resident = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let mappings = std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().count())
        .unwrap_or(0);
    drop(platform);
    let expected = rounds.len() * APPS * FUNCTIONS;
    let observed = lateness[0].len() + lateness[1].len();
    row(
        "  runs of 2 full rounds: observed / expected",
        format!("{observed} / {expected}"),
        "none lost",
    );
    row(
        "  scheduler CPU while idle between fires",
        format!("{idle:.2} %"),
        "<= 2 %",
    );
    row("  resident memory after the rounds", resident, "");
    row(
        "  memory mappings after the rounds",
        mappings.to_string(),
        "< vm.max_map_count",
    );
    for (round, name) in lateness.iter_mut().zip(["first round", "second round"]) {
        round.sort_unstable();
        let at = |p: f64| {
            round
                .get(((round.len().max(1) - 1) as f64 * p).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        row(
            &format!("  {name}: fire lateness min / p50 / max"),
            format!("{} / {} / {} ms", at(0.0), at(0.5), at(1.0)),
            "",
        );
        row(
            &format!("  {name}: fire lateness p99"),
            format!("{} ms", at(0.99)),
            "<= 250 ms",
        );
    }
}

/// Start times, after all are due at once, of `rounds` rounds of one cold
/// run of each function of `apps` on the current runtime, sorted.
async fn floor(apps: &[std::sync::Arc<bare::BareApp>], rounds: usize) -> Vec<Duration> {
    let mut starts = Vec::new();
    for _ in 0..rounds {
        let due = Instant::now();
        let mut runs = Vec::new();
        for app in apps {
            for i in 0..FUNCTIONS {
                let app = app.clone();
                runs.push(tokio::spawn(async move {
                    let started = due.elapsed();
                    app.cold_call(&format!("f{i}")).await;
                    started
                }));
            }
        }
        for run in runs {
            starts.push(run.await.expect("run"));
        }
    }
    starts.sort_unstable();
    starts
}
