//! The versions in memory: per app name its serving version (or why there
//! is none), the replaced versions still draining, and the non-live
//! versions pinned for `--version` calls. Also loading versions from the
//! stores, at start-up and on demand, and shutting them all down.

use super::Platform;
use super::registry::AppState;
use crate::app::{AppMeta, LoadedApp};
use crate::error::Error;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Non-live versions kept loaded for `--version` calls.
const MAX_PINNED: usize = 16;

/// The state of one app name in memory.
pub(super) enum Slot {
    Serving(LoadedApp),
    Stopped,
    /// The live version could not be loaded at start-up.
    Broken(String),
}

/// A replaced version finishing its executions.
pub(super) struct Draining {
    pub(super) app: LoadedApp,
    pub(super) deadline: Instant,
}

/// A non-live version loaded for calls that name it.
struct Pinned {
    loaded: LoadedApp,
    /// When a call last used it (the least recently used goes first).
    used: Instant,
}

impl Pinned {
    fn is(&self, app: &str, version: u64) -> bool {
        self.loaded.meta().name == app && self.loaded.meta().version == version
    }
}

/// The versions in memory.
#[derive(Default)]
pub(super) struct Live {
    slots: RwLock<HashMap<String, Slot>>,
    draining: Mutex<Vec<Draining>>,
    pinned: tokio::sync::Mutex<Vec<Pinned>>,
}

impl Platform {
    pub(super) fn slots(&self) -> RwLockReadGuard<'_, HashMap<String, Slot>> {
        let live = &self.inner.live;
        live.slots.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn slots_mut(&self) -> RwLockWriteGuard<'_, HashMap<String, Slot>> {
        let live = &self.inner.live;
        live.slots.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn draining(&self) -> std::sync::MutexGuard<'_, Vec<Draining>> {
        let live = &self.inner.live;
        live.draining.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Loads the live version of every deployed app.
    pub(super) async fn restore(&self) -> Result<(), Error> {
        for app in self.inner.registry.apps().await? {
            let slot = match (app.state, app.live_version) {
                (AppState::Deployed, Some(version)) => {
                    match self.load_version(&app.name, version).await {
                        Ok(loaded) => Slot::Serving(loaded),
                        Err(e) => {
                            tracing::error!(app = %app.name, version, "could not load the live version: {e}");
                            Slot::Broken(e.to_string())
                        }
                    }
                }
                _ => Slot::Stopped,
            };
            self.slots_mut().insert(app.name, slot);
        }
        Ok(())
    }

    /// Loads a recorded version from the artifact store.
    pub(super) async fn load_version(&self, app: &str, version: u64) -> Result<LoadedApp, Error> {
        let record = self.version_record(app, version).await?;
        let bytes = self.inner.artifacts.get(&record.digest).await?;
        let secrets = self.secret_env(&record.secrets, &record.env).await?;
        let mounts = self.mount_dirs(&record.mounts).await?;
        let meta = AppMeta {
            secrets,
            mounts,
            name: app.to_string(),
            version,
            env: record.env,
            allow_http: record.allow_http,
            allow_callers: record.allow_callers,
            pool: record.pool,
        };
        let (loaded, _) = self
            .inner
            .host
            .load_linked(&bytes, meta, self.links())
            .await?;
        Ok(loaded)
    }

    /// Makes `loaded` the serving version; the one it replaces drains.
    pub(super) fn go_live(&self, app: &str, loaded: LoadedApp) -> Option<u64> {
        let old = self
            .slots_mut()
            .insert(app.to_string(), Slot::Serving(loaded));
        match old {
            Some(Slot::Serving(old)) => {
                let version = old.meta().version;
                self.retire(old);
                Some(version)
            }
            _ => None,
        }
    }

