//! `modal server`: the control API, web endpoints and the deployed apps of
//! one state directory, in one process.

use anyhow::Context;
use clap::Args;
use modal_host::platform::postgres::{DEFAULT_POOL_SIZE, Pg};
use modal_host::platform::{DEFAULT_MAX_UPLOAD, SecretKey};
use modal_host::server::{Server, ServerConfig, load_or_create_token};
use modal_host::{
    DEFAULT_INSTANCE_SLOTS, DEFAULT_MAX_CALL_DEPTH, DEFAULT_MAX_REQUEST_BODY, DEFAULT_MEMORY_LIMIT,
    HostConfig, MAX_INSTANCE_SLOTS, Platform, PlatformConfig, PoolingLimits, parse_duration,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

// The defaults as `--help` shows them; a test checks they match the
// library's constants.
const DRAIN_DEFAULT: &str = "5m";
const GRACE_DEFAULT: &str = "30s";
const RETENTION_DEFAULT: &str = "7d";
const HEADER_TIMEOUT_DEFAULT: &str = "10s";
const BODY_TIMEOUT_DEFAULT: &str = "30s";
const QUEUE_TIMEOUT_DEFAULT: &str = "10s";
const LEASE_DEFAULT: &str = "10s";

/// How often stopped apps and unreferenced artifacts are collected.
const GC_PERIOD: Duration = Duration::from_secs(3600);

/// Arguments of `modal server`.
#[derive(Args)]
pub struct ServerArgs {
    /// The state directory: registry (SQLite), artifacts, compiled-code
    /// cache and the control token; with `--database` only the caches.
    /// Default `$MODAL_STATE`, else `~/.local/share/modal`.
    #[arg(long, env = "MODAL_STATE", value_name = "DIR")]
    state: Option<PathBuf>,
    /// Cluster mode: keep the state in this PostgreSQL database
    /// (`postgres://user:password@host:port/database`), shared by every
    /// host started with it. Nothing but caches stays on local disk.
    #[arg(
        long,
        env = "MODAL_DATABASE",
        value_name = "URL",
        hide_env_values = true
    )]
    database: Option<String>,
    /// With `--database`: connections this host keeps to the database.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_POOL_SIZE,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    db_pool: usize,
    /// With `--database`: the file holding the key that seals secrets
    /// (64 hex digits), created when missing. Give every host the same
    /// file; the key is never stored in the database. (Or give the key
    /// itself in `$MODAL_SECRET_KEY`.)
    #[arg(long, env = "MODAL_SECRET_KEY_FILE", value_name = "FILE")]
    secret_key_file: Option<PathBuf>,
    /// With `--database`: how long the scheduler lease and this host's
    /// claims on spawned calls last without renewal, i.e. how soon another
    /// host takes over when this one dies.
    #[arg(long, value_parser = parse_lease, default_value = LEASE_DEFAULT)]
    lease: Duration,
    /// Address to listen on (control API and web endpoints).
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
    listen: String,
    /// Domain of web endpoint host names: `{app}--{function}.{domain}`.
    /// `localhost` needs no DNS.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// How long a replaced or stopped version may finish its calls before
    /// they are cancelled.
    #[arg(long, value_parser = parse_duration, default_value = DRAIN_DEFAULT)]
    drain_timeout: Duration,
    /// On SIGTERM or Ctrl-C, how long calls in progress may finish before
    /// the server exits (a second signal exits at once).
    #[arg(long, value_parser = parse_duration, default_value = GRACE_DEFAULT)]
    grace: Duration,
    /// How long stopped apps are kept before they and their unreferenced
    /// artifacts are deleted.
    #[arg(long, value_parser = parse_duration, default_value = RETENTION_DEFAULT)]
    retention: Duration,
    /// Where failed scheduled runs are reported (a JSON POST) when the app
    /// was deployed without `--notify`.
    #[arg(long, value_name = "URL")]
    notify: Option<String>,
    /// Largest component a deploy accepts, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MAX_UPLOAD >> 20)]
    max_upload: usize,
    /// Memory limit of each instance, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MEMORY_LIMIT >> 20)]
    memory: usize,
    /// Largest request body a web function is given, in MiB; larger
    /// requests get 413.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MAX_REQUEST_BODY >> 20)]
    max_request_body: u64,
    /// How long a call or request waits for a free instance when a
    /// function runs its `max_instances` already; then 503 with
    /// `Retry-After`.
    #[arg(long, value_parser = parse_duration, default_value = QUEUE_TIMEOUT_DEFAULT)]
    queue_timeout: Duration,
    /// How deeply calls between functions may nest (a call from outside
    /// is depth 0); deeper calls fail with `depth exceeded`.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CALL_DEPTH,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    max_call_depth: u32,
    /// Instances alive at once across all apps, busy or warm. When all
    /// are taken, the least recently used warm ones make room; a call
    /// that finds every one busy waits up to the queue timeout. Raise it
    /// to keep more functions warm at once, e.g. one per schedule for
    /// thousands of schedules. Each reserves ~4 GiB of address space and
    /// no memory until used, and may hold 7 memory mappings: past ~8,000
    /// slots raise `vm.max_map_count`.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_INSTANCE_SLOTS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_INSTANCE_SLOTS)))]
    instance_slots: u32,
    /// Linear memory that warm (idle) instances may hold in all, in MiB;
    /// past it the least recently used are dropped, so instances kept
    /// warm for speed never run the machine out of memory. It counts the
    /// size of each instance's memory, not the pages it touched (a small
    /// Rust guest: ~1.1 MiB of size, ~60 KiB resident): raise it for many
    /// small warm instances. Default: half of the machine's memory.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    warm_memory: Option<u64>,
    /// Time a client has to send its request headers before the connection
    /// is closed; a new connection (HTTP/1.1 or HTTP/2) must start its
    /// first request within it too.
    #[arg(long, value_parser = parse_duration, default_value = HEADER_TIMEOUT_DEFAULT)]
    header_timeout: Duration,
    /// Longest pause while a client sends a request body; then the
    /// request ends with 408.
    #[arg(long, value_parser = parse_duration, default_value = BODY_TIMEOUT_DEFAULT)]
    body_timeout: Duration,
    /// Connections open at once. When all are taken, idle ones are closed
    /// (oldest first, those that never sent a request first) to make
    /// room. Default: three quarters of the file-descriptor limit, which
    /// is raised to its hard limit at start-up.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Leaves the connection threads unpinned. By default, when the
    /// process may run on exactly one CPU per thread, each thread is pinned
    /// to one CPU and takes the connections whose packets arrive there;
    /// unpin on a machine whose CPUs other busy programs share, or whose
    /// clients all arrive on one CPU (e.g. a single-threaded local proxy).
    #[arg(long)]
    no_pin_threads: bool,
}

