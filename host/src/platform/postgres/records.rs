//! [`PgRecords`]: executions and spawned calls in the cluster's database.
//! Executions arrive in batches from the recorder's writer (one multi-row
//! insert each, never on the call path). Spawned calls are a queue: the
//! host that accepts one claims it for a lease it renews; a call whose
//! lease ran out (its host died) is claimed by another host with
//! `FOR UPDATE SKIP LOCKED`, so each claimer gets different calls.

use super::{Pg, fail, to_i64, to_u64};
use crate::app::Trigger;
use crate::error::{Error, Outcome};
use crate::platform::records::{
    BUCKET_MS, Bucket, Buckets, CallEnd, CallParent, CallRecord, CallState, ExecutionPage,
    ExecutionQuery, ExecutionRecord, RecordStore, SpawnedCall, Usage, like_pattern, page_of,
    whole_minutes,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// The schema; append, never edit.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE executions (
        id BIGINT PRIMARY KEY,
        app TEXT NOT NULL,
        version BIGINT NOT NULL,
        function TEXT NOT NULL,
        trigger TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        duration_ms DOUBLE PRECISION NOT NULL,
        outcome TEXT NOT NULL,
        error TEXT,
        logs TEXT NOT NULL,
        memory BIGINT NOT NULL,
        run_id TEXT,
        call_id TEXT,
        http_status INTEGER,
        parent_call_id TEXT,
        root_call_id TEXT,
        depth INTEGER NOT NULL
    );
    CREATE INDEX executions_by_app ON executions (app, started_at);
    CREATE INDEX executions_by_app_id ON executions (app, id);
    CREATE INDEX executions_by_root ON executions (root_call_id) WHERE root_call_id IS NOT NULL;
    CREATE INDEX executions_by_call ON executions (call_id) WHERE call_id IS NOT NULL;
    CREATE SEQUENCE execution_blocks;
    CREATE TABLE calls (
        id TEXT PRIMARY KEY,
        app TEXT NOT NULL,
        function TEXT NOT NULL,
        version BIGINT,
        input BYTEA NOT NULL,
        state TEXT NOT NULL,
        output BYTEA,
        error TEXT,
        error_kind TEXT,
        created_at BIGINT NOT NULL,
        finished_at BIGINT,
        caller_app TEXT,
        parent_call_id TEXT,
        root_call_id TEXT,
        depth INTEGER NOT NULL,
        owner TEXT,
        lease_until TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX calls_pending ON calls (lease_until) WHERE state = 'pending';",
    // One index less to update per execution: `after` reads by the
    // primary key.
    "DROP INDEX executions_by_app_id;",
];

/// Execution ids per block: each process takes a block of its own at
/// start, so hosts never hand out the same id.
const BLOCK: u64 = 1 << 32;

const EXECUTION_COLUMNS: &str = "id, app, version, function, trigger, started_at, duration_ms, \
     outcome, error, logs, memory, run_id, call_id, http_status, parent_call_id, root_call_id, depth";

const CALL_COLUMNS: &str =
    "id, app, function, state, output, error, error_kind, created_at, finished_at, caller_app";

/// The cluster's store of executions and spawned calls.
pub struct PgRecords {
    pg: Pg,
}

impl PgRecords {
    /// The store in `pg`, its schema brought up to date.
    pub async fn open(pg: Pg) -> Result<PgRecords, Error> {
        pg.migrate("records", MIGRATIONS).await?;
        Ok(PgRecords { pg })
    }
}

fn execution_row(row: &tokio_postgres::Row) -> ExecutionRecord {
    ExecutionRecord {
        id: to_u64(row.get(0)),
        app: row.get(1),
        version: to_u64(row.get(2)),
        function: row.get(3),
        trigger: Trigger::parse(row.get(4)),
        started_at: to_u64(row.get(5)),
        duration_ms: row.get(6),
        outcome: Outcome::parse(row.get(7)).unwrap_or(Outcome::Rejected),
        error: row.get(8),
        logs: row.get(9),
        memory: to_u64(row.get(10)),
        run_id: row.get(11),
        call_id: row.get(12),
        http_status: row
            .get::<_, Option<i32>>(13)
            .and_then(|s| u16::try_from(s).ok()),
        parent_call_id: row.get(14),
        root_call_id: row.get(15),
        depth: u32::try_from(row.get::<_, i32>(16)).unwrap_or(0),
    }
}

