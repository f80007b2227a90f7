//! Execution records, spawned calls and metrics. Every execution is sent to
//! a writer task that stores it in batches (off the call path) in
//! `executions.db`, and to followers of `modal app logs --follow`.
//! Prometheus counters are kept in memory for the life of the process.

use crate::app::{Execution, Trigger};
use crate::error::{Error, Outcome};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::UNIX_EPOCH;
use tokio::sync::{broadcast, mpsc};

/// Most records written in one transaction.
const BATCH: usize = 4096;

/// How long the writer lets records gather before a transaction.
const BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// Upper bounds (seconds) of the duration histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0,
];

/// One stored execution.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExecutionRecord {
    /// Increasing id.
    pub id: u64,
    /// The app.
    pub app: String,
    /// The version that ran it.
    pub version: u64,
    /// The function.
    pub function: String,
    /// What started it.
    pub trigger: Trigger,
    /// Start, Unix ms.
    pub started_at: u64,
    /// Duration in ms.
    pub duration_ms: f64,
    /// How it ended.
    pub outcome: Outcome,
    /// The error, when it failed.
    pub error: Option<String>,
    /// Captured stdout and stderr.
    pub logs: String,
    /// Linear memory of the instance, bytes.
    pub memory: u64,
    /// For a scheduled run, its id.
    pub run_id: Option<String>,
    /// For a call or spawned call, its id (shared by its retries).
    #[serde(default)]
    pub call_id: Option<String>,
    /// For a web execution, the HTTP status of its answer.
    #[serde(default)]
    pub http_status: Option<u16>,
}

/// Usage of one function of one version.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    /// The app.
    pub app: String,
    /// The version.
    pub version: u64,
    /// The function.
    pub function: String,
    /// Executions.
    pub calls: u64,
    /// Failed executions.
    pub errors: u64,
    /// Total time, ms.
    pub total_ms: f64,
    /// Median duration, ms.
    pub p50_ms: f64,
    /// 99th percentile duration, ms.
    pub p99_ms: f64,
    /// Largest instance memory seen, bytes.
    pub peak_memory: u64,
}

/// The state of a spawned call.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CallRecord {
    /// Its id.
    pub id: String,
    /// The app.
    pub app: String,
    /// The function.
    pub function: String,
    /// `pending`, `succeeded` or `failed`.
    pub state: String,
    /// The output (JSON by convention), when it succeeded.
    pub output: Option<Vec<u8>>,
    /// The error, when it failed.
    pub error: Option<String>,
    /// The error's kind, when it failed.
    pub error_kind: Option<String>,
    /// When it was accepted, Unix ms.
    pub created_at: u64,
    /// When it finished, Unix ms.
    pub finished_at: Option<u64>,
}

/// The schema as a list of migrations: entry `i` takes a database from
/// version `i` (its `PRAGMA user_version`) to `i + 1`. A database written
/// before versioning reads as version 0 and its tables already exist, so
/// the first step only creates what is missing. Append; never edit.
const MIGRATIONS: &[&str] = &[
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
];

fn db(e: rusqlite::Error) -> Error {
    Error::Registry(format!("executions: {e}"))
}

/// Duration in ms, whether it failed, memory: one run, for usage figures.
type Run = (f64, bool, u64);

/// App, version, function, trigger: one Prometheus series. Shared strings,
/// so that counting an execution allocates nothing.
type SeriesKey = (Arc<str>, u64, Arc<str>, Trigger);

/// A spawned call to run (again) after a restart.
pub(crate) struct PendingCall {
    pub(crate) id: String,
    pub(crate) app: String,
    pub(crate) function: String,
    pub(crate) version: Option<u64>,
    pub(crate) input: Vec<u8>,
}

/// The SQLite file of executions and spawned calls.
pub(crate) struct Store {
    conn: Mutex<Connection>,
}

fn parse_trigger(s: &str) -> Trigger {
    match s {
        "spawn" => Trigger::Spawn,
        "web" => Trigger::Web,
        "schedule" => Trigger::Schedule,
        _ => Trigger::Call,
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
        trigger: parse_trigger(&row.get::<_, String>(4)?),
        started_at: row.get(5)?,
        duration_ms: row.get(6)?,
        outcome: parse_outcome(&row.get::<_, String>(7)?),
        error: row.get(8)?,
        logs: row.get(9)?,
        memory: row.get(10)?,
        run_id: row.get(11)?,
        call_id: row.get(12)?,
        http_status: row.get(13)?,
    })
}

fn call_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CallRecord> {
    Ok(CallRecord {
        id: row.get(0)?,
        app: row.get(1)?,
        function: row.get(2)?,
        state: row.get(3)?,
        output: row.get(4)?,
        error: row.get(5)?,
        error_kind: row.get(6)?,
        created_at: row.get(7)?,
        finished_at: row.get(8)?,
    })
}

