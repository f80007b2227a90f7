//! This host among the others on the same stores: its heartbeat, the
//! changes other hosts announce (applied here, with a periodic
//! reconcile in case one was missed), deploys that wait until every live
//! host serves the new version, and the claims on spawned calls. On one
//! host (SQLite) the same code runs with one host and no announcements.

use super::Platform;
use super::live::Slot;
use super::registry::{AppRecord, AppState, EVERYTHING, HostApp, HostRecord};
use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How often a host reports itself.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);

/// A host whose last report is older than this is not alive: deploys do
/// not wait for it.
pub const ALIVE: Duration = Duration::from_secs(10);

/// How often every app is compared with the registry, in case an
/// announcement was missed.
const RECONCILE: Duration = Duration::from_secs(5);

/// How long a deploy waits for the other hosts to serve its version.
const CONFIRM: Duration = Duration::from_secs(60);

/// How often a waiting deploy reads the hosts' reports.
const POLL: Duration = Duration::from_millis(10);

/// Spawned calls claimed at once.
const CLAIM_BATCH: usize = 256;

/// How one host took a deploy, stop or rollback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    /// The host's id.
    pub host: String,
    /// Where it listens.
    pub address: String,
    /// Why it does not serve the change, if it does not.
    pub error: Option<String>,
}

/// What a waiting change expects the other hosts to report.
#[derive(Clone, Copy)]
pub(super) enum Expect {
    /// Serving this version.
    Version(u64),
    /// Not serving the app.
    Stopped,
}

/// A new id for this process among the hosts: the machine's name and a
/// random suffix.
pub(super) fn host_id() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "host".into());
    let mut bytes = [0u8; 3];
    let suffix = getrandom::fill(&mut bytes)
        .map(|()| hex::encode(bytes))
        .unwrap_or_else(|_| format!("{:x}", std::process::id()));
    format!("{name}-{suffix}")
}

impl Platform {
    /// This host's id among the hosts.
    pub fn host_id(&self) -> &str {
        &self.inner.host_id
    }

    /// What this host reports of itself.
    fn host_record(&self) -> HostRecord {
        let failures = self.failures().clone();
        let mut instances = 0;
        let mut in_flight = 0;
        let mut apps: Vec<HostApp> = self
            .slots()
            .iter()
            .map(|(name, slot)| {
                let mut app = HostApp {
                    app: name.clone(),
                    ..HostApp::default()
                };
                match slot {
                    Slot::Serving(loaded) => {
                        app.version = Some(loaded.meta().version);
                        instances += loaded.stats().iter().map(|s| s.live as u64).sum::<u64>();
                        in_flight += loaded.in_flight() as u64;
                    }
                    Slot::Broken(e) => app.error = Some(e.clone()),
                    Slot::Stopped => {}
                }
                if let Some((version, error)) = failures.get(name) {
                    app.failed_version = Some(*version);
                    app.error = Some(error.clone());
                }
                app
            })
            .collect();
        apps.sort_by(|a, b| a.app.cmp(&b.app));
        for draining in self.draining().iter() {
            in_flight += draining.app.in_flight() as u64;
        }
        HostRecord {
            id: self.inner.host_id.clone(),
            address: self.inner.config.address.clone(),
            modal_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.inner.started_at,
            age_ms: 0,
            apps,
            instances,
            in_flight,
            leads_schedules: self.inner.scheduler.leads(),
        }
    }

