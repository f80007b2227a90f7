//! Changing what is deployed: deploy, rollback, stop and garbage
//! collection. Each holds the app's deploy lock, so two deploys of one app
//! never interleave; on any error nothing changes.

use super::backoff::Backoff;
use super::live::Slot;
use super::registry::{AppState, GitInfo, VersionRecord};
use super::{Platform, now_ms};
use crate::app::AppMeta;
use crate::compile::digest;
use crate::error::Error;
use crate::spec::{AppSpec, PoolSettings};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How many times a deploy or rollback takes the next version number when
/// other hosts' deploys of the app keep taking the one it read: enough for
/// a queue of deploys on each of several hosts at once.
const VERSION_RACES: u32 = 12;

/// How old an unreferenced artifact must be before it is collected (when
/// the retention is shorter, the retention).
const GC_GRACE: Duration = Duration::from_secs(3600);

/// What a deploy asks for besides the component.
#[derive(Clone, Debug, Default)]
pub struct DeployRequest {
    /// The app's name (a DNS label).
    pub name: String,
    /// Environment variables for the guest.
    pub env: Vec<(String, String)>,
    /// Hosts (`host` or `host:port`) the app may send HTTP requests to.
    pub allow_http: Vec<String>,
    /// Apps whose functions may call this app's functions (`*`: every
    /// app); calls within the app are always allowed.
    pub allow_callers: Vec<String>,
    /// Secrets whose variables the guest gets (their latest revisions).
    pub secrets: Vec<String>,
    /// Directories the guest sees read-only: archives stored with
    /// [`Platform::put_archive`] first.
    pub mounts: Vec<super::MountRecord>,
    /// Where failed scheduled runs are reported (a JSON POST); the
    /// platform's default when `None`.
    pub notify: Option<String>,
    /// A label for this version, shown in the history.
    pub tag: Option<String>,
    /// Who deploys.
    pub deployer: String,
    /// The commit deployed from.
    pub git: Option<GitInfo>,
    /// Pool settings for a plain `wasi:http` component.
    pub pool: PoolSettings,
}

/// The result of a deploy or rollback.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deployment {
    /// The app.
    pub app: String,
    /// The new live version.
    pub version: u64,
    /// The version it replaced, if any.
    pub previous: Option<u64>,
    /// SHA-256 of the component.
    pub digest: String,
    /// Size of the component in bytes.
    pub size: usize,
    /// What the component offers.
    pub spec: AppSpec,
    /// Whether compiled code came from the cache.
    pub compiled_from_cache: bool,
    /// Time spent compiling or loading compiled code, in ms.
    pub compile_ms: f64,
    /// Time the whole deploy took, in ms.
    pub took_ms: f64,
    /// For a rollback, the version whose code now runs.
    pub rollback_of: Option<u64>,
    /// The secrets attached, by name and revision.
    #[serde(default)]
    pub secrets: Vec<super::SecretRef>,
    /// The directories mounted.
    #[serde(default)]
    pub mounts: Vec<super::MountRecord>,
    /// How each live host took it, this one first (one entry on a single
    /// host).
    #[serde(default)]
    pub hosts: Vec<super::HostReport>,
}

/// What garbage collection removed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GcReport {
    /// Stopped apps forgotten.
    pub apps: Vec<String>,
    /// Artifacts deleted.
    pub artifacts: usize,
}

/// Checks that `name` is a DNS label: `[a-z0-9-]{1,63}`, no `-` at either
/// end and no `--` (which separates app and function in web host names).
pub fn validate_app_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidAppName(name.to_string()))
    }
}

/// Checks deploy-time environment variables: each key is a portable
/// variable name (`[A-Za-z_][A-Za-z0-9_]*`, at most 256 bytes) that does
/// not start with `MODAL_` (the host sets those), and no value holds a NUL.
pub fn validate_env(env: &[(String, String)]) -> Result<(), Error> {
    for (key, value) in env {
        let bad = |why: &str| {
            Err(Error::BadInput(format!(
                "environment variable `{}`: {why}",
                key.escape_debug()
            )))
        };
        let portable = key.len() <= 256
            && key
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !portable {
            return bad("a name is letters, digits and `_`, not starting with a digit");
        }
        if key.to_ascii_uppercase().starts_with("MODAL_") {
            return bad("names starting with `MODAL_` are set by the host");
        }
        if value.contains('\0') {
            return bad("a value cannot contain a NUL byte");
        }
    }
    Ok(())
}

