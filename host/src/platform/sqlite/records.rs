//! [`SqliteRecords`]: executions and spawned calls in one SQLite file
//! (`executions.db`, WAL, normal sync: a crash may lose the last
//! executions, never a spawned call, whose insert is its own transaction).

use super::Db;
use crate::app::Trigger;
use crate::error::{Error, Outcome};
use crate::platform::records::{
    Buckets, CallEnd, CallParent, CallRecord, CallState, ExecutionPage, ExecutionQuery,
    ExecutionRecord, RecordStore, Sample, SpawnedCall, Usage, buckets_of, like_pattern, page_of,
};
use rusqlite::{OptionalExtension, params};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The embedded store of executions and spawned calls.
pub struct SqliteRecords {
    db: Db,
}

/// The schema as a list of migrations: entry `i` takes a database from
/// version `i` (its `PRAGMA user_version`) to `i + 1`. A database written
/// before versioning reads as version 0 and its tables already exist, so
/// the first step only creates what is missing. Append; never edit.
pub(crate) const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS executions (
        id INTEGER PRIMARY KEY,
        app TEXT NOT NULL,
        version INTEGER NOT NULL,
        function TEXT NOT NULL,
        trigger TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        duration_ms REAL NOT NULL,
        outcome TEXT NOT NULL,
        error TEXT,
        logs TEXT NOT NULL,
        memory INTEGER NOT NULL,
        run_id TEXT
    );
    CREATE INDEX IF NOT EXISTS executions_by_app ON executions (app, id);
    CREATE TABLE IF NOT EXISTS calls (
        id TEXT PRIMARY KEY,
        app TEXT NOT NULL,
        function TEXT NOT NULL,
        version INTEGER,
        input BLOB NOT NULL,
        state TEXT NOT NULL,
        output BLOB,
        error TEXT,
        error_kind TEXT,
        created_at INTEGER NOT NULL,
        finished_at INTEGER
    );",
    "ALTER TABLE executions ADD COLUMN call_id TEXT;
    ALTER TABLE executions ADD COLUMN http_status INTEGER;",
    "ALTER TABLE executions ADD COLUMN parent_call_id TEXT;
    ALTER TABLE executions ADD COLUMN root_call_id TEXT;
    ALTER TABLE executions ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX executions_by_root ON executions (root_call_id) WHERE root_call_id IS NOT NULL;
    CREATE INDEX executions_by_call ON executions (call_id) WHERE call_id IS NOT NULL;
    ALTER TABLE calls ADD COLUMN caller_app TEXT;
    ALTER TABLE calls ADD COLUMN parent_call_id TEXT;
    ALTER TABLE calls ADD COLUMN root_call_id TEXT;
    ALTER TABLE calls ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;",
    "ALTER TABLE calls ADD COLUMN owner TEXT;
    ALTER TABLE calls ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX calls_pending ON calls (created_at) WHERE state = 'pending';",
    // The pages read an app's executions by time (charts, the logs view).
    "CREATE INDEX executions_by_app_time ON executions (app, started_at);",
];

/// Duration in ms, whether it failed, memory: one run, for usage figures.
type Run = (f64, bool, u64);

impl SqliteRecords {
    /// Opens (creating if needed) the store at `path`, bringing its schema
    /// up to date.
    pub fn open(path: &Path) -> Result<SqliteRecords, Error> {
        let pragmas =
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;";
        let db = Db::open(path, "executions.db", pragmas, MIGRATIONS)?;
        Ok(SqliteRecords { db })
    }
}

fn parse_outcome(s: &str) -> Outcome {
    Outcome::parse(s).unwrap_or(Outcome::Rejected)
}

fn execution_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    Ok(ExecutionRecord {
        id: row.get(0)?,
        app: row.get(1)?,
        version: row.get(2)?,
        function: row.get(3)?,
        trigger: Trigger::parse(&row.get::<_, String>(4)?),
        started_at: row.get(5)?,
        duration_ms: row.get(6)?,
        outcome: parse_outcome(&row.get::<_, String>(7)?),
        error: row.get(8)?,
        logs: row.get(9)?,
        memory: row.get(10)?,
        run_id: row.get(11)?,
        call_id: row.get(12)?,
        http_status: row.get(13)?,
        parent_call_id: row.get(14)?,
        root_call_id: row.get(15)?,
        depth: row.get(16)?,
    })
}

