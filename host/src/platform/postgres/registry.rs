//! [`PgRegistry`]: apps, versions, schedules, the scheduler lease and the
//! hosts' heartbeats in the cluster's database. Every change to an app is
//! announced (`NOTIFY modal_changes`) in the transaction that makes it, so
//! the other hosts hear of it once it is committed.

use super::{Pg, fail, to_i64, to_u64};
use crate::error::Error;
use crate::platform::registry::{
    AppRecord, AppState, EVERYTHING, Fire, GitInfo, HostRecord, Registry, ScheduleState,
    VersionRecord,
};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::broadcast;

/// The channel changes are announced on.
const CHANNEL: &str = "modal_changes";

/// The schema; append, never edit.
const MIGRATIONS: &[&str] = &["CREATE TABLE apps (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        live_version BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE versions (
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        version BIGINT NOT NULL,
        digest TEXT NOT NULL,
        spec TEXT NOT NULL,
        env TEXT NOT NULL,
        deployed_at BIGINT NOT NULL,
        deployer TEXT NOT NULL,
        tag TEXT,
        git_commit TEXT,
        git_dirty BOOLEAN,
        rollback_of BIGINT,
        allow_http TEXT NOT NULL,
        notify TEXT,
        pool TEXT NOT NULL,
        allow_callers TEXT NOT NULL,
        secrets TEXT NOT NULL,
        mounts TEXT NOT NULL,
        PRIMARY KEY (app, version)
    );
    CREATE TABLE schedules (
        app TEXT NOT NULL,
        function TEXT NOT NULL,
        last_fire BIGINT,
        paused BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (app, function)
    );
    CREATE TABLE fires (
        app TEXT NOT NULL,
        function TEXT NOT NULL,
        fire_at BIGINT NOT NULL,
        PRIMARY KEY (app, function, fire_at)
    );
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        token BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE hosts (
        id TEXT PRIMARY KEY,
        report TEXT NOT NULL,
        seen_at TIMESTAMPTZ NOT NULL
    );"];

const APP_COLUMNS: &str = "name, state, live_version, created_at, updated_at";

const VERSION_COLUMNS: &str = "app, version, digest, spec, env, deployed_at, deployer, tag, \
     git_commit, git_dirty, rollback_of, allow_http, notify, pool, allow_callers, secrets, mounts";

/// Hosts that have not reported for this long are forgotten.
const FORGET_HOSTS: &str = "1 hour";

/// The cluster's registry.
pub struct PgRegistry {
    pg: Pg,
    changes: broadcast::Sender<String>,
}

impl PgRegistry {
    /// The registry in `pg`, its schema brought up to date, listening for
    /// the changes other hosts announce (reconnecting by itself).
    pub async fn open(pg: Pg) -> Result<PgRegistry, Error> {
        pg.migrate("registry", MIGRATIONS).await?;
        let (changes, _) = broadcast::channel(1024);
        tokio::spawn(listen(pg.clone(), changes.downgrade()));
        Ok(PgRegistry { pg, changes })
    }
}

/// Keeps a connection listening on [`CHANNEL`] and passes what it hears to
/// `changes`, until the registry is dropped. After a lost connection it
/// reconnects and sends [`EVERYTHING`]: what was announced meanwhile was
/// missed.
async fn listen(pg: Pg, changes: broadcast::WeakSender<String>) {
    let mut failures = 0u32;
    loop {
        match pg.listener(CHANNEL).await {
            Ok(mut stream) => {
                if failures > 0 {
                    tracing::info!("listening for cluster changes again");
                }
                failures = 0;
                let Some(tx) = changes.upgrade() else { return };
                let _ = tx.send(EVERYTHING.to_string());
                drop(tx);
                while let Some(message) = stream.next().await {
                    let Some(tx) = changes.upgrade() else { return };
                    let _ = tx.send(message);
                }
                tracing::warn!("lost the connection that listens for cluster changes");
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!("cannot listen for cluster changes: {e}");
                }
                failures += 1;
            }
        }
        if changes.upgrade().is_none() {
            return;
        }
        let backoff = crate::platform::backoff::Backoff {
            first: Duration::from_millis(200),
            max: Duration::from_secs(5),
        };
        backoff.wait(failures.max(1)).await;
    }
}