    fn failures(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (u64, String)>> {
        self.inner
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reports this host now (after a change, and every [`HEARTBEAT`]).
    pub(super) async fn report(&self) {
        if self.is_shutting_down() {
            // It leaves the list; a late report would put it back.
            return;
        }
        let record = self.host_record();
        if let Err(e) = self.inner.registry.heartbeat(&record).await {
            tracing::warn!("could not report this host: {e}");
        }
    }

    /// Leaves the other hosts (at shutdown): stops firing schedules, hands
    /// the lease and the spawned calls cut by the shutdown to them at
    /// once, and leaves the host list.
    pub(super) async fn leave(&self) {
        self.inner.scheduler.resign();
        let store = &self.inner.recorder.store;
        if let Err(e) = store.renew_calls(&self.inner.host_id, Duration::ZERO).await {
            tracing::warn!("could not hand over the unfinished spawned calls: {e}");
        }
        if let Err(e) = self.inner.registry.leave(&self.inner.host_id).await {
            tracing::warn!("could not leave the host list: {e}");
        }
    }

    /// The hosts that reported within [`ALIVE`], this one first.
    pub async fn hosts(&self) -> Result<Vec<HostRecord>, Error> {
        let mut hosts = self.inner.registry.hosts(ALIVE).await?;
        hosts.sort_by_key(|h| h.id != self.inner.host_id);
        Ok(hosts)
    }

    /// Starts the heartbeat, the application of other hosts' changes and
    /// the claims on spawned calls; each ends when the platform is dropped.
    pub(super) fn start_cluster(&self, mut changes: tokio::sync::broadcast::Receiver<String>) {
        let weak = std::sync::Arc::downgrade(&self.inner);
        self.spawn_task(async move {
            let mut heartbeat = tokio::time::interval(HEARTBEAT);
            loop {
                heartbeat.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let platform = Platform { inner };
                if platform.is_shutting_down() {
                    return;
                }
                platform.report().await;
            }
        });
        let weak = std::sync::Arc::downgrade(&self.inner);
        self.spawn_task(async move {
            use tokio::sync::broadcast::error::RecvError;
            let mut reconcile = tokio::time::interval(RECONCILE);
            reconcile.tick().await;
            loop {
                let app = tokio::select! {
                    change = changes.recv() => match change {
                        Ok(app) => app,
                        Err(RecvError::Lagged(_)) => EVERYTHING.to_string(),
                        Err(RecvError::Closed) => return,
                    },
                    _ = reconcile.tick() => EVERYTHING.to_string(),
                };
                let Some(inner) = weak.upgrade() else { return };
                let platform = Platform { inner };
                if platform.is_shutting_down() {
                    return;
                }
                let synced = if app == EVERYTHING {
                    platform.sync_all().await
                } else {
                    platform.sync_app(&app).await
                };
                if let Err(e) = synced {
                    tracing::warn!("could not apply the cluster's changes: {e}");
                }
            }
        });
        let weak = std::sync::Arc::downgrade(&self.inner);
        let lease = self.inner.config.lease;
        self.spawn_task(async move {
            let mut tick = tokio::time::interval((lease / 3).max(Duration::from_millis(10)));
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let platform = Platform { inner };
                if platform.is_shutting_down() {
                    return;
                }
                platform.claim_calls().await;
            }
        });
    }

    /// Renews this host's claims on the spawned calls it runs and claims
    /// those whose host is gone.
    async fn claim_calls(&self) {
        let store = &self.inner.recorder.store;
        let (id, lease) = (&self.inner.host_id, self.inner.config.lease);
        if let Err(e) = store.renew_calls(id, lease).await {
            tracing::warn!("could not renew the claims on spawned calls: {e}");
        }
        match store.claim_calls(id, lease, CLAIM_BATCH).await {
            Ok(calls) => {
                for call in calls {
                    tracing::info!(call = %call.id, app = %call.app, function = %call.function,
                        "running a spawned call whose host is gone");
                    self.run_spawned(call);
                }
            }
            Err(e) => tracing::warn!("could not claim spawned calls: {e}"),
        }
    }

    /// Brings every app in line with the registry.
    async fn sync_all(&self) -> Result<(), Error> {
        let records = self.inner.registry.apps().await?;
        let mut gone: Vec<String> = self.slots().keys().cloned().collect();
        gone.retain(|name| !records.iter().any(|r| &r.name == name));
        for record in records {
            let name = record.name.clone();
            self.apply(&name, Some(record)).await;
        }
        for name in gone {
            self.apply(&name, None).await;
        }
        self.inner.scheduler.reload_paused();
        Ok(())
    }

    /// Brings `app` in line with the registry (another host changed it).
    async fn sync_app(&self, app: &str) -> Result<(), Error> {
        let record = self.inner.registry.app(app).await?;
        self.apply(app, record).await;
        // Pauses and resumes come as changes too.
        self.inner.scheduler.reload_paused();
        Ok(())
    }

    /// Makes what this host serves of `app` match its `record`: loads and
    /// swaps in its live version (the old one drains), stops it, or
    /// forgets it. A version that fails to load here is reported; what
    /// served keeps serving.
    async fn apply(&self, app: &str, record: Option<AppRecord>) {
        let lock = self.deploy_lock(app);
        let _guard = lock.lock().await;
        let (serving, stopped, known) = match self.slots().get(app) {
            Some(Slot::Serving(loaded)) => (Some(loaded.meta().version), false, true),
            Some(Slot::Stopped) => (None, true, true),
            Some(Slot::Broken(_)) => (None, false, true),
            None => (None, false, false),
        };
        let settled = match &record {
            Some(r) if r.state == AppState::Deployed => {
                r.live_version.is_some() && serving == r.live_version
            }
            Some(_) => stopped,
            None => !known,
        };
        if settled {
            return;
        }
        // Read again under the lock: a deploy made here meanwhile may have
        // moved past `record`.
        let record = match self.inner.registry.app(app).await {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(app, "could not read the app: {e}");
                return;
            }
        };
        let changed = match record {
            Some(r) if r.state == AppState::Deployed && r.live_version.is_some() => {
                let version = r.live_version.unwrap_or_default();
                let failed = self.failures().get(app).map(|f| f.0) == Some(version);
                if serving == Some(version) || failed {
                    false
                } else {
                    match self.load_version(app, version).await {
                        Ok(loaded) => {
                            self.failures().remove(app);
                            self.go_live(app, loaded);
                            tracing::info!(
                                app,
                                version,
                                "serving the version another host deployed"
                            );
                        }
                        Err(e) => {
                            tracing::error!(app, version, "could not load the live version: {e}");
                            self.failures()
                                .insert(app.to_string(), (version, e.to_string()));
                            if serving.is_none() {
                                self.slots_mut()
                                    .insert(app.to_string(), Slot::Broken(e.to_string()));
                            }
                        }
                    }
                    true
                }
            }
            Some(_) => {
                let old = self.slots_mut().insert(app.to_string(), Slot::Stopped);
                let changed = !matches!(old, Some(Slot::Stopped));
                if let Some(Slot::Serving(old)) = old {
                    self.retire(old);
                    tracing::info!(app, "stopped by another host");
                }
                self.failures().remove(app);
                self.unpin(app).await;
                changed
            }
            None => {
                let old = self.slots_mut().remove(app);
                if let Some(Slot::Serving(old)) = &old {
                    self.retire(old.clone());
                }
                self.failures().remove(app);
                self.unpin(app).await;
                old.is_some()
            }
        };
        if changed {
            self.inner.scheduler.changed();
            self.report().await;
        }
    }

