//! What the platform shows: apps with their figures, version history,
//! executions and usage, and the Prometheus metrics.

use super::Platform;
use super::live::Slot;
use super::records::{Buckets, ExecutionPage, ExecutionQuery, ExecutionRecord, Usage};
use super::registry::{AppRecord, AppState, VersionRecord};
use super::scheduler::ScheduleStatus;
use crate::error::Error;
use crate::pool::PoolStats;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// One version as `list` and `history` show it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VersionStatus {
    /// The recorded version.
    #[serde(flatten)]
    pub record: VersionRecord,
    /// Whether it serves, drains or is retired.
    pub status: VersionState,
    /// Instances alive (live or draining versions).
    pub instances: usize,
    /// Executions in progress.
    pub in_flight: usize,
}

/// Whether a version serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// It is the app's live version.
    Live,
    /// It was replaced or stopped and still finishes its executions.
    Draining,
    /// It no longer runs.
    Retired,
}

impl VersionState {
    /// The lower-case name, as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Live => "live",
            VersionState::Draining => "draining",
            VersionState::Retired => "retired",
        }
    }
}

/// An app as `list` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppStatus {
    /// The recorded app.
    #[serde(flatten)]
    pub record: AppRecord,
    /// Functions of the live version.
    pub functions: usize,
    /// Instances of the live version.
    pub instances: usize,
    /// Executions in progress on the live version.
    pub in_flight: usize,
    /// Executions recorded (all versions, within the retention).
    pub calls: u64,
    /// Of those, the failed ones.
    pub errors: u64,
    /// Versions still draining.
    pub draining: Vec<DrainStatus>,
    /// Its schedules and their next fire times.
    pub schedules: Vec<ScheduleStatus>,
    /// Set when the live version could not be loaded at start-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_error: Option<String>,
}

/// A replaced version finishing its executions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DrainStatus {
    /// The version.
    pub version: u64,
    /// Executions still in progress.
    pub in_flight: usize,
    /// Instances still alive.
    pub instances: usize,
    /// Seconds until stragglers are cancelled.
    pub deadline_in_s: u64,
}

fn live_instances(stats: &[PoolStats]) -> usize {
    stats.iter().map(|s| s.live).sum()
}

/// Most executions [`Platform::tree`] returns.
const TREE_LIMIT: usize = 20_000;

impl Platform {
    /// Every app, with its live version's figures and draining versions.
    pub async fn apps(&self) -> Result<Vec<AppStatus>, Error> {
        let totals = self.totals().await?;
        self.apps_with(&totals).await
    }

    /// Executions and failed executions per app, within the retention
    /// (what [`apps`](Self::apps) adds to each app). It counts every
    /// stored execution: a view that refreshes often keeps it a while.
    pub async fn totals(&self) -> Result<BTreeMap<String, (u64, u64)>, Error> {
        self.inner.recorder.store.totals().await
    }

    /// Every app as [`apps`](Self::apps) shows it, with `totals` (from
    /// [`totals`](Self::totals)) as its calls and errors.
    pub async fn apps_with(
        &self,
        totals: &BTreeMap<String, (u64, u64)>,
    ) -> Result<Vec<AppStatus>, Error> {
        let apps = self.inner.registry.apps().await?;
        Ok(apps
            .into_iter()
            .map(|record| {
                let (calls, errors) = totals.get(&record.name).copied().unwrap_or_default();
                let mut status = self.status(record);
                (status.calls, status.errors) = (calls, errors);
                status
            })
            .collect())
    }

    /// One app.
    pub async fn app(&self, name: &str) -> Result<AppStatus, Error> {
        Ok(self.status(self.record(name).await?))
    }

    /// The record of app `name`, or [`Error::AppNotFound`].
    pub(super) async fn record(&self, name: &str) -> Result<AppRecord, Error> {
        self.inner
            .registry
            .app(name)
            .await?
            .ok_or_else(|| Error::AppNotFound(name.to_string()))
    }

    fn status(&self, record: AppRecord) -> AppStatus {
        let schedules = self.inner.scheduler.status(&record.name);
        let slots = self.slots();
        let (functions, instances, in_flight, load_error) = match slots.get(&record.name) {
            Some(Slot::Serving(l)) => (
                l.spec().functions.len(),
                live_instances(&l.stats()),
                l.in_flight(),
                None,
            ),
            Some(Slot::Broken(e)) => (0, 0, 0, Some(e.clone())),
            _ => (0, 0, 0, None),
        };
        drop(slots);
        let now = Instant::now();
        let draining = self
            .draining()
            .iter()
            .filter(|d| *d.app.meta().name == record.name)
            .map(|d| DrainStatus {
                version: d.app.meta().version,
                in_flight: d.app.in_flight(),
                instances: live_instances(&d.app.stats()),
                deadline_in_s: d.deadline.saturating_duration_since(now).as_secs(),
            })
            .collect();
        AppStatus {
            record,
            functions,
            instances,
            in_flight,
            calls: 0,
            errors: 0,
            schedules,
            draining,
            load_error,
        }
    }

