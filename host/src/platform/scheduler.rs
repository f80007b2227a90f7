//! The scheduler: runs each scheduled function of every live version at
//! its fire times.
//!
//! Schedules belong to (app, function), not to a version: a fire time runs
//! on whatever version is live then, so redeploys and rollbacks move them
//! without a skipped or doubled fire. Before a fire time runs it is
//! recorded in the registry (one transaction per batch of due fires); a
//! recorded fire time is never run again, across restarts too. Fire times
//! missed while the host was down, or while the loop was held up past
//! them (an overloaded or paused host: only the latest of those runs),
//! are recorded once as missed, not replayed. A fire time that comes while
//! the previous run (with its retries) is still going is skipped and
//! recorded as skipped.
//!
//! Hosts on the same stores all keep the table (for what `schedule list`
//! shows), but only the holder of the scheduler lease fires: it renews
//! the lease every third of its time, and records fire times under the
//! lease's fencing token, so a host that lost the lease records and runs
//! nothing. A host that takes the lease over rebuilds its table from the
//! stored fire times, like a host that starts.

use super::backoff::Backoff;
use super::fire_times::{Compiled, passed};
use super::now_ms;
use super::registry::{Fire, Registry};
use crate::app::{Execution, Trigger};
use crate::error::Error;
use crate::spec::Schedule;
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// Delivery attempts of a failure webhook.
const WEBHOOK_ATTEMPTS: u32 = 4;
/// Time allowed for one webhook delivery.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of the run's logs sent with a failure.
const LOG_TAIL: usize = 2048;

/// The name of the lease whose holder fires the schedules.
const LEASE: &str = "scheduler";

/// A schedule's owner: (app, function).
pub(crate) type Key = (String, String);

/// A fire time due now, taken off the queue.
struct Due {
    key: Key,
    at: u64,
    /// The fire times before it that the loop woke too late for: how
    /// many, the first and the last.
    late: Option<(u64, u64, u64)>,
}

/// A scheduled function of a live version, as the scheduler wants it.
pub(crate) struct Wanted {
    /// When it runs.
    pub(crate) schedule: Schedule,
    /// Its retries.
    pub(crate) retries: u32,
    /// The live version.
    pub(crate) version: u64,
}

/// What the scheduler needs of its platform: which schedules the live
/// versions have, and how to run and record a fire time.
#[async_trait::async_trait]
pub(crate) trait Runner: Send + Sync + 'static {
    /// The scheduled functions of every live version.
    fn wanted(&self) -> HashMap<Key, Wanted>;
    /// The live version of `app`, if it serves.
    fn live_version(&self, app: &str) -> Option<u64>;
    /// Runs scheduled function `function` of the live version of `app`.
    async fn run(&self, app: &str, function: &str, run_id: &str) -> Result<Execution, Error>;
    /// Records an execution (a skipped or missed fire time).
    fn record(&self, execution: &Execution);
    /// This host took or lost the scheduler lease (the others are told).
    fn leadership_changed(&self);
    /// Where a failed run of `version` of `app` is reported, if anywhere.
    async fn notify_url(&self, app: &str, version: u64) -> Option<String>;
}

struct Entry {
    schedule: Schedule,
    compiled: Compiled,
    retries: u32,
    next: Option<u64>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    queue: BTreeSet<(u64, String, String)>,
    running: HashSet<Key>,
    paused: HashSet<Key>,
}

/// A schedule as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ScheduleStatus {
    /// The function.
    pub function: String,
    /// When it runs.
    pub schedule: String,
    /// The next fire time (Unix ms), unless paused.
    pub next_fire: Option<u64>,
    /// Whether it is paused.
    pub paused: bool,
    /// Whether a run is going on.
    pub running: bool,
}

/// The scheduler of one platform.
pub(crate) struct Scheduler {
    state: Mutex<State>,
    changed: Arc<Notify>,
    registry: Arc<dyn Registry>,
    runner: Box<dyn Runner>,
    /// Where runs go (the platform's runtime).
    runtime: tokio::runtime::Handle,
    /// This host's id, as the lease's holder.
    holder: String,
    /// How long the lease lasts without renewal.
    lease: Duration,
    /// The lease's fencing token while this host holds it.
    fence: Mutex<Option<u64>>,
    /// Set when another host may have paused or resumed a schedule: the
    /// next reconcile reads the pauses again.
    reload_paused: std::sync::atomic::AtomicBool,
}

