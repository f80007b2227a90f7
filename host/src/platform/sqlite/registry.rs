//! [`SqliteRegistry`]: the registry as one SQLite file (WAL, full sync).

use super::{Db, to_json};
use crate::error::Error;
use crate::platform::registry::{
    AppRecord, AppState, Fire, GitInfo, HostRecord, Registry, ScheduleState, VersionRecord,
};
use rusqlite::{OptionalExtension, params};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::PoisonError;
use std::time::Duration;

/// The embedded registry: one SQLite file (WAL, full sync).
pub struct SqliteRegistry {
    db: Db,
    /// The one host's last report and when it came (a single host keeps
    /// it in memory: it is the only reader).
    host: std::sync::Mutex<Option<(HostRecord, std::time::Instant)>>,
    /// Never sent on: a single host applies its own changes as it makes
    /// them.
    changes: tokio::sync::broadcast::Sender<String>,
}

/// The registry's schema as migrations (see `migrate.rs`). Append; never
/// edit.
pub(crate) const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS apps (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    live_version INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    spec TEXT NOT NULL,
    env TEXT NOT NULL,
    deployed_at INTEGER NOT NULL,
    deployer TEXT NOT NULL,
    tag TEXT,
    git_commit TEXT,
    git_dirty INTEGER,
    rollback_of INTEGER,
    allow_http TEXT NOT NULL DEFAULT '[]',
    notify TEXT,
    PRIMARY KEY (app, version)
);
CREATE TABLE IF NOT EXISTS schedules (
    app TEXT NOT NULL,
    function TEXT NOT NULL,
    last_fire INTEGER,
    paused INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (app, function)
);",
    "ALTER TABLE versions ADD COLUMN pool TEXT NOT NULL DEFAULT '{}';",
    "ALTER TABLE versions ADD COLUMN allow_callers TEXT NOT NULL DEFAULT '[]';",
    "ALTER TABLE versions ADD COLUMN secrets TEXT NOT NULL DEFAULT '[]';",
    "ALTER TABLE versions ADD COLUMN mounts TEXT NOT NULL DEFAULT '[]';",
];

impl SqliteRegistry {
    /// Opens (creating if needed) the registry at `path`, bringing its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<SqliteRegistry, Error> {
        let pragmas = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                       PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";
        let db = Db::open(path, "registry.db", pragmas, MIGRATIONS)?;
        Ok(SqliteRegistry {
            db,
            host: std::sync::Mutex::new(None),
            changes: tokio::sync::broadcast::channel(1).0,
        })
    }
}

