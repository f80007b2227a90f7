//! Scheduler figures with 10,000 schedules on one host: CPU use while idle
//! between fires, and fire-time lateness (p50, p99).
//!
//! Generates a guest with 250 functions scheduled `*/10 * * * * *` (built
//! with cargo for wasm32-wasip2), deploys 40 distinct copies of it, and
//! watches two rounds of fires: CPU in the quiet seconds between them, and
//! how late each run started after its fire time (with the targets of
//! issue 18); then the floor of that lateness: the same runs on fresh
//! instances in a bare wasmtime embedding. Run it with
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
        let state = tempfile::tempdir().expect("temp dir");
        // Every scheduled function has its own pool, so 10,000 schedules
        // firing together need 10,000 instances: ten times the default
        // pooling slots. The host reclaims idle instances of other pools
        // when its slots run out, as it would in production.
        let config = HostConfig::default();
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
                .deploy(&variant(&guest, i), request)
                .await
                .expect("deploys");
        }
        println!(
            "deployed {} schedules in {:.1?}",
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
        let mut lateness = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for i in 0..APPS {
            let logs = platform.logs(&format!("s{i}"), None, 1000).await;
            for e in logs.expect("logs") {
                let Some(fire) = e
                    .run_id
                    .as_deref()
                    .and_then(|r| r.rsplit('-').next())
                    .and_then(|t| t.parse::<u64>().ok())
                    .filter(|fire| rounds.contains(fire))
                else {
                    continue;
                };
                // A run that failed to start counts as lost.
                if e.error.is_none() && seen.insert((i, e.function.to_string(), fire)) {
                    lateness.push(e.started_at.saturating_sub(fire));
                }
            }
        }
        lateness.sort_unstable();
        let at = |p: f64| {
            lateness
                .get(((lateness.len().max(1) - 1) as f64 * p).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        let expected = rounds.len() * APPS * FUNCTIONS;
        let row = |name: &str, figure: String, target: &str| {
            println!("{name:<44} {figure:>12}   {target}");
        };
        row("schedules", (APPS * FUNCTIONS).to_string(), "");
        row(
            "runs of 2 full rounds: observed / expected",
            format!("{} / {expected}", lateness.len()),
            "none lost",
        );
        row(
            "scheduler CPU while idle between fires",
            format!("{idle:.2} %"),
            "<= 2 %",
        );
        row("fire lateness min", format!("{} ms", at(0.0)), "");
        row("fire lateness p50", format!("{} ms", at(0.5)), "");
        row("fire lateness p99", format!("{} ms", at(0.99)), "<= 250 ms");
        row("fire lateness max", format!("{} ms", at(1.0)), "");
        drop(platform);

        // The floor: the same 10,000 runs, each on a fresh instance, in a
        // bare wasmtime embedding on the same two worker threads, all due
        // at once, with no scheduler, records or warm instances.
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
        let two = floor(&apps, rounds.len()).await;
        let apps_one = apps.clone();
        let one = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime")
                .block_on(floor(&apps_one, 2))
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
