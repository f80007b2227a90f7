//! Execution records and spawned calls. [`RecordStore`] is where they are
//! kept (the embedded default is [`SqliteRecords`](super::SqliteRecords),
//! `executions.db`); the [`Recorder`] receives every execution on the call
//! path without I/O, counts it for the metrics, hands it to followers of
//! `modal app logs --follow` and to a writer task that stores batches.

use super::backoff::Backoff;
use super::metrics::{Backlog, Metrics};
use crate::app::{Execution, Trigger};
use crate::error::{Error, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;
use tokio::sync::{broadcast, mpsc};

/// Most records written in one transaction.
const BATCH: usize = 4096;

/// Most executions kept in memory while they cannot be stored.
pub(crate) const MAX_BACKLOG: usize = 100_000;

/// How long the writer lets records gather before a transaction.
const BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

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
    /// For a call made by another function, the caller's call id.
    #[serde(default)]
    pub parent_call_id: Option<String>,
    /// In a tree of calls, the call id of its root (a root that called
    /// other functions has its own).
    #[serde(default)]
    pub root_call_id: Option<String>,
    /// How deeply it was nested: 0 for a call from outside.
    #[serde(default)]
    pub depth: u32,
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

/// How wide one chart bucket is: a minute.
pub const BUCKET_MS: u64 = 60_000;

/// The calls of one function of one version in one minute.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Bucket {
    /// The minute's start, Unix ms (a multiple of [`BUCKET_MS`]).
    pub start: u64,
    /// The version.
    pub version: u64,
    /// The function.
    pub function: String,
    /// Executions that started in the minute.
    pub calls: u64,
    /// Of those, the failed ones.
    pub errors: u64,
    /// Median duration, ms (exact: PostgreSQL's `percentile_disc`).
    pub p50_ms: f64,
    /// 99th percentile duration, ms (exact, as `p50_ms`).
    pub p99_ms: f64,
}

/// The per-minute buckets of an app over a window of time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    /// Ordered by minute, version and function; minutes without
    /// executions are absent.
    pub buckets: Vec<Bucket>,
    /// The start of the oldest minute whose figures are whole: the
    /// window's start, unless the window held more executions than the
    /// query may read, in which case the older minutes are left out.
    pub complete_from: u64,
}

/// What [`RecordStore::search`] looks for: the executions of an app that
/// match every filter given, newest first (by start, then id).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExecutionQuery {
    /// The app.
    pub app: String,
    /// Only this function.
    pub function: Option<String>,
    /// Only this version.
    pub version: Option<u64>,
    /// Only executions that ended so.
    pub outcome: Option<Outcome>,
    /// Only executions started so.
    pub trigger: Option<Trigger>,
    /// Only executions whose logs or error hold this text (ASCII letters
    /// in any case).
    pub text: Option<String>,
    /// Only executions older than this one (the cursor of the page
    /// before).
    pub before: Option<u64>,
    /// Most executions returned.
    pub limit: usize,
    /// Most executions looked at (from the cursor on, newest first)
    /// before the filters: the bound on one query's work.
    pub scan: usize,
}

/// One page of [`RecordStore::search`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExecutionPage {
    /// The executions found, newest first.
    pub records: Vec<ExecutionRecord>,
    /// The cursor of the next (older) page: set when the page is full or
    /// when the scan stopped at its bound before the oldest execution.
    pub next: Option<u64>,
}

/// The `LIKE` pattern (with `\` as its escape) that finds `text` anywhere.
pub(crate) fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The `p` quantile of `sorted` (ascending, not empty) as PostgreSQL's
/// `percentile_disc` takes it: the first value whose position reaches the
/// fraction `p` of the values.
pub(crate) fn percentile_disc(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n.max(1));
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}

/// A page of `limit` from the executions found (newest first) and, for
/// a short page, the id at which the bounded scan stopped, if it did.
pub(crate) fn page_of(
    (records, scan_stopped_at): (Vec<ExecutionRecord>, Option<u64>),
    limit: usize,
) -> ExecutionPage {
    let next = if limit > 0 && records.len() >= limit {
        records.last().map(|r| r.id)
    } else {
        scan_stopped_at
    };
    ExecutionPage { records, next }
}

/// One execution as the buckets count it.
pub(crate) struct Sample {
    /// Start, Unix ms.
    pub(crate) started_at: u64,
    /// The version.
    pub(crate) version: u64,
    /// The function.
    pub(crate) function: String,
    /// Whether it failed.
    pub(crate) failed: bool,
    /// Duration, ms.
    pub(crate) duration_ms: f64,
}