impl Scheduler {
    /// A scheduler keeping fire times in `registry` and running them
    /// through `runner` on `runtime`; [`start`](Self::start) starts it.
    /// `(holder, lease)` names this host and the time its lease lasts.
    pub(crate) fn new(
        registry: Arc<dyn Registry>,
        runner: Box<dyn Runner>,
        runtime: tokio::runtime::Handle,
        (holder, lease): (String, Duration),
    ) -> Scheduler {
        Scheduler {
            state: Mutex::default(),
            changed: Arc::default(),
            registry,
            runner,
            runtime,
            holder,
            lease,
            fence: Mutex::new(None),
            reload_paused: Default::default(),
        }
    }

    fn fence(&self) -> Option<u64> {
        *self.fence.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_fence(&self, fence: Option<u64>) {
        let old = std::mem::replace(
            &mut *self.fence.lock().unwrap_or_else(PoisonError::into_inner),
            fence,
        );
        if old.is_some() != fence.is_some() {
            self.runner.leadership_changed();
        }
    }

    /// Whether this host fires the schedules.
    pub(crate) fn leads(&self) -> bool {
        self.fence().is_some()
    }

    /// Stops firing (the host is shutting down); the lease is ended by
    /// the registry.
    pub(crate) fn resign(&self) {
        self.set_fence(None);
    }

    /// Asks the loop to read the stored pauses again (another host may
    /// have changed them).
    pub(crate) fn reload_paused(&self) {
        self.reload_paused
            .store(true, std::sync::atomic::Ordering::Release);
        self.changed.notify_one();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the loop to re-read the live versions (after a deploy, stop,
    /// rollback, pause or resume).
    pub(crate) fn changed(&self) {
        self.changed.notify_one();
    }

    /// The schedules of `app`.
    pub(crate) fn status(&self, app: &str) -> Vec<ScheduleStatus> {
        let state = self.state();
        let mut list: Vec<ScheduleStatus> = state
            .entries
            .iter()
            .filter(|((a, _), _)| a == app)
            .map(|((a, f), e)| {
                let key = (a.clone(), f.clone());
                let paused = state.paused.contains(&key);
                ScheduleStatus {
                    function: f.clone(),
                    schedule: e.schedule.to_string(),
                    next_fire: if paused { None } else { e.next },
                    paused,
                    running: state.running.contains(&key),
                }
            })
            .collect();
        list.sort_by(|a, b| a.function.cmp(&b.function));
        list
    }

    /// Records the fire times missed while the host was down, then starts
    /// the loop; it ends when the scheduler is dropped.
    pub(crate) async fn start(this: &Arc<Scheduler>) -> Result<(), Error> {
        let fence = this
            .registry
            .take_lease(LEASE, &this.holder, this.lease)
            .await?;
        let missed = this.reconcile(true).await?;
        if fence.is_some() {
            for (app, function, version, message) in missed {
                this.record_skip(&app, &function, version, &message);
            }
        }
        this.set_fence(fence);
        this.runtime.spawn(run_loop(Arc::downgrade(this)));
        this.runtime.spawn(lead_loop(Arc::downgrade(this)));
        Ok(())
    }

    /// Takes the lease over with `fence`: the table is rebuilt from the
    /// stored fire times, those missed since recorded as missed.
    async fn take_over(&self, fence: u64) -> Result<(), Error> {
        {
            let mut state = self.state();
            state.entries.clear();
            state.queue.clear();
        }
        for (app, function, version, message) in self.reconcile(true).await? {
            self.record_skip(&app, &function, version, &message);
        }
        self.set_fence(Some(fence));
        tracing::info!(fence, "this host now fires the schedules");
        self.changed.notify_one();
        Ok(())
    }

    /// Renews the lease, or takes it when it ran out.
    async fn renew(&self, renewed: &mut std::time::Instant) {
        match self
            .registry
            .take_lease(LEASE, &self.holder, self.lease)
            .await
        {
            Ok(Some(fence)) => {
                *renewed = std::time::Instant::now();
                if self.fence() != Some(fence)
                    && let Err(e) = self.take_over(fence).await
                {
                    tracing::error!("could not take over the schedules: {e}");
                }
            }
            Ok(None) => {
                if self.leads() {
                    tracing::warn!("another host took over the schedules");
                    self.set_fence(None);
                }
            }
            Err(e) => {
                if self.leads() && renewed.elapsed() >= self.lease {
                    tracing::warn!("could not renew the scheduler lease; no longer firing: {e}");
                    self.set_fence(None);
                }
            }
        }
    }

    /// Takes the fire times due at `now` off the queue, with the time the
    /// loop next wakes. When the loop woke too late for several fire times
    /// of a schedule, only the latest runs; the earlier ones come with it
    /// (how many, the first, the last), to be recorded as missed.
    fn take_due(&self, now: u64) -> (Vec<Due>, Option<u64>) {
        let mut state = self.state();
        let mut due = Vec::new();
        while let Some(first) = state.queue.first().cloned() {
            if first.0 > now {
                break;
            }
            state.queue.pop_first();
            let key = (first.1.clone(), first.2.clone());
            if let Some(entry) = state.entries.get_mut(&key) {
                let until = now.saturating_sub(1);
                // The latest fire time passed runs (as after a restart);
                // the ones before it, from the first due, are missed. It
                // is also the one stored as fired, so a restart does not
                // find those again.
                let (count, _, latest) = passed(&entry.compiled, first.0, until);
                let late = (count > 0).then(|| {
                    let before = latest.saturating_sub(1);
                    let (between, _, last) = passed(&entry.compiled, first.0, before);
                    (between + 1, first.0, last)
                });
                entry.next = entry.compiled.next_after(first.0.max(until));
                if let Some(next) = entry.next {
                    state.queue.insert((next, key.0.clone(), key.1.clone()));
                }
                due.push(Due {
                    key,
                    at: latest,
                    late,
                });
            }
        }
        (due, state.queue.first().map(|f| f.0))
    }

    /// Brings the schedule table in line with the live versions. On the
    /// first call (start-up) also returns the fire times missed while the
    /// host was down: (app, function, version, message).
    async fn reconcile(&self, startup: bool) -> Result<Vec<(String, String, u64, String)>, Error> {
        let stored = self.registry.schedules().await?;
        let wanted = self.runner.wanted();
        let now = now_ms();
        let mut missed = Vec::new();
        let mut state = self.state();
        let state = &mut *state;
        state.entries.retain(|key, entry| {
            let keep = wanted
                .get(key)
                .is_some_and(|w| w.schedule == entry.schedule);
            if !keep && let Some(next) = entry.next {
                state.queue.remove(&(next, key.0.clone(), key.1.clone()));
            }
            keep
        });
        let reload = self
            .reload_paused
            .swap(false, std::sync::atomic::Ordering::AcqRel);
        if startup || reload {
            // Afterwards `pause` keeps it current; reading it again
            // otherwise could undo a pause made while the stored state was
            // read.
            state.paused = stored
                .iter()
                .filter(|(_, s)| s.paused)
                .map(|(k, _)| k.clone())
                .collect();
        }
        for (key, want) in wanted {
            if let Some(entry) = state.entries.get_mut(&key) {
                entry.retries = want.retries;
                continue;
            }
            let compiled = match Compiled::new(&want.schedule) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(app = %key.0, function = %key.1, "invalid schedule: {e}");
                    continue;
                }
            };
            let last = stored.get(&key).and_then(|s| s.last_fire);
            let mut from = last.map_or(now, |l| l.max(now));
            if startup
                && let Some(l) = last
                && !stored.get(&key).is_some_and(|s| s.paused)
            {
                // Every fire time since the last recorded one either runs or
                // is recorded as missed: those older than a second are
                // missed; a more recent one (the host just started) runs now.
                let (count, first, at) = passed(&compiled, l, now.saturating_sub(1000));
                if let Some(first) = first {
                    let message = missed_message(count, first, at, "the host was down");
                    tracing::warn!(app = %key.0, function = %key.1, "{message}");
                    missed.push((key.0.clone(), key.1.clone(), want.version, message));
                }
                from = at;
            }
            let next = compiled.next_after(from);
            if let Some(n) = next {
                state.queue.insert((n, key.0.clone(), key.1.clone()));
            }
            let entry = Entry {
                schedule: want.schedule,
                compiled,
                retries: want.retries,
                next,
            };
            state.entries.insert(key, entry);
        }
        Ok(missed)
    }

    /// Records a skipped or missed fire time as an execution.
    fn record_skip(&self, app: &str, function: &str, version: u64, message: &str) {
        let execution = Execution {
            app: Arc::from(app),
            version,
            function: Arc::from(function),
            trigger: Trigger::Schedule,
            started_at: SystemTime::now(),
            duration: Duration::ZERO,
            outcome: Err(Error::Skipped(message.to_string())),
            logs: String::new(),
            cold: false,
            memory: 0,
            run_id: None,
            call_id: None,
            http_status: None,
            parent_call_id: None,
            root_call_id: None,
            depth: 0,
            request: None,
        };
        self.runner.record(&execution);
    }

    /// Takes the due fire times: records them, then starts their runs.
    async fn fire(self: &Arc<Self>, due: Vec<Due>) {
        let Some(fence) = self.fence() else {
            // Another host fires them.
            return;
        };
        let fires: Vec<Fire> = due
            .iter()
            .map(|d| (d.key.0.clone(), d.key.1.clone(), d.at))
            .collect();
        let late: HashMap<Key, (u64, u64, u64)> = due
            .into_iter()
            .filter_map(|d| Some((d.key, d.late?)))
            .collect();
        let taken = match self.registry.record_fires(&fires, fence).await {
            Ok(taken) => taken,
            Err(Error::NotLeader(_)) => {
                tracing::warn!("another host took over the schedules");
                self.set_fence(None);
                return;
            }
            Err(e) => {
                // Not recorded means it could run again after a restart: do
                // not run it now either.
                tracing::error!("could not record fire times; skipping them: {e}");
                return;
            }
        };
        let now = now_ms();
        for (app, function, at) in taken {
            let key = (app.clone(), function.clone());
            let (paused, busy, retries) = {
                let mut state = self.state();
                let paused = state.paused.contains(&key);
                let busy = state.running.contains(&key);
                if !paused && !busy {
                    state.running.insert(key.clone());
                }
                let retries = state.entries.get(&key).map_or(0, |e| e.retries);
                (paused, busy, retries)
            };
            if paused {
                continue;
            }
            if let Some((count, from, to)) = late.get(&key) {
                let version = self.runner.live_version(&app).unwrap_or(0);
                let why = "the scheduler was held up (an overloaded or paused host)";
                let message = missed_message(*count, *from, *to, why);
                tracing::warn!(app, function, "{message}");
                self.record_skip(&app, &function, version, &message);
            }
            if busy {
                let version = self.runner.live_version(&app).unwrap_or(0);
                let message = format!(
                    "skipped the fire time {}: the previous run is still going",
                    rfc3339(at)
                );
                self.record_skip(&app, &function, version, &message);
                continue;
            }
            let lateness = now.saturating_sub(at);
            if lateness > 1000 {
                tracing::warn!(
                    app,
                    function,
                    lateness_ms = lateness,
                    "a scheduled run starts late"
                );
            }
            let run_id = format!("run-{app}-{function}-{at}");
            let this = self.clone();
            self.runtime
                .spawn(async move { this.run(key, at, run_id, retries).await });
        }
    }

    /// Runs one fire time with its retries, then reports a final failure.
    async fn run(&self, key: Key, at: u64, run_id: String, retries: u32) {
        let (app, function) = (&key.0, &key.1);
        let mut attempts = 0;
        let failure = loop {
            attempts += 1;
            match self.runner.run(app, function, &run_id).await {
                Ok(e) if e.outcome.is_ok() => break None,
                Ok(_) if attempts <= retries => {
                    tracing::info!(
                        app,
                        function,
                        run_id,
                        attempts,
                        "scheduled run failed; retrying"
                    );
                    Backoff::RETRY.wait(attempts).await;
                }
                Ok(e) => break Some(e),
                // The app was stopped or removed meanwhile: nothing to report.
                Err(_) => break None,
            }
        };
        self.state().running.remove(&key);
        if let Some(e) = failure {
            self.report(&key, at, &run_id, attempts, e).await;
        }
    }

    /// Logs a run that failed for good and posts it to the app's webhook.
    async fn report(
        &self,
        (app, function): &Key,
        at: u64,
        run_id: &str,
        attempts: u32,
        e: Execution,
    ) {
        let error = e.outcome.err().map(|e| e.to_string()).unwrap_or_default();
        tracing::warn!(
            app,
            function,
            run_id,
            attempts,
            "scheduled run failed: {error}"
        );
        let Some(url) = self.runner.notify_url(app, e.version).await else {
            return;
        };
        let tail_start = e.logs.len().saturating_sub(LOG_TAIL);
        let payload = Failure {
            app,
            version: e.version,
            function,
            run_id,
            fire_time: rfc3339(at),
            fire_time_ms: at,
            attempts,
            error: &error,
            log_tail: &e.logs[e.logs.ceil_char_boundary(tail_start)..],
        };
        let body = serde_json::to_vec(&payload).unwrap_or_default();
        self.runtime.spawn(deliver(url, body, app.clone()));
    }

    /// Pauses or resumes the schedule of `function` (a scheduled function
    /// of the live version of `app`).
    pub(crate) async fn pause(&self, app: &str, function: &str, paused: bool) -> Result<(), Error> {
        self.registry.set_paused(app, function, paused).await?;
        {
            let mut state = self.state();
            let key = (app.to_string(), function.to_string());
            if paused {
                state.paused.insert(key);
            } else {
                state.paused.remove(&key);
            }
        }
        tracing::info!(app, function, paused, "schedule updated");
        Ok(())
    }

    /// Fires `function` now, once, as a scheduled run; returns its run id.
    pub(crate) fn run_now(
        self: &Arc<Self>,
        app: &str,
        function: &str,
        retries: u32,
    ) -> Result<String, Error> {
        let key = (app.to_string(), function.to_string());
        if !self.state().running.insert(key.clone()) {
            return Err(Error::Skipped(format!(
                "`{function}` has a run in progress"
            )));
        }
        let at = now_ms();
        let run_id = format!("run-{app}-{function}-{at}-now");
        let this = self.clone();
        let id = run_id.clone();
        self.runtime
            .spawn(async move { this.run(key, at, id, retries).await });
        Ok(run_id)
    }
}

/// Keeps the scheduler lease: renews it while held, takes it when it runs
/// out; ends when the scheduler is dropped.
async fn lead_loop(weak: Weak<Scheduler>) {
    let Some(lease) = weak.upgrade().map(|s| s.lease) else {
        return;
    };
    let mut tick = tokio::time::interval((lease / 3).max(Duration::from_millis(10)));
    tick.tick().await;
    let mut renewed = std::time::Instant::now();
    loop {
        tick.tick().await;
        let Some(scheduler) = weak.upgrade() else {
            return;
        };
        scheduler.renew(&mut renewed).await;
    }
}

async fn run_loop(weak: Weak<Scheduler>) {
    loop {
        let Some(scheduler) = weak.upgrade() else {
            return;
        };
        let (due, wake) = scheduler.take_due(now_ms());
        if !due.is_empty() {
            scheduler.fire(due).await;
        }
        let sleep = wake.map_or(Duration::from_secs(60), |w| {
            Duration::from_millis(w.saturating_sub(now_ms()))
        });
        // Wait without holding the scheduler, so that dropping the
        // platform ends the loop.
        let notify = scheduler.changed.clone();
        let changed = notify.notified();
        drop(scheduler);
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = changed => {
                let Some(scheduler) = weak.upgrade() else { return };
                if let Err(e) = scheduler.reconcile(false).await {
                    tracing::error!("could not update schedules: {e}");
                }
            }
        }
    }
}

