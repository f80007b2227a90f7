//! The scheduler: runs each scheduled function of every live version at
//! its fire times.
//!
//! Schedules belong to (app, function), not to a version: a fire time runs
//! on whatever version is live then, so redeploys and rollbacks move them
//! without a skipped or doubled fire. Before a fire time runs it is
//! recorded in the registry (one transaction per batch of due fires); a
//! recorded fire time is never run again, across restarts too. Fire times
//! missed while the host was down are recorded once as missed, not
//! replayed. A fire time that comes while the previous run (with its
//! retries) is still going is skipped and recorded as skipped.

use super::{Platform, now_ms};
use crate::app::{Execution, Trigger};
use crate::error::Error;
use crate::spec::{FunctionKind, Schedule};
use chrono::{TimeZone, Utc};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// Delivery attempts of a failure webhook.
const WEBHOOK_ATTEMPTS: u32 = 4;
/// Time allowed for one webhook delivery.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of the run's logs sent with a failure.
const LOG_TAIL: usize = 2048;
/// Most missed fire times counted for one schedule after a restart.
const MAX_MISSED: u64 = 100_000;

type Key = (String, String);

/// A schedule ready to compute fire times.
#[derive(Clone)]
pub(crate) enum Compiled {
    Cron(Box<cron::Schedule>, chrono_tz::Tz),
    Period(u64),
}

impl Compiled {
    pub(crate) fn new(schedule: &Schedule) -> Result<Compiled, String> {
        match schedule {
            Schedule::Cron {
                expression,
                timezone,
            } => {
                let cron = cron::Schedule::from_str(expression).map_err(|e| e.to_string())?;
                let tz = match timezone {
                    Some(tz) => tz.parse::<chrono_tz::Tz>().map_err(|e| e.to_string())?,
                    None => chrono_tz::UTC,
                };
                Ok(Compiled::Cron(Box::new(cron), tz))
            }
            Schedule::Period(period) => Ok(Compiled::Period((period.as_millis() as u64).max(1))),
        }
    }

    /// The first fire time strictly after `after` (Unix ms). Periods fire
    /// at multiples of the period since the epoch, so every host agrees.
    pub(crate) fn next_after(&self, after: u64) -> Option<u64> {
        match self {
            Compiled::Period(p) => Some((after / p + 1) * p),
            Compiled::Cron(cron, tz) => {
                let at = Utc
                    .timestamp_millis_opt(after as i64)
                    .single()?
                    .with_timezone(tz);
                let next = cron.after(&at).next()?;
                u64::try_from(next.timestamp_millis()).ok()
            }
        }
    }
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
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
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
#[derive(Default)]
pub(crate) struct Scheduler {
    state: Mutex<State>,
    changed: Notify,
}

impl Scheduler {
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

    /// Starts the loop; it ends when the platform is dropped.
    pub(crate) fn start(platform: &Platform) -> Result<(), Error> {
        let weak = Arc::downgrade(&platform.inner);
        let missed = platform.reconcile(true)?;
        for m in missed {
            platform.record_skip(&m.0, &m.1, m.2, &m.3);
        }
        tokio::spawn(run_loop(weak));
        Ok(())
    }
}

async fn run_loop(weak: Weak<super::Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let platform = Platform { inner };
        let scheduler = platform.inner.scheduler.clone();
        let now = now_ms();
        let (due, wake) = {
            let mut state = scheduler.state();
            let mut due = Vec::new();
            while let Some(first) = state.queue.first().cloned() {
                if first.0 > now {
                    break;
                }
                state.queue.pop_first();
                let key = (first.1.clone(), first.2.clone());
                if let Some(entry) = state.entries.get_mut(&key) {
                    entry.next = entry
                        .compiled
                        .next_after(first.0.max(now.saturating_sub(1)));
                    if let Some(next) = entry.next {
                        state.queue.insert((next, key.0.clone(), key.1.clone()));
                    }
                    due.push((key, first.0));
                }
            }
            (due, state.queue.first().map(|f| f.0))
        };
        if !due.is_empty() {
            platform.fire(due).await;
        }
        let sleep = wake.map_or(Duration::from_secs(60), |w| {
            Duration::from_millis(w.saturating_sub(now_ms()))
        });
        let changed = scheduler.changed.notified();
        drop(platform);
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = changed => {
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = (Platform { inner }).reconcile(false) {
                    tracing::error!("could not update schedules: {e}");
                }
            }
        }
    }
}