    /// Drains a version that no longer serves, cancelling what is still
    /// running at the drain deadline.
    pub(super) fn retire(&self, old: LoadedApp) {
        let timeout = self.inner.config.drain_timeout;
        self.draining().push(Draining {
            app: old.clone(),
            deadline: Instant::now() + timeout,
        });
        let platform = self.clone();
        self.spawn_task(async move {
            if tokio::time::timeout(timeout, old.drain()).await.is_err() {
                let stragglers = old.in_flight();
                tracing::warn!(
                    app = %old.meta().name,
                    version = old.meta().version,
                    stragglers,
                    "drain deadline passed; cancelling executions still in progress"
                );
                old.cancel("its version was replaced and the drain deadline passed");
                old.drain().await;
            }
            platform
                .draining()
                .retain(|d| !Arc::ptr_eq(&d.app.inner, &old.inner));
            let meta = old.meta();
            platform
                .inner
                .recorder
                .metrics
                .forget(&meta.name, meta.version);
        });
    }

    /// The serving version of `app`, or why there is none.
    pub fn live(&self, app: &str) -> Result<LoadedApp, Error> {
        match self.slots().get(app) {
            Some(Slot::Serving(loaded)) => Ok(loaded.clone()),
            Some(Slot::Stopped) => Err(Error::AppStopped(app.to_string())),
            Some(Slot::Broken(e)) => {
                Err(Error::Internal(format!("app `{app}` failed to load: {e}")))
            }
            None => Err(Error::AppNotFound(app.to_string())),
        }
    }

    /// A kept version of `app`: the live one, or another loaded on demand
    /// from its cached compiled code.
    pub async fn version(&self, app: &str, version: u64) -> Result<LoadedApp, Error> {
        let live = self.live(app)?;
        if live.meta().version == version {
            return Ok(live);
        }
        let mut pinned = self.inner.live.pinned.lock().await;
        if let Some(entry) = pinned.iter_mut().find(|p| p.is(app, version)) {
            entry.used = Instant::now();
            return Ok(entry.loaded.clone());
        }
        let loaded = self.load_version(app, version).await?;
        if pinned.len() >= MAX_PINNED
            && let Some(oldest) = (0..pinned.len()).min_by_key(|&i| pinned[i].used)
        {
            let evicted = pinned.remove(oldest);
            self.retire(evicted.loaded);
        }
        pinned.push(Pinned {
            loaded: loaded.clone(),
            used: Instant::now(),
        });
        Ok(loaded)
    }

    /// Drops the pinned versions of `app` (it was stopped).
    pub(super) async fn unpin(&self, app: &str) {
        let mut pinned = self.inner.live.pinned.lock().await;
        let (gone, kept): (Vec<_>, Vec<_>) =
            pinned.drain(..).partition(|p| p.loaded.meta().name == app);
        *pinned = kept;
        drop(pinned);
        for p in gone {
            self.retire(p.loaded);
        }
    }

    /// Every version in memory: serving, draining and pinned.
    async fn every_version(&self) -> Vec<LoadedApp> {
        let mut apps: Vec<LoadedApp> = self
            .slots()
            .values()
            .filter_map(|s| match s {
                Slot::Serving(l) => Some(l.clone()),
                _ => None,
            })
            .collect();
        apps.extend(self.draining().iter().map(|d| d.app.clone()));
        let pinned = self.inner.live.pinned.lock().await;
        apps.extend(pinned.iter().map(|p| p.loaded.clone()));
        apps
    }

    /// Stops every version from taking new executions and waits up to
    /// `grace` for those in progress; the rest are cancelled (and
    /// recorded so). Spawned calls cut this way stay pending and run again
    /// at the next start. Returns once every record is stored.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner
            .shutting_down
            .store(true, std::sync::atomic::Ordering::Release);
        let apps = self.every_version().await;
        for app in &apps {
            app.close();
        }
        let drain_all = async {
            for app in &apps {
                app.drain().await;
            }
        };
        if tokio::time::timeout(grace, drain_all).await.is_err() {
            for app in &apps {
                app.cancel("the host is shutting down");
                app.drain().await;
            }
        }
        // Let cancelled executions reach the recorder, then store them.
        tokio::task::yield_now().await;
        self.inner.recorder.flush().await;
        self.leave().await;
    }
}