fn json<T: serde::de::DeserializeOwned>(row: &tokio_postgres::Row, i: usize) -> Result<T, Error> {
    let text: String = row.get(i);
    serde_json::from_str(&text).map_err(|e| Error::storage("postgres: reading a record", e))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Records of plain data always serialize.
    serde_json::to_string(value).unwrap_or_default()
}

fn app_row(row: &tokio_postgres::Row) -> AppRecord {
    AppRecord {
        name: row.get(0),
        state: AppState::parse(row.get(1)),
        live_version: row.get::<_, Option<i64>>(2).map(to_u64),
        created_at: to_u64(row.get(3)),
        updated_at: to_u64(row.get(4)),
    }
}

fn version_row(row: &tokio_postgres::Row) -> Result<VersionRecord, Error> {
    let commit: Option<String> = row.get(8);
    let dirty: Option<bool> = row.get(9);
    Ok(VersionRecord {
        app: row.get(0),
        version: to_u64(row.get(1)),
        digest: row.get(2),
        spec: json(row, 3)?,
        env: json(row, 4)?,
        deployed_at: to_u64(row.get(5)),
        deployer: row.get(6),
        tag: row.get(7),
        git: commit.map(|commit| GitInfo {
            commit,
            dirty: dirty.unwrap_or(false),
        }),
        rollback_of: row.get::<_, Option<i64>>(10).map(to_u64),
        allow_http: json(row, 11)?,
        notify: row.get(12),
        pool: json(row, 13)?,
        allow_callers: json(row, 14)?,
        secrets: json(row, 15)?,
        mounts: json(row, 16)?,
    })
}

/// Announces a change to `app` when the transaction commits.
async fn announce(
    tx: &tokio_postgres::Transaction<'_>,
    app: &str,
    doing: &str,
) -> Result<(), Error> {
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &app])
        .await
        .map_err(fail(doing))?;
    Ok(())
}

impl PgRegistry {
    /// Runs `sql` on `app` and announces the change, in one transaction;
    /// returns the rows changed.
    async fn change(
        &self,
        doing: &str,
        app: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, Error> {
        let mut client = self.pg.client(doing).await?;
        let tx = client.transaction().await.map_err(fail(doing))?;
        let changed = tx.execute(sql, params).await.map_err(fail(doing))?;
        announce(&tx, app, doing).await?;
        tx.commit().await.map_err(fail(doing))?;
        Ok(changed)
    }
}

#[async_trait::async_trait]
impl Registry for PgRegistry {
    async fn apps(&self) -> Result<Vec<AppRecord>, Error> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps ORDER BY name");
        let rows = self.pg.query("listing apps", &sql, &[]).await?;
        Ok(rows.iter().map(app_row).collect())
    }