/// Checks the apps granted to call an app: each is `*` or an app name.
pub fn validate_callers(callers: &[String]) -> Result<(), Error> {
    for caller in callers.iter().filter(|c| *c != "*") {
        if validate_app_name(caller).is_err() {
            return Err(Error::BadInput(format!(
                "--allow-caller `{}`: expected an app name or `*`",
                caller.escape_debug()
            )));
        }
    }
    Ok(())
}

impl Platform {
    /// Validates, compiles and describes `wasm`, stores it as the next
    /// version of `request.name` and makes it live. The version it replaces
    /// stops taking new executions at once and drains. On any error
    /// nothing changes: the previous version keeps serving.
    /// It runs to its end even if the caller stops waiting.
    pub async fn deploy(&self, wasm: &[u8], request: DeployRequest) -> Result<Deployment, Error> {
        self.check_upload(wasm.len())?;
        self.deploy_bytes(bytes::Bytes::copy_from_slice(wasm), request)
            .await
    }

    /// [`deploy`](Self::deploy) of bytes the caller already owns (no copy).
    pub(crate) async fn deploy_bytes(
        &self,
        wasm: bytes::Bytes,
        request: DeployRequest,
    ) -> Result<Deployment, Error> {
        validate_app_name(&request.name)?;
        validate_env(&request.env)?;
        validate_callers(&request.allow_callers)?;
        for name in &request.secrets {
            super::secrets::validate_secret_name(name)?;
        }
        self.check_upload(wasm.len())?;
        let this = self.clone();
        self.to_the_end(async move {
            let lock = this.deploy_lock(&request.name);
            let mut attempts = 0;
            let deployment = loop {
                let _deploying = lock.lock().await;
                attempts += 1;
                match this.publish(wasm.clone(), request.clone(), None).await {
                    // Another host's deploy took the number: the next one,
                    // after a pause without the lock.
                    Err(Error::VersionTaken { .. }) if attempts < VERSION_RACES => {
                        drop(_deploying);
                        Backoff::VERSION_RACE.wait(attempts).await;
                    }
                    result => break result?,
                }
            };
            Ok(this.confirmed(deployment).await)
        })
        .await
    }

    /// `deployment` once every other live host serves it (or said why
    /// not).
    async fn confirmed(&self, mut deployment: Deployment) -> Deployment {
        let expect = super::cluster::Expect::Version(deployment.version);
        let start = Instant::now();
        deployment.hosts = self.confirm(&deployment.app, expect).await;
        deployment.took_ms += start.elapsed().as_secs_f64() * 1e3;
        deployment
    }

    pub(super) fn check_upload(&self, size: usize) -> Result<(), Error> {
        let limit = self.inner.config.max_upload;
        if size > limit {
            return Err(Error::TooLarge { limit });
        }
        Ok(())
    }