/// Buckets from the samples of a window starting at `from` (read newest
/// first, at most `max_rows`; `samples.len() == max_rows` means the read
/// was cut, so the oldest minute read may be partial and is left out).
pub(crate) fn buckets_of(samples: Vec<Sample>, from: u64, max_rows: usize) -> Buckets {
    let mut groups: BTreeMap<(u64, u64, String), (Vec<f64>, u64)> = BTreeMap::new();
    let cut = samples.len() >= max_rows;
    for s in samples {
        let start = s.started_at - s.started_at % BUCKET_MS;
        let group = groups.entry((start, s.version, s.function)).or_default();
        group.0.push(s.duration_ms);
        group.1 += u64::from(s.failed);
    }
    let buckets = groups
        .into_iter()
        .map(|((start, version, function), (mut durations, errors))| {
            durations.sort_by(f64::total_cmp);
            Bucket {
                start,
                version,
                function,
                calls: durations.len() as u64,
                errors,
                p50_ms: percentile_disc(&durations, 0.5),
                p99_ms: percentile_disc(&durations, 0.99),
            }
        })
        .collect();
    whole_minutes(buckets, from, cut)
}

/// `buckets` (ordered by minute) without the oldest minute when the read
/// was `cut` short, with the start of the minutes that are whole.
pub(crate) fn whole_minutes(mut buckets: Vec<Bucket>, from: u64, cut: bool) -> Buckets {
    let complete_from = match (cut, buckets.first().map(|b| b.start)) {
        (true, Some(oldest)) => {
            buckets.retain(|b| b.start != oldest);
            oldest + BUCKET_MS
        }
        _ => from,
    };
    Buckets {
        buckets,
        complete_from,
    }
}

/// Where a spawned call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// It has not finished yet.
    Pending,
    /// It finished with an output.
    Succeeded,
    /// It finished with an error.
    Failed,
}

impl CallState {
    /// The lower-case name, as stored and as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Pending => "pending",
            CallState::Succeeded => "succeeded",
            CallState::Failed => "failed",
        }
    }

    /// The state named `name` (as [`as_str`](Self::as_str) writes it).
    pub fn parse(name: &str) -> Option<CallState> {
        [CallState::Pending, CallState::Succeeded, CallState::Failed]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
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
    /// Pending, succeeded or failed.
    pub state: CallState,
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
    /// For a call spawned by a function, that function's app.
    #[serde(default)]
    pub caller: Option<String>,
}

/// A spawned call as accepted: what to run (again, after a restart).
#[derive(Clone, Debug, PartialEq)]
pub struct SpawnedCall {
    /// Its id.
    pub id: String,
    /// The app.
    pub app: String,
    /// The function.
    pub function: String,
    /// The version asked for; the live one when `None`.
    pub version: Option<u64>,
    /// The input.
    pub input: Vec<u8>,
    /// For a call spawned by a function, who spawned it.
    pub parent: Option<CallParent>,
}

/// The function execution that spawned a call.
#[derive(Clone, Debug, PartialEq)]
pub struct CallParent {
    /// Its app.
    pub app: String,
    /// Its call id.
    pub call_id: String,
    /// The call id of the root of its tree of calls.
    pub root_call_id: String,
    /// The spawned call's depth (the parent's plus one).
    pub depth: u32,
}

/// How a spawned call ended.
#[derive(Clone, Debug, PartialEq)]
pub enum CallEnd {
    /// It returned this output.
    Succeeded(Vec<u8>),
    /// It failed.
    Failed {
        /// The error's kind ([`Error::kind`]).
        kind: String,
        /// The error's message.
        message: String,
    },
}

impl CallEnd {
    /// The end of a call that produced `result`.
    pub fn of(result: &Result<Vec<u8>, Error>) -> CallEnd {
        match result {
            Ok(output) => CallEnd::Succeeded(output.clone()),
            Err(e) => CallEnd::Failed {
                kind: e.kind().to_string(),
                message: e.to_string(),
            },
        }
    }
}

