//! The registry: apps, their versions and the state of their schedules.
//! [`Registry`] is the narrow interface the rest of the host uses; the
//! embedded default is [`SqliteRegistry`](super::SqliteRegistry), and a
//! cluster puts it on PostgreSQL. Each method is one operation (its
//! implementation makes it one transaction), in terms of records, not SQL.

use crate::error::Error;
use crate::spec::{AppSpec, PoolSettings};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

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
    /// Records fire times as taken, in one transaction, before they run:
    /// a fire time recorded here is never run again.
    async fn record_fires(&self, fires: &[Fire]) -> Result<(), Error>;
    /// Pauses or resumes a schedule.
    async fn set_paused(&self, app: &str, function: &str, paused: bool) -> Result<(), Error>;
}

/// What is kept of one schedule between restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScheduleState {
    /// The last fire time taken (Unix ms).
    pub last_fire: Option<u64>,
    /// Whether it is paused.
    pub paused: bool,
}