/// The fields of a failure webhook.
#[derive(Serialize)]
struct Failure<'a> {
    app: &'a str,
    version: u64,
    function: &'a str,
    run_id: &'a str,
    fire_time: String,
    fire_time_ms: u64,
    attempts: u32,
    error: &'a str,
    log_tail: &'a str,
}

/// The record of `count` fire times, `first` to `last`, missed while
/// `why`.
fn missed_message(count: u64, first: u64, last: u64, why: &str) -> String {
    format!(
        "missed {count} fire time(s) while {why}, from {} to {}; they are not replayed",
        rfc3339(first),
        rfc3339(last)
    )
}

fn rfc3339(ms: u64) -> String {
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// POSTs a failure to its webhook, retrying a few times; never blocks the
/// scheduler.
async fn deliver(url: String, body: Vec<u8>, app: String) {
    use http_body_util::BodyExt;
    let backoff = Backoff {
        first: Duration::from_secs(1),
        max: Duration::from_secs(8),
    };
    for attempt in 1..=WEBHOOK_ATTEMPTS {
        let request = http::Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("modal/", env!("CARGO_PKG_VERSION")),
            )
            .body(
                http_body_util::Full::new(bytes::Bytes::from(body.clone()))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(app, url, "invalid failure webhook URL: {e}");
                return;
            }
        };
        let sent = tokio::time::timeout(WEBHOOK_TIMEOUT, async {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, None).await?;
            tokio::spawn(io);
            let status = response.status();
            let _ = response.into_body().collect().await;
            Ok::<_, wasmtime_wasi_http::Error>(status)
        })
        .await;
        match sent {
            Ok(Ok(status)) if status.is_success() => return,
            other => tracing::warn!(
                app,
                url,
                attempt,
                "failure webhook delivery failed: {other:?}"
            ),
        }
        if attempt < WEBHOOK_ATTEMPTS {
            backoff.wait(attempt).await;
        }
    }
    tracing::error!(app, url, "gave up delivering a failure webhook");
}
