//! Paths of the example guests, built for `wasm32-wasip2` by this crate's
//! build script once per test run. Tests and benchmarks read them from here
//! instead of building guests themselves.

use std::path::Path;

pub mod guests;
pub mod pg;

/// `examples/hello`: `square` (plain) and `greet` (web, GET).
pub const HELLO: &str = env!("MODAL_EXAMPLE_HELLO");
/// `examples/fanout`: functions that call functions (`sum_squares` maps
/// `square`, `via_hello`, `forever`, `ping`/`pong`, `versions`, ...).
pub const FANOUT: &str = env!("MODAL_EXAMPLE_FANOUT");
/// `examples/state`: key-value state (`visit`, `put`, `get`, `keys`,
/// `burst`, `store_bytes`, `open_bucket`).
pub const STATE: &str = env!("MODAL_EXAMPLE_STATE");
/// `examples/site`: `web` serves the mount at `/assets`; `read`, `write`,
/// `peek` probe the file system.
pub const SITE: &str = env!("MODAL_EXAMPLE_SITE");
/// The directory `examples/site` mounts at `/assets`.
pub const SITE_ASSETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/site/assets");
/// `examples/config`: `setting` needs the secret `config` (named in code).
pub const CONFIG: &str = env!("MODAL_EXAMPLE_CONFIG");
/// `examples/podcasts`: Modal's podcast example (scheduled fetch,
/// transcription with `map`, a search index in key-value state, a web app
/// with a mounted frontend, an API key from the `podcast-feed` secret).
pub const PODCASTS: &str = env!("MODAL_EXAMPLE_PODCASTS");
/// The frontend `examples/podcasts` mounts at `/assets`.
pub const PODCASTS_FRONTEND: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/podcasts/frontend"
);
/// The sample feed `examples/podcasts` mounts at `/feed`.
pub const PODCASTS_FEED: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/podcasts/feed");
/// `examples/counter`: `incr` (counts calls per instance) and `slow`.
pub const COUNTER: &str = env!("MODAL_EXAMPLE_COUNTER");
/// `examples/cron`: `tick` and `flaky`, scheduled every second.
pub const CRON: &str = env!("MODAL_EXAMPLE_CRON");
/// `examples/faulty`: `trap`, `spin`, `hog`, `recurse`, `echo`.
pub const FAULTY: &str = env!("MODAL_EXAMPLE_FAULTY");
/// `examples/http-plain`: a plain `wasi:http` component built without the SDK.
pub const HTTP_PLAIN: &str = env!("MODAL_EXAMPLE_HTTP_PLAIN");

/// `examples/fetch`: `get` fetches a URL with outbound `wasi:http`.
pub const FETCH: &str = env!("MODAL_EXAMPLE_FETCH");

/// `examples/bad-schedule`: a fixture with an invalid cron expression.
pub const BAD_SCHEDULE: &str = env!("MODAL_EXAMPLE_BAD_SCHEDULE");

/// `examples/json-api`: web functions returning `Vec<Item>`, `Item`,
/// `Result<Item, String>`, `Result<Response, String>`, `String`, and
/// `Response::json` of a `Result`.
pub const JSON_API: &str = env!("MODAL_EXAMPLE_JSON_API");

/// `examples/async-fetch`: `async fn`s: `both` (web) fetches two URLs
/// concurrently, `fourth_power` awaits two calls to `square`, `heartbeat`
/// runs every second and awaits a timer.
pub const ASYNC_FETCH: &str = env!("MODAL_EXAMPLE_ASYNC_FETCH");

/// Resident memory of process `pid` (this process with `None`), in bytes,
/// from `/proc`.
pub fn rss(pid: Option<u32>) -> u64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {path}"));
    kib << 10
}

/// The bytes of an example component.
pub fn wasm(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}
