//! Cluster mode: several `modal server` processes on one PostgreSQL (a
//! private server the tests start), on loopback. Each test gets a fresh
//! database.

use crate::eventually;
use crate::http;
use crate::server::Server;
use modal_test_support::{COUNTER, CRON, HELLO};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The lease the tests' hosts take: failover within a few seconds.
const LEASE: &str = "2s";

/// Hosts on one database, each with a state directory of its own (caches
/// only) and the same secret key.
struct Cluster {
    url: String,
    key: PathBuf,
    dir: tempfile::TempDir,
    hosts: Vec<Option<Server>>,
    token: String,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        Cluster::start_on(modal_test_support::pg::Pg::get().database(), n)
    }

    /// `n` hosts on the database at `url`.
    fn start_on(url: String, n: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("secret.key");
        let mut cluster = Cluster {
            url,
            key,
            dir,
            hosts: Vec::new(),
            token: String::new(),
        };
        for _ in 0..n {
            cluster.add();
        }
        let out = cli(None, "", &["token", "show", "--database", &cluster.url]);
        assert!(out.status.success(), "{}", stderr(&out));
        cluster.token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(cluster.token.len(), 64, "a token: {:?}", cluster.token);
        cluster
    }

    fn args(&self) -> Vec<String> {
        [
            "--database",
            &self.url,
            "--secret-key-file",
            &self.key.display().to_string(),
            "--lease",
            LEASE,
            "--db-pool",
            "4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Starts one more host; returns its index.
    fn add(&mut self) -> usize {
        self.add_with(&[])
    }

    /// Starts one more host with `extra` flags; returns its index.
    fn add_with(&mut self, extra: &[&str]) -> usize {
        let i = self.hosts.len();
        let state = self.dir.path().join(format!("host{i}"));
        let log = self.dir.path().join(format!("host{i}.log"));
        let mut args = self.args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.hosts
            .push(Some(Server::start_logged(&state, &args, &log)));
        i
    }

    fn host(&self, i: usize) -> &Server {
        self.hosts[i].as_ref().expect("a running host")
    }

    /// SIGKILLs host `i`.
    fn kill(&mut self, i: usize) {
        if let Some(server) = self.hosts[i].take() {
            server.kill();
        }
    }

    fn modal(&self, i: usize, args: &[&str]) -> Output {
        cli(Some(&self.host(i).addr), &self.token, args)
    }

    fn ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.modal(i, args);
        assert!(
            out.status.success(),
            "modal {args:?} on host {i} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, i: usize, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(i, args)).expect("JSON output")
    }

    /// The live hosts as host `i` lists them.
    fn hosts(&self, i: usize) -> Vec<Value> {
        self.json(i, &["host", "list", "--json"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The web endpoint `greet` of `hello` on host `i`.
    fn greet(&self, i: usize) -> (u16, String) {
        http::get(&self.host(i).addr, "hello--greet.localhost", "/?name=Ada")
    }
}

fn cli(server: Option<&str>, token: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_modal"));
    command
        .args(args)
        .env_remove("MODAL_DATABASE")
        .env_remove("MODAL_STATE");
    match server {
        Some(addr) => command
            .env("MODAL_SERVER", format!("http://{addr}"))
            .env("MODAL_TOKEN", token),
        None => command.env_remove("MODAL_SERVER").env_remove("MODAL_TOKEN"),
    };
    command.output().expect("modal runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn serves(host: &Value, app: &str) -> Option<u64> {
    host["apps"]
        .as_array()?
        .iter()
        .find(|a| a["app"] == app)
        .and_then(|a| a["version"].as_u64())
}

#[test]
fn a_deploy_through_any_host_is_served_by_every_host_without_a_failed_request() {
    let c = Cluster::start(3);
    let out = c.ok(0, &["deploy", HELLO, "--name", "hello"]);
    assert!(out.contains("✓ live on 3 of 3 hosts."), "{out}");
    for i in 0..3 {
        assert!(c.ok(i, &["call", "hello", "square", "7"]).contains("49"));
        assert_eq!(c.greet(i), (200, "Hello, Ada!".to_string()));
    }
    let hosts = c.hosts(1);
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    for h in &hosts {
        assert_eq!(serves(h, "hello"), Some(1), "{h}");
        assert_eq!(h["modal_version"], env!("CARGO_PKG_VERSION"));
    }
    assert_eq!(
        hosts
            .iter()
            .filter(|h| h["leads_schedules"] == true)
            .count(),
        1,
        "one host fires the schedules: {hosts:?}"
    );
    let table = c.ok(2, &["host", "list"]);
    assert!(
        table.contains("HEARTBEAT") && table.contains("hello v1"),
        "{table}"
    );

    // Requests on every host while two deploys go through different hosts.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..3)
        .map(|i| {
            let addr = c.host(i).addr.clone();
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = http::get(&addr, "hello--greet.localhost", "/?name=Ada");
                    if status == 200 && body == "Hello, Ada!" {
                        served.fetch_add(1, Ordering::Relaxed);
                    } else {
                        eprintln!("host {i}: {status} {body}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let out = c.ok(1, &["deploy", HELLO, "--name", "hello", "--env", "ROUND=2"]);
    assert!(
        out.contains("✓ live on 3 of 3 hosts.") && out.contains("v2"),
        "{out}"
    );
    let out = c.ok(2, &["deploy", HELLO, "--name", "hello", "--env", "ROUND=3"]);
    assert!(
        out.contains("✓ live on 3 of 3 hosts.") && out.contains("v3"),
        "{out}"
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed");
    assert!(served.load(Ordering::Relaxed) > 30, "the load ran");
    // Returned means live everywhere: no waiting here.
    for h in c.hosts(0) {
        assert_eq!(serves(&h, "hello"), Some(3), "{h}");
    }

    // Stop through one host stops it on all.
    let out = c.ok(0, &["app", "stop", "hello"]);
    assert!(out.contains("✓ stopped on 3 of 3 hosts."), "{out}");
    for i in 0..3 {
        assert_eq!(c.greet(i).0, 410, "stopped on host {i}");
        let e = c.modal(i, &["call", "hello", "square", "7"]);
        assert!(stderr(&e).contains("stopped"), "{}", stderr(&e));
    }
    // A rollback through another makes v2's code live on all as v4.
    let out = c.ok(2, &["app", "rollback", "hello"]);
    assert!(
        out.contains("✓ live on 3 of 3 hosts.") && out.contains("v4"),
        "{out}"
    );
    for i in 0..3 {
        assert_eq!(c.greet(i), (200, "Hello, Ada!".to_string()));
    }
    let history = c.json(1, &["app", "history", "hello", "--json"]);
    assert_eq!(history.as_array().map(Vec::len), Some(4), "{history}");
}

#[test]
fn a_host_that_starts_later_serves_what_is_deployed_and_a_wrong_key_is_refused() {
    let mut c = Cluster::start(1);
    c.ok(0, &["deploy", HELLO, "--name", "hello"]);
    c.ok(0, &["secret", "create", "api", "KEY=sekret-value-1"]);
    let late = c.add();
    assert_eq!(c.greet(late), (200, "Hello, Ada!".to_string()));
    assert_eq!(c.hosts(late).len(), 2);

    // A host that cannot load a version (its instances get 1 MiB of
    // memory) is named; the others serve it.
    let small = c.add_with(&["--memory", "1"]);
    let out = c.ok(0, &["deploy", HELLO, "--name", "hello", "--env", "V=2"]);
    assert!(out.contains("✓ live on 2 of 3 hosts."), "{out}");
    let id = c.hosts(small)[0]["id"].as_str().unwrap().to_string();
    assert!(
        out.contains(&format!(
            "✗ not live on host {id} ({}): ",
            c.host(small).addr
        )),
        "{out}"
    );
    assert!(c.ok(late, &["call", "hello", "square", "5"]).contains("25"));
    c.kill(small);

    // Another key: refused with one line, nothing served.
    let other = c.dir.path().join("other.key");
    std::fs::write(&other, "ab".repeat(32)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["server", "--listen", "127.0.0.1:0", "--database", &c.url])
        .arg("--state")
        .arg(c.dir.path().join("wrong"))
        .arg("--secret-key-file")
        .arg(&other)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("this host's secret key is not the cluster's"),
        "{e}"
    );
    // No key file at all: told what to give.
    let out = Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["server", "--listen", "127.0.0.1:0", "--database", &c.url])
        .arg("--state")
        .arg(c.dir.path().join("nokey"))
        .env_remove("MODAL_SECRET_KEY_FILE")
        .output()
        .unwrap();
    let e = stderr(&out);
    assert!(
        !out.status.success() && e.contains("--secret-key-file"),
        "{e}"
    );
    // A database no host ever used has no token yet.
    let fresh = modal_test_support::pg::Pg::get().database();
    let out = cli(None, "", &["token", "show", "--database", &fresh]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has no token yet"),
        "{}",
        stderr(&out)
    );
    // The token is in the database only: no token file on the hosts.
    assert!(!c.host(0).state.join("token").exists());
    assert_no_file_holds(c.dir.path(), "sekret-value-1");
}

/// No file under `dir` (the hosts' caches) holds `value`.
fn assert_no_file_holds(dir: &Path, value: &str) {
    for entry in walk(dir) {
        if let Ok(bytes) = std::fs::read(&entry) {
            let found = bytes.windows(value.len()).any(|w| w == value.as_bytes());
            assert!(!found, "{} holds a secret value", entry.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The run ids of `tick`'s executions as host `i` lists them.
fn tick_runs(c: &Cluster, i: usize) -> Vec<String> {
    let path = "/api/v1/apps/cron/logs?function=tick&limit=1000";
    let logs = http::Http::blocking_get_json(&c.host(i).addr, &c.token, path);
    logs["executions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["outcome"] == "ok")
        .filter_map(|e| e["run_id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn each_fire_time_runs_once_and_another_host_takes_over_from_a_dead_leader() {
    let mut c = Cluster::start(2);
    c.ok(0, &["deploy", CRON, "--name", "cron"]);
    eventually(Duration::from_secs(10), || match tick_runs(&c, 1) {
        runs if runs.len() >= 3 => Ok(()),
        runs => Err(format!("ticks: {runs:?}")),
    });
    let hosts = c.hosts(0);
    let leader = hosts
        .iter()
        .find(|h| h["leads_schedules"] == true)
        .expect("a leader");
    let leader = c
        .hosts
        .iter()
        .position(|s| s.as_ref().is_some_and(|s| leader["address"] == s.addr))
        .expect("the leader is one of the hosts");
    let other = 1 - leader;
    c.kill(leader);
    let killed = Instant::now();
    let before = tick_runs(&c, other).len();
    eventually(Duration::from_secs(10), || match tick_runs(&c, other) {
        runs if runs.len() >= before + 3 => Ok(()),
        runs => Err(format!("the other host fires: {runs:?}")),
    });
    // Lease (2 s) + one renewal period + the next fire second.
    assert!(
        killed.elapsed() < Duration::from_secs(8),
        "took over in {:?}",
        killed.elapsed()
    );
    let runs = tick_runs(&c, other);
    let mut unique = runs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), runs.len(), "no fire time ran twice: {runs:?}");
    // The dead host leaves the list once its heartbeat is 10 s old.
    eventually(Duration::from_secs(15), || match c.hosts(other) {
        hosts if hosts.len() == 1 => Ok(()),
        hosts => Err(format!("the dead host leaves the list: {hosts:?}")),
    });
    assert_eq!(c.hosts(other)[0]["leads_schedules"], true);
}

#[test]
fn spawned_calls_of_a_killed_host_complete_on_another() {
    let mut c = Cluster::start(2);
    c.ok(0, &["deploy", COUNTER, "--name", "counter"]);
    let ids: Vec<String> = (0..50)
        .map(|_| {
            c.ok(0, &["spawn", "counter", "slow", r#"{"ms": 5000}"#])
                .trim()
                .to_string()
        })
        .collect();
    c.kill(0);
    for id in &ids {
        let out = c.ok(1, &["result", id, "--wait", "60s"]);
        assert!(out.contains("version"), "{id}: {out}");
    }
}

/// How many executions of `hello`'s `square` host `i` lists.
fn squares(c: &Cluster, i: usize) -> usize {
    let path = "/api/v1/apps/hello/logs?function=square&limit=1000";
    let logs = http::Http::blocking_get_json(&c.host(i).addr, &c.token, path);
    logs["executions"].as_array().map_or(0, Vec::len)
}

#[test]
fn while_the_database_is_down_loaded_apps_keep_serving_and_records_wait() {
    let pg = modal_test_support::pg::Pg::private();
    let c = Cluster::start_on(pg.database(), 2);
    c.ok(0, &["deploy", HELLO, "--name", "hello"]);
    for i in 0..2 {
        assert!(c.ok(i, &["call", "hello", "square", "3"]).contains('9'));
    }
    pg.stop();
    for i in 0..2 {
        assert_eq!(
            c.greet(i),
            (200, "Hello, Ada!".to_string()),
            "host {i} serves"
        );
        assert!(c.ok(i, &["call", "hello", "square", "4"]).contains("16"));
    }
    // A write fails with one clear line.
    let out = c.modal(0, &["deploy", HELLO, "--name", "hello"]);
    let e = stderr(&out);
    assert!(!out.status.success(), "a deploy without the database fails");
    assert!(
        e.contains("postgres") && e.trim().lines().count() == 1,
        "{e}"
    );
    let metrics = http::get(&c.host(1).addr, &c.host(1).addr, "/metrics").1;
    assert!(
        metrics.contains("modal_records_dropped_total{host="),
        "{metrics}"
    );

    pg.start_again();
    // The hosts reconnect by themselves: writes work again, and what was
    // recorded meanwhile is stored.
    eventually(Duration::from_secs(30), || {
        let out = c.modal(1, &["deploy", HELLO, "--name", "hello"]);
        match out.status.success() {
            true => Ok(()),
            false => Err(format!("a deploy after the outage: {}", stderr(&out))),
        }
    });
    eventually(Duration::from_secs(30), || match squares(&c, 0) {
        4 => Ok(()),
        n => Err(format!("{n} of the 4 calls of the outage stored")),
    });
    for i in 0..2 {
        assert_eq!(c.greet(i), (200, "Hello, Ada!".to_string()));
    }
}

#[test]
fn deploys_of_one_app_through_two_hosts_at_once_all_land_as_distinct_versions() {
    let c = Cluster::start(2);
    let versions: Vec<u64> = std::thread::scope(|s| {
        let deploys: Vec<_> = (0..6)
            .map(|i| {
                let c = &c;
                s.spawn(move || {
                    let out = c.ok(i % 2, &["deploy", HELLO, "--name", "hello"]);
                    let version = out
                        .split("as hello v")
                        .nth(1)
                        .and_then(|rest| rest.split(|ch: char| !ch.is_ascii_digit()).next())
                        .and_then(|v| v.parse().ok());
                    version.unwrap_or_else(|| panic!("no version in {out}"))
                })
            })
            .collect();
        deploys.into_iter().map(|d| d.join().unwrap()).collect()
    });
    let mut sorted = versions.clone();
    sorted.sort();
    assert_eq!(sorted, [1, 2, 3, 4, 5, 6], "{versions:?}");
    for h in c.hosts(0) {
        assert_eq!(serves(&h, "hello"), Some(6), "the last one is live on {h}");
    }
}
