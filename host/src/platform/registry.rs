//! The registry: apps and their versions. [`Registry`] is the narrow
//! interface the rest of the host uses (a cluster would put it on
//! PostgreSQL); [`SqliteRegistry`] is the embedded default, one SQLite file.

use crate::error::Error;
use crate::spec::{AppSpec, PoolSettings};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

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
    fn as_str(self) -> &'static str {
        match self {
            AppState::Deployed => "deployed",
            AppState::Stopped => "stopped",
        }
    }

    fn parse(s: &str) -> AppState {
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

/// Where apps and versions are kept.
pub trait Registry: Send + Sync + 'static {
    /// Every app, by name.
    fn apps(&self) -> Result<Vec<AppRecord>, Error>;
    /// One app.
    fn app(&self, name: &str) -> Result<Option<AppRecord>, Error>;
    /// The versions of an app, oldest first.
    fn versions(&self, app: &str) -> Result<Vec<VersionRecord>, Error>;
    /// One version.
    fn version(&self, app: &str, version: u64) -> Result<Option<VersionRecord>, Error>;
    /// The number the next version of `app` gets.
    fn next_version(&self, app: &str) -> Result<u64, Error>;
    /// Records a version and makes it the live one, creating the app if
    /// needed, in one transaction: afterwards either both hold or neither.
    fn publish(&self, version: &VersionRecord, at: u64) -> Result<(), Error>;
    /// Marks an app stopped.
    fn stop(&self, app: &str, at: u64) -> Result<(), Error>;
    /// Apps stopped before `cutoff` (Unix ms).
    fn stopped_before(&self, cutoff: u64) -> Result<Vec<String>, Error>;
    /// Forgets an app and all its versions.
    fn delete_app(&self, app: &str) -> Result<(), Error>;
    /// Digests of every component some kept version uses.
    fn referenced_digests(&self) -> Result<HashSet<String>, Error>;
    /// The stored state of every schedule, by (app, function).
    fn schedules(&self) -> Result<HashMap<(String, String), ScheduleState>, Error>;
    /// Records fire times as taken, in one transaction, before they run:
    /// a fire time recorded here is never run again.
    fn record_fires(&self, fires: &[(String, String, u64)]) -> Result<(), Error>;
    /// Pauses or resumes a schedule.
    fn set_paused(&self, app: &str, function: &str, paused: bool) -> Result<(), Error>;
}

/// What is kept of one schedule between restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScheduleState {
    /// The last fire time taken (Unix ms).
    pub last_fire: Option<u64>,
    /// Whether it is paused.
    pub paused: bool,
}

/// The embedded registry: one SQLite file (WAL, full sync).
pub struct SqliteRegistry {
    conn: Mutex<Connection>,
}

/// The registry's schema as migrations (see `migrate.rs`). Append; never
/// edit.
const MIGRATIONS: &[&str] = &[
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
];

fn db(e: rusqlite::Error) -> Error {
    Error::Registry(e.to_string())
}