    async fn app(&self, name: &str) -> Result<Option<AppRecord>, Error> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE name = $1");
        let rows = self.pg.query("reading an app", &sql, &[&name]).await?;
        Ok(rows.first().map(app_row))
    }

    async fn versions(&self, app: &str) -> Result<Vec<VersionRecord>, Error> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM versions WHERE app = $1 ORDER BY version");
        let rows = self.pg.query("listing versions", &sql, &[&app]).await?;
        rows.iter().map(version_row).collect()
    }

    async fn version(&self, app: &str, version: u64) -> Result<Option<VersionRecord>, Error> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM versions WHERE app = $1 AND version = $2");
        let rows = self
            .pg
            .query("reading a version", &sql, &[&app, &to_i64(version)])
            .await?;
        rows.first().map(version_row).transpose()
    }

    async fn next_version(&self, app: &str) -> Result<u64, Error> {
        let rows = self
            .pg
            .query(
                "numbering a version",
                "SELECT MAX(version) FROM versions WHERE app = $1",
                &[&app],
            )
            .await?;
        let max: Option<i64> = rows.first().and_then(|r| r.get(0));
        Ok(max.map_or(0, to_u64) + 1)
    }

    async fn publish(&self, v: &VersionRecord, at: u64) -> Result<(), Error> {
        let doing = "publishing a version";
        let mut client = self.pg.client(doing).await?;
        let tx = client.transaction().await.map_err(fail(doing))?;
        let (version, at) = (to_i64(v.version), to_i64(at));
        tx.execute(
            "INSERT INTO apps (name, state, live_version, created_at, updated_at)
             VALUES ($1, 'deployed', $2, $3, $3)
             ON CONFLICT (name) DO UPDATE SET state = 'deployed', live_version = $2, updated_at = $3",
            &[&v.app, &version, &at],
        )
        .await
        .map_err(fail(doing))?;
        let sql = format!(
            "INSERT INTO versions ({VERSION_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        );
        tx.execute(
            &sql,
            &[
                &v.app,
                &version,
                &v.digest,
                &to_json(&v.spec),
                &to_json(&v.env),
                &to_i64(v.deployed_at),
                &v.deployer,
                &v.tag,
                &v.git.as_ref().map(|g| g.commit.clone()),
                &v.git.as_ref().map(|g| g.dirty),
                &v.rollback_of.map(to_i64),
                &to_json(&v.allow_http),
                &v.notify,
                &to_json(&v.pool),
                &to_json(&v.allow_callers),
                &to_json(&v.secrets),
                &to_json(&v.mounts),
            ],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                Error::VersionTaken {
                    app: v.app.clone(),
                    version: v.version,
                }
            } else {
                fail(doing)(e)
            }
        })?;
        announce(&tx, &v.app, doing).await?;
        tx.commit().await.map_err(fail(doing))
    }

    async fn stop(&self, app: &str, at: u64) -> Result<(), Error> {
        let changed = self
            .change(
                "stopping an app",
                app,
                "UPDATE apps SET state = 'stopped', updated_at = $2 WHERE name = $1",
                &[&app, &to_i64(at)],
            )
            .await?;
        if changed == 0 {
            return Err(Error::AppNotFound(app.to_string()));
        }
        Ok(())
    }

    async fn stopped_before(&self, cutoff: u64) -> Result<Vec<String>, Error> {
        let rows = self
            .pg
            .query(
                "listing stopped apps",
                "SELECT name FROM apps WHERE state = 'stopped' AND updated_at < $1",
                &[&to_i64(cutoff)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn delete_app(&self, app: &str) -> Result<(), Error> {
        // Versions go with it (ON DELETE CASCADE).
        self.change(
            "deleting an app",
            app,
            "DELETE FROM apps WHERE name = $1",
            &[&app],
        )
        .await
        .map(drop)
    }

    async fn referenced_digests(&self) -> Result<HashSet<String>, Error> {
        let rows = self
            .pg
            .query(
                "listing referenced artifacts",
                "SELECT DISTINCT digest FROM versions",
                &[],
            )
            .await?;
        let mut digests: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        // Mount archives are artifacts too.
        let rows = self
            .pg
            .query(
                "listing referenced artifacts",
                "SELECT DISTINCT mounts FROM versions",
                &[],
            )
            .await?;
        for row in &rows {
            let mounts: Vec<crate::platform::MountRecord> = json(row, 0)?;
            digests.extend(mounts.into_iter().map(|m| m.digest));
        }
        Ok(digests)
    }

    async fn schedules(&self) -> Result<HashMap<(String, String), ScheduleState>, Error> {
        let rows = self
            .pg
            .query(
                "reading schedules",
                "SELECT app, function, last_fire, paused FROM schedules",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let state = ScheduleState {
                    last_fire: r.get::<_, Option<i64>>(2).map(to_u64),
                    paused: r.get(3),
                };
                ((r.get(0), r.get(1)), state)
            })
            .collect())
    }

    async fn record_fires(&self, fires: &[Fire], fence: u64) -> Result<Vec<Fire>, Error> {
        let doing = "recording fire times";
        let mut client = self.pg.client(doing).await?;
        let tx = client.transaction().await.map_err(fail(doing))?;
        // The fencing check: a host whose lease was taken over (it paused,
        // or lost the database for longer than its lease) records nothing.
        let holds = tx
            .query_opt(
                "SELECT 1 FROM leases WHERE name = 'scheduler' AND token = $1 FOR SHARE",
                &[&to_i64(fence)],
            )
            .await
            .map_err(fail(doing))?;
        if holds.is_none() {
            return Err(Error::NotLeader("scheduler".into()));
        }
        let insert = tx
            .prepare_cached(
                "INSERT INTO fires (app, function, fire_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(fail(doing))?;
        let last = tx
            .prepare_cached(
                "INSERT INTO schedules (app, function, last_fire) VALUES ($1, $2, $3)
                 ON CONFLICT (app, function)
                 DO UPDATE SET last_fire = GREATEST(COALESCE(schedules.last_fire, 0), $3)",
            )
            .await
            .map_err(fail(doing))?;
        let mut taken = Vec::with_capacity(fires.len());
        for fire in fires {
            let (app, function, at) = fire;
            let at = to_i64(*at);
            // The unique key: a fire time is taken once, whoever asks.
            if tx
                .execute(&insert, &[app, function, &at])
                .await
                .map_err(fail(doing))?
                == 1
            {
                tx.execute(&last, &[app, function, &at])
                    .await
                    .map_err(fail(doing))?;
                taken.push(fire.clone());
            }
        }
        tx.commit().await.map_err(fail(doing))?;
        Ok(taken)
    }

    async fn set_paused(&self, app: &str, function: &str, paused: bool) -> Result<(), Error> {
        self.change(
            "pausing a schedule",
            app,
            "INSERT INTO schedules (app, function, paused) VALUES ($1, $2, $3)
             ON CONFLICT (app, function) DO UPDATE SET paused = $3",
            &[&app, &function, &paused],
        )
        .await
        .map(drop)
    }

    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, Error> {
        // The database's clock decides, so hosts' clocks need not agree.
        let ttl_ms = to_i64(ttl.as_millis() as u64);
        let rows = self
            .pg
            .query(
                "taking a lease",
                "INSERT INTO leases (name, holder, token, expires_at)
                 VALUES ($1, $2, 1, now() + $3::BIGINT * interval '1 millisecond')
                 ON CONFLICT (name) DO UPDATE SET
                     token = CASE WHEN leases.holder = $2 THEN leases.token ELSE leases.token + 1 END,
                     holder = $2,
                     expires_at = now() + $3::BIGINT * interval '1 millisecond'
                 WHERE leases.holder = $2 OR leases.expires_at < now()
                 RETURNING token",
                &[&name, &holder, &ttl_ms],
            )
            .await?;
        Ok(rows.first().map(|r| to_u64(r.get(0))))
    }

    async fn heartbeat(&self, host: &HostRecord) -> Result<(), Error> {
        let report = to_json(host);
        self.pg
            .query(
                "reporting this host",
                "INSERT INTO hosts (id, report, seen_at) VALUES ($1, $2, now())
             ON CONFLICT (id) DO UPDATE SET report = $2, seen_at = now()",
                &[&host.id, &report],
            )
            .await?;
        // Hosts gone for long leave the table here, once per heartbeat,
        // not on every read (a waiting deploy reads the hosts every few
        // milliseconds).
        self.pg
            .query(
                "forgetting old hosts",
                &format!("DELETE FROM hosts WHERE seen_at < now() - interval '{FORGET_HOSTS}'"),
                &[],
            )
            .await?;
        Ok(())
    }

    async fn leave(&self, host: &str) -> Result<(), Error> {
        let doing = "leaving the cluster";
        let mut client = self.pg.client(doing).await?;
        let tx = client.transaction().await.map_err(fail(doing))?;
        tx.execute("DELETE FROM hosts WHERE id = $1", &[&host])
            .await
            .map_err(fail(doing))?;
        tx.execute(
            "UPDATE leases SET expires_at = now() - interval '1 second' WHERE holder = $1",
            &[&host],
        )
        .await
        .map_err(fail(doing))?;
        tx.commit().await.map_err(fail(doing))
    }

    async fn hosts(&self, within: Duration) -> Result<Vec<HostRecord>, Error> {
        let within_ms = to_i64(within.as_millis() as u64);
        let rows = self
            .pg
            .query(
                "listing hosts",
                "SELECT report, (EXTRACT(EPOCH FROM (now() - seen_at)) * 1000)::BIGINT,
                     EXISTS (SELECT 1 FROM leases WHERE name = 'scheduler'
                             AND holder = hosts.id AND expires_at > now())
                 FROM hosts
                 WHERE seen_at >= now() - $1::BIGINT * interval '1 millisecond' ORDER BY id",
                &[&within_ms],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let mut host: HostRecord = json(r, 0)?;
                host.age_ms = to_u64(r.get(1));
                // The lease as it stands, not as the host last reported it
                // (a dead leader's report says it still leads).
                host.leads_schedules = r.get(2);
                Ok(host)
            })
            .collect()
    }

    fn changes(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}