pub async fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    check_map_count(args.instance_slots)?;
    let state = super::common::state_dir(args.state.as_deref())?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let started = std::time::Instant::now();
    let mut host_config = HostConfig {
        memory_limit: args.memory << 20,
        max_request_body: args.max_request_body << 20,
        queue_timeout: args.queue_timeout,
        max_call_depth: args.max_call_depth,
        pooling: Some(PoolingLimits::for_instances(args.instance_slots)),
        ..HostConfig::default()
    };
    if let Some(mib) = args.warm_memory {
        host_config.warm_memory =
            Some(usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX));
    }
    let platform_config = PlatformConfig {
        drain_timeout: args.drain_timeout,
        max_upload: args.max_upload << 20,
        retention: args.retention,
        notify: args.notify,
        address: listener
            .local_addr()
            .map_or_else(|_| args.listen.clone(), |a| a.to_string()),
        lease: args.lease,
    };
    let (platform, token, home) = match &args.database {
        None => {
            let platform = Platform::open(&state, host_config, platform_config, None).await?;
            let token = load_or_create_token(&state)
                .with_context(|| format!("creating the token in {}", state.display()))?;
            (platform, token, format!("state {}", state.display()))
        }
        Some(url) => {
            let key = match (&args.secret_key_file, std::env::var("MODAL_SECRET_KEY")) {
                (Some(file), _) => SecretKey::load_or_create_file(file)?,
                (None, Ok(hex)) => SecretKey::from_hex(&hex).ok_or_else(|| {
                    anyhow::anyhow!("$MODAL_SECRET_KEY is not a secret key (64 hex digits)")
                })?,
                (None, Err(_)) => anyhow::bail!(
                    "--database needs --secret-key-file (or $MODAL_SECRET_KEY_FILE, or the key \
                     itself in $MODAL_SECRET_KEY): the key that seals secrets, the same on \
                     every host"
                ),
            };
            let pg = Pg::connect(url, args.db_pool).await?;
            let platform =
                Platform::open_cluster(&pg, key, &state, host_config, platform_config, None)
                    .await?;
            let token = pg.token(&modal_host::server::new_token()?).await?;
            (
                platform,
                token,
                format!("database {}", pg.describe_target()),
            )
        }
    };
    platform.spawn_gc(GC_PERIOD);
    let apps = platform.apps().await?.len();
    let server = Server::new(
        platform.clone(),
        listener,
        ServerConfig {
            domain: args.domain,
            header_read_timeout: args.header_timeout,
            body_timeout: args.body_timeout,
            max_connections: args
                .max_connections
                .unwrap_or_else(modal_host::server::default_max_connections),
            pin_threads: !args.no_pin_threads,
            ..ServerConfig::new(token)
        },
    )?;
    println!(
        "modal server listening on http://{} ({home}, {apps} apps, ready in {:.0?})",
        server.addr(),
        started.elapsed()
    );
    tracing::info!(addr = %server.addr(), apps, "server started");
    // The grace is one budget: open requests, then the platform's own
    // work (spawned calls, schedules), then cancellation (`Server::run`).
    server
        .run(shutdown_signal("modal server"), args.grace)
        .await;
    println!("modal server stopped");
    Ok(ExitCode::SUCCESS)
}

