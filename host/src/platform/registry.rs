//! The registry: apps, their versions and the state of their schedules.
//! [`Registry`] is the narrow interface the rest of the host uses; the
//! embedded default is [`SqliteRegistry`](super::SqliteRegistry), and a
//! cluster puts it on PostgreSQL. Each method is one operation (its
//! implementation makes it one transaction), in terms of records, not SQL.

use crate::error::Error;
use crate::spec::{AppSpec, PoolSettings};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Whether an app serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppState {
    /// Its live version serves calls, requests and schedules.
    Deployed,
    /// Stopped: nothing serves until it is deployed again.
    Stopped,
}

impl AppState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AppState::Deployed => "deployed",
            AppState::Stopped => "stopped",
        }
    }

    pub(crate) fn parse(s: &str) -> AppState {
        if s == "stopped" {
            AppState::Stopped
        } else {
            AppState::Deployed
        }
    }
}

/// An app as recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppRecord {
    /// Its name.
    pub name: String,
    /// Deployed or stopped.
    pub state: AppState,
    /// The version that serves (or served, when stopped).
    pub live_version: Option<u64>,
    /// When it was first deployed (Unix ms).
    pub created_at: u64,
    /// When it was last deployed, rolled back or stopped (Unix ms).
    pub updated_at: u64,
}

/// The commit of the directory a version was deployed from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitInfo {
    /// The commit hash.
    pub commit: String,
    /// Whether the work tree had uncommitted changes.
    pub dirty: bool,
}

/// One immutable version of an app.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The app.
    pub app: String,
    /// The version number, from 1.
    pub version: u64,
    /// SHA-256 of the component in the artifact store.
    pub digest: String,
    /// The validated spec the component reported.
    pub spec: AppSpec,
    /// Environment variables set at deploy.
    pub env: Vec<(String, String)>,
    /// Hosts the app may send HTTP requests to.
    pub allow_http: Vec<String>,
    /// Apps whose functions may call this one's (`*`: every app).
    #[serde(default)]
    pub allow_callers: Vec<String>,
    /// The secrets it was deployed with, by name and revision.
    #[serde(default)]
    pub secrets: Vec<super::SecretRef>,
    /// The directories it mounts.
    #[serde(default)]
    pub mounts: Vec<super::MountRecord>,
    /// Where failed scheduled runs are reported (a JSON POST).
    pub notify: Option<String>,
    /// Pool settings given at deploy (plain `wasi:http` components).
    #[serde(default, skip_serializing_if = "PoolSettings::is_empty")]
    pub pool: PoolSettings,
    /// When it was deployed (Unix ms).
    pub deployed_at: u64,
    /// Who deployed it.
    pub deployer: String,
    /// The `--tag` given at deploy.
    pub tag: Option<String>,
    /// The commit deployed from.
    pub git: Option<GitInfo>,
    /// For a rollback, the version whose code it runs.
    pub rollback_of: Option<u64>,
}

/// A schedule's fire times, taken: (app, function, fire time in Unix ms).
pub type Fire = (String, String, u64);

