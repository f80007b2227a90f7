//! Cluster figures: real `modal server --database postgres://...` processes
//! on one private PostgreSQL (started by the bench, loopback only), driven
//! over HTTP as a client would drive them:
//!
//! 1. deploy-to-live-everywhere time with 3 hosts and cached compiled code
//!    (the wall time of `POST apps/hello/deploy`, which returns once every
//!    live host serves the new version);
//! 2. leader failover: the host holding the scheduler lease is SIGKILLed
//!    and another host is polled every 50 ms until one of the others says
//!    it leads the schedules (`GET /api/v1/hosts`); the `leases` table is
//!    read at the same pace, which tells when the lease changed hands as
//!    opposed to when a host reported it;
//! 3. spawned-call throughput through the queue (`square` of
//!    `examples/hello`, 64 clients spread over the hosts): from the first
//!    spawn to the last call's `finished_at`, with 3 hosts, and for
//!    comparison one cluster host and one SQLite host;
//! 4. web requests per second of `hello--greet` on one host with
//!    `--database` against the same host on SQLite, 32 keep-alive
//!    connections, in alternating rounds, medians and the median of the
//!    per-round ratios (the machine drifts between runs, not within a
//!    round pair), with the CPU time per request of the server, of the
//!    load and of the rest of the machine (PostgreSQL, for the cluster
//!    host), from `/proc`.
//!
//! The load comes from this process (hyper clients on tokio), so on a
//! small machine it competes with the hosts and PostgreSQL for the CPU;
//! both sides of every comparison are measured the same way.
//!
//! Run it with `cargo bench -p modal-host --bench cluster` (release build;
//! PostgreSQL must be installed, as for the cluster tests).
//! `MODAL_BENCH_CALLS` (spawned calls per run, default 10000),
//! `MODAL_BENCH_ROUNDS` (web rounds, 5) and `MODAL_BENCH_SECONDS` (seconds
//! per web round, 5) override the sizes. Every server started is killed
//! when the bench ends, also on a panic.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use modal_host::api::{
    CallState, CallStatus, DeployQuery, Deployed, HostList, Output, ResultQuery, Spawned,
};
use modal_host::platform::HostRecord;
use modal_test_support::pg::Pg;
use modal_test_support::{HELLO, wasm};
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Hosts of the cluster in figures 1–3.
const HOSTS: usize = 3;
/// The lease the hosts take (`--lease`), and the failover target above it.
const LEASE: Duration = Duration::from_secs(2);
/// Connections each host keeps to PostgreSQL (`--db-pool`).
const DB_POOL: &str = "8";
/// Timed deploys (after one that compiles on every host).
const DEPLOYS: usize = 10;
/// Leader kills.
const FAILOVERS: usize = 3;
/// How often the failover poll asks for the hosts.
const FAILOVER_POLL: Duration = Duration::from_millis(50);
/// Concurrent clients spawning calls.
const SPAWN_CLIENTS: usize = 64;
/// Concurrent keep-alive connections of the web load.
const WEB_CONNECTIONS: usize = 32;
/// The web endpoint measured and what it answers.
const WEB_HOST: &str = "hello--greet.localhost";
const WEB_PATH: &str = "/?name=bench";
const WEB_ANSWER: &str = "Hello, bench!";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

// ---------------------------------------------------------------------------
// Processes