fn call_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CallRecord> {
    Ok(CallRecord {
        id: row.get(0)?,
        app: row.get(1)?,
        function: row.get(2)?,
        state: {
            let state: String = row.get(3)?;
            CallState::parse(&state).ok_or_else(|| {
                let e = format!("unknown call state `{state}`");
                rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
            })?
        },
        output: row.get(4)?,
        error: row.get(5)?,
        error_kind: row.get(6)?,
        created_at: row.get(7)?,
        finished_at: row.get(8)?,
        caller: row.get(9)?,
    })
}

/// The columns `execution_row` reads, in its order (also the insert's).
const EXECUTION_COLUMNS: &str = "id, app, version, function, trigger, started_at, duration_ms, \
     outcome, error, logs, memory, run_id, call_id, http_status, parent_call_id, root_call_id, depth";

const CALL_COLUMNS: &str =
    "id, app, function, state, output, error, error_kind, created_at, finished_at, caller_app";

/// Rows per INSERT statement, largest first: one statement per row spends
/// most of its time starting and resetting the statement. A batch is cut
/// into these sizes only, so that its rest reuses a prepared statement
/// rather than parsing one of its own length (the connection keeps 16).
const ROWS: [usize; 3] = [32, 8, 1];

fn insert_statement(rows: usize) -> String {
    let row = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
    format!(
        "INSERT INTO executions ({EXECUTION_COLUMNS}) VALUES {}",
        vec![row; rows].join(",")
    )
}

fn insert(conn: &mut rusqlite::Connection, records: &[ExecutionRecord]) -> rusqlite::Result<()> {
    static STATEMENTS: std::sync::LazyLock<[String; ROWS.len()]> =
        std::sync::LazyLock::new(|| ROWS.map(insert_statement));
    let tx = conn.transaction()?;
    let mut rest = records;
    while !rest.is_empty() {
        // The last size is one row, so some size fits.
        let size = ROWS
            .iter()
            .position(|&n| n <= rest.len())
            .unwrap_or(ROWS.len() - 1);
        let (chunk, after) = rest.split_at(ROWS[size]);
        rest = after;
        let mut stmt = tx.prepare_cached(&STATEMENTS[size])?;
        let labels: Vec<(&str, &str)> = chunk
            .iter()
            .map(|r| (r.trigger.as_str(), r.outcome.as_str()))
            .collect();
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 17);
        for (r, (trigger, outcome)) in chunk.iter().zip(&labels) {
            values.extend_from_slice(&[
                &r.id as &dyn rusqlite::ToSql,
                &r.app,
                &r.version,
                &r.function,
                trigger,
                &r.started_at,
                &r.duration_ms,
                outcome,
                &r.error,
                &r.logs,
                &r.memory,
                &r.run_id,
                &r.call_id,
                &r.http_status,
                &r.parent_call_id,
                &r.root_call_id,
                &r.depth,
            ]);
        }
        stmt.execute(values.as_slice())?;
    }
    tx.commit()
}

/// Usage figures from each run's (duration, failed, memory), grouped by
/// (version, function).
fn usage_of(app: &str, groups: BTreeMap<(u64, String), Vec<Run>>) -> Vec<Usage> {
    groups
        .into_iter()
        .map(|((version, function), runs)| {
            let at = |p: f64| runs[((runs.len() - 1) as f64 * p).round() as usize].0;
            Usage {
                app: app.to_string(),
                version,
                function,
                calls: runs.len() as u64,
                errors: runs.iter().filter(|r| r.1).count() as u64,
                total_ms: runs.iter().map(|r| r.0).sum(),
                p50_ms: at(0.5),
                p99_ms: at(0.99),
                peak_memory: runs.iter().map(|r| r.2).max().unwrap_or(0),
            }
        })
        .collect()
}

#[async_trait::async_trait]
impl RecordStore for SqliteRecords {
    async fn last_execution_id(&self) -> Result<u64, Error> {
        let max: Option<u64> = self
            .db
            .run("reading the last execution id", |conn| {
                conn.query_row("SELECT MAX(id) FROM executions", [], |r| r.get(0))
            })
            .await?;
        Ok(max.unwrap_or(0))
    }

    async fn insert_executions(&self, records: Vec<ExecutionRecord>) -> Result<(), Error> {
        self.db
            .run("storing executions", move |conn| insert(conn, &records))
            .await
    }