impl SqliteRegistry {
    /// Opens (creating if needed) the registry at `path`.
    pub fn open(path: &Path) -> Result<SqliteRegistry, Error> {
        let conn = Connection::open(path).map_err(db)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(db)?;
        let mut conn = conn;
        super::migrate::migrate(&mut conn, MIGRATIONS, "registry.db")?;
        Ok(SqliteRegistry {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
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

const VERSION_COLUMNS: &str = "app, version, digest, spec, env, deployed_at, deployer, tag, \
     git_commit, git_dirty, rollback_of, allow_http, notify, pool";

fn version_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRecord> {
    let json_error = |i: usize, e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    };
    let spec: String = row.get(3)?;
    let env: String = row.get(4)?;
    let commit: Option<String> = row.get(8)?;
    let dirty: Option<bool> = row.get(9)?;
    Ok(VersionRecord {
        app: row.get(0)?,
        version: row.get(1)?,
        digest: row.get(2)?,
        spec: serde_json::from_str(&spec).map_err(|e| json_error(3, e))?,
        env: serde_json::from_str(&env).map_err(|e| json_error(4, e))?,
        deployed_at: row.get(5)?,
        deployer: row.get(6)?,
        tag: row.get(7)?,
        git: commit.map(|commit| GitInfo {
            commit,
            dirty: dirty.unwrap_or(false),
        }),
        rollback_of: row.get(10)?,
        allow_http: serde_json::from_str(&row.get::<_, String>(11)?)
            .map_err(|e| json_error(11, e))?,
        notify: row.get(12)?,
        pool: serde_json::from_str(&row.get::<_, String>(13)?).map_err(|e| json_error(13, e))?,
    })
}

impl Registry for SqliteRegistry {
    fn apps(&self) -> Result<Vec<AppRecord>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT name, state, live_version, created_at, updated_at FROM apps ORDER BY name",
            )
            .map_err(db)?;
        let rows = stmt.query_map([], app_row).map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn app(&self, name: &str) -> Result<Option<AppRecord>, Error> {
        self.conn()
            .query_row(
                "SELECT name, state, live_version, created_at, updated_at FROM apps WHERE name = ?1",
                [name],
                app_row,
            )
            .optional()
            .map_err(db)
    }

    fn versions(&self, app: &str) -> Result<Vec<VersionRecord>, Error> {
        let conn = self.conn();
        let sql = format!("SELECT {VERSION_COLUMNS} FROM versions WHERE app = ?1 ORDER BY version");
        let mut stmt = conn.prepare(&sql).map_err(db)?;
        let rows = stmt.query_map([app], version_row).map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn version(&self, app: &str, version: u64) -> Result<Option<VersionRecord>, Error> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM versions WHERE app = ?1 AND version = ?2");
        self.conn()
            .query_row(&sql, params![app, version], version_row)
            .optional()
            .map_err(db)
    }

    fn next_version(&self, app: &str) -> Result<u64, Error> {
        let max: Option<u64> = self
            .conn()
            .query_row(
                "SELECT MAX(version) FROM versions WHERE app = ?1",
                [app],
                |r| r.get(0),
            )
            .map_err(db)?;
        Ok(max.unwrap_or(0) + 1)
    }

    fn publish(&self, v: &VersionRecord, at: u64) -> Result<(), Error> {
        let spec = serde_json::to_string(&v.spec).map_err(|e| Error::Registry(e.to_string()))?;
        let env = serde_json::to_string(&v.env).map_err(|e| Error::Registry(e.to_string()))?;
        let allow_http =
            serde_json::to_string(&v.allow_http).map_err(|e| Error::Registry(e.to_string()))?;
        let pool = serde_json::to_string(&v.pool).map_err(|e| Error::Registry(e.to_string()))?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        tx.execute(
            "INSERT INTO apps (name, state, live_version, created_at, updated_at) VALUES (?1, 'deployed', ?2, ?3, ?3)
             ON CONFLICT(name) DO UPDATE SET state = 'deployed', live_version = ?2, updated_at = ?3",
            params![v.app, v.version, at],
        )
        .map_err(db)?;
        tx.execute(
            &format!("INSERT INTO versions ({VERSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
            params![
                v.app,
                v.version,
                v.digest,
                spec,
                env,
                v.deployed_at,
                v.deployer,
                v.tag,
                v.git.as_ref().map(|g| &g.commit),
                v.git.as_ref().map(|g| g.dirty),
                v.rollback_of,
                allow_http,
                v.notify,
                pool,
            ],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    fn stop(&self, app: &str, at: u64) -> Result<(), Error> {
        let changed = self
            .conn()
            .execute(
                "UPDATE apps SET state = ?2, updated_at = ?3 WHERE name = ?1",
                params![app, AppState::Stopped.as_str(), at],
            )
            .map_err(db)?;
        if changed == 0 {
            return Err(Error::AppNotFound(app.to_string()));
        }
        Ok(())
    }

    fn stopped_before(&self, cutoff: u64) -> Result<Vec<String>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name FROM apps WHERE state = 'stopped' AND updated_at < ?1")
            .map_err(db)?;
        let rows = stmt.query_map([cutoff], |r| r.get(0)).map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn delete_app(&self, app: &str) -> Result<(), Error> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        tx.execute("DELETE FROM versions WHERE app = ?1", [app])
            .map_err(db)?;
        tx.execute("DELETE FROM apps WHERE name = ?1", [app])
            .map_err(db)?;
        tx.commit().map_err(db)
    }

    fn referenced_digests(&self) -> Result<HashSet<String>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT DISTINCT digest FROM versions")
            .map_err(db)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn schedules(&self) -> Result<HashMap<(String, String), ScheduleState>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT app, function, last_fire, paused FROM schedules")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    (r.get(0)?, r.get(1)?),
                    ScheduleState {
                        last_fire: r.get(2)?,
                        paused: r.get(3)?,
                    },
                ))
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn record_fires(&self, fires: &[(String, String, u64)]) -> Result<(), Error> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO schedules (app, function, last_fire) VALUES (?1, ?2, ?3)
                     ON CONFLICT(app, function) DO UPDATE SET last_fire = MAX(COALESCE(last_fire, 0), ?3)",
                )
                .map_err(db)?;
            for (app, function, at) in fires {
                stmt.execute(params![app, function, at]).map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    fn set_paused(&self, app: &str, function: &str, paused: bool) -> Result<(), Error> {
        self.conn()
            .execute(
                "INSERT INTO schedules (app, function, paused) VALUES (?1, ?2, ?3)
                 ON CONFLICT(app, function) DO UPDATE SET paused = ?3",
                params![app, function, paused],
            )
            .map(drop)
            .map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(app: &str, version: u64, digest: &str) -> VersionRecord {
        VersionRecord {
            app: app.into(),
            version,
            digest: digest.into(),
            spec: AppSpec {
                functions: vec![],
                sdk: None,
                has_enter: false,
                has_exit: false,
            },
            env: vec![("K".into(), "V".into())],
            allow_http: vec!["example.com".into()],
            notify: None,
            pool: PoolSettings::default(),
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

    #[test]
    fn a_registry_written_before_versioning_opens_with_its_versions() {
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
            registry.app("hello").unwrap().unwrap().live_version,
            Some(1)
        );
        let v = registry.version("hello", 1).unwrap().unwrap();
        assert_eq!((v.digest.as_str(), v.pool.is_empty()), ("abc", true));
        let schedules = registry.schedules().unwrap();
        let tick = &schedules[&("hello".to_string(), "tick".to_string())];
        assert_eq!((tick.last_fire, tick.paused), (Some(5000), true));
    }

    #[test]
    fn publish_makes_a_version_live_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        {
            let r = SqliteRegistry::open(&path).unwrap();
            assert_eq!(r.next_version("a").unwrap(), 1);
            r.publish(&version("a", 1, "d1"), 10).unwrap();
            r.publish(&version("a", 2, "d2"), 20).unwrap();
            assert!(
                r.publish(&version("a", 2, "d3"), 30).is_err(),
                "versions are immutable"
            );
        }
        let r = SqliteRegistry::open(&path).unwrap();
        let app = r.app("a").unwrap().unwrap();
        assert_eq!(
            (app.state, app.live_version, app.created_at, app.updated_at),
            (AppState::Deployed, Some(2), 10, 20)
        );
        assert_eq!(r.next_version("a").unwrap(), 3);
        let v = r.version("a", 1).unwrap().unwrap();
        assert_eq!(v.env, [("K".to_string(), "V".to_string())]);
        assert_eq!(
            v.git,
            Some(GitInfo {
                commit: "abc".into(),
                dirty: true
            })
        );
        assert_eq!(r.versions("a").unwrap().len(), 2);
    }

    #[test]
    fn stopped_apps_can_be_found_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let r = SqliteRegistry::open(&dir.path().join("r.db")).unwrap();
        r.publish(&version("a", 1, "d1"), 10).unwrap();
        r.publish(&version("b", 1, "d2"), 10).unwrap();
        r.stop("a", 50).unwrap();
        assert!(matches!(r.stop("zzz", 50), Err(Error::AppNotFound(_))));
        assert_eq!(r.stopped_before(40).unwrap(), Vec::<String>::new());
        assert_eq!(r.stopped_before(60).unwrap(), ["a"]);
        r.delete_app("a").unwrap();
        assert!(r.app("a").unwrap().is_none());
        assert_eq!(
            r.referenced_digests().unwrap(),
            HashSet::from(["d2".to_string()])
        );
    }
}