/// A `modal server` process; SIGKILLed and reaped when dropped, so that no
/// server outlives the bench, also when it panics.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts `modal server` on a free loopback port with state directory
    /// `state` and the `extra` arguments; returns once it listens.
    fn start(state: &Path, extra: &[String]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_modal"))
            .args(["server", "--listen", "127.0.0.1:0", "--state"])
            .arg(state)
            .args(extra)
            .env("RUST_LOG", "error")
            .env_remove("MODAL_DATABASE")
            .env_remove("MODAL_STATE")
            .env_remove("MODAL_SERVER")
            .env_remove("MODAL_TOKEN")
            .env_remove("MODAL_SECRET_KEY_FILE")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("modal server starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        // The guard first: a server that never prints is killed too.
        let mut server = Server {
            child,
            addr: String::new(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps draining, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server prints its address within 60 s");
        server.addr = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_string();
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Hosts on one database, each with a state directory of its own (caches
/// only) and the same secret key file.
struct Cluster {
    /// Dropped first: the servers go before their directories.
    hosts: Vec<Option<Server>>,
    url: String,
    dir: tempfile::TempDir,
    token: String,
}

impl Cluster {
    /// `n` hosts on the (empty) database at `url`.
    fn start(url: String, n: usize) -> Cluster {
        let mut cluster = Cluster {
            hosts: Vec::new(),
            url,
            dir: tempfile::tempdir().expect("temp dir"),
            token: String::new(),
        };
        for _ in 0..n {
            cluster.add();
        }
        let out = Command::new(env!("CARGO_BIN_EXE_modal"))
            .args(["token", "show", "--database", &cluster.url])
            .env_remove("MODAL_DATABASE")
            .output()
            .expect("modal token show runs");
        assert!(
            out.status.success(),
            "modal token show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        cluster
    }

    /// Starts one more host; returns its index.
    fn add(&mut self) -> usize {
        let i = self.hosts.len();
        let key = self.dir.path().join("secret.key");
        let args: Vec<String> = [
            "--database",
            &self.url,
            "--secret-key-file",
            &key.display().to_string(),
            "--lease",
            &format!("{}s", LEASE.as_secs()),
            "--db-pool",
            DB_POOL,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let state = self.dir.path().join(format!("host{i}"));
        self.hosts.push(Some(Server::start(&state, &args)));
        i
    }

    /// SIGKILLs host `i`.
    fn kill(&mut self, i: usize) {
        drop(self.hosts[i].take());
    }

    /// The running hosts' addresses, by index.
    fn running(&self) -> Vec<(usize, String)> {
        self.hosts
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|h| (i, h.addr.clone())))
            .collect()
    }

    fn api(&self, addr: &str) -> Api {
        Api::new(addr, &self.token)
    }
}

/// A single host on SQLite (no `--database`): its state directory holds
/// everything, the token included.
struct Single {
    server: Server,
    token: String,
    _dir: tempfile::TempDir,
}

impl Single {
    fn start() -> Single {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("state");
        let server = Server::start(&state, &[]);
        let token = std::fs::read_to_string(state.join("token"))
            .expect("the SQLite host wrote its token")
            .trim()
            .to_string();
        Single {
            server,
            token,
            _dir: dir,
        }
    }

    fn api(&self) -> Api {
        Api::new(&self.server.addr, &self.token)
    }
}

// ---------------------------------------------------------------------------
// HTTP

/// One keep-alive HTTP/1.1 connection, opened again when it broke.
struct Conn {
    addr: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(addr: &str) -> Conn {
        Conn {
            addr: addr.to_string(),
            sender: None,
        }
    }

    async fn ready(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        let usable = match &mut self.sender {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            let stream = tokio::net::TcpStream::connect(&self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .context("HTTP handshake")?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("connected just now"))
    }

    /// Sends `request` and reads the whole answer.
    async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)> {
        let sender = self.ready().await?;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(e) => {
                self.sender = None;
                return Err(e).context("sending the request");
            }
        };
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .context("reading the answer")?
            .to_bytes();
        Ok((status, body))
    }

    /// `GET {WEB_PATH}` of the web endpoint; whether it answered 200 with
    /// the expected body.
    async fn greet(&mut self) -> bool {
        let request = Request::get(WEB_PATH)
            .header(header::HOST, WEB_HOST)
            .body(Full::new(Bytes::new()))
            .expect("request");
        matches!(self.send(request).await, Ok((StatusCode::OK, body)) if body == WEB_ANSWER)
    }
}

/// A client of one host's control API.
struct Api {
    conn: Conn,
    token: String,
}

impl Api {
    fn new(addr: &str, token: &str) -> Api {
        Api {
            conn: Conn::new(addr),
            token: token.to_string(),
        }
    }

    /// `method /api/v1/{path}` with `body`; the answer decoded as `T`.
    async fn request<T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<T> {
        let request = Request::builder()
            .method(method.clone())
            .uri(format!("/api/v1/{path}"))
            .header(header::HOST, &self.conn.addr)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .body(Full::new(body))
            .context("building the request")?;
        let (status, answer) = self.conn.send(request).await?;
        anyhow::ensure!(
            status.is_success(),
            "{method} /api/v1/{path}: {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        serde_json::from_slice(&answer)
            .with_context(|| format!("decoding the answer of {method} /api/v1/{path}"))
    }

    /// Deploys `wasm` as `app` with the environment `env`.
    async fn deploy(&mut self, app: &str, wasm: &Bytes, env: &[(&str, &str)]) -> Deployed {
        let query = DeployQuery {
            deployer: "bench".into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..DeployQuery::default()
        };
        let path = format!("apps/{app}/deploy?{}", query.to_query());
        self.request(Method::POST, &path, wasm.clone())
            .await
            .expect("the deploy succeeds")
    }

    async fn hosts(&mut self) -> Vec<HostRecord> {
        let list: HostList = self
            .request(Method::GET, "hosts", Bytes::new())
            .await
            .expect("the host list");
        list.hosts
    }

    async fn spawn(&mut self, app: &str, function: &str, input: &'static [u8]) -> String {
        let path = format!("apps/{app}/functions/{function}/spawn");
        let spawned: Spawned = self
            .request(Method::POST, &path, Bytes::from_static(input))
            .await
            .expect("the spawn is accepted");
        spawned.call_id
    }

    /// The call's state, waiting up to `wait` for it to finish.
    async fn result(&mut self, id: &str, wait: &str) -> CallStatus {
        let query = ResultQuery {
            wait: Some(wait.into()),
        };
        let path = format!("calls/{id}?{}", query.to_query());
        self.request(Method::GET, &path, Bytes::new())
            .await
            .expect("the call's state")
    }
}

// ---------------------------------------------------------------------------
// Figures

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn median<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    v[v.len() / 2]
}

fn row(what: &str, figure: String, target: &str) {
    println!("{what:<58} {figure:>14}  {target}");
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

/// Deploys `wasm` as `hello` once (compiling on every host), then
/// [`DEPLOYS`] times with a different environment each (a new version,
/// cached code), through the hosts in turn; returns the wall times and the
/// server's `took_ms` of the timed ones.
async fn deploys(apis: &mut [Api], wasm: &Bytes, hosts: usize) -> (Vec<Duration>, Vec<f64>) {
    let first = apis[0].deploy("hello", wasm, &[]).await;
    assert_eq!(
        first.deployment.hosts.len(),
        hosts,
        "{:?}",
        first.deployment.hosts
    );
    let (mut walls, mut took) = (Vec::new(), Vec::new());
    for i in 0..DEPLOYS {
        let run = i.to_string();
        let n = apis.len();
        let start = Instant::now();
        let d = apis[i % n].deploy("hello", wasm, &[("RUN", &run)]).await;
        walls.push(start.elapsed());
        took.push(d.deployment.took_ms);
        assert!(d.deployment.compiled_from_cache, "cached code");
        assert_eq!(d.deployment.hosts.len(), hosts, "{:?}", d.deployment.hosts);
        for report in &d.deployment.hosts {
            assert!(report.error.is_none(), "host {report:?} did not take it");
        }
    }
    (walls, took)
}

/// How spawned calls went: accepted per second, done per second (first
/// spawn to the last `finished_at`), and the bench's own wall time to the
/// last result read.
struct Throughput {
    accepted: f64,
    done: f64,
    read: Duration,
}

/// Spawns `n` calls of `square` of `hello` with input `7` from
/// [`SPAWN_CLIENTS`] clients spread over `targets` (address, token), then
/// reads every result and checks it is 49.
async fn spawn_throughput(targets: &[(String, String)], n: usize) -> Throughput {
    let next = Arc::new(AtomicUsize::new(0));
    let (start, start_ms) = (Instant::now(), unix_ms());
    let clients: Vec<_> = (0..SPAWN_CLIENTS)
        .map(|k| {
            let (addr, token) = &targets[k % targets.len()];
            let mut api = Api::new(addr, token);
            let next = next.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    ids.push(api.spawn("hello", "square", b"7").await);
                }
                (api, ids)
            })
        })
        .collect();
    let mut spawned = Vec::new();
    for client in clients {
        spawned.push(client.await.expect("a spawning client"));
    }
    let accepted = n as f64 / start.elapsed().as_secs_f64();
    let readers: Vec<_> = spawned
        .into_iter()
        .map(|(mut api, ids)| {
            tokio::spawn(async move {
                let mut last = 0;
                for id in ids {
                    let status = loop {
                        let status = api.result(&id, "30s").await;
                        if status.state != CallState::Pending {
                            break status;
                        }
                    };
                    assert_eq!(status.state, CallState::Succeeded, "{status:?}");
                    assert_eq!(status.output, Some(Output::Output(49.into())));
                    last = last.max(status.finished_at.expect("a finished call's end"));
                }
                last
            })
        })
        .collect();
    let mut last = start_ms;
    for reader in readers {
        last = last.max(reader.await.expect("a reading client"));
    }
    let done = Duration::from_millis(last.saturating_sub(start_ms).max(1));
    Throughput {
        accepted,
        done: n as f64 / done.as_secs_f64(),
        read: start.elapsed(),
    }
}

/// The host among `running` (addresses) that reports the scheduler lease,
/// as `api` lists them. A killed host stays on the list with its last
/// report (`leads_schedules` included) until it is no longer alive, so
/// the hosts are taken from `running` only.
async fn leader(api: &mut Api, running: &[String]) -> HostRecord {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hosts = api.hosts().await;
        if let Some(h) = hosts
            .into_iter()
            .find(|h| h.leads_schedules && running.contains(&h.address))
        {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "no host took the scheduler lease"
        );
        tokio::time::sleep(FAILOVER_POLL).await;
    }
}

/// The holder of the scheduler lease as the database has it, read
/// directly (the `leases` table, not an API): when the lease changed
/// hands, as opposed to when a host reported it. `None` when it cannot be
/// read (e.g. the schema changed).
async fn lease_holder(db: &tokio_postgres::Client) -> Option<String> {
    let row = db
        .query_opt(
            "SELECT holder FROM leases WHERE name = 'scheduler' AND expires_at > now()",
            &[],
        )
        .await
        .ok()??;
    row.try_get(0).ok()
}

/// How long after the kill of the leader another host held the lease in
/// the database, and how long until `GET /api/v1/hosts` said so.
struct Failover {
    database: Option<Duration>,
    api: Duration,
}

/// Kills the leader of `cluster`, polls every [`FAILOVER_POLL`] until
/// another host leads, and starts a replacement host afterwards.
async fn failover(cluster: &mut Cluster, db: Option<&tokio_postgres::Client>) -> Failover {
    let running = cluster.running();
    let addrs: Vec<String> = running.iter().map(|(_, addr)| addr.clone()).collect();
    let mut probe = cluster.api(&addrs[0]);
    let lead = leader(&mut probe, &addrs).await;
    let (index, _) = running
        .iter()
        .find(|(_, addr)| *addr == lead.address)
        .unwrap_or_else(|| panic!("the leader {} is one of ours", lead.address))
        .clone();
    let (_, observer) = running
        .iter()
        .find(|(i, _)| *i != index)
        .expect("another running host")
        .clone();
    let mut observer = cluster.api(&observer);
    observer.hosts().await; // connected before the kill
    cluster.kill(index);
    let killed = Instant::now();
    let others: Vec<String> = addrs.into_iter().filter(|a| *a != lead.address).collect();
    let (mut database, mut api) = (None, None);
    while api.is_none() || (db.is_some() && database.is_none()) {
        if let Some(db) = db
            && database.is_none()
            && lease_holder(db).await.is_some_and(|h| h != lead.id)
        {
            database = Some(killed.elapsed());
        }
        if api.is_none() {
            let hosts = observer.hosts().await;
            if hosts
                .iter()
                .any(|h| h.leads_schedules && h.id != lead.id && others.contains(&h.address))
            {
                api = Some(killed.elapsed());
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no host took over the lease within 30 s"
        );
        tokio::time::sleep(FAILOVER_POLL).await;
    }
    let added = cluster.add();
    let addr = cluster.hosts[added]
        .as_ref()
        .expect("just started")
        .addr
        .clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !observer.hosts().await.iter().any(|h| h.address == addr) {
        assert!(
            Instant::now() < deadline,
            "the replacement host never reported"
        );
        tokio::time::sleep(FAILOVER_POLL).await;
    }
    Failover {
        database,
        api: api.expect("the loop ends when the API says so"),
    }
}

/// Ticks of 10 ms in `/proc` (USER_HZ is 100 on Linux).
const TICK: Duration = Duration::from_millis(10);

/// CPU time (user + system) of process `pid` so far.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * TICK.as_millis() as u64)
}

/// CPU time the whole machine spent busy so far (all but idle and iowait).
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    Duration::from_millis((ticks.iter().sum::<u64>() - idle) * TICK.as_millis() as u64)
}

