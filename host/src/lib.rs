//! The modal host: loads WebAssembly components, reads the functions they
//! describe and runs them sandboxed in wasmtime, reusing warm instances.
//!
//! - [`Host`] owns the wasmtime engine, the compiled-code cache and the
//!   limits ([`HostConfig`]); [`Host::load`] validates and compiles a
//!   component, calls its `describe` and returns a [`LoadedApp`].
//! - [`LoadedApp`] is one version of an app: its validated [`AppSpec`] and
//!   an instance pool per function. [`LoadedApp::call`] runs a plain or
//!   scheduled function; [`LoadedApp::serve_http`] runs a web function.
//! - Every execution yields an [`Execution`]: outcome, captured logs,
//!   timing. Failures are typed ([`Error`]) so callers can match on them.
//! - [`Platform`] keeps deployed apps: versions in a
//!   [`Registry`](platform::Registry), components in an
//!   [`ArtifactStore`](platform::ArtifactStore), executions and spawned
//!   calls in a [`RecordStore`](platform::RecordStore) (SQLite and files by
//!   default, [`platform::Stores`]), one live version per app,
//!   zero-downtime redeploys, rollback, stop and garbage collection.
//!   [`server::Server`] puts it behind HTTP, as `modal server` does.
//! - [`api`] holds the request and response bodies of `/api/v1`, the
//!   control API that the server answers and the `modal` CLI calls.
//!
//! The modules [`platform`], [`server`] and [`spec`] hold the rest of the
//! public surface: status and record types, the storage traits, the HTTP
//! server's settings and the app spec's parts.
//!
//! The `cli` feature (on by default) builds the `modal` binary; an
//! embedder can turn it off (`default-features = false`) to leave out the
//! command line's dependencies (clap, mimalloc, tracing-subscriber).
//!
//! ```no_run
//! # async fn demo() -> Result<(), modal_host::Error> {
//! use modal_host::{AppMeta, Host, HostConfig};
//!
//! let host = Host::new(HostConfig::default())?;
//! let wasm = std::fs::read("hello.wasm").expect("read hello.wasm");
//! let app = host.load(&wasm, AppMeta::new("hello", 1)).await?;
//! let execution = app.call("square", b"7").await;
//! assert_eq!(execution.outcome?, b"49");
//! # Ok(()) }
//! ```
//!
//! With deployments:
//!
//! ```no_run
//! # async fn demo() -> Result<(), modal_host::Error> {
//! use modal_host::{DeployRequest, HostConfig, Platform, PlatformConfig};
//!
//! let state = std::path::Path::new("state");
//! let platform = Platform::open(state, HostConfig::default(), PlatformConfig::default(), None).await?;
//! let wasm = std::fs::read("hello.wasm").expect("read hello.wasm");
//! let request = DeployRequest { name: "hello".into(), ..Default::default() };
//! let deployment = platform.deploy(&wasm, request).await?;
//! assert_eq!(deployment.version, 1);
//! let square = platform.function("hello", "square")?;
//! assert_eq!(square.call(b"7").await?.outcome?, b"49");
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod api;
mod app;
mod bindings;
mod compile;
mod config;
mod error;
mod host;
mod invoke;
pub mod kv;
mod logs;
pub mod platform;
mod pool;
mod sandbox;
mod secret_env;
pub mod server;
pub mod spec;
mod trap;
mod web;

pub use app::{
    AppMeta, Execution, ExecutionSink, LoadedApp, Mount, RequestLine, Trigger, validate_mount_path,
};
pub use compile::CompileStats;
pub use config::{
    DEFAULT_DECOMMIT_BATCH, DEFAULT_DESCRIBE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_INSTANCE_SLOTS,
    DEFAULT_LOG_LIMIT, DEFAULT_MAX_CALL_DEPTH, DEFAULT_MAX_INSTANCES, DEFAULT_MAX_REQUEST_BODY,
    DEFAULT_MEMORY_LIMIT, DEFAULT_QUEUE_TIMEOUT, DEFAULT_TIMEOUT, HostConfig, MAX_INSTANCE_SLOTS,
    PoolingLimits, default_warm_memory,
};
pub use error::{Error, Outcome};
pub use host::Host;
pub use platform::{DeployRequest, Deployment, Platform, PlatformConfig};
pub use pool::PoolStats;
pub use secret_env::SecretEnv;
pub use spec::{AppSpec, human as format_duration, parse_duration};
pub use web::{ErrorId, WebBody, WebResponse};