/// Where apps and versions are kept.
#[async_trait::async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Every app, by name.
    async fn apps(&self) -> Result<Vec<AppRecord>, Error>;
    /// One app.
    async fn app(&self, name: &str) -> Result<Option<AppRecord>, Error>;
    /// The versions of an app, oldest first.
    async fn versions(&self, app: &str) -> Result<Vec<VersionRecord>, Error>;
    /// One version.
    async fn version(&self, app: &str, version: u64) -> Result<Option<VersionRecord>, Error>;
    /// The number the next version of `app` gets (1 for a new app).
    async fn next_version(&self, app: &str) -> Result<u64, Error>;
    /// Records a version and makes it the live one, creating the app if
    /// needed, in one transaction: afterwards either both hold or neither.
    /// A version number already taken fails (versions are immutable).
    async fn publish(&self, version: &VersionRecord, at: u64) -> Result<(), Error>;
    /// Marks an app stopped; [`Error::AppNotFound`] when there is no such
    /// app.
    async fn stop(&self, app: &str, at: u64) -> Result<(), Error>;
    /// Apps stopped before `cutoff` (Unix ms).
    async fn stopped_before(&self, cutoff: u64) -> Result<Vec<String>, Error>;
    /// Forgets an app and all its versions.
    async fn delete_app(&self, app: &str) -> Result<(), Error>;
    /// Digests of every component some kept version uses.
    async fn referenced_digests(&self) -> Result<HashSet<String>, Error>;
    /// The stored state of every schedule, by (app, function).
    async fn schedules(&self) -> Result<HashMap<(String, String), ScheduleState>, Error>;
    /// Records fire times as taken, in one transaction, before they run,
    /// and returns those taken now: a fire time recorded once is never
    /// returned again, whoever asks. `fence` is the token of the
    /// scheduler lease the caller holds ([`take_lease`](Self::take_lease));
    /// a caller whose lease was taken over gets [`Error::NotLeader`].
    async fn record_fires(&self, fires: &[Fire], fence: u64) -> Result<Vec<Fire>, Error>;
    /// Pauses or resumes a schedule.
    async fn set_paused(&self, app: &str, function: &str, paused: bool) -> Result<(), Error>;
    /// Takes or renews the lease `name` for `holder` for `ttl`; returns its
    /// fencing token while `holder` holds it (the token grows each time
    /// the lease changes hands), `None` while another holder's lease runs.
    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, Error>;
    /// Stores what a host reports of itself (its heartbeat).
    async fn heartbeat(&self, host: &HostRecord) -> Result<(), Error>;
    /// Forgets host `host` and ends the leases it holds (it is shutting
    /// down): the others need not wait for them to run out.
    async fn leave(&self, host: &str) -> Result<(), Error>;
    /// The hosts that reported within `within`, with the age of their
    /// last report.
    async fn hosts(&self, within: Duration) -> Result<Vec<HostRecord>, Error>;
    /// Changes made by any host, as the names of the apps they touched
    /// ([`EVERYTHING`] when some may have been missed, e.g. after a lost
    /// connection). A single host never misses its own.
    fn changes(&self) -> tokio::sync::broadcast::Receiver<String>;
}

/// What [`Registry::changes`] sends when any app may have changed.
pub const EVERYTHING: &str = "*";

/// One host of a cluster as it last reported itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HostRecord {
    /// Its id, unique per process.
    pub id: String,
    /// Where it listens, as it was told (`--listen`).
    pub address: String,
    /// The release of modal it runs.
    pub modal_version: String,
    /// When it started (Unix ms).
    pub started_at: u64,
    /// How long ago it last reported, ms (filled in when read).
    #[serde(default)]
    pub age_ms: u64,
    /// What it serves, per app.
    pub apps: Vec<HostApp>,
    /// Instances alive in its pools.
    pub instances: u64,
    /// Executions in progress.
    pub in_flight: u64,
    /// Whether it holds the scheduler lease (fires the schedules).
    #[serde(default)]
    pub leads_schedules: bool,
}

/// What one host serves of one app.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HostApp {
    /// The app.
    pub app: String,
    /// The version it serves, if any.
    pub version: Option<u64>,
    /// Why it does not serve the live version, if it could not load it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The version it could not load, with `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_version: Option<u64>,
}

/// What is kept of one schedule between restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScheduleState {
    /// The last fire time taken (Unix ms).
    pub last_fire: Option<u64>,
    /// Whether it is paused.
    pub paused: bool,
}

/// A version with every field set, for the stores' tests.
#[cfg(test)]
pub(crate) fn sample_version(app: &str, version: u64, digest: &str) -> VersionRecord {
    VersionRecord {
        app: app.into(),
        version,
        digest: digest.into(),
        spec: crate::spec::AppSpec {
            functions: vec![],
            sdk: None,
            has_enter: false,
            has_exit: false,
            secrets: Vec::new(),
        },
        env: vec![("K".into(), "V".into())],
        allow_http: vec!["example.com".into()],
        allow_callers: vec!["other".into()],
        secrets: vec![crate::platform::SecretRef {
            name: "api".into(),
            revision: 2,
        }],
        mounts: Vec::new(),
        notify: None,
        pool: crate::spec::PoolSettings::default(),
        deployed_at: 1000 + version,
        deployer: "me".into(),
        tag: Some("t".into()),
        git: Some(GitInfo {
            commit: "abc".into(),
            dirty: true,
        }),
        rollback_of: None,
    }
}