    async fn recent(
        &self,
        app: &str,
        function: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, Error> {
        let (app, function) = (app.to_string(), function.map(str::to_string));
        let mut records: Vec<ExecutionRecord> = self
            .db
            .run("reading executions", move |conn| {
                let sql = format!(
                    "SELECT {EXECUTION_COLUMNS} FROM executions
                     WHERE app = ?1 AND (?2 IS NULL OR function = ?2) ORDER BY id DESC LIMIT ?3"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(params![app, function, limit as i64], execution_row)?;
                rows.collect()
            })
            .await?;
        records.reverse();
        Ok(records)
    }

    async fn after(
        &self,
        app: &str,
        function: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, Error> {
        let (app, function) = (app.to_string(), function.map(str::to_string));
        self.db
            .run("reading executions", move |conn| {
                let sql = format!(
                    "SELECT {EXECUTION_COLUMNS} FROM executions
                     WHERE app = ?1 AND (?2 IS NULL OR function = ?2) AND id > ?3 ORDER BY id LIMIT ?4"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let params = params![app, function, after as i64, limit as i64];
                let rows = stmt.query_map(params, execution_row)?;
                rows.collect()
            })
            .await
    }

    async fn usage(&self, app: &str) -> Result<Vec<Usage>, Error> {
        let name = app.to_string();
        let groups = self
            .db
            .run("reading usage", move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT version, function, duration_ms, outcome, memory FROM executions WHERE app = ?1
                     ORDER BY version, function, duration_ms",
                )?;
                let rows = stmt.query_map([name], |r| {
                    Ok((
                        r.get::<_, u64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, f64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, u64>(4)?,
                    ))
                })?;
                let mut groups: BTreeMap<(u64, String), Vec<Run>> = BTreeMap::new();
                for row in rows {
                    let (version, function, ms, outcome, memory) = row?;
                    groups
                        .entry((version, function))
                        .or_default()
                        .push((ms, outcome != "ok", memory));
                }
                Ok(groups)
            })
            .await?;
        Ok(usage_of(app, groups))
    }

    async fn buckets(
        &self,
        app: &str,
        from: u64,
        to: u64,
        max_rows: usize,
    ) -> Result<Buckets, Error> {
        let app = app.to_string();
        let samples = self
            .db
            .run("reading executions per minute", move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT started_at, version, function, outcome != 'ok', duration_ms
                     FROM executions WHERE app = ?1 AND started_at >= ?2 AND started_at < ?3
                     ORDER BY started_at DESC LIMIT ?4",
                )?;
                let rows = stmt.query_map(params![app, from, to, max_rows as i64], |r| {
                    Ok(Sample {
                        started_at: r.get(0)?,
                        version: r.get(1)?,
                        function: r.get(2)?,
                        failed: r.get(3)?,
                        duration_ms: r.get(4)?,
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<Sample>>>()
            })
            .await?;
        Ok(buckets_of(samples, from, max_rows))
    }

    async fn search(&self, query: &ExecutionQuery) -> Result<ExecutionPage, Error> {
        let q = query.clone();
        let records = self
            .db
            .run("searching executions", move |conn| {
                // Where the page starts: before the cursor (its start time,
                // then its id), or at the newest.
                let cursor: Option<(i64, i64)> = match q.before {
                    None => Some((i64::MAX, i64::MAX)),
                    Some(id) => conn
                        .query_row(
                            "SELECT started_at, id FROM executions WHERE id = ?1 AND app = ?2",
                            params![id, q.app],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()?,
                };
                let Some((at, id)) = cursor else {
                    return Ok((Vec::new(), None));
                };
                // The newest `scan` executions from the cursor on (a range
                // of `executions_by_app_time`), then the filters: one page
                // never reads more than `scan` rows.
                let sql = format!(
                    "SELECT {EXECUTION_COLUMNS} FROM (
                         SELECT * FROM executions
                         WHERE app = ?1 AND started_at <= ?2 AND (started_at < ?2 OR id < ?3)
                         ORDER BY started_at DESC, id DESC LIMIT ?4)
                     WHERE (?5 IS NULL OR function = ?5) AND (?6 IS NULL OR version = ?6)
                       AND (?7 IS NULL OR outcome = ?7) AND (?8 IS NULL OR trigger = ?8)
                       AND (?9 IS NULL OR logs LIKE ?9 ESCAPE '\\' OR error LIKE ?9 ESCAPE '\\')
                     ORDER BY started_at DESC, id DESC LIMIT ?10"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let params = params![
                    q.app,
                    at,
                    id,
                    q.scan as i64,
                    q.function,
                    q.version,
                    q.outcome.map(|o| o.as_str()),
                    q.trigger.map(|t| t.as_str()),
                    q.text.as_deref().map(like_pattern),
                    q.limit as i64,
                ];
                let records: Vec<ExecutionRecord> = stmt
                    .query_map(params, execution_row)?
                    .collect::<Result<_, _>>()?;
                if records.len() >= q.limit || q.scan == 0 {
                    return Ok((records, None));
                }
                // A short page: was the scan cut at its bound?
                let last: Option<u64> = conn
                    .query_row(
                        "SELECT id FROM executions
                         WHERE app = ?1 AND started_at <= ?2 AND (started_at < ?2 OR id < ?3)
                         ORDER BY started_at DESC, id DESC LIMIT 1 OFFSET ?4",
                        params![q.app, at, id, q.scan as i64 - 1],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok((records, last))
            })
            .await?;
        Ok(page_of(records, query.limit))
    }

    async fn execution(&self, app: &str, id: u64) -> Result<Option<ExecutionRecord>, Error> {
        let app = app.to_string();
        self.db
            .run("reading an execution", move |conn| {
                let sql = format!(
                    "SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?1 AND app = ?2"
                );
                conn.query_row(&sql, params![id, app], execution_row)
                    .optional()
            })
            .await
    }

    async fn totals(&self) -> Result<BTreeMap<String, (u64, u64)>, Error> {
        self.db
            .run("counting executions", |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT app, COUNT(*), SUM(outcome != 'ok') FROM executions GROUP BY app",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        (r.get::<_, u64>(1)?, r.get::<_, u64>(2)?),
                    ))
                })?;
                rows.collect()
            })
            .await
    }