fn app_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AppRecord> {
    Ok(AppRecord {
        name: row.get(0)?,
        state: AppState::parse(&row.get::<_, String>(1)?),
        live_version: row.get(2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
    })
}

const APP_COLUMNS: &str = "name, state, live_version, created_at, updated_at";

const VERSION_COLUMNS: &str = "app, version, digest, spec, env, deployed_at, deployer, tag, \
     git_commit, git_dirty, rollback_of, allow_http, notify, pool, allow_callers, secrets, mounts";

fn version_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRecord> {
    fn json<T: serde::de::DeserializeOwned>(
        row: &rusqlite::Row<'_>,
        i: usize,
    ) -> rusqlite::Result<T> {
        let text: String = row.get(i)?;
        serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    }
    let commit: Option<String> = row.get(8)?;
    let dirty: Option<bool> = row.get(9)?;
    Ok(VersionRecord {
        app: row.get(0)?,
        version: row.get(1)?,
        digest: row.get(2)?,
        spec: json(row, 3)?,
        env: json(row, 4)?,
        deployed_at: row.get(5)?,
        deployer: row.get(6)?,
        tag: row.get(7)?,
        git: commit.map(|commit| GitInfo {
            commit,
            dirty: dirty.unwrap_or(false),
        }),
        rollback_of: row.get(10)?,
        allow_http: json(row, 11)?,
        notify: row.get(12)?,
        pool: json(row, 13)?,
        allow_callers: json(row, 14)?,
        secrets: json(row, 15)?,
        mounts: json(row, 16)?,
    })
}

#[async_trait::async_trait]
impl Registry for SqliteRegistry {
    async fn apps(&self) -> Result<Vec<AppRecord>, Error> {
        self.db
            .run("listing apps", |conn| {
                let sql = format!("SELECT {APP_COLUMNS} FROM apps ORDER BY name");
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map([], app_row)?;
                rows.collect()
            })
            .await
    }

    async fn app(&self, name: &str) -> Result<Option<AppRecord>, Error> {
        let name = name.to_string();
        self.db
            .run("reading an app", move |conn| {
                let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE name = ?1");
                conn.query_row(&sql, [name], app_row).optional()
            })
            .await
    }

    async fn versions(&self, app: &str) -> Result<Vec<VersionRecord>, Error> {
        let app = app.to_string();
        self.db
            .run("listing versions", move |conn| {
                let sql = format!(
                    "SELECT {VERSION_COLUMNS} FROM versions WHERE app = ?1 ORDER BY version"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map([app], version_row)?;
                rows.collect()
            })
            .await
    }

    async fn version(&self, app: &str, version: u64) -> Result<Option<VersionRecord>, Error> {
        let app = app.to_string();
        self.db
            .run("reading a version", move |conn| {
                let sql = format!(
                    "SELECT {VERSION_COLUMNS} FROM versions WHERE app = ?1 AND version = ?2"
                );
                conn.query_row(&sql, params![app, version], version_row)
                    .optional()
            })
            .await
    }

    async fn next_version(&self, app: &str) -> Result<u64, Error> {
        let app = app.to_string();
        let max: Option<u64> = self
            .db
            .run("numbering a version", move |conn| {
                conn.query_row(
                    "SELECT MAX(version) FROM versions WHERE app = ?1",
                    [app],
                    |r| r.get(0),
                )
            })
            .await?;
        Ok(max.unwrap_or(0) + 1)
    }

    async fn publish(&self, v: &VersionRecord, at: u64) -> Result<(), Error> {
        let v = v.clone();
        self.db
            .run("publishing a version", move |conn| {
                let tx = conn.transaction()?;
                tx.execute(
                    "INSERT INTO apps (name, state, live_version, created_at, updated_at) VALUES (?1, 'deployed', ?2, ?3, ?3)
                     ON CONFLICT(name) DO UPDATE SET state = 'deployed', live_version = ?2, updated_at = ?3",
                    params![v.app, v.version, at],
                )?;
                tx.execute(
                    &format!("INSERT INTO versions ({VERSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"),
                    params![
                        v.app,
                        v.version,
                        v.digest,
                        to_json(&v.spec)?,
                        to_json(&v.env)?,
                        v.deployed_at,
                        v.deployer,
                        v.tag,
                        v.git.as_ref().map(|g| &g.commit),
                        v.git.as_ref().map(|g| g.dirty),
                        v.rollback_of,
                        to_json(&v.allow_http)?,
                        v.notify,
                        to_json(&v.pool)?,
                        to_json(&v.allow_callers)?,
                        to_json(&v.secrets)?,
                        to_json(&v.mounts)?,
                    ],
                )?;
                tx.commit()
            })
            .await
    }

    async fn stop(&self, app: &str, at: u64) -> Result<(), Error> {
        let name = app.to_string();
        let changed = self
            .db
            .run("stopping an app", move |conn| {
                conn.execute(
                    "UPDATE apps SET state = ?2, updated_at = ?3 WHERE name = ?1",
                    params![name, AppState::Stopped.as_str(), at],
                )
            })
            .await?;
        if changed == 0 {
            return Err(Error::AppNotFound(app.to_string()));
        }
        Ok(())
    }

    async fn stopped_before(&self, cutoff: u64) -> Result<Vec<String>, Error> {
        self.db
            .run("listing stopped apps", move |conn| {
                let mut stmt = conn
                    .prepare("SELECT name FROM apps WHERE state = 'stopped' AND updated_at < ?1")?;
                let rows = stmt.query_map([cutoff], |r| r.get(0))?;
                rows.collect()
            })
            .await
    }

    async fn delete_app(&self, app: &str) -> Result<(), Error> {
        let app = app.to_string();
        self.db
            .run("deleting an app", move |conn| {
                let tx = conn.transaction()?;
                tx.execute("DELETE FROM versions WHERE app = ?1", [&app])?;
                tx.execute("DELETE FROM apps WHERE name = ?1", [&app])?;
                tx.commit()
            })
            .await
    }

    async fn referenced_digests(&self) -> Result<HashSet<String>, Error> {
        self.db
            .run("listing referenced artifacts", |conn| {
                let mut stmt = conn.prepare("SELECT DISTINCT digest FROM versions")?;
                let mut digests: HashSet<String> = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                // Mount archives are artifacts too.
                let mut stmt = conn.prepare("SELECT DISTINCT mounts FROM versions")?;
                for mounts in stmt.query_map([], |r| r.get::<_, String>(0))? {
                    let mounts: Vec<crate::platform::MountRecord> = serde_json::from_str(&mounts?)
                        .map_err(|e| {
                            rusqlite::Error::FromSqlConversionFailure(
                                0,
                                rusqlite::types::Type::Text,
                                Box::new(e),
                            )
                        })?;
                    digests.extend(mounts.into_iter().map(|m| m.digest));
                }
                Ok(digests)
            })
            .await
    }

    async fn schedules(&self) -> Result<HashMap<(String, String), ScheduleState>, Error> {
        self.db
            .run("reading schedules", |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT app, function, last_fire, paused FROM schedules")?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        (r.get(0)?, r.get(1)?),
                        ScheduleState {
                            last_fire: r.get(2)?,
                            paused: r.get(3)?,
                        },
                    ))
                })?;
                rows.collect()
            })
            .await
    }

    async fn record_fires(&self, fires: &[Fire], _fence: u64) -> Result<Vec<Fire>, Error> {
        // The state directory's lock makes this host the only scheduler.
        let fires = fires.to_vec();
        let taken = fires.clone();
        self.db
            .run("recording fire times", move |conn| {
                let tx = conn.transaction()?;
                {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO schedules (app, function, last_fire) VALUES (?1, ?2, ?3)
                         ON CONFLICT(app, function) DO UPDATE SET last_fire = MAX(COALESCE(last_fire, 0), ?3)",
                    )?;
                    for (app, function, at) in &fires {
                        stmt.execute(params![app, function, at])?;
                    }
                }
                tx.commit()
            })
            .await?;
        Ok(taken)
    }

    async fn set_paused(&self, app: &str, function: &str, paused: bool) -> Result<(), Error> {
        let (app, function) = (app.to_string(), function.to_string());
        self.db
            .run("pausing a schedule", move |conn| {
                conn.execute(
                    "INSERT INTO schedules (app, function, paused) VALUES (?1, ?2, ?3)
                     ON CONFLICT(app, function) DO UPDATE SET paused = ?3",
                    params![app, function, paused],
                )
                .map(drop)
            })
            .await
    }

    async fn take_lease(
        &self,
        _name: &str,
        _holder: &str,
        _ttl: Duration,
    ) -> Result<Option<u64>, Error> {
        // The state directory's lock already makes this host the only one.
        Ok(Some(1))
    }

    async fn heartbeat(&self, host: &HostRecord) -> Result<(), Error> {
        let mut slot = self.host.lock().unwrap_or_else(PoisonError::into_inner);
        *slot = Some((host.clone(), std::time::Instant::now()));
        Ok(())
    }

    async fn leave(&self, _host: &str) -> Result<(), Error> {
        *self.host.lock().unwrap_or_else(PoisonError::into_inner) = None;
        Ok(())
    }

    async fn hosts(&self, within: Duration) -> Result<Vec<HostRecord>, Error> {
        let slot = self.host.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(slot
            .iter()
            .filter(|(_, at)| at.elapsed() <= within)
            .map(|(host, at)| HostRecord {
                age_ms: at.elapsed().as_millis() as u64,
                ..host.clone()
            })
            .collect())
    }

    fn changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::registry::sample_version as version;
    use rusqlite::Connection;

    #[tokio::test]
    async fn a_registry_written_before_versioning_opens_with_its_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "INSERT INTO apps VALUES ('hello', 'deployed', 1, 1000, 1000);
                 INSERT INTO versions (app, version, digest, spec, env, deployed_at, deployer)
                   VALUES ('hello', 1, 'abc', '{\"functions\":[],\"sdk\":null,\"has_enter\":false,\"has_exit\":false}', '[]', 1000, 'me');
                 INSERT INTO schedules VALUES ('hello', 'tick', 5000, 1);",
            )
            .unwrap();
        }
        let registry = SqliteRegistry::open(&path).unwrap();
        assert_eq!(
            registry.app("hello").await.unwrap().unwrap().live_version,
            Some(1)
        );
        let v = registry.version("hello", 1).await.unwrap().unwrap();
        assert_eq!((v.digest.as_str(), v.pool.is_empty()), ("abc", true));
        let schedules = registry.schedules().await.unwrap();
        let tick = &schedules[&("hello".to_string(), "tick".to_string())];
        assert_eq!((tick.last_fire, tick.paused), (Some(5000), true));
    }

    #[tokio::test]
    async fn publish_makes_a_version_live_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        {
            let r = SqliteRegistry::open(&path).unwrap();
            assert_eq!(r.next_version("a").await.unwrap(), 1);
            r.publish(&version("a", 1, "d1"), 10).await.unwrap();
            r.publish(&version("a", 2, "d2"), 20).await.unwrap();
            assert!(
                r.publish(&version("a", 2, "d3"), 30).await.is_err(),
                "versions are immutable"
            );
        }
        let r = SqliteRegistry::open(&path).unwrap();
        let app = r.app("a").await.unwrap().unwrap();
        assert_eq!(
            (app.state, app.live_version, app.created_at, app.updated_at),
            (AppState::Deployed, Some(2), 10, 20)
        );
        assert_eq!(r.next_version("a").await.unwrap(), 3);
        let v = r.version("a", 1).await.unwrap().unwrap();
        assert_eq!(v.env, [("K".to_string(), "V".to_string())]);
        assert_eq!(
            v.git,
            Some(GitInfo {
                commit: "abc".into(),
                dirty: true
            })
        );
        assert_eq!(r.versions("a").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn stopped_apps_can_be_found_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let r = SqliteRegistry::open(&dir.path().join("r.db")).unwrap();
        r.publish(&version("a", 1, "d1"), 10).await.unwrap();
        r.publish(&version("b", 1, "d2"), 10).await.unwrap();
        r.stop("a", 50).await.unwrap();
        assert!(matches!(
            r.stop("zzz", 50).await,
            Err(Error::AppNotFound(_))
        ));
        assert_eq!(r.stopped_before(40).await.unwrap(), Vec::<String>::new());
        assert_eq!(r.stopped_before(60).await.unwrap(), ["a"]);
        r.delete_app("a").await.unwrap();
        assert!(r.app("a").await.unwrap().is_none());
        assert_eq!(
            r.referenced_digests().await.unwrap(),
            HashSet::from(["d2".to_string()])
        );
    }
}
