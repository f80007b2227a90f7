//! End-to-end tests: the example guests (built by `modal-test-support`) run
//! through the `modal-host` library and through the real `modal` binary.

mod browser;
mod cli;
mod cluster;
mod hardening;
mod http;
mod invoke;
mod library;
mod mounts;
mod observe;
mod podcasts;
mod progress;
mod python;
mod schedule;
mod sdk;
mod secrets;
mod serve;
mod server;
mod state;
mod storage;
mod tls;
mod web;

use modal_host::{AppMeta, Host, HostConfig, LoadedApp, PoolingLimits};
use std::time::Duration;

/// A host with a small pool (tests run in parallel and each reserves its
/// own slots) and a short scale-down window.
fn host() -> Host {
    host_with(|_| {})
}

fn host_with(adjust: impl FnOnce(&mut HostConfig)) -> Host {
    let mut config = small_config();
    adjust(&mut config);
    Host::new(config).expect("host starts")
}

/// Host settings with a small pool (tests run in parallel and each
/// reserves its own slots) and a short scale-down window.
fn small_config() -> HostConfig {
    HostConfig {
        pooling: Some(PoolingLimits::for_instances(64)),
        idle_timeout: Duration::from_secs(60),
        ..HostConfig::default()
    }
}

/// Loads an example as version 1 of an app named after it.
async fn load(host: &Host, example: &str, name: &str) -> LoadedApp {
    let wasm = modal_test_support::wasm(example);
    host.load(&wasm, AppMeta::new(name, 1))
        .await
        .expect("example loads")
}

/// The address in `modal serve`'s first line (`✓ Serving ... on
/// http://ADDR (...)`).
fn served_address(first: &str) -> String {
    first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string()
}

/// The lines a child process prints on its (piped) stdout, as they come.
fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    lines_of(child.stdout.take().expect("stdout is piped"))
}

/// The same for its (piped) stderr.
fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    lines_of(child.stderr.take().expect("stderr is piped"))
}

/// The lines of `stream` as they come, read on a thread of their own.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    rx
}

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(50);

/// Looks at `check` every 50 ms until it gives a value, and returns it;
/// once `within` has passed, fails with its last complaint (which says
/// what it saw).
fn eventually<T>(within: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        match check() {
            Ok(value) => return value,
            Err(why) if std::time::Instant::now() >= deadline => {
                panic!("still not so after {within:?}: {why}")
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// [`eventually`] for a check that awaits, in an async test: it waits
/// without blocking the runtime that serves what it looks at, and looks
/// every 5 ms (its checks are in-process and cheap, and some catch a
/// state that lasts little longer than that).
async fn eventually_async<T, F>(within: Duration, mut check: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(why) if std::time::Instant::now() >= deadline => {
                panic!("still not so after {within:?}: {why}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}