    /// The versions of an app, oldest first, with their status.
    pub async fn history(&self, app: &str) -> Result<Vec<VersionStatus>, Error> {
        let status = self.app(app).await?;
        let versions = self.inner.registry.versions(app).await?;
        Ok(versions
            .into_iter()
            .map(|record| {
                let v = record.version;
                let (label, instances, in_flight) = if status.record.state == AppState::Deployed
                    && status.record.live_version == Some(v)
                {
                    (VersionState::Live, status.instances, status.in_flight)
                } else if let Some(d) = status.draining.iter().find(|d| d.version == v) {
                    (VersionState::Draining, d.instances, d.in_flight)
                } else {
                    (VersionState::Retired, 0, 0)
                };
                VersionStatus {
                    record,
                    status: label,
                    instances,
                    in_flight,
                }
            })
            .collect())
    }

    /// Per-function instance figures of the live version.
    pub fn stats(&self, app: &str) -> Result<Vec<PoolStats>, Error> {
        Ok(self.live(app)?.stats())
    }

    /// The latest executions of an app (of one function if given).
    pub async fn logs(
        &self,
        app: &str,
        function: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, Error> {
        self.record(app).await?;
        self.inner.recorder.store.recent(app, function, limit).await
    }

    /// The first `limit` executions of `app` (of `function` if given)
    /// after execution `after`, oldest first, once every execution
    /// recorded so far is stored: with [`follow`](Self::follow) subscribed
    /// first, a reconnecting follower misses none.
    pub async fn logs_after(
        &self,
        app: &str,
        function: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, Error> {
        self.record(app).await?;
        self.inner.recorder.flush().await;
        let store = &self.inner.recorder.store;
        store.after(app, function, after, limit).await
    }

    /// The executions of call `id` and of the calls it made, directly or
    /// not (its tree), oldest first, once every execution recorded so far
    /// is stored. Empty for an unknown id.
    pub async fn tree(&self, id: &str) -> Result<Vec<ExecutionRecord>, Error> {
        self.inner.recorder.flush().await;
        self.inner.recorder.store.tree(id, TREE_LIMIT).await
    }

    /// New executions of every app, as they are recorded.
    pub fn follow(&self) -> tokio::sync::broadcast::Receiver<ExecutionRecord> {
        self.inner.recorder.follow()
    }

    /// Calls, errors and p50/p99 durations per minute, version and
    /// function of the executions of `app` that started in `[from, to)`
    /// (Unix ms), reading at most `max_rows` executions (the newest).
    pub async fn buckets(
        &self,
        app: &str,
        from: u64,
        to: u64,
        max_rows: usize,
    ) -> Result<Buckets, Error> {
        self.record(app).await?;
        let store = &self.inner.recorder.store;
        store.buckets(app, from, to, max_rows).await
    }

    /// One page of the executions of an app that match `query`, newest
    /// first, once every execution recorded so far is stored.
    pub async fn search(&self, query: &ExecutionQuery) -> Result<ExecutionPage, Error> {
        self.record(&query.app).await?;
        self.inner.recorder.flush().await;
        self.inner.recorder.store.search(query).await
    }

    /// Execution `id` of `app`, once every execution recorded so far is
    /// stored; `None` if there is none (or it was pruned).
    pub async fn execution(&self, app: &str, id: u64) -> Result<Option<ExecutionRecord>, Error> {
        self.record(app).await?;
        self.inner.recorder.flush().await;
        self.inner.recorder.store.execution(app, id).await
    }

    /// Usage per version and function of an app.
    pub async fn usage(&self, app: &str) -> Result<Vec<Usage>, Error> {
        self.record(app).await?;
        self.inner.recorder.store.usage(app).await
    }

    /// Metrics in the Prometheus text format.
    pub fn metrics(&self) -> String {
        let mut instances: Vec<(String, u64, usize)> = self
            .slots()
            .iter()
            .filter_map(|(name, slot)| match slot {
                Slot::Serving(l) => {
                    Some((name.clone(), l.meta().version, live_instances(&l.stats())))
                }
                _ => None,
            })
            .collect();
        instances.extend(self.draining().iter().map(|d| {
            (
                d.app.meta().name.clone(),
                d.app.meta().version,
                live_instances(&d.app.stats()),
            )
        }));
        instances.sort();
        self.inner
            .recorder
            .metrics
            .encode(&self.inner.host_id, &instances)
    }
}