/// Memory mappings one live instance may hold: its memory slot split
/// around the memory image, its tables, its fiber stack and guard page
/// (6.4 measured for a Rust guest, `cargo bench --bench schedules`).
const MAPPINGS_PER_INSTANCE: u64 = 7;

/// Mappings left for the rest of the process: code, allocator arenas,
/// thread stacks, compiled components.
const MAPPINGS_HEADROOM: u64 = 8192;

/// Refuses instance slots whose mappings could pass the kernel's
/// `vm.max_map_count`: past it every `mmap` fails, the allocator's too, and
/// the process would abort under load instead of refusing at start.
fn check_map_count(slots: u32) -> anyhow::Result<()> {
    let Some(max) = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
    else {
        return Ok(());
    };
    let needed = u64::from(slots) * MAPPINGS_PER_INSTANCE + MAPPINGS_HEADROOM;
    if needed > max {
        anyhow::bail!(
            "--instance-slots {slots} needs up to {needed} memory mappings, but the kernel \
             allows {max} (vm.max_map_count): raise it (`sysctl -w vm.max_map_count={}`) \
             or give at most {} slots",
            needed.next_power_of_two(),
            max.saturating_sub(MAPPINGS_HEADROOM) / MAPPINGS_PER_INSTANCE
        );
    }
    Ok(())
}

/// A `--lease`: a duration of at least one second (renewed every third of
/// it, a shorter one would spend the database on renewals).
fn parse_lease(text: &str) -> Result<Duration, String> {
    let lease = parse_duration(text)?;
    if lease < Duration::from_secs(1) {
        return Err(format!("`{text}` is too short; a lease lasts at least 1s"));
    }
    Ok(lease)
}

/// Resolves on the first SIGTERM or Ctrl-C; a second one exits at once.
/// `command` names what stops in the messages (`modal server`, `modal
/// serve`).
pub async fn shutdown_signal(command: &'static str) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot watch SIGTERM: {e}");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    println!("{command} shutting down; calls in progress may finish (signal again to exit now)");
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("{command}: exiting now");
        std::process::exit(130);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use modal_host::platform::{DEFAULT_DRAIN_TIMEOUT, DEFAULT_RETENTION};
    use modal_host::server::DEFAULT_GRACE;

    #[test]
    fn help_defaults_match_the_library() {
        assert_eq!(parse_duration(DRAIN_DEFAULT), Ok(DEFAULT_DRAIN_TIMEOUT));
        assert_eq!(parse_duration(GRACE_DEFAULT), Ok(DEFAULT_GRACE));
        assert_eq!(parse_duration(RETENTION_DEFAULT), Ok(DEFAULT_RETENTION));
        assert_eq!(
            parse_lease(LEASE_DEFAULT),
            Ok(modal_host::platform::DEFAULT_LEASE)
        );
        assert!(parse_lease("0s").unwrap_err().contains("at least 1s"));
        assert!(parse_lease("soon").is_err());
        assert_eq!(
            parse_duration(QUEUE_TIMEOUT_DEFAULT),
            Ok(modal_host::DEFAULT_QUEUE_TIMEOUT)
        );
        assert_eq!(
            parse_duration(HEADER_TIMEOUT_DEFAULT),
            Ok(modal_host::server::DEFAULT_HEADER_READ_TIMEOUT)
        );
        assert_eq!(
            parse_duration(BODY_TIMEOUT_DEFAULT),
            Ok(modal_host::server::DEFAULT_BODY_TIMEOUT)
        );
    }
}