const CALL_COLUMNS: &str =
    "id, app, function, state, output, error, error_kind, created_at, finished_at";

impl Store {
    pub(crate) fn open(path: &Path) -> Result<Store, Error> {
        let conn = Connection::open(path).map_err(db)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(db)?;
        let mut conn = conn;
        super::migrate::migrate(&mut conn, MIGRATIONS, "executions.db")?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn max_id(&self) -> Result<u64, Error> {
        let max: Option<u64> = self
            .conn()
            .query_row("SELECT MAX(id) FROM executions", [], |r| r.get(0))
            .map_err(db)?;
        Ok(max.unwrap_or(0))
    }

    fn insert(&self, records: &[ExecutionRecord]) -> Result<(), Error> {
        /// Rows per INSERT statement: one statement per row spends most
        /// of its time starting and resetting the statement.
        const ROWS: usize = 32;
        fn statement(rows: usize) -> String {
            let row = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
            format!(
                "INSERT INTO executions (id, app, version, function, trigger, started_at, duration_ms, outcome, error, logs, memory, run_id, call_id, http_status) VALUES {}",
                vec![row; rows].join(",")
            )
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        for chunk in records.chunks(ROWS) {
            let mut stmt = tx.prepare_cached(&statement(chunk.len())).map_err(db)?;
            let labels: Vec<(&str, &str)> = chunk
                .iter()
                .map(|r| (r.trigger.as_str(), r.outcome.as_str()))
                .collect();
            let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 14);
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
                ]);
            }
            stmt.execute(values.as_slice()).map_err(db)?;
        }
        tx.commit().map_err(db)
    }

    /// The latest `limit` executions of `app` (of `function` if given),
    /// oldest first.
    pub(crate) fn recent(
        &self,
        app: &str,
        function: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, app, version, function, trigger, started_at, duration_ms, outcome, error, logs, memory, run_id, call_id, http_status
                 FROM executions WHERE app = ?1 AND (?2 IS NULL OR function = ?2) ORDER BY id DESC LIMIT ?3",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![app, function, limit as i64], execution_row)
            .map_err(db)?;
        let mut records: Vec<ExecutionRecord> = rows.collect::<Result<_, _>>().map_err(db)?;
        records.reverse();
        Ok(records)
    }

    /// The first `limit` executions of `app` (of `function` if given)
    /// whose id is above `after`, oldest first.
    pub(crate) fn after(
        &self,
        app: &str,
        function: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, app, version, function, trigger, started_at, duration_ms, outcome, error, logs, memory, run_id, call_id, http_status
                 FROM executions WHERE app = ?1 AND (?2 IS NULL OR function = ?2) AND id > ?3 ORDER BY id LIMIT ?4",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(
                params![app, function, after as i64, limit as i64],
                execution_row,
            )
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    /// Usage per version and function of `app`.
    pub(crate) fn usage(&self, app: &str) -> Result<Vec<Usage>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT version, function, duration_ms, outcome, memory FROM executions WHERE app = ?1
                 ORDER BY version, function, duration_ms",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([app], |r| {
                Ok((
                    r.get::<_, u64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, f64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, u64>(4)?,
                ))
            })
            .map_err(db)?;
        // Per (version, function): (duration ms, failed, memory) of each run.
        let mut groups: BTreeMap<(u64, String), Vec<Run>> = BTreeMap::new();
        for row in rows {
            let (version, function, ms, outcome, memory) = row.map_err(db)?;
            groups
                .entry((version, function))
                .or_default()
                .push((ms, outcome != "ok", memory));
        }
        Ok(groups
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
            .collect())
    }

    /// Calls and errors per app.
    pub(crate) fn totals(&self) -> Result<BTreeMap<String, (u64, u64)>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT app, COUNT(*), SUM(outcome != 'ok') FROM executions GROUP BY app")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    (r.get::<_, u64>(1)?, r.get::<_, u64>(2)?),
                ))
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    /// Deletes executions and finished calls older than `cutoff` (Unix ms)
    /// and those of forgotten apps.
    pub(crate) fn prune(&self, cutoff: u64, apps: &[String]) -> Result<(), Error> {
        let conn = self.conn();
        conn.execute("DELETE FROM executions WHERE started_at < ?1", [cutoff])
            .map_err(db)?;
        conn.execute(
            "DELETE FROM calls WHERE finished_at IS NOT NULL AND finished_at < ?1",
            [cutoff],
        )
        .map_err(db)?;
        for app in apps {
            conn.execute("DELETE FROM executions WHERE app = ?1", [app])
                .map_err(db)?;
        }
        Ok(())
    }

    pub(crate) fn insert_call(
        &self,
        id: &str,
        app: &str,
        function: &str,
        version: Option<u64>,
        input: &[u8],
        at: u64,
    ) -> Result<(), Error> {
        self.conn()
            .execute(
                "INSERT INTO calls (id, app, function, version, input, state, created_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
                params![id, app, function, version, input, at],
            )
            .map(drop)
            .map_err(db)
    }

    pub(crate) fn finish_call(
        &self,
        id: &str,
        result: &Result<Vec<u8>, Error>,
        at: u64,
    ) -> Result<(), Error> {
        let (state, output, error, kind) = match result {
            Ok(output) => ("succeeded", Some(output.clone()), None, None),
            Err(e) => ("failed", None, Some(e.to_string()), Some(e.kind())),
        };
        self.conn()
            .execute(
                "UPDATE calls SET state = ?2, output = ?3, error = ?4, error_kind = ?5, finished_at = ?6 WHERE id = ?1",
                params![id, state, output, error, kind, at],
            )
            .map(drop)
            .map_err(db)
    }

    pub(crate) fn call(&self, id: &str) -> Result<Option<CallRecord>, Error> {
        self.conn()
            .query_row(
                &format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = ?1"),
                [id],
                call_row,
            )
            .optional()
            .map_err(db)
    }

    /// Calls accepted but not finished (e.g. when the server died).
    pub(crate) fn unfinished_calls(&self) -> Result<Vec<PendingCall>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, app, function, version, input FROM calls WHERE state = 'pending' ORDER BY created_at")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(PendingCall {
                    id: r.get(0)?,
                    app: r.get(1)?,
                    function: r.get(2)?,
                    version: r.get(3)?,
                    input: r.get(4)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }
}