/// Where executions and spawned calls are kept. Each method is one
/// operation on records; none names a table or a file.
#[async_trait::async_trait]
pub trait RecordStore: Send + Sync + 'static {
    /// Where this process's execution ids start: ids above it are its own
    /// (on one host the largest id stored; in a cluster the start of a
    /// block no other host uses).
    async fn last_execution_id(&self) -> Result<u64, Error>;
    /// Stores executions, all or none.
    async fn insert_executions(&self, records: Vec<ExecutionRecord>) -> Result<(), Error>;
    /// The latest `limit` executions of `app` (of `function` if given),
    /// oldest first.
    async fn recent(
        &self,
        app: &str,
        function: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, Error>;
    /// The first `limit` executions of `app` (of `function` if given)
    /// whose id is above `after`, oldest first.
    async fn after(
        &self,
        app: &str,
        function: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, Error>;
    /// Usage per version and function of `app`.
    async fn usage(&self, app: &str) -> Result<Vec<Usage>, Error>;
    /// Calls, errors and exact p50/p99 durations per minute, version and
    /// function of the executions of `app` that started in `[from, to)`
    /// (Unix ms). At most `max_rows` executions are read, the newest
    /// first; past that the older minutes are left out (see
    /// [`Buckets::complete_from`]).
    async fn buckets(
        &self,
        app: &str,
        from: u64,
        to: u64,
        max_rows: usize,
    ) -> Result<Buckets, Error>;
    /// The executions that match `query`, newest first, one page.
    async fn search(&self, query: &ExecutionQuery) -> Result<ExecutionPage, Error>;
    /// Execution `id` of `app`, if it is stored.
    async fn execution(&self, app: &str, id: u64) -> Result<Option<ExecutionRecord>, Error>;
    /// Executions and failed executions per app.
    async fn totals(&self) -> Result<BTreeMap<String, (u64, u64)>, Error>;
    /// Deletes executions and finished calls older than `cutoff` (Unix
    /// ms), and every execution of `apps` (forgotten apps).
    async fn prune(&self, cutoff: u64, apps: &[String]) -> Result<(), Error>;
    /// Stores an accepted call as pending, durably, before it runs,
    /// claimed by `owner` for `lease`.
    async fn insert_call(
        &self,
        call: &SpawnedCall,
        at: u64,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<(), Error>;
    /// Stores how a spawned call ended, unless it already ended (a call
    /// run twice keeps its first end).
    async fn finish_call(&self, id: &str, end: CallEnd, at: u64) -> Result<(), Error>;
    /// The state of a spawned call.
    async fn call(&self, id: &str) -> Result<Option<CallRecord>, Error>;
    /// The executions of the call `id` and of every call in its tree
    /// (those whose root it is), oldest first, at most `limit`.
    async fn tree(&self, id: &str, limit: usize) -> Result<Vec<ExecutionRecord>, Error>;
    /// Claims for `owner`, for `lease`, up to `limit` unfinished calls
    /// whose claim ran out (their host died or was restarted), oldest
    /// first: each is returned to one claimer only until its lease ends.
    async fn claim_calls(
        &self,
        owner: &str,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<SpawnedCall>, Error>;
    /// Extends the claim of `owner` on every call it runs to `lease` from
    /// now.
    async fn renew_calls(&self, owner: &str, lease: std::time::Duration) -> Result<(), Error>;
}

/// What the writer task is sent.
enum Write {
    /// One record to store (shared with the followers until it is sent
    /// to them).
    Record(Arc<ExecutionRecord>),
    /// Store what has been sent so far now, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Stores what the recorder is sent, in batches. While the store fails
/// (e.g. the database is down) records wait in memory, at most
/// [`MAX_BACKLOG`] (the oldest are dropped and counted past it), and are
/// stored once it is back.
async fn write(
    store: Arc<dyn RecordStore>,
    mut rx: mpsc::UnboundedReceiver<Write>,
    backlog: Arc<Backlog>,
) {
    let mut pending: std::collections::VecDeque<ExecutionRecord> = Default::default();
    let mut failures = 0u32;
    let mut closed = false;
    loop {
        let mut flushed = Vec::new();
        let first = if pending.is_empty() {
            match rx.recv().await {
                Some(first) => Some(first),
                None => return,
            }
        } else {
            if failures > 0 {
                // Retry the backlog after a pause, with what came meanwhile.
                Backoff::RETRY.wait(failures.min(6)).await;
            }
            None
        };
        match first {
            Some(Write::Record(r)) => {
                pending.push_back(Arc::unwrap_or_clone(r));
                // Let a batch gather: one transaction per interval
                // instead of one per execution under load.
                tokio::time::sleep(BATCH_INTERVAL).await;
            }
            Some(Write::Flush(done)) => flushed.push(done),
            None => {}
        }
        loop {
            match rx.try_recv() {
                Ok(Write::Record(r)) => pending.push_back(Arc::unwrap_or_clone(r)),
                Ok(Write::Flush(done)) => flushed.push(done),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
            if pending.len() >= BATCH && failures == 0 {
                break;
            }
        }
        if pending.len() > MAX_BACKLOG {
            let excess = pending.len() - MAX_BACKLOG;
            pending.drain(..excess);
            backlog.dropped.fetch_add(excess as u64, Ordering::Relaxed);
            tracing::warn!(
                dropped = excess,
                "the execution backlog is full; dropped the oldest records"
            );
        }
        while !pending.is_empty() {
            let n = pending.len().min(BATCH);
            let batch: Vec<ExecutionRecord> = pending.iter().take(n).cloned().collect();
            match store.insert_executions(batch).await {
                Ok(()) => {
                    pending.drain(..n);
                    if failures > 0 {
                        tracing::info!("storing executions again");
                        failures = 0;
                    }
                }
                Err(e) => {
                    if failures == 0 {
                        tracing::error!(
                            waiting = pending.len(),
                            "could not store executions; keeping them to try again: {e}"
                        );
                    }
                    failures = failures.saturating_add(1);
                    break;
                }
            }
        }
        backlog
            .pending
            .store(pending.len() as u64, Ordering::Relaxed);
        // A flush answers once what was sent before it was tried.
        for done in flushed {
            let _ = done.send(());
        }
        if closed && failures > 0 {
            // The platform is gone: nothing will retry what is left.
            tracing::error!(
                lost = pending.len(),
                "executions could not be stored before the end"
            );
            return;
        }
    }
}

/// Receives executions: assigns ids, counts them, hands them to the writer
/// and to followers.
pub(crate) struct Recorder {
    next_id: AtomicU64,
    writer: mpsc::UnboundedSender<Write>,
    follow: broadcast::Sender<ExecutionRecord>,
    pub(crate) metrics: Metrics,
    pub(crate) store: Arc<dyn RecordStore>,
}

impl Recorder {
    /// A recorder over `store`, with its writer task started.
    pub(crate) async fn start(store: Arc<dyn RecordStore>) -> Result<Arc<Recorder>, Error> {
        let (writer, rx) = mpsc::unbounded_channel::<Write>();
        let (follow, _) = broadcast::channel(1024);
        let recorder = Arc::new(Recorder {
            next_id: AtomicU64::new(store.last_execution_id().await? + 1),
            writer,
            follow,
            metrics: Metrics::default(),
            store: store.clone(),
        });
        tokio::spawn(write(store, rx, recorder.metrics.backlog.clone()));
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
        self.metrics.count(e, outcome, seconds);
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
            parent_call_id: e.parent_call_id.clone(),
            root_call_id: e.root_call_id.clone(),
            depth: e.depth,
        };
        // The writer gets it before the followers are counted: a follower
        // that subscribes too late to see it live finds it stored after a
        // flush. (The writer unwraps it without a copy once this `Arc` is
        // gone, unless a follower needed one.)
        let record = Arc::new(record);
        let _ = self.writer.send(Write::Record(record.clone()));
        if self.follow.receiver_count() > 0 {
            let _ = self.follow.send((*record).clone());
        }
    }

    /// Waits until every execution recorded so far is stored.
    pub(crate) async fn flush(&self) {
        let (done, stored) = tokio::sync::oneshot::channel();
        if self.writer.send(Write::Flush(done)).is_ok() {
            let _ = stored.await;
        }
    }

    /// New executions as they are recorded.
    pub(crate) fn follow(&self) -> broadcast::Receiver<ExecutionRecord> {
        self.follow.subscribe()
    }
}

/// `records` (oldest first) in tree order: each execution followed by the
/// executions of the calls it made, indented one step deeper, children in
/// the order they started. Executions whose caller is not among `records`
/// start a tree of their own; trees come in the order of their first
/// execution, or newest first with `newest_first`. Each item is (indent,
/// execution).
pub fn tree_order(
    records: &[ExecutionRecord],
    newest_first: bool,
) -> Vec<(usize, &ExecutionRecord)> {
    use std::collections::{HashMap, HashSet};
    let calls: HashSet<&str> = records
        .iter()
        .filter_map(|r| r.call_id.as_deref())
        .collect();
    let mut children: HashMap<&str, Vec<&ExecutionRecord>> = HashMap::new();
    let mut roots = Vec::new();
    for r in records {
        match r.parent_call_id.as_deref() {
            Some(parent) if calls.contains(parent) && r.call_id.as_deref() != Some(parent) => {
                children.entry(parent).or_default().push(r)
            }
            _ => roots.push(r),
        }
    }
    for list in children.values_mut() {
        list.sort_by_key(|r| (r.started_at, r.id));
    }
    if newest_first {
        roots.reverse();
    }
    let mut out = Vec::with_capacity(records.len());
    let mut placed: HashSet<&str> = HashSet::new();
    let mut stack: Vec<(usize, &ExecutionRecord)> =
        roots.into_iter().rev().map(|r| (0, r)).collect();
    while let Some((indent, r)) = stack.pop() {
        out.push((indent, r));
        // The children of a call go under its first execution only (a
        // retried call has several).
        let Some(id) = r.call_id.as_deref() else {
            continue;
        };
        if !placed.insert(id) {
            continue;
        }
        if let Some(list) = children.get(id) {
            stack.extend(list.iter().rev().map(|c| (indent + 1, *c)));
        }
    }
    out
}

/// What every [`RecordStore`] must answer alike, run on each backend by
/// its own tests.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    /// The start of the minute the records begin at.
    const T: u64 = 1_000 * BUCKET_MS;

    fn record(
        id: u64,
        app: &str,
        version: u64,
        function: &str,
        started_at: u64,
        ms: f64,
    ) -> ExecutionRecord {
        ExecutionRecord {
            id,
            app: app.into(),
            version,
            function: function.into(),
            trigger: Trigger::Call,
            started_at,
            duration_ms: ms,
            outcome: Outcome::Ok,
            error: None,
            logs: String::new(),
            memory: 1 << 20,
            run_id: None,
            call_id: None,
            http_status: None,
            parent_call_id: None,
            root_call_id: None,
            depth: 0,
        }
    }

    /// 100 calls of `sq` v1 in the first minute (1..=100 ms, three
    /// failed), two of `sq` v2 and one web request in the second, and one
    /// execution of another app.
    fn records() -> Vec<ExecutionRecord> {
        let mut records: Vec<ExecutionRecord> = (1..=100u64)
            .rev()
            .map(|i| record(i, "a", 1, "sq", T + i * 100, i as f64))
            .collect();
        for (id, error) in [(10, "boom 1%"), (20, "boom 10"), (30, "boomAx")] {
            let r = &mut records[100 - id];
            r.outcome = Outcome::Error;
            r.error = Some(error.into());
        }
        records[100 - 40].logs = "boom_x\n".into();
        records.push(record(101, "a", 2, "sq", T + BUCKET_MS + 10, 7.0));
        records.push(record(102, "a", 2, "sq", T + BUCKET_MS + 20, 5.0));
        let mut web = record(103, "a", 2, "web", T + BUCKET_MS + 30, 2.5);
        (web.trigger, web.http_status, web.logs) = (Trigger::Web, Some(200), "hello WORLD".into());
        records.push(web);
        records.push(record(200, "b", 1, "sq", T + 5, 1.0));
        records
    }

    fn bucket(
        start: u64,
        version: u64,
        function: &str,
        calls: u64,
        errors: u64,
        p50: f64,
        p99: f64,
    ) -> Bucket {
        Bucket {
            start,
            version,
            function: function.into(),
            calls,
            errors,
            p50_ms: p50,
            p99_ms: p99,
        }
    }

    fn ids(page: &ExecutionPage) -> Vec<u64> {
        page.records.iter().map(|r| r.id).collect()
    }

    /// Stores the records in `store` and checks the buckets, the search
    /// and the look-up by id.
    pub(crate) async fn check(store: &dyn RecordStore) {
        store.insert_executions(records()).await.unwrap();
        let end = T + 10 * BUCKET_MS;
        let all = store.buckets("a", T, end, 10_000).await.unwrap();
        let second = [
            bucket(T + BUCKET_MS, 2, "sq", 2, 0, 5.0, 7.0),
            bucket(T + BUCKET_MS, 2, "web", 1, 0, 2.5, 2.5),
        ];
        let mut expected = vec![bucket(T, 1, "sq", 100, 3, 50.0, 99.0)];
        expected.extend(second.clone());
        assert_eq!(
            all,
            Buckets {
                buckets: expected,
                complete_from: T
            }
        );
        // The window's bounds hold; an app's executions are its own.
        let later = store
            .buckets("a", T + BUCKET_MS, end, 10_000)
            .await
            .unwrap();
        assert_eq!(later.buckets, second);
        assert!(
            store
                .buckets("a", T + 2 * BUCKET_MS, end, 10)
                .await
                .unwrap()
                .buckets
                .is_empty()
        );
        assert_eq!(
            store.buckets("b", T, end, 10).await.unwrap().buckets.len(),
            1
        );
        // Reading at most 50 executions: the first minute is cut, so it is
        // left out rather than shown partial.
        let bounded = store.buckets("a", T, end, 50).await.unwrap();
        assert_eq!(
            bounded,
            Buckets {
                buckets: second.to_vec(),
                complete_from: T + BUCKET_MS
            }
        );

        let query = |f: &dyn Fn(&mut ExecutionQuery)| {
            let mut q = ExecutionQuery {
                app: "a".into(),
                limit: 10,
                scan: 1_000,
                ..Default::default()
            };
            f(&mut q);
            q
        };
        // Newest first, in pages by cursor.
        let first = store.search(&query(&|_| {})).await.unwrap();
        assert_eq!(ids(&first), [103, 102, 101, 100, 99, 98, 97, 96, 95, 94]);
        assert_eq!(first.next, Some(94));
        let second_page = store
            .search(&query(&|q| q.before = Some(94)))
            .await
            .unwrap();
        assert_eq!(ids(&second_page), (84..=93).rev().collect::<Vec<_>>());
        let last = store
            .search(&query(&|q| (q.before, q.limit) = (Some(3), 10)))
            .await
            .unwrap();
        assert_eq!((ids(&last), last.next), (vec![2, 1], None));
        // A cursor that is gone, or of another app, ends the pages.
        for gone in [999, 200] {
            let page = store
                .search(&query(&|q| q.before = Some(gone)))
                .await
                .unwrap();
            assert_eq!(page, ExecutionPage::default(), "{gone}");
        }
        // Filters.
        let web = store
            .search(&query(&|q| q.function = Some("web".into())))
            .await
            .unwrap();
        assert_eq!((ids(&web), web.next), (vec![103], None));
        let failed = store
            .search(&query(&|q| q.outcome = Some(Outcome::Error)))
            .await
            .unwrap();
        assert_eq!(ids(&failed), [30, 20, 10]);
        let v2 = store
            .search(&query(&|q| {
                (q.version, q.trigger) = (Some(2), Some(Trigger::Call))
            }))
            .await
            .unwrap();
        assert_eq!(ids(&v2), [102, 101]);
        // Search: a substring of logs or errors, `%` and `_` as written,
        // letters in any case.
        for (text, expect) in [
            ("1%", vec![10]),
            ("m_x", vec![40]),
            ("world", vec![103]),
            ("BOOM", vec![40, 30, 20, 10]),
        ] {
            let found = store
                .search(&query(&|q| q.text = Some(text.into())))
                .await
                .unwrap();
            assert_eq!(ids(&found), expect, "{text}");
        }
        // A scan of 5 finds two of v1 and says where it stopped.
        let scan = store
            .search(&query(&|q| (q.version, q.scan) = (Some(1), 5)))
            .await
            .unwrap();
        assert_eq!((ids(&scan), scan.next), (vec![100, 99], Some(99)));
        let on = store
            .search(&query(&|q| {
                (q.version, q.scan, q.before) = (Some(1), 5, Some(99))
            }))
            .await
            .unwrap();
        assert_eq!((ids(&on), on.next), (vec![98, 97, 96, 95, 94], Some(94)));
        // One execution, only under its own app.
        let one = store.execution("a", 103).await.unwrap().unwrap();
        assert_eq!(
            (one.http_status, one.logs.as_str()),
            (Some(200), "hello WORLD")
        );
        assert_eq!(store.execution("b", 103).await.unwrap(), None);
        assert_eq!(store.execution("a", 999).await.unwrap(), None);
    }

    #[test]
    fn percentiles_are_postgres_percentile_disc() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile_disc(&values, 0.5), 50.0);
        assert_eq!(percentile_disc(&values, 0.99), 99.0);
        assert_eq!(percentile_disc(&[3.0], 0.99), 3.0);
        assert_eq!(percentile_disc(&[1.0, 2.0], 0.5), 1.0);
        assert_eq!(percentile_disc(&[1.0, 2.0, 3.0], 0.5), 2.0);
        assert_eq!(percentile_disc(&[], 0.5), 0.0);
        assert_eq!(like_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }
}
