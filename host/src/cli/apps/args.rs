//! The arguments of the client commands: `modal deploy`, `call`, `spawn`,
//! `result`, `app ...` and `schedule ...`.

use crate::cli::client::ServerArgs;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Arguments of `modal deploy`.
#[derive(Args)]
pub struct DeployArgs {
    /// The component to deploy (`.wasm`, or a `.py` module to build).
    pub wasm: PathBuf,
    /// The app's name (a DNS label); default: the file name.
    #[arg(long)]
    pub name: Option<String>,
    /// An environment variable for the guest, `KEY=VALUE` (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = crate::cli::common::parse_env)]
    pub env: Vec<(String, String)>,
    /// A label for this version, shown in `modal app history`.
    #[arg(long)]
    pub tag: Option<String>,
    /// Let the app send HTTP requests to HOST (any port) or HOST:PORT
    /// (repeatable); all other outbound requests are denied.
    #[arg(long = "allow-http", value_name = "HOST[:PORT]")]
    pub allow_http: Vec<String>,
    /// Let functions of app APP call this app's functions (repeatable; `*`
    /// for every app). Without a grant, callers from other apps are told
    /// the app does not exist. Calls within the app are always allowed.
    #[arg(long = "allow-caller", value_name = "APP")]
    pub allow_callers: Vec<String>,
    /// Give the app the variables of secret NAME (`modal secret create`),
    /// at its latest revision (repeatable). The version records the
    /// revision: a rollback brings its values back.
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
    /// Mount local directory DIR read-only at PATH in the guest, e.g.
    /// `--mount ./dist:/assets` (repeatable). It is packed and uploaded
    /// (not again when unchanged) and kept with the version.
    #[arg(long = "mount", value_name = "DIR:PATH", value_parser = crate::cli::common::parse_mount)]
    pub mounts: Vec<(std::path::PathBuf, String)>,
    /// Where failed scheduled runs are reported: a JSON POST with app,
    /// version, function, fire time, error and log tail.
    #[arg(long, value_name = "URL")]
    pub notify: Option<String>,
    #[command(flatten)]
    pub pool: PoolArgs,
    /// Print JSON (times also as RFC 3339).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Pool settings of a plain `wasi:http` component, which has no
/// `describe` to declare them (an SDK app sets them on its functions).
#[derive(Args, Clone, Debug, Default)]
pub struct PoolArgs {
    /// Plain wasi:http components: requests per instance before it is
    /// replaced (1 gives every request a fresh instance, which guests that
    /// answer only once per instance need).
    #[arg(long, value_name = "N")]
    max_requests: Option<u32>,
    /// Plain wasi:http components: instances kept warm when idle.
    #[arg(long, value_name = "N")]
    min_warm: Option<u32>,
    /// Plain wasi:http components: instances running at once.
    #[arg(long, value_name = "N")]
    max_instances: Option<u32>,
    /// Plain wasi:http components: the time limit of one request (e.g.
    /// `30s`).
    #[arg(long, value_parser = modal_host::parse_duration, value_name = "DURATION")]
    timeout: Option<std::time::Duration>,
}

impl PoolArgs {
    /// The settings as the library takes them.
    pub fn settings(&self) -> modal_host::spec::PoolSettings {
        modal_host::spec::PoolSettings {
            timeout: self.timeout,
            min_warm: self.min_warm,
            max_instances: self.max_instances,
            max_requests: self.max_requests,
        }
    }
}

/// Arguments of `modal call` and `modal spawn`.
#[derive(Args)]
pub struct CallArgs {
    /// The app.
    pub app: String,
    /// The function.
    pub function: String,
    /// The input: JSON (leave it out for a function without parameters),
    /// `-` to read the JSON from stdin, or the function's arguments as
    /// `--NAME VALUE` (built into JSON from its signature: a value that
    /// parses as JSON is that JSON, else a string).
    // Hyphens allowed: `take_trailing_flags` tells this command's own
    // flags from the function's arguments.
    #[arg(value_name = "INPUT", allow_hyphen_values = true)]
    pub input: Vec<String>,
    /// Run this kept version instead of the live one.
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    /// Print JSON (times also as RFC 3339).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

impl CallArgs {
    /// Moves this command's own flags given among the input (`modal call
    /// APP F 7 --json`, or `modal call APP F --x 7 --version 2`) to where
    /// they belong: after a JSON input every flag must be one of them;
    /// when the input is `--NAME VALUE` arguments, the others are the
    /// function's.
    pub fn take_trailing_flags(&mut self) -> anyhow::Result<()> {
        let leading = vec![self.app.clone(), self.function.clone()];
        let parsed =
            crate::cli::common::trailing_flags::<CallArgs>("modal call", leading, &mut self.input)?;
        let Some((later, matches)) = parsed else {
            return Ok(());
        };
        let given =
            |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        let given_server = ["server", "token", "state"].into_iter().any(given);
        self.version = later.version.or(self.version);
        self.json |= later.json;
        if given_server {
            self.server = later.server;
        }
        Ok(())
    }
}

/// Arguments of `modal result`.
#[derive(Args)]
pub struct ResultArgs {
    /// The call id `modal spawn` printed (or one from `modal app logs`).
    pub id: String,
    /// Wait up to this long for the call to finish (e.g. `30s`).
    #[arg(long, default_value = "0s")]
    pub wait: String,
    /// First print the call's tree: its executions and, indented under
    /// each, those of the functions it called. Also works for the call id
    /// of any execution in `modal app logs`.
    #[arg(long)]
    pub tree: bool,
    /// Print JSON (times also as RFC 3339).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `modal secret ...`.
#[derive(Subcommand)]
pub enum SecretCommand {
    /// Create a secret from KEY=VALUE pairs and/or a .env file. Values are
    /// never printed, and masked in the logs of the apps that use them.
    Create {
        /// The secret's name (letters, digits, `-`, `_`).
        name: String,
        /// Its variables, KEY=VALUE.
        #[arg(value_name = "KEY=VALUE")]
        vars: Vec<String>,
        /// Read variables from a .env file too (`KEY=VALUE` lines).
        #[arg(long, value_name = "FILE")]
        from_dotenv: Option<std::path::PathBuf>,
        /// Replace an existing secret with a new revision (versions already
        /// deployed keep the old values; the next deploy takes the new).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The secrets: names, keys, revisions and the apps using them.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a secret (refused while a live version uses it).
    Delete {
        /// The secret.
        name: String,
        /// Delete it even though a live version uses it (that version
        /// keeps running but cannot be loaded again).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `modal dict ...`.
#[derive(Subcommand)]
pub enum DictCommand {
    /// The buckets of an app that hold keys, with their number of keys.
    List {
        /// The app.
        app: String,
        /// Print JSON (times also as RFC 3339).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The keys of a bucket, one per line, in order.
    Keys {
        /// The app.
        app: String,
        /// The bucket.
        bucket: String,
        /// Print JSON (times also as RFC 3339).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print the value at a key (JSON, or text).
    Get {
        /// The app.
        app: String,
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Set a key to a value: JSON for the SDKs' `Dict`, or any text.
    Put {
        /// The app.
        app: String,
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove every key of a bucket.
    Clear {
        /// The app.
        app: String,
        /// The bucket.
        bucket: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `modal schedule ...`.
#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// The schedules of an app: when they run, next fire time, paused.
    List {
        /// The app.
        app: String,
        /// Print JSON (times also as RFC 3339).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop firing a schedule (without a redeploy).
    Pause {
        /// The app.
        app: String,
        /// The scheduled function.
        function: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Fire a paused schedule again.
    Resume {
        /// The app.
        app: String,
        /// The scheduled function.
        function: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Fire a schedule once, now (with its retries); prints the run id.
    Run {
        /// The app.
        app: String,
        /// The scheduled function.
        function: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The recent runs of a schedule.
    History {
        /// The app.
        app: String,
        /// The scheduled function.
        function: String,
        /// How many runs.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        /// Print JSON (times also as RFC 3339).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `modal app ...`.
#[derive(Subcommand)]
pub enum AppCommand {
    /// List apps: state, live version, deploy time, functions.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The versions of an app: when, by whom, tag, commit, state.
    History {
        /// The app.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Make an earlier version's code live again, as a new version.
    Rollback {
        /// The app.
        name: String,
        /// The version to return to; default: the one before the live one.
        #[arg(long, value_name = "N")]
        version: Option<u64>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Recent executions of an app and their logs; `--follow` streams new ones.
    Logs {
        /// The app.
        name: String,
        /// Only this function.
        #[arg(long)]
        function: Option<String>,
        /// Keep printing executions as they happen.
        #[arg(long, short)]
        follow: bool,
        /// How many recent executions to print first.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        /// Print JSON (times also as RFC 3339).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Usage per version and function: calls, errors, durations, memory.
    Stats {
        /// The app.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop an app: endpoints and schedules stop, calls in progress drain.
    Stop {
        /// The app.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `modal host ...`.
#[derive(Subcommand)]
pub enum HostCommand {
    /// The live hosts (heartbeat at most 10 s old): address, release of
    /// modal, last heartbeat, apps served, instances, calls in flight.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `modal token ...`.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Print the control token the CLI needs (`$MODAL_TOKEN`): the one in
    /// the cluster's database with `--database`, else the state
    /// directory's.
    Show {
        /// The cluster's database (as given to `modal server --database`).
        #[arg(
            long,
            env = "MODAL_DATABASE",
            value_name = "URL",
            hide_env_values = true
        )]
        database: Option<String>,
        /// The state directory holding the token file.
        #[arg(long, env = "MODAL_STATE", value_name = "DIR")]
        state: Option<PathBuf>,
    },
}