    /// The deploy path shared by deploy and rollback; the caller holds the
    /// app's deploy lock.
    async fn publish(
        &self,
        wasm: bytes::Bytes,
        request: DeployRequest,
        rollback: Option<(u64, Vec<super::SecretRef>)>,
    ) -> Result<Deployment, Error> {
        let start = Instant::now();
        let _gc = self.inner.gc_lock.read().await;
        let (rollback_of, mut secrets) = match rollback {
            // A rollback brings back the secret revisions it ran with.
            Some((from, pinned)) => (Some(from), pinned),
            None => (None, self.latest_secrets(&request.secrets).await?),
        };
        let mounts = self.mount_records(&request.mounts).await?;
        let mount_dirs = self.mount_dirs(&mounts).await?;
        let version = self.inner.registry.next_version(&request.name).await?;
        let digest = digest(&wasm);
        let mut meta = AppMeta {
            secrets: self.secret_env(&secrets, &request.env).await?,
            mounts: mount_dirs,
            name: request.name.clone(),
            version,
            env: request.env.clone(),
            allow_http: request.allow_http.clone(),
            allow_callers: request.allow_callers.clone(),
            pool: request.pool.clone(),
        };
        let host = &self.inner.host;
        let (mut loaded, mut stats) = host.load_linked(&wasm, meta.clone(), self.links()).await?;
        // The secrets the code names are known once it described itself:
        // when it names more than the deploy gave, it is loaded again with
        // them (from the compiled-code cache).
        let named: Vec<String> = loaded
            .spec()
            .secrets
            .iter()
            .filter(|n| !secrets.iter().any(|s| &s.name == *n))
            .cloned()
            .collect();
        if !named.is_empty() {
            loaded.drain().await;
            secrets.extend(self.latest_secrets(&named).await?);
            meta.secrets = self.secret_env(&secrets, &request.env).await?;
            (loaded, stats) = host.load_linked(&wasm, meta, self.links()).await?;
        }
        let size = wasm.len();
        let record = VersionRecord {
            app: request.name.clone(),
            version,
            digest: digest.clone(),
            spec: loaded.spec().clone(),
            env: request.env,
            allow_http: request.allow_http,
            allow_callers: request.allow_callers,
            secrets,
            mounts,
            notify: request.notify,
            pool: request.pool,
            deployed_at: now_ms(),
            deployer: request.deployer,
            tag: request.tag,
            git: request.git,
            rollback_of,
        };
        // Stored only once it loaded: a rejected upload leaves nothing
        // behind. Stored before the version is published, so the live
        // version always has its artifact.
        let stored = match self.inner.artifacts.put(&digest, wasm).await {
            Ok(()) => {
                self.inner
                    .registry
                    .publish(&record, record.deployed_at)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            loaded.drain().await;
            return Err(e);
        }
        let previous = self.go_live(&request.name, loaded);
        self.inner.recorder.metrics.deployed();
        self.inner.scheduler.changed();
        match rollback_of {
            Some(from) => tracing::info!(app = %request.name, version, from, "rolled back"),
            None => {
                tracing::info!(app = %request.name, version, digest = &digest[..12], "deployed")
            }
        }
        Ok(Deployment {
            app: request.name,
            version,
            previous,
            digest,
            size,
            spec: record.spec,
            compiled_from_cache: stats.cached,
            compile_ms: stats.elapsed.as_secs_f64() * 1e3,
            took_ms: start.elapsed().as_secs_f64() * 1e3,
            rollback_of,
            secrets: record.secrets,
            mounts: record.mounts,
            hosts: Vec::new(),
        })
    }

    /// Stops an app: no new executions; those in progress drain. Returns
    /// once every live host stopped it, with how each took it. It runs
    /// to its end even if the caller stops waiting.
    pub async fn stop(&self, app: &str) -> Result<Vec<super::HostReport>, Error> {
        let (this, app) = (self.clone(), app.to_string());
        self.to_the_end(async move {
            this.stop_now(&app).await?;
            Ok(this.confirm(&app, super::cluster::Expect::Stopped).await)
        })
        .await
    }

    async fn stop_now(&self, app: &str) -> Result<(), Error> {
        let lock = self.deploy_lock(app);
        let _guard = lock.lock().await;
        match self.inner.registry.app(app).await? {
            None => return Err(Error::AppNotFound(app.to_string())),
            Some(record) if record.state == AppState::Stopped => {
                return Err(Error::AppStopped(app.to_string()));
            }
            Some(_) => {}
        }
        self.inner.registry.stop(app, now_ms()).await?;
        let old = self.slots_mut().insert(app.to_string(), Slot::Stopped);
        if let Some(Slot::Serving(old)) = old {
            self.retire(old);
        }
        self.unpin(app).await;
        self.inner.scheduler.changed();
        tracing::info!(app, "stopped");
        Ok(())
    }

    /// Makes an earlier version's code live again, as a new version.
    /// Without `version`, the one before the live version whose code
    /// differs (else simply the one before). It runs to its end even if
    /// the caller stops waiting.
    pub async fn rollback(
        &self,
        app: &str,
        version: Option<u64>,
        deployer: &str,
    ) -> Result<Deployment, Error> {
        let (this, app, deployer) = (self.clone(), app.to_string(), deployer.to_string());
        self.to_the_end(async move {
            let mut attempts = 0;
            let deployment = loop {
                attempts += 1;
                match this.rollback_now(&app, version, &deployer).await {
                    Err(Error::VersionTaken { .. }) if attempts < VERSION_RACES => {
                        Backoff::VERSION_RACE.wait(attempts).await;
                    }
                    result => break result?,
                }
            };
            Ok(this.confirmed(deployment).await)
        })
        .await
    }

    async fn rollback_now(
        &self,
        app: &str,
        version: Option<u64>,
        deployer: &str,
    ) -> Result<Deployment, Error> {
        let lock = self.deploy_lock(app);
        let _guard = lock.lock().await;
        let record = self
            .inner
            .registry
            .app(app)
            .await?
            .ok_or_else(|| Error::AppNotFound(app.to_string()))?;
        let target = match version {
            Some(v) => v,
            None => self.rollback_target(app, record.live_version).await?,
        };
        let old = self.version_record(app, target).await?;
        let bytes = self.inner.artifacts.get(&old.digest).await?;
        let request = DeployRequest {
            name: app.to_string(),
            env: old.env,
            allow_http: old.allow_http,
            allow_callers: old.allow_callers,
            secrets: Vec::new(),
            mounts: old.mounts,
            notify: old.notify,
            tag: old.tag,
            deployer: deployer.to_string(),
            git: old.git,
            pool: old.pool,
        };
        self.publish(bytes, request, Some((target, old.secrets)))
            .await
    }

    /// The version a rollback without a version goes back to.
    async fn rollback_target(&self, app: &str, live: Option<u64>) -> Result<u64, Error> {
        let live = live.unwrap_or(0);
        let versions = self.inner.registry.versions(app).await?;
        let live_digest = versions
            .iter()
            .find(|v| v.version == live)
            .map(|v| v.digest.clone());
        versions
            .iter()
            .rev()
            .find(|v| v.version < live && Some(&v.digest) != live_digest.as_ref())
            .or_else(|| versions.iter().rev().find(|v| v.version < live))
            .map(|v| v.version)
            .ok_or_else(|| {
                Error::WrongKind(format!(
                    "app `{app}` has no version before v{live} to roll back to"
                ))
            })
    }

    /// The record of `version` of `app`.
    pub(super) async fn version_record(
        &self,
        app: &str,
        version: u64,
    ) -> Result<VersionRecord, Error> {
        self.inner
            .registry
            .version(app, version)
            .await?
            .ok_or_else(|| Error::VersionNotFound {
                app: app.to_string(),
                version,
            })
    }

    /// Forgets apps stopped longer than the retention, then deletes
    /// artifacts (and their compiled code) that no kept version uses. It
    /// runs to its end even if the caller stops waiting.
    pub async fn gc(&self) -> Result<GcReport, Error> {
        let this = self.clone();
        self.to_the_end(async move { this.gc_now().await }).await
    }

    async fn gc_now(&self) -> Result<GcReport, Error> {
        let _exclusive = self.inner.gc_lock.write().await;
        let registry = &self.inner.registry;
        let cutoff = now_ms().saturating_sub(self.inner.config.retention.as_millis() as u64);
        let mut report = GcReport::default();
        for app in registry.stopped_before(cutoff).await? {
            // Its buckets go first: an app whose deletion failed is
            // collected again, one whose buckets outlived it is not.
            self.inner.kv.delete_app(&app).await?;
            registry.delete_app(&app).await?;
            self.slots_mut().remove(&app);
            tracing::info!(app, "garbage-collected stopped app");
            report.apps.push(app);
        }
        self.inner
            .recorder
            .store
            .prune(cutoff, &report.apps)
            .await?;
        let referenced = registry.referenced_digests().await?;
        // Artifacts stored in the last hour (at most the retention) may
        // belong to a deploy in progress on another host, not yet
        // published: they wait.
        let grace = GC_GRACE.min(self.inner.config.retention);
        let settled = now_ms().saturating_sub(grace.as_millis() as u64);
        for digest in self.inner.artifacts.list(settled).await? {
            if referenced.contains(&digest) {
                continue;
            }
            self.inner.artifacts.delete(&digest).await?;
            let _ = std::fs::remove_dir_all(self.inner.mounts_dir.join(&digest));
            if let Some(path) = self.inner.host.compiled_path(&digest) {
                let _ = std::fs::remove_file(path);
            }
            report.artifacts += 1;
        }
        Ok(report)
    }

    /// Runs [`gc`](Self::gc) every `period` until the platform is dropped.
    pub fn spawn_gc(&self, period: Duration) {
        let weak = std::sync::Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let platform = Platform { inner };
                if let Err(e) = platform.gc().await {
                    tracing::warn!("garbage collection failed: {e}");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{validate_app_name, validate_env};

    #[test]
    fn environment_names_are_checked() {
        let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        validate_env(&env("API_KEY", "a=b c")).unwrap();
        validate_env(&env("_x1", "")).unwrap();
        for (k, v) in [
            ("MODAL_APP_NAME", "x"),
            ("modal_function", "x"),
            ("HAS SPACE", "x"),
            ("1ST", "x"),
            ("", "x"),
            ("A\0B", "x"),
            ("OK", "nul\0inside"),
        ] {
            assert!(validate_env(&env(k, v)).is_err(), "{k:?}={v:?}");
        }
    }

    #[test]
    fn app_names_are_dns_labels() {
        for ok in ["hello", "a", "my-app-2", &"x".repeat(63)] {
            validate_app_name(ok).unwrap();
        }
        for bad in [
            "",
            "Hello",
            "-a",
            "a-",
            "a--b",
            "a_b",
            "a.b",
            &"x".repeat(64),
        ] {
            assert!(validate_app_name(bad).is_err(), "{bad:?}");
        }
    }
}