fn call_row(row: &tokio_postgres::Row) -> Result<CallRecord, Error> {
    let state: String = row.get(3);
    Ok(CallRecord {
        id: row.get(0),
        app: row.get(1),
        function: row.get(2),
        state: CallState::parse(&state).ok_or_else(|| {
            Error::storage(
                "postgres: reading a spawned call",
                format!("unknown call state `{state}`"),
            )
        })?,
        output: row.get(4),
        error: row.get(5),
        error_kind: row.get(6),
        created_at: to_u64(row.get(7)),
        finished_at: row.get::<_, Option<i64>>(8).map(to_u64),
        caller: row.get(9),
    })
}

fn spawned_row(row: &tokio_postgres::Row) -> SpawnedCall {
    let parent = match (row.get(5), row.get(6), row.get(7)) {
        (Some(app), Some(call_id), Some(root_call_id)) => Some(CallParent {
            app,
            call_id,
            root_call_id,
            depth: u32::try_from(row.get::<_, i32>(8)).unwrap_or(0),
        }),
        _ => None,
    };
    SpawnedCall {
        id: row.get(0),
        app: row.get(1),
        function: row.get(2),
        version: row.get::<_, Option<i64>>(3).map(to_u64),
        input: row.get(4),
        parent,
    }
}

fn millis(d: Duration) -> i64 {
    to_i64(d.as_millis() as u64)
}

fn depth(d: u32) -> i32 {
    i32::try_from(d).unwrap_or(i32::MAX)
}

#[async_trait::async_trait]
impl RecordStore for PgRecords {
    async fn last_execution_id(&self) -> Result<u64, Error> {
        let rows = self
            .pg
            .query(
                "taking a block of execution ids",
                "SELECT nextval('execution_blocks')",
                &[],
            )
            .await?;
        let block = rows.first().map_or(1, |r| to_u64(r.get(0)));
        Ok(block.saturating_mul(BLOCK))
    }