    async fn prune(&self, cutoff: u64, apps: &[String]) -> Result<(), Error> {
        let apps = apps.to_vec();
        self.db
            .run("pruning old records", move |conn| {
                let tx = conn.transaction()?;
                tx.execute("DELETE FROM executions WHERE started_at < ?1", [cutoff])?;
                tx.execute(
                    "DELETE FROM calls WHERE finished_at IS NOT NULL AND finished_at < ?1",
                    [cutoff],
                )?;
                for app in &apps {
                    tx.execute("DELETE FROM executions WHERE app = ?1", [app])?;
                }
                tx.commit()
            })
            .await
    }

    async fn insert_call(
        &self,
        call: &SpawnedCall,
        at: u64,
        owner: &str,
        lease: Duration,
    ) -> Result<(), Error> {
        let call = call.clone();
        let (owner, until) = (owner.to_string(), lease_end(lease));
        self.db
            .run("accepting a spawned call", move |conn| {
                let parent = call.parent.as_ref();
                conn.execute(
                    "INSERT INTO calls (id, app, function, version, input, state, created_at,
                         caller_app, parent_call_id, root_call_id, depth, owner, lease_until)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        call.id,
                        call.app,
                        call.function,
                        call.version,
                        call.input,
                        at,
                        parent.map(|p| &p.app),
                        parent.map(|p| &p.call_id),
                        parent.map(|p| &p.root_call_id),
                        parent.map_or(0, |p| p.depth),
                        owner,
                        until,
                    ],
                )
                .map(drop)
            })
            .await
    }

    async fn finish_call(&self, id: &str, end: CallEnd, at: u64) -> Result<(), Error> {
        let id = id.to_string();
        let (state, output, error, kind) = match end {
            CallEnd::Succeeded(output) => (CallState::Succeeded, Some(output), None, None),
            CallEnd::Failed { kind, message } => {
                (CallState::Failed, None, Some(message), Some(kind))
            }
        };
        self.db
            .run("storing the result of a spawned call", move |conn| {
                conn.execute(
                    "UPDATE calls SET state = ?2, output = ?3, error = ?4, error_kind = ?5, finished_at = ?6
                     WHERE id = ?1 AND state = 'pending'",
                    params![id, state.as_str(), output, error, kind, at],
                )
                .map(drop)
            })
            .await
    }

    async fn call(&self, id: &str) -> Result<Option<CallRecord>, Error> {
        let id = id.to_string();
        self.db
            .run("reading a spawned call", move |conn| {
                let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = ?1");
                conn.query_row(&sql, [id], call_row).optional()
            })
            .await
    }

    async fn tree(&self, id: &str, limit: usize) -> Result<Vec<ExecutionRecord>, Error> {
        let id = id.to_string();
        self.db
            .run("reading a tree of calls", move |conn| {
                let sql = format!(
                    "SELECT {EXECUTION_COLUMNS} FROM executions
                     WHERE id IN (SELECT id FROM executions WHERE root_call_id = ?1
                                  UNION SELECT id FROM executions WHERE call_id = ?1)
                     ORDER BY id LIMIT ?2"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(params![id, limit as i64], execution_row)?;
                rows.collect()
            })
            .await
    }

    async fn claim_calls(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<SpawnedCall>, Error> {
        let (owner, until, now) = (
            owner.to_string(),
            lease_end(lease),
            lease_end(Duration::ZERO),
        );
        self.db
            .run("claiming unfinished calls", move |conn| {
                // One process holds the state directory: a call claimed by
                // another owner was claimed by a process that is gone.
                let mut stmt = conn.prepare_cached(
                    "UPDATE calls SET owner = ?1, lease_until = ?2
                     WHERE id IN (SELECT id FROM calls WHERE state = 'pending'
                                  AND (owner IS NULL OR owner != ?1 OR lease_until < ?3)
                                  ORDER BY created_at LIMIT ?4)
                     RETURNING id, app, function, version, input, caller_app, parent_call_id,
                               root_call_id, depth, created_at",
                )?;
                let rows = stmt.query_map(params![owner, until, now, limit as i64], |r| {
                    let parent = match (r.get(5)?, r.get(6)?, r.get(7)?) {
                        (Some(app), Some(call_id), Some(root_call_id)) => Some(CallParent {
                            app,
                            call_id,
                            root_call_id,
                            depth: r.get(8)?,
                        }),
                        _ => None,
                    };
                    let call = SpawnedCall {
                        id: r.get(0)?,
                        app: r.get(1)?,
                        function: r.get(2)?,
                        version: r.get(3)?,
                        input: r.get(4)?,
                        parent,
                    };
                    Ok((r.get::<_, u64>(9)?, call))
                })?;
                let mut calls: Vec<(u64, SpawnedCall)> = rows.collect::<Result<_, _>>()?;
                calls.sort_by_key(|(created, _)| *created);
                Ok(calls.into_iter().map(|(_, c)| c).collect())
            })
            .await
    }

    async fn renew_calls(&self, owner: &str, lease: Duration) -> Result<(), Error> {
        let (owner, until) = (owner.to_string(), lease_end(lease));
        self.db
            .run("renewing claims on calls", move |conn| {
                conn.execute(
                    "UPDATE calls SET lease_until = ?2 WHERE owner = ?1 AND state = 'pending'",
                    params![owner, until],
                )
                .map(drop)
            })
            .await
    }
}

/// The end of a lease of `lease` from now, Unix ms.
fn lease_end(lease: Duration) -> u64 {
    crate::platform::now_ms().saturating_add(lease.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[tokio::test]
    async fn buckets_and_search_answer_as_every_store_must() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteRecords::open(&dir.path().join("executions.db")).unwrap();
        crate::platform::records::conformance::check(&store).await;
    }

    #[tokio::test]
    async fn a_database_written_before_versioning_opens_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("executions.db");
        {
            // The tables as the first release wrote them, with one row each.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "INSERT INTO executions VALUES (7, 'hello', 1, 'square', 'call', 1000, 1.5, 'ok', NULL, 'log', 0, NULL);
                 INSERT INTO calls (id, app, function, input, state, created_at) VALUES ('call-1', 'hello', 'square', x'33', 'pending', 1000);",
            )
            .unwrap();
        }
        let store = SqliteRecords::open(&path).unwrap();
        let records = store.recent("hello", None, 10).await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].id, records[0].logs.as_str()), (7, "log"));
        assert_eq!(
            (records[0].call_id.clone(), records[0].http_status),
            (None, None)
        );
        let lease = Duration::from_secs(10);
        let claimed = store.claim_calls("me", lease, 10).await.unwrap();
        assert_eq!(claimed.len(), 1, "a call of an earlier process is claimed");
        assert!(store.claim_calls("me", lease, 10).await.unwrap().is_empty());
        store.renew_calls("me", lease).await.unwrap();
        drop(store);
        // Reopening runs nothing again; a newer schema is refused.
        SqliteRecords::open(&path).unwrap();
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let e = SqliteRecords::open(&path).err().unwrap();
        assert!(matches!(e, Error::Storage { .. }), "{e:?}");
        assert!(
            e.to_string().contains("newer than this release knows"),
            "{e}"
        );
    }
}