    /// Waits until every other live host reports `expect` for `app` (or
    /// could not load it, or stopped reporting), at most [`CONFIRM`];
    /// returns how each took it, this host first.
    pub(super) async fn confirm(&self, app: &str, expect: Expect) -> Vec<HostReport> {
        self.report().await;
        let me = HostReport {
            host: self.inner.host_id.clone(),
            address: self.inner.config.address.clone(),
            error: None,
        };
        let hosts = match self.inner.registry.hosts(ALIVE).await {
            Ok(hosts) => hosts,
            Err(e) => {
                tracing::warn!("could not read the other hosts: {e}");
                return vec![me];
            }
        };
        let mut waiting: Vec<String> = hosts
            .iter()
            .filter(|h| h.id != self.inner.host_id)
            .map(|h| h.id.clone())
            .collect();
        let mut reports = vec![me];
        let deadline = Instant::now() + CONFIRM;
        while !waiting.is_empty() {
            let hosts = match self.inner.registry.hosts(ALIVE).await {
                Ok(hosts) => hosts,
                Err(e) => {
                    tracing::warn!("could not read the other hosts: {e}");
                    Vec::new()
                }
            };
            let timed_out = Instant::now() >= deadline;
            waiting.retain(|id| {
                let host = hosts.iter().find(|h| &h.id == id);
                let error = match host {
                    // Its last report is too old: it died meanwhile.
                    None => Some("stopped reporting before it confirmed".to_string()),
                    Some(h) => match taken(h, app, expect) {
                        Some(outcome) => outcome.err(),
                        None if timed_out => {
                            Some(format!("did not confirm within {}s", CONFIRM.as_secs()))
                        }
                        None => return true,
                    },
                };
                reports.push(HostReport {
                    host: id.clone(),
                    address: host.map(|h| h.address.clone()).unwrap_or_default(),
                    error,
                });
                false
            });
            if !waiting.is_empty() {
                tokio::time::sleep(POLL).await;
            }
        }
        reports[1..].sort_by(|a, b| a.host.cmp(&b.host));
        reports
    }
}

/// Whether `host` reports `expect` for `app`: `Some(Ok)` when it does,
/// `Some(Err)` when it could not, `None` while it has not yet.
fn taken(host: &HostRecord, app: &str, expect: Expect) -> Option<Result<(), String>> {
    let entry = host.apps.iter().find(|a| a.app == app);
    match expect {
        Expect::Version(v) => {
            let entry = entry?;
            // A newer version means another deploy came after this one.
            if entry.version.is_some_and(|serving| serving >= v) {
                Some(Ok(()))
            } else if entry.failed_version == Some(v) {
                Some(Err(entry.error.clone().unwrap_or_default()))
            } else {
                None
            }
        }
        Expect::Stopped => match entry {
            Some(e) if e.version.is_some() => None,
            _ => Some(Ok(())),
        },
    }
}