/// A web load run: its rate, and where the CPU went per request.
#[derive(Clone, Copy)]
struct Load {
    rate: f64,
    failed: usize,
    /// The server process.
    server: Duration,
    /// This process (the load).
    bench: Duration,
    /// Everything else on the machine: PostgreSQL for a cluster host.
    rest: Duration,
}

/// Web requests per second on the server `addr` (process `pid`) over
/// `seconds` from [`WEB_CONNECTIONS`] keep-alive connections.
async fn web_rate(addr: &str, pid: u32, seconds: Duration) -> Load {
    let cpu = |pid| {
        (
            process_cpu(pid),
            process_cpu(std::process::id()),
            machine_busy(),
        )
    };
    let before = cpu(pid);
    let start = Instant::now();
    let end = start + seconds;
    let tasks: Vec<_> = (0..WEB_CONNECTIONS)
        .map(|_| {
            let mut conn = Conn::new(addr);
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, 0);
                while Instant::now() < end {
                    if conn.greet().await {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for task in tasks {
        let (o, f) = task.await.expect("a load connection");
        ok += o;
        failed += f;
    }
    let elapsed = start.elapsed();
    let after = cpu(pid);
    let per = |d: Duration| d / ok.max(1);
    let (server, bench) = (after.0 - before.0, after.1 - before.1);
    Load {
        rate: f64::from(ok) / elapsed.as_secs_f64(),
        failed,
        server: per(server),
        bench: per(bench),
        rest: per((after.2 - before.2).saturating_sub(server + bench)),
    }
}

/// Compares web requests per second of the two servers (address, pid) in
/// `rounds` alternating rounds of `seconds`; returns the loads of each and
/// the per-round ratios first / second.
async fn compare_web(
    servers: [(&str, u32); 2],
    rounds: usize,
    seconds: Duration,
) -> ([Vec<Load>; 2], Vec<f64>) {
    for (addr, pid) in servers {
        assert!(Conn::new(addr).greet().await, "{addr} serves {WEB_HOST}");
        web_rate(addr, pid, Duration::from_secs(1)).await;
    }
    let (mut loads, mut ratios) = ([Vec::new(), Vec::new()], Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut rates = [0.0; 2];
        for i in order {
            let (addr, pid) = servers[i];
            let load = web_rate(addr, pid, seconds).await;
            rates[i] = load.rate;
            loads[i].push(load);
        }
        ratios.push(rates[0] / rates[1]);
    }
    (loads, ratios)
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

async fn run() {
    let calls = setting("MODAL_BENCH_CALLS", 10_000) as usize;
    let rounds = setting("MODAL_BENCH_ROUNDS", 5) as usize;
    let seconds = Duration::from_secs(setting("MODAL_BENCH_SECONDS", 5));
    let hello = Bytes::from(wasm(HELLO));
    let pg = Pg::private();
    println!("{:<58} {:>14}  target", "measure", "figure");

    // 1–3 on a cluster of three hosts; the failover last, as a killed host
    // stays on the host list (and in a deploy's wait) for a while.
    {
        let mut cluster = Cluster::start(pg.database(), HOSTS);
        let mut apis: Vec<Api> = cluster
            .running()
            .iter()
            .map(|(_, addr)| cluster.api(addr))
            .collect();
        let (walls, took) = deploys(&mut apis, &hello, HOSTS).await;
        let max = *walls.iter().max().expect("deploys");
        row(
            &format!("1. deploy, live on {HOSTS} hosts, cached code: median of {DEPLOYS}"),
            ms(median(walls)),
            "≤ 300 ms",
        );
        row("   ... max", ms(max), "≤ 300 ms");
        row(
            "   ... server's took_ms, median",
            format!("{:.0} ms", median(took)),
            "",
        );

        let targets: Vec<(String, String)> = cluster
            .running()
            .into_iter()
            .map(|(_, addr)| (addr, cluster.token.clone()))
            .collect();
        let t = spawn_throughput(&targets, calls).await;
        row(
            &format!("3. spawned calls/s, {HOSTS} hosts ({calls}, spawn → last done)"),
            format!("{:.0}", t.done),
            "≥ 2000",
        );
        row("   ... accepted/s", format!("{:.0}", t.accepted), "");
        row("   ... until the last result was read", ms(t.read), "");

        let db = match tokio_postgres::connect(&cluster.url, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                lease_holder(&client).await.map(|_| client)
            }
            Err(_) => None,
        };
        let mut failovers = Vec::new();
        for _ in 0..FAILOVERS {
            failovers.push(failover(&mut cluster, db.as_ref()).await);
        }
        let target = format!("≤ {} ms", (LEASE + Duration::from_secs(1)).as_millis());
        let api: Vec<Duration> = failovers.iter().map(|f| f.api).collect();
        let each = |v: &[Duration]| v.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ");
        row(
            &format!("2. leader failover after SIGKILL, GET /hosts: median of {FAILOVERS}"),
            ms(median(api.clone())),
            &target,
        );
        row("   ... each", each(&api), "");
        let database: Option<Vec<Duration>> = failovers.iter().map(|f| f.database).collect();
        match database {
            Some(database) => {
                row(
                    "   ... lease taken over in the database: median",
                    ms(median(database.clone())),
                    &target,
                );
                row("   ... each", each(&database), "");
            }
            None => println!("   (the lease could not be read from the database)"),
        }
    }

    // A single host each way: one cluster host on a fresh database and
    // one host on SQLite.
    let cluster = Cluster::start(pg.database(), 1);
    let single = Single::start();
    let cluster_addr = cluster.running()[0].1.clone();
    let mut on_pg = cluster.api(&cluster_addr);
    let mut on_sqlite = single.api();
    let (walls, _) = deploys(std::slice::from_mut(&mut on_sqlite), &hello, 1).await;
    row(
        &format!("   (deploy on SQLite, 1 host, cached code: median of {DEPLOYS})"),
        ms(median(walls)),
        "",
    );
    let (walls, _) = deploys(std::slice::from_mut(&mut on_pg), &hello, 1).await;
    row(
        &format!("   (deploy on PostgreSQL, 1 host, cached: median of {DEPLOYS})"),
        ms(median(walls)),
        "",
    );
    for (what, addr, token) in [
        ("SQLite", &single.server.addr, &single.token),
        ("PostgreSQL", &cluster_addr, &cluster.token),
    ] {
        let t = spawn_throughput(&[(addr.clone(), token.clone())], calls).await;
        row(
            &format!("   (spawned calls/s, 1 host on {what})"),
            format!("{:.0}", t.done),
            "",
        );
    }

    let pid_pg = cluster.hosts[0].as_ref().expect("running").child.id();
    let pid_sqlite = single.server.child.id();
    let (loads, ratios) = compare_web(
        [(&cluster_addr, pid_pg), (&single.server.addr, pid_sqlite)],
        rounds,
        seconds,
    )
    .await;
    let label = format!(
        "{WEB_CONNECTIONS} conns, {rounds} × {} s",
        seconds.as_secs()
    );
    for (what, loads) in [("--database", &loads[0]), ("SQLite", &loads[1])] {
        let rate = median(loads.iter().map(|l| l.rate).collect());
        row(
            &format!("4. web req/s, 1 host, {what} ({label}), median"),
            format!("{rate:.0}"),
            "",
        );
        row(
            "   ... CPU µs/request: server, load, rest (PostgreSQL)",
            format!(
                "{} {} {}",
                us(median(loads.iter().map(|l| l.server).collect())),
                us(median(loads.iter().map(|l| l.bench).collect())),
                us(median(loads.iter().map(|l| l.rest).collect())),
            ),
            "",
        );
    }
    row(
        "   --database / SQLite, median of per-round ratios",
        format!(
            "{:.2} ({:.2}–{:.2})",
            median(ratios.clone()),
            ratios.iter().copied().fold(f64::MAX, f64::min),
            ratios.iter().copied().fold(0.0, f64::max)
        ),
        "≥ 0.95",
    );
    let failed: usize = loads.iter().flatten().map(|l| l.failed).sum();
    if failed > 0 {
        println!("   ({failed} web requests failed)");
    }
    drop(cluster);
    drop(single);
    drop(pg);
}
