//! A private PostgreSQL server for tests: `initdb` into a temporary
//! directory, `postgres` (through `pg_ctl`) on a free loopback port, one
//! per test process ([`Pg::get`], a fresh database per caller) or one of
//! a test's own ([`Pg::private`], which it may stop and start). It stops
//! when the test process ends, however it ends: a watchdog shell stops it
//! when its stdin (held by the test process) closes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The user tests connect as (trusted on loopback, nothing else).
const USER: &str = "modal";

/// The running server.
pub struct Pg {
    port: u16,
    bin: PathBuf,
    /// Its data directory.
    data: PathBuf,
    /// The directory holding the data and the log.
    dir: PathBuf,
    /// The watchdog; its stdin closes when this process ends.
    _watchdog: Mutex<Child>,
}

static SERVER: OnceLock<Pg> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The directory of PostgreSQL's programs: `$MODAL_PG_BIN`, the one of
/// `pg_ctl` on `PATH`, or Debian's newest `/usr/lib/postgresql/*/bin`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MODAL_PG_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("initdb"))
            .find(|p| p.is_file())
    });
    if let Some(initdb) = on_path {
        let initdb = initdb.canonicalize().unwrap_or(initdb);
        return initdb.parent().expect("a directory").to_path_buf();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    versions.sort_by_key(|p| {
        let version = p
            .parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str());
        version.and_then(|v| v.parse::<u32>().ok()).unwrap_or(0)
    });
    versions
        .pop()
        .expect("PostgreSQL is installed (`.ci/setup` installs Debian's postgresql)")
}

/// Whether this process runs as root (`/proc/self` belongs to the
/// effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A command running `program` of the PostgreSQL programs, as the
/// `postgres` system user when this process is root (PostgreSQL refuses to
/// run as root).
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Pg {
    /// The server of this test process, started on first use.
    pub fn get() -> &'static Pg {
        SERVER.get_or_init(Pg::start)
    }

    fn start() -> Pg {
        let bin = bin_dir();
        // Removed by the watchdog once postgres stopped.
        let dir = tempfile::Builder::new()
            .prefix("modal-pg-")
            .tempdir()
            .expect("a temporary directory")
            .keep();
        let dir = &dir;
        let data = dir.join("data");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir)
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown of the PostgreSQL directory failed");
        }
        let out = as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let pg_ctl = bin.join("pg_ctl");
        // The watchdog stops postgres (fast shutdown) and removes its files
        // when its stdin closes, i.e. when the test process is gone or the
        // server is dropped.
        let script = format!(
            "cat >/dev/null; '{}' -D '{}' stop -m fast >/dev/null 2>&1; rm -rf '{}'",
            pg_ctl.display(),
            data.display(),
            dir.display(),
        );
        let watchdog = as_owner(Path::new("/bin/sh"))
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("the watchdog starts");
        let pg = Pg {
            port,
            bin,
            data,
            dir: dir.clone(),
            _watchdog: Mutex::new(watchdog),
        };
        pg.start_again();
        pg
    }

    /// A server of the caller's own (e.g. to stop and start again), gone
    /// when dropped.
    pub fn private() -> Pg {
        Pg::start()
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    pub fn stop(&self) {
        let out = as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "fast", "-w"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server (again) on its port and data, once it accepts
    /// connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off \
             -c max_connections=200",
            self.port
        );
        let out = as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-o", &options, "-w", "-t", "30", "start"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "postgres did not start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            log(&self.dir)
        );
        self.wait_ready();
    }

    /// Waits until the server accepts connections (it listens before it
    /// has finished starting).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "postgres is not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new, empty database; returns its URL.
    pub fn database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .arg(&name)
            .output()
            .expect("createdb runs");
        assert!(
            out.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }
}

fn log(dir: &Path) -> String {
    std::fs::File::open(dir.join("log"))
        .map(|f| {
            BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}