    async fn insert_executions(&self, records: Vec<ExecutionRecord>) -> Result<(), Error> {
        // One statement for the whole batch: each column as an array.
        let doing = "storing executions";
        let ids: Vec<i64> = records.iter().map(|r| to_i64(r.id)).collect();
        let apps: Vec<&str> = records.iter().map(|r| r.app.as_str()).collect();
        let versions: Vec<i64> = records.iter().map(|r| to_i64(r.version)).collect();
        let functions: Vec<&str> = records.iter().map(|r| r.function.as_str()).collect();
        let triggers: Vec<&str> = records.iter().map(|r| r.trigger.as_str()).collect();
        let started: Vec<i64> = records.iter().map(|r| to_i64(r.started_at)).collect();
        let durations: Vec<f64> = records.iter().map(|r| r.duration_ms).collect();
        let outcomes: Vec<&str> = records.iter().map(|r| r.outcome.as_str()).collect();
        let errors: Vec<Option<&str>> = records.iter().map(|r| r.error.as_deref()).collect();
        let logs: Vec<&str> = records.iter().map(|r| r.logs.as_str()).collect();
        let memory: Vec<i64> = records.iter().map(|r| to_i64(r.memory)).collect();
        let run_ids: Vec<Option<&str>> = records.iter().map(|r| r.run_id.as_deref()).collect();
        let call_ids: Vec<Option<&str>> = records.iter().map(|r| r.call_id.as_deref()).collect();
        let statuses: Vec<Option<i32>> = records
            .iter()
            .map(|r| r.http_status.map(i32::from))
            .collect();
        let parents: Vec<Option<&str>> = records
            .iter()
            .map(|r| r.parent_call_id.as_deref())
            .collect();
        let roots: Vec<Option<&str>> = records.iter().map(|r| r.root_call_id.as_deref()).collect();
        let depths: Vec<i32> = records.iter().map(|r| depth(r.depth)).collect();
        let sql = format!(
            "INSERT INTO executions ({EXECUTION_COLUMNS})
             SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[],
                 $6::BIGINT[], $7::DOUBLE PRECISION[], $8::TEXT[], $9::TEXT[], $10::TEXT[],
                 $11::BIGINT[], $12::TEXT[], $13::TEXT[], $14::INTEGER[], $15::TEXT[], $16::TEXT[],
                 $17::INTEGER[])
             ON CONFLICT (id) DO NOTHING"
        );
        self.pg
            .query(
                doing,
                &sql,
                &[
                    &ids, &apps, &versions, &functions, &triggers, &started, &durations, &outcomes,
                    &errors, &logs, &memory, &run_ids, &call_ids, &statuses, &parents, &roots,
                    &depths,
                ],
            )
            .await
            .map(drop)
    }

    async fn recent(
        &self,
        app: &str,
        function: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, Error> {
        // Ids of different hosts are not in time order: the newest by when
        // they started.
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions
             WHERE app = $1 AND ($2::TEXT IS NULL OR function = $2)
             ORDER BY started_at DESC, id DESC LIMIT $3"
        );
        let limit = to_i64(limit as u64);
        let rows = self
            .pg
            .query("reading executions", &sql, &[&app, &function, &limit])
            .await?;
        let mut records: Vec<ExecutionRecord> = rows.iter().map(execution_row).collect();
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
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions
             WHERE app = $1 AND ($2::TEXT IS NULL OR function = $2) AND id > $3
             ORDER BY id LIMIT $4"
        );
        let (after, limit) = (to_i64(after), to_i64(limit as u64));
        let rows = self
            .pg
            .query(
                "reading executions",
                &sql,
                &[&app, &function, &after, &limit],
            )
            .await?;
        Ok(rows.iter().map(execution_row).collect())
    }

    async fn usage(&self, app: &str) -> Result<Vec<Usage>, Error> {
        let rows = self
            .pg
            .query(
                "reading usage",
                "SELECT version, function, COUNT(*), COUNT(*) FILTER (WHERE outcome <> 'ok'),
                     SUM(duration_ms),
                     percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_ms),
                     percentile_disc(0.99) WITHIN GROUP (ORDER BY duration_ms),
                     MAX(memory)
                 FROM executions WHERE app = $1 GROUP BY version, function
                 ORDER BY version, function",
                &[&app],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Usage {
                app: app.to_string(),
                version: to_u64(r.get(0)),
                function: r.get(1),
                calls: to_u64(r.get(2)),
                errors: to_u64(r.get(3)),
                total_ms: r.get(4),
                p50_ms: r.get(5),
                p99_ms: r.get(6),
                peak_memory: to_u64(r.get(7)),
            })
            .collect())
    }

    async fn buckets(
        &self,
        app: &str,
        from: u64,
        to: u64,
        max_rows: usize,
    ) -> Result<Buckets, Error> {
        // Exact percentiles in the database, over at most `max_rows`
        // executions (the newest), read through `executions_by_app`.
        let rows = self
            .pg
            .query(
                "reading executions per minute",
                "SELECT (started_at / $4) * $4, version, function, COUNT(*),
                     COUNT(*) FILTER (WHERE outcome <> 'ok'),
                     percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_ms),
                     percentile_disc(0.99) WITHIN GROUP (ORDER BY duration_ms)
                 FROM (SELECT started_at, version, function, outcome, duration_ms FROM executions
                       WHERE app = $1 AND started_at >= $2 AND started_at < $3
                       ORDER BY started_at DESC LIMIT $5) AS newest
                 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                &[
                    &app,
                    &to_i64(from),
                    &to_i64(to),
                    &to_i64(BUCKET_MS),
                    &to_i64(max_rows as u64),
                ],
            )
            .await?;
        let buckets: Vec<Bucket> = rows
            .iter()
            .map(|r| Bucket {
                start: to_u64(r.get(0)),
                version: to_u64(r.get(1)),
                function: r.get(2),
                calls: to_u64(r.get(3)),
                errors: to_u64(r.get(4)),
                p50_ms: r.get(5),
                p99_ms: r.get(6),
            })
            .collect();
        let read: u64 = buckets.iter().map(|b| b.calls).sum();
        Ok(whole_minutes(buckets, from, read >= max_rows as u64))
    }

    async fn search(&self, query: &ExecutionQuery) -> Result<ExecutionPage, Error> {
        let doing = "searching executions";
        // Where the page starts: before the cursor (its start time, then
        // its id), or at the newest.
        let (at, id) = match query.before {
            None => (i64::MAX, i64::MAX),
            Some(before) => {
                let rows = self
                    .pg
                    .query(
                        doing,
                        "SELECT started_at, id FROM executions WHERE id = $1 AND app = $2",
                        &[&to_i64(before), &query.app],
                    )
                    .await?;
                match rows.first() {
                    Some(row) => (row.get(0), row.get(1)),
                    None => return Ok(ExecutionPage::default()),
                }
            }
        };
        // The newest `scan` executions from the cursor on (a range of
        // `executions_by_app`), then the filters: one page never reads more
        // than `scan` rows.
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM (
                 SELECT * FROM executions
                 WHERE app = $1 AND started_at <= $2 AND (started_at < $2 OR id < $3)
                 ORDER BY started_at DESC, id DESC LIMIT $4) AS newest
             WHERE ($5::TEXT IS NULL OR function = $5) AND ($6::BIGINT IS NULL OR version = $6)
               AND ($7::TEXT IS NULL OR outcome = $7) AND ($8::TEXT IS NULL OR trigger = $8)
               AND ($9::TEXT IS NULL OR logs ILIKE $9 ESCAPE '\\' OR error ILIKE $9 ESCAPE '\\')
             ORDER BY started_at DESC, id DESC LIMIT $10"
        );
        let scan = to_i64(query.scan as u64);
        let rows = self
            .pg
            .query(
                doing,
                &sql,
                &[
                    &query.app,
                    &at,
                    &id,
                    &scan,
                    &query.function,
                    &query.version.map(to_i64),
                    &query.outcome.map(|o| o.as_str()),
                    &query.trigger.map(|t| t.as_str()),
                    &query.text.as_deref().map(like_pattern),
                    &to_i64(query.limit as u64),
                ],
            )
            .await?;
        let records: Vec<ExecutionRecord> = rows.iter().map(execution_row).collect();
        let mut stopped_at = None;
        if records.len() < query.limit && query.scan > 0 {
            // A short page: was the scan cut at its bound?
            let rows = self
                .pg
                .query(
                    doing,
                    "SELECT id FROM executions
                     WHERE app = $1 AND started_at <= $2 AND (started_at < $2 OR id < $3)
                     ORDER BY started_at DESC, id DESC LIMIT 1 OFFSET $4",
                    &[&query.app, &at, &id, &(scan - 1)],
                )
                .await?;
            stopped_at = rows.first().map(|r| to_u64(r.get(0)));
        }
        Ok(page_of((records, stopped_at), query.limit))
    }

    async fn execution(&self, app: &str, id: u64) -> Result<Option<ExecutionRecord>, Error> {
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1 AND app = $2");
        let rows = self
            .pg
            .query("reading an execution", &sql, &[&to_i64(id), &app])
            .await?;
        Ok(rows.first().map(execution_row))
    }

    async fn totals(&self) -> Result<BTreeMap<String, (u64, u64)>, Error> {
        let rows = self
            .pg
            .query(
                "counting executions",
                "SELECT app, COUNT(*), COUNT(*) FILTER (WHERE outcome <> 'ok')
                 FROM executions GROUP BY app",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), (to_u64(r.get(1)), to_u64(r.get(2)))))
            .collect())
    }

    async fn prune(&self, cutoff: u64, apps: &[String]) -> Result<(), Error> {
        let doing = "pruning old records";
        let mut client = self.pg.client(doing).await?;
        let tx = client.transaction().await.map_err(fail(doing))?;
        let cutoff = to_i64(cutoff);
        tx.execute(
            "DELETE FROM executions WHERE started_at < $1 OR app = ANY($2)",
            &[&cutoff, &apps],
        )
        .await
        .map_err(fail(doing))?;
        tx.execute(
            "DELETE FROM calls WHERE finished_at IS NOT NULL AND finished_at < $1",
            &[&cutoff],
        )
        .await
        .map_err(fail(doing))?;
        tx.commit().await.map_err(fail(doing))
    }

    async fn insert_call(
        &self,
        call: &SpawnedCall,
        at: u64,
        owner: &str,
        lease: Duration,
    ) -> Result<(), Error> {
        let parent = call.parent.as_ref();
        self.pg
            .query(
                "accepting a spawned call",
                "INSERT INTO calls (id, app, function, version, input, state, created_at,
                 caller_app, parent_call_id, root_call_id, depth, owner, lease_until)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11,
                 now() + $12::BIGINT * interval '1 millisecond')",
                &[
                    &call.id,
                    &call.app,
                    &call.function,
                    &call.version.map(to_i64),
                    &call.input,
                    &to_i64(at),
                    &parent.map(|p| p.app.as_str()),
                    &parent.map(|p| p.call_id.as_str()),
                    &parent.map(|p| p.root_call_id.as_str()),
                    &parent.map_or(0, |p| depth(p.depth)),
                    &owner,
                    &millis(lease),
                ],
            )
            .await
            .map(drop)
    }

    async fn finish_call(&self, id: &str, end: CallEnd, at: u64) -> Result<(), Error> {
        let (state, output, error, kind) = match end {
            CallEnd::Succeeded(output) => (CallState::Succeeded, Some(output), None, None),
            CallEnd::Failed { kind, message } => {
                (CallState::Failed, None, Some(message), Some(kind))
            }
        };
        self.pg.query(
            "storing the result of a spawned call",
            "UPDATE calls SET state = $2, output = $3, error = $4, error_kind = $5, finished_at = $6
             WHERE id = $1 AND state = 'pending'",
            &[&id, &state.as_str(), &output, &error, &kind, &to_i64(at)],
        )
        .await
        .map(drop)
    }

    async fn call(&self, id: &str) -> Result<Option<CallRecord>, Error> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = $1");
        let rows = self
            .pg
            .query("reading a spawned call", &sql, &[&id])
            .await?;
        rows.first().map(call_row).transpose()
    }

    async fn tree(&self, id: &str, limit: usize) -> Result<Vec<ExecutionRecord>, Error> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE root_call_id = $1 OR call_id = $1
             ORDER BY started_at, id LIMIT $2"
        );
        let rows = self
            .pg
            .query(
                "reading a tree of calls",
                &sql,
                &[&id, &to_i64(limit as u64)],
            )
            .await?;
        Ok(rows.iter().map(execution_row).collect())
    }

    async fn claim_calls(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<SpawnedCall>, Error> {
        let rows = self
            .pg
            .query(
                "claiming unfinished calls",
                "UPDATE calls SET owner = $1, lease_until = now() + $2::BIGINT * interval '1 millisecond'
                 WHERE id IN (SELECT id FROM calls WHERE state = 'pending' AND lease_until < now()
                              ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id, app, function, version, input, caller_app, parent_call_id,
                           root_call_id, depth, created_at",
                &[&owner, &millis(lease), &to_i64(limit as u64)],
            )
            .await?;
        let mut calls: Vec<(i64, SpawnedCall)> =
            rows.iter().map(|r| (r.get(9), spawned_row(r))).collect();
        calls.sort_by_key(|(created, _)| *created);
        Ok(calls.into_iter().map(|(_, c)| c).collect())
    }

    async fn renew_calls(&self, owner: &str, lease: Duration) -> Result<(), Error> {
        self.pg
            .query(
                "renewing claims on calls",
                "UPDATE calls SET lease_until = now() + $2::BIGINT * interval '1 millisecond'
             WHERE owner = $1 AND state = 'pending'",
                &[&owner, &millis(lease)],
            )
            .await
            .map(drop)
    }
}