/// Prometheus figures of one (app, version, function, trigger).
#[derive(Default, Clone)]
struct Series {
    calls: u64,
    errors: u64,
    /// Executions per outcome, by [`Outcome::index`].
    outcomes: [u64; Outcome::ALL.len()],
    sum_seconds: f64,
    buckets: [u64; BUCKETS.len()],
}

/// What the writer task is sent.
enum Write {
    /// One record to store.
    Record(ExecutionRecord),
    /// Store what has been sent so far now, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Receives executions: assigns ids, counts them, hands them to the writer
/// and to followers.
pub(crate) struct Recorder {
    next_id: AtomicU64,
    writer: mpsc::UnboundedSender<Write>,
    follow: broadcast::Sender<ExecutionRecord>,
    series: Mutex<std::collections::HashMap<SeriesKey, Series>>,
    deploys: AtomicU64,
    pub(crate) store: Arc<Store>,
}

impl Recorder {
    /// A recorder over `store`, with its writer task started.
    pub(crate) fn start(store: Arc<Store>) -> Result<Arc<Recorder>, Error> {
        let (writer, mut rx) = mpsc::unbounded_channel::<Write>();
        let (follow, _) = broadcast::channel(1024);
        let recorder = Arc::new(Recorder {
            next_id: AtomicU64::new(store.max_id()? + 1),
            writer,
            follow,
            series: Mutex::default(),
            deploys: AtomicU64::new(0),
            store: store.clone(),
        });
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = Vec::new();
                let mut flushed = Vec::new();
                match first {
                    Write::Record(r) => {
                        batch.push(r);
                        // Let a batch gather: one transaction per interval
                        // instead of one per execution under load.
                        tokio::time::sleep(BATCH_INTERVAL).await;
                    }
                    Write::Flush(done) => flushed.push(done),
                }
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(Write::Record(r)) => batch.push(r),
                        Ok(Write::Flush(done)) => flushed.push(done),
                        Err(_) => break,
                    }
                }
                if !batch.is_empty() {
                    let store = store.clone();
                    let written = tokio::task::spawn_blocking(move || store.insert(&batch)).await;
                    if !matches!(written, Ok(Ok(()))) {
                        tracing::error!("could not store executions: {written:?}");
                    }
                }
                for done in flushed {
                    let _ = done.send(());
                }
            }
        });
        Ok(recorder)
    }

    /// Records one execution (called on the call path: no I/O here).
    pub(crate) fn record(&self, e: &Execution) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let started_at = e
            .started_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let outcome = e.outcome_class();
        let error = e.outcome.as_ref().err().map(|err| err.to_string());
        let seconds = e.duration.as_secs_f64();
        {
            let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
            let s = series
                .entry((e.app.clone(), e.version, e.function.clone(), e.trigger))
                .or_default();
            s.calls += 1;
            s.errors += u64::from(outcome != Outcome::Ok);
            s.outcomes[outcome.index()] += 1;
            s.sum_seconds += seconds;
            if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
                s.buckets[i] += 1;
            }
        }
        let record = ExecutionRecord {
            id,
            app: e.app.to_string(),
            version: e.version,
            function: e.function.to_string(),
            trigger: e.trigger,
            started_at,
            duration_ms: seconds * 1e3,
            outcome,
            error,
            logs: e.logs.clone(),
            memory: e.memory as u64,
            run_id: e.run_id.clone(),
            call_id: e.call_id.clone(),
            http_status: e.http_status,
        };
        // The writer gets it before the followers: a follower that
        // subscribed too late to see it live finds it stored after a flush.
        let followed = (self.follow.receiver_count() > 0).then(|| record.clone());
        let _ = self.writer.send(Write::Record(record));
        if let Some(record) = followed {
            let _ = self.follow.send(record);
        }
    }

    /// Waits until every execution recorded so far is stored.
    pub(crate) async fn flush(&self) {
        let (done, stored) = tokio::sync::oneshot::channel();
        if self.writer.send(Write::Flush(done)).is_ok() {
            let _ = stored.await;
        }
    }

    /// Counts a deploy or rollback for the metrics.
    pub(crate) fn deployed(&self) {
        self.deploys.fetch_add(1, Ordering::Relaxed);
    }

    /// New executions as they are recorded.
    pub(crate) fn follow(&self) -> broadcast::Receiver<ExecutionRecord> {
        self.follow.subscribe()
    }

    /// The Prometheus text exposition of the counters, plus `instances`
    /// (app, version, live instances).
    pub(crate) fn metrics(&self, instances: &[(String, u64, usize)]) -> String {
        fn esc(s: &str) -> String {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        }
        let mut series: Vec<(SeriesKey, Series)> = self
            .series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        let labels = |(app, version, function, trigger): &SeriesKey| {
            format!(
                "app=\"{}\",version=\"{version}\",function=\"{}\",trigger=\"{}\"",
                esc(app),
                esc(function),
                trigger.as_str()
            )
        };
        out.push_str("# HELP modal_executions_total Executions of functions.\n# TYPE modal_executions_total counter\n");
        for (key, s) in &series {
            let l = labels(key);
            for (outcome, n) in Outcome::ALL.iter().zip(s.outcomes) {
                if n > 0 {
                    let o = outcome.as_str();
                    let _ = writeln!(out, "modal_executions_total{{{l},outcome=\"{o}\"}} {n}");
                }
            }
        }
        out.push_str("# HELP modal_execution_errors_total Executions that failed.\n# TYPE modal_execution_errors_total counter\n");
        for (key, s) in &series {
            let _ = writeln!(
                out,
                "modal_execution_errors_total{{{}}} {}",
                labels(key),
                s.errors
            );
        }
        out.push_str(
            "# HELP modal_execution_duration_seconds Duration of executions.\n# TYPE modal_execution_duration_seconds histogram\n",
        );
        for (key, s) in &series {
            let l = labels(key);
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(s.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "modal_execution_duration_seconds_bucket{{{l},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "modal_execution_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
                s.calls
            );
            let _ = writeln!(
                out,
                "modal_execution_duration_seconds_sum{{{l}}} {}",
                s.sum_seconds
            );
            let _ = writeln!(
                out,
                "modal_execution_duration_seconds_count{{{l}}} {}",
                s.calls
            );
        }
        out.push_str("# HELP modal_instances Live instances per app version.\n# TYPE modal_instances gauge\n");
        for (app, version, n) in instances {
            let _ = writeln!(
                out,
                "modal_instances{{app=\"{}\",version=\"{version}\"}} {n}",
                esc(app)
            );
        }
        out.push_str("# HELP modal_deploys_total Deploys and rollbacks since the server started.\n# TYPE modal_deploys_total counter\n");
        let _ = writeln!(
            out,
            "modal_deploys_total {}",
            self.deploys.load(Ordering::Relaxed)
        );
        out
    }
}

impl super::Platform {
    /// The first `limit` executions of `app` (of `function` if given)
    /// after execution `after`, oldest first, once every execution
    /// recorded so far is stored: with [`follow`](super::Platform::follow)
    /// subscribed first, a reconnecting follower misses none.
    pub async fn logs_after(
        &self,
        app: &str,
        function: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, Error> {
        self.inner.recorder.flush().await;
        self.inner.recorder.store.after(app, function, after, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_written_before_versioning_opens_with_its_rows() {
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
        let store = Store::open(&path).unwrap();
        let records = store.recent("hello", None, 10).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].id, records[0].logs.as_str()), (7, "log"));
        assert_eq!(
            (records[0].call_id.clone(), records[0].http_status),
            (None, None)
        );
        assert_eq!(store.unfinished_calls().unwrap().len(), 1);
        drop(store);
        // Reopening runs nothing again; a newer schema is refused.
        Store::open(&path).unwrap();
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let e = Store::open(&path).err().unwrap().to_string();
        assert!(e.contains("newer than this release knows"), "{e}");
    }
}