/// The fire times after `last` that are more than a second before `now`:
/// how many, the first, and the last (`last` itself when there are none).
/// Past [`MAX_MISSED`] of them the rest up to a second ago are counted as
/// one span, so a long outage of a frequent schedule costs no long loop.
fn missed_since(compiled: &Compiled, last: u64, now: u64) -> (u64, Option<u64>, u64) {
    let cutoff = now.saturating_sub(1000);
    let (mut count, mut first, mut at) = (0u64, None, last);
    while let Some(t) = compiled.next_after(at) {
        if t > cutoff {
            break;
        }
        if count >= MAX_MISSED {
            // Jump to the last fire time at or before the cutoff.
            if let Compiled::Period(p) = compiled {
                let end = cutoff / p * p;
                count += (end - at) / p;
                at = end;
            } else {
                at = cutoff;
                count += 1;
            }
            break;
        }
        first.get_or_insert(t);
        count += 1;
        at = t;
    }
    (count, first, at)
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

fn rfc3339(ms: u64) -> String {
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl Platform {
    /// Brings the schedule table in line with the live versions. On the
    /// first call (start-up) also returns the fire times missed while the
    /// host was down: (app, function, version, message).
    fn reconcile(&self, startup: bool) -> Result<Vec<(String, String, u64, String)>, Error> {
        let stored = self.inner.registry.schedules()?;
        let mut wanted: HashMap<Key, (Schedule, u32, u64)> = HashMap::new();
        for (app, slot) in self.slots().iter() {
            let super::Slot::Serving(live) = slot else {
                continue;
            };
            for f in &live.spec().functions {
                if let FunctionKind::Scheduled { schedule } = &f.kind {
                    wanted.insert(
                        (app.clone(), f.name.clone()),
                        (schedule.clone(), f.settings.retries, live.meta().version),
                    );
                }
            }
        }
        let now = now_ms();
        let mut missed = Vec::new();
        let scheduler = self.inner.scheduler.clone();
        let mut state = scheduler.state();
        let state = &mut *state;
        state.entries.retain(|key, entry| {
            let keep = wanted
                .get(key)
                .is_some_and(|(s, _, _)| *s == entry.schedule);
            if !keep && let Some(next) = entry.next {
                state.queue.remove(&(next, key.0.clone(), key.1.clone()));
            }
            keep
        });
        state.paused = stored
            .iter()
            .filter(|(_, s)| s.paused)
            .map(|(k, _)| k.clone())
            .collect();
        for (key, (schedule, retries, version)) in wanted {
            if let Some(entry) = state.entries.get_mut(&key) {
                entry.retries = retries;
                continue;
            }
            let compiled = match Compiled::new(&schedule) {
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
                let (count, first, at) = missed_since(&compiled, l, now);
                if let Some(first) = first {
                    let message = format!(
                        "missed {count} fire time(s) while the host was down, from {} to {}; they are not replayed",
                        rfc3339(first),
                        rfc3339(at)
                    );
                    tracing::warn!(app = %key.0, function = %key.1, "{message}");
                    missed.push((key.0.clone(), key.1.clone(), version, message));
                }
                from = at;
            }
            let next = compiled.next_after(from);
            if let Some(n) = next {
                state.queue.insert((n, key.0.clone(), key.1.clone()));
            }
            state.entries.insert(
                key,
                Entry {
                    schedule,
                    compiled,
                    retries,
                    next,
                },
            );
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
        };
        self.inner.recorder.record(&execution);
    }

    /// Takes the due fire times: records them, then starts their runs.
    async fn fire(&self, due: Vec<(Key, u64)>) {
        let fires: Vec<(String, String, u64)> = due
            .iter()
            .map(|((a, f), t)| (a.clone(), f.clone(), *t))
            .collect();
        let registry = self.inner.registry.clone();
        let recorded = tokio::task::spawn_blocking(move || registry.record_fires(&fires)).await;
        if !matches!(recorded, Ok(Ok(()))) {
            // Not recorded means it could run again after a restart: do not
            // run it now either.
            tracing::error!("could not record fire times; skipping them: {recorded:?}");
            return;
        }
        let now = now_ms();
        for ((app, function), at) in due {
            let key = (app.clone(), function.clone());
            let (paused, busy, retries) = {
                let mut state = self.inner.scheduler.state();
                let paused = state.paused.contains(&key);
                let busy = state.running.contains(&key);
                if !paused && !busy {
                    state.running.insert(key.clone());
                }
                (
                    paused,
                    busy,
                    state.entries.get(&key).map_or(0, |e| e.retries),
                )
            };
            if paused {
                continue;
            }
            let version = self.live(&app).map(|l| l.meta().version).unwrap_or(0);
            if busy {
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
            let platform = self.clone();
            self.spawn_task(async move { platform.run(key, at, run_id, retries).await });
        }
    }

    /// Runs one fire time with its retries, then reports a final failure.
    async fn run(&self, key: Key, at: u64, run_id: String, retries: u32) {
        let (app, function) = (&key.0, &key.1);
        let mut attempts = 0;
        let failure = loop {
            attempts += 1;
            match self.run_scheduled(app, function, &run_id).await {
                Ok(e) if e.outcome.is_ok() => break None,
                Ok(e) if attempts <= retries => {
                    tracing::info!(
                        app,
                        function,
                        run_id,
                        attempts,
                        "scheduled run failed; retrying"
                    );
                    drop(e);
                    tokio::time::sleep(super::retry_backoff(attempts)).await;
                }
                Ok(e) => {
                    break Some((
                        e.version,
                        e.outcome.err().map(|e| e.to_string()).unwrap_or_default(),
                        e.logs,
                    ));
                }
                // The app was stopped or removed meanwhile: nothing to report.
                Err(_) => break None,
            }
        };
        self.inner.scheduler.state().running.remove(&key);
        if let Some((version, error, logs)) = failure {
            tracing::warn!(
                app,
                function,
                run_id,
                attempts,
                "scheduled run failed: {error}"
            );
            let tail_start = logs.len().saturating_sub(LOG_TAIL);
            let tail = &logs[logs.ceil_char_boundary(tail_start)..];
            let payload = Failure {
                app,
                version,
                function,
                run_id: &run_id,
                fire_time: rfc3339(at),
                fire_time_ms: at,
                attempts,
                error: &error,
                log_tail: tail,
            };
            let body = serde_json::to_vec(&payload).unwrap_or_default();
            let url = self
                .inner
                .registry
                .version(app, version)
                .ok()
                .flatten()
                .and_then(|v| v.notify)
                .or_else(|| self.inner.config.notify.clone());
            if let Some(url) = url {
                tokio::spawn(deliver(url, body, app.clone()));
            }
        }
    }

    /// Pauses or resumes the schedule of `function`.
    pub async fn set_paused(&self, app: &str, function: &str, paused: bool) -> Result<(), Error> {
        self.scheduled_function(app, function)?;
        self.inner.registry.set_paused(app, function, paused)?;
        {
            let mut state = self.inner.scheduler.state();
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
    pub async fn run_now(&self, app: &str, function: &str) -> Result<String, Error> {
        let retries = self.scheduled_function(app, function)?;
        let key = (app.to_string(), function.to_string());
        if !self.inner.scheduler.state().running.insert(key.clone()) {
            return Err(Error::Skipped(format!(
                "`{function}` has a run in progress"
            )));
        }
        let at = now_ms();
        let run_id = format!("run-{app}-{function}-{at}-now");
        let platform = self.clone();
        let id = run_id.clone();
        self.spawn_task(async move { platform.run(key, at, id, retries).await });
        Ok(run_id)
    }

    /// The schedules of `app`, with their next fire times.
    pub fn schedules(&self, app: &str) -> Vec<ScheduleStatus> {
        self.inner.scheduler.status(app)
    }

    /// Checks that `function` is a scheduled function of the live version;
    /// returns its retries.
    fn scheduled_function(&self, app: &str, function: &str) -> Result<u32, Error> {
        let live = self.live(app)?;
        match live.spec().function(function) {
            Some(f) if matches!(f.kind, FunctionKind::Scheduled { .. }) => Ok(f.settings.retries),
            Some(_) => Err(Error::WrongKind(format!(
                "`{function}` is not a scheduled function"
            ))),
            None => Err(Error::UnknownFunction {
                name: function.to_string(),
                available: live.spec().names(),
            }),
        }
    }
}

/// POSTs a failure to its webhook, retrying a few times; never blocks the
/// scheduler.
async fn deliver(url: String, body: Vec<u8>, app: String) {
    use http_body_util::BodyExt;
    let mut backoff = Duration::from_secs(1);
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
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    tracing::error!(app, url, "gave up delivering a failure webhook");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_fire_time_is_lost_across_a_restart() {
        let every_second = Compiled::Period(1000);
        // Last fired at 10 s, restarted at 15.5 s: 11..=14 are missed and
        // 15 (half a second ago) runs now.
        let (count, first, at) = missed_since(&every_second, 10_000, 15_500);
        assert_eq!((count, first, at), (4, Some(11_000), 14_000));
        assert_eq!(every_second.next_after(at), Some(15_000));
        // Restarted right after the last fire: nothing missed, the next
        // one runs when due.
        let (count, first, at) = missed_since(&every_second, 10_000, 10_200);
        assert_eq!((count, first, at), (0, None, 10_000));
        assert_eq!(every_second.next_after(at), Some(11_000));
        // A long outage of a frequent schedule is counted without a loop
        // over every fire time.
        let every_ms = Compiled::Period(1);
        let (count, _, at) = missed_since(&every_ms, 0, 10_000_000);
        assert_eq!((count, at), (9_999_000, 9_999_000));
    }

    #[test]
    fn fire_times_follow_cron_periods_and_time_zones() {
        let every_second = Compiled::new(&Schedule::Cron {
            expression: "* * * * * *".into(),
            timezone: None,
        })
        .unwrap();
        assert_eq!(every_second.next_after(1_000), Some(2_000));
        assert_eq!(every_second.next_after(1_500), Some(2_000));
        let period = Compiled::new(&Schedule::Period(Duration::from_secs(5))).unwrap();
        assert_eq!(period.next_after(12_000), Some(15_000));
        assert_eq!(period.next_after(15_000), Some(20_000));
        // 09:00 in Paris is 08:00 UTC in winter.
        let paris = Compiled::new(&Schedule::Cron {
            expression: "0 0 9 * * *".into(),
            timezone: Some("Europe/Paris".into()),
        })
        .unwrap();
        let jan_1 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert_eq!(paris.next_after(jan_1), Some(jan_1 + 8 * 3_600_000));
    }
}
