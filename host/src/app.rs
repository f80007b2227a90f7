//! A loaded app version: its spec, one instance pool per function, and the
//! call path (checkout, call, classify, check-in, record).

use crate::bindings::CallError;
use crate::error::Error;
use crate::invoke::{Invoker, Nesting};
use crate::pool::{Instance, Pool, PoolStats, Prepared};
use crate::sandbox::Frame;
use crate::spec::{AppSpec, FunctionKind};
use crate::trap::{classify, refine};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

/// Who an app version is, and the environment its guests see.
#[derive(Clone, Debug)]
pub struct AppMeta {
    /// The app's name.
    pub name: String,
    /// The version number.
    pub version: u64,
    /// Extra environment variables for every instance (set at deploy).
    pub env: Vec<(String, String)>,
    /// Hosts (`host` or `host:port`) the app may send HTTP requests to;
    /// all others are denied.
    pub allow_http: Vec<String>,
    /// Apps whose functions may call this app's functions (`*`: every
    /// app); calls within the app are always allowed.
    pub allow_callers: Vec<String>,
    /// Pool settings for a plain `wasi:http` component.
    pub pool: crate::spec::PoolSettings,
    /// Environment variables from secrets: set in every instance, masked
    /// in its logs and errors.
    pub secrets: crate::SecretEnv,
    /// Host directories every instance sees, read-only, at guest paths.
    pub mounts: Vec<Mount>,
}

/// A host directory a guest sees read-only at `path` (a preopened
/// `wasi:filesystem` directory; nothing outside it is visible).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The directory on the host.
    pub dir: std::path::PathBuf,
    /// Where the guest sees it, e.g. `/assets`.
    pub path: String,
}

/// Checks a guest path for a mount: absolute, without `.`, `..` or empty
/// segments, at most 255 bytes, not `/` itself.
pub fn validate_mount_path(path: &str) -> Result<(), Error> {
    let ok = path.len() <= 255
        && path.starts_with('/')
        && path.len() > 1
        && path[1..]
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\0'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "mount path `{}`: expected an absolute path such as /assets (no `.` or `..`)",
            path.escape_debug()
        )))
    }
}

impl AppMeta {
    /// Whether functions of `app` may call this app's functions.
    pub fn allows_caller(&self, app: &str) -> bool {
        app == self.name || self.allow_callers.iter().any(|c| c == "*" || c == app)
    }

    /// An app called `name` at `version`, with no extra environment.
    pub fn new(name: impl Into<String>, version: u64) -> Self {
        AppMeta {
            name: name.into(),
            version,
            env: Vec::new(),
            allow_http: Vec::new(),
            allow_callers: Vec::new(),
            pool: Default::default(),
            secrets: Default::default(),
            mounts: Vec::new(),
        }
    }
}

/// What started an execution.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A direct call that waits for the result.
    Call,
    /// A spawned call whose result is fetched later.
    Spawn,
    /// An HTTP request to a web function.
    Web,
    /// The scheduler.
    Schedule,
}

impl Trigger {
    /// The lower-case name used in records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Call => "call",
            Trigger::Spawn => "spawn",
            Trigger::Web => "web",
            Trigger::Schedule => "schedule",
        }
    }

    /// The trigger [`as_str`](Self::as_str) names (a direct call for an
    /// unknown name).
    pub(crate) fn parse(name: &str) -> Trigger {
        match name {
            "spawn" => Trigger::Spawn,
            "web" => Trigger::Web,
            "schedule" => Trigger::Schedule,
            _ => Trigger::Call,
        }
    }
}

/// One run of a function: what ran, how it ended and what it logged.
#[derive(Debug)]
pub struct Execution {
    /// The app.
    pub app: Arc<str>,
    /// The app version.
    pub version: u64,
    /// The function.
    pub function: Arc<str>,
    /// What started it.
    pub trigger: Trigger,
    /// When it started.
    pub started_at: SystemTime,
    /// How long it took, including waiting for and creating an instance.
    pub duration: Duration,
    /// The output bytes (JSON by convention; empty for web functions), or
    /// why it failed.
    pub outcome: Result<Vec<u8>, Error>,
    /// What the guest wrote to stdout and stderr.
    pub logs: String,
    /// Whether it ran on a newly created instance.
    pub cold: bool,
    /// Linear memory of the instance after the execution, in bytes (its
    /// peak: wasm memory only grows); 0 when no instance ran.
    pub memory: usize,
    /// For a scheduled run, its id (the same for every retry of one fire
    /// time).
    pub run_id: Option<String>,
    /// For a call or spawned call, its id (the same for every retry).
    pub call_id: Option<String>,
    /// For a web execution, the HTTP status the client was answered with.
    pub http_status: Option<u16>,
    /// For a call made by another function, the caller's call id.
    pub parent_call_id: Option<String>,
    /// For an execution in a tree of calls, the call id of its root (a
    /// root that called other functions has its own here).
    pub root_call_id: Option<String>,
    /// How deeply it is nested: 0 for a call from outside.
    pub depth: u32,
    /// For a web execution, the request's method and target (`modal
    /// serve` prints them; they are not stored).
    pub request: Option<RequestLine>,
}

/// The method and target of a web request.
#[derive(Clone, Debug)]
pub struct RequestLine {
    /// The method.
    pub method: http::Method,
    /// The target, as the client sent it (the query included).
    pub uri: http::Uri,
}

impl Execution {
    /// Sets where it sits in a tree of calls.
    fn nest(&mut self, nesting: &Nesting) {
        self.parent_call_id = nesting.parent_call_id.clone();
        self.root_call_id = nesting.root_call_id.clone();
        self.depth = nesting.depth;
    }

    /// How it ended, as recorded: a web execution answered with a 5xx
    /// failed even when the guest returned normally.
    pub fn outcome_class(&self) -> crate::error::Outcome {
        match &self.outcome {
            Err(e) => e.outcome(),
            Ok(_) if self.http_status.is_some_and(|s| s >= 500) => crate::error::Outcome::Error,
            Ok(_) => crate::error::Outcome::Ok,
        }
    }
}

/// Receives every execution of an app (to record it, export metrics...).
pub type ExecutionSink = Arc<dyn Fn(&Execution) + Send + Sync>;

/// What a loaded version is connected to: where its executions go and who
/// runs the calls its guests make to other functions.
#[derive(Clone, Default)]
pub(crate) struct Links {
    pub(crate) sink: Option<ExecutionSink>,
    /// `None`: only calls into the version itself ([`Local`](crate::invoke::Local)).
    pub(crate) invoker: Option<Arc<dyn Invoker>>,
    /// Where the app's key-value buckets are; `None`: in the process
    /// ([`Memory`](crate::kv::Memory)).
    pub(crate) kv: Option<Arc<dyn crate::kv::KeyValue>>,
}

/// What an execution runs for, besides its function and input.
#[derive(Clone, Debug, Default)]
pub(crate) struct Run {
    /// The scheduled run, for `context.run-id`.
    pub(crate) run_id: Option<String>,
    /// The call's id (the same for every retry).
    pub(crate) call_id: Option<String>,
    /// Where it sits in a tree of calls.
    pub(crate) nesting: Nesting,
}

/// One loaded version of an app. Cheap to clone.
#[derive(Clone)]
pub struct LoadedApp {
    pub(crate) inner: Arc<AppInner>,
}

pub(crate) struct AppInner {
    pub(crate) meta: AppMeta,
    pub(crate) name: Arc<str>,
    pub(crate) spec: AppSpec,
    pub(crate) digest: String,
    pub(crate) pools: HashMap<String, (Arc<str>, Arc<Pool>)>,
    pub(crate) sink: Option<ExecutionSink>,
    /// Runs the calls its guests make to other functions.
    pub(crate) invoker: Arc<dyn Invoker>,
    /// How deeply calls between functions may nest.
    pub(crate) max_call_depth: u32,
    /// Largest request body a web function is given.
    pub(crate) max_request_body: u64,
    /// Set by [`LoadedApp::cancel`]; executions in progress end at once.
    pub(crate) cancel: Cancel,
}

/// Cancellation of the executions in progress of one app version.
#[derive(Default)]
pub(crate) struct Cancel {
    reason: std::sync::OnceLock<String>,
    notify: tokio::sync::Notify,
}

impl Cancel {
    /// Resolves with the reason once cancelled.
    pub(crate) async fn cancelled(&self) -> &str {
        loop {
            let notified = self.notify.notified();
            if let Some(reason) = self.reason.get() {
                return reason;
            }
            notified.await;
        }
    }
}

impl LoadedApp {
    pub(crate) fn new(
        meta: AppMeta,
        spec: AppSpec,
        digest: String,
        prepared: Arc<Prepared>,
        config: &crate::HostConfig,
        links: Links,
    ) -> LoadedApp {
        let web_functions = spec
            .functions
            .iter()
            .filter(|f| matches!(f.kind, FunctionKind::Web { .. }))
            .count();
        let pools = spec
            .functions
            .iter()
            .map(|f| {
                let mut env = vec![
                    ("MODAL_APP_NAME".to_string(), meta.name.clone()),
                    ("MODAL_APP_VERSION".to_string(), meta.version.to_string()),
                    ("MODAL_FUNCTION".to_string(), f.name.clone()),
                ];
                env.extend(meta.env.iter().cloned());
                env.extend(meta.secrets.vars().iter().cloned());
                let mut pool = Pool::new(
                    matches!(f.kind, FunctionKind::Web { .. }),
                    prepared.clone(),
                    f.name.clone(),
                    env,
                    f.settings.clone(),
                    config.queue_timeout,
                    config.idle_timeout,
                );
                if web_functions == 1 {
                    pool.header = None;
                }
                let pool = Arc::new(pool);
                prepared.reclaimer.register(&pool);
                (f.name.clone(), (Arc::from(f.name.as_str()), pool))
            })
            .collect();
        let app = LoadedApp {
            inner: Arc::new(AppInner {
                name: Arc::from(meta.name.as_str()),
                meta,
                spec,
                digest,
                pools,
                sink: links.sink,
                invoker: links
                    .invoker
                    .unwrap_or_else(|| Arc::new(crate::invoke::Local::default())),
                max_call_depth: config.max_call_depth,
                cancel: Cancel::default(),
                max_request_body: config.max_request_body,
            }),
        };
        app.spawn_scaler(config.idle_timeout, &prepared);
        app
    }

    /// Starts each function's `min_warm` instances.
    pub(crate) async fn prewarm(&self) -> Result<(), Error> {
        for (_, pool) in self.inner.pools.values() {
            pool.prewarm().await?;
        }
        Ok(())
    }

    /// Periodically drops instances idle past the scale-down window and
    /// restores `min_warm`; ends when the app is dropped.
    fn spawn_scaler(&self, idle_timeout: Duration, prepared: &Prepared) {
        let period = (idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        let weak: Weak<AppInner> = Arc::downgrade(&self.inner);
        prepared.spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let now = Instant::now();
                for (_, pool) in inner.pools.values() {
                    pool.scale_down(now);
                    if let Err(e) = pool.prewarm().await {
                        tracing::warn!(app = %inner.name, "could not keep instances warm: {e}");
                    }
                }
            }
        });
    }

    /// Cancels the executions in progress (they fail as
    /// [`Error::Cancelled`] and their instances are dropped) and refuses new
    /// ones. Used when a draining version passes its deadline.
    pub fn cancel(&self, reason: &str) {
        self.close();
        if self.inner.cancel.reason.set(reason.to_string()).is_ok() {
            self.inner.cancel.notify.notify_waiters();
        }
    }

    /// Starts instances of `function` until `count` are alive (capped at
    /// its `max_instances`), e.g. ahead of expected load. Returns how many
    /// were started.
    pub async fn warm(&self, function: &str, count: u32) -> Result<u32, Error> {
        let (_, pool) = self.pool(function)?;
        pool.warm(count).await
    }

    /// The app's name, version and environment.
    pub fn meta(&self) -> &AppMeta {
        &self.inner.meta
    }

    /// The validated spec.
    pub fn spec(&self) -> &AppSpec {
        &self.inner.spec
    }

    /// The SHA-256 of the component.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// Per-function instance figures.
    pub fn stats(&self) -> Vec<PoolStats> {
        let mut stats: Vec<PoolStats> = self.inner.pools.values().map(|(_, p)| p.stats()).collect();
        stats.sort_by(|a, b| a.function.cmp(&b.function));
        stats
    }

    /// Executions in progress across all functions.
    pub fn in_flight(&self) -> usize {
        self.inner.pools.values().map(|(_, p)| p.busy()).sum()
    }

    pub(crate) fn pool(&self, function: &str) -> Result<(&Arc<str>, &Arc<Pool>), Error> {
        match self.inner.pools.get(function) {
            Some((name, pool)) => Ok((name, pool)),
            None => Err(Error::UnknownFunction {
                name: function.to_string(),
                available: self.inner.spec.names(),
            }),
        }
    }

    /// Runs a plain or scheduled function with JSON `input` and waits for it.
    pub async fn call(&self, function: &str, input: &[u8]) -> Execution {
        self.call_as(function, input, Trigger::Call).await
    }

    /// Like [`call`](Self::call), recording `trigger` as what started it.
    pub async fn call_as(&self, function: &str, input: &[u8], trigger: Trigger) -> Execution {
        self.execute(function, input, trigger, Run::default()).await
    }

    /// Runs a scheduled function for the run `run_id` (which the guest can
    /// read through `context.run-id`).
    pub async fn run_scheduled(&self, function: &str, run_id: &str) -> Execution {
        let run = Run {
            run_id: Some(run_id.to_string()),
            ..Run::default()
        };
        self.execute(function, b"", Trigger::Schedule, run).await
    }

    /// Runs `task` in the background on the host's runtime.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        if let Some((_, pool)) = self.inner.pools.values().next() {
            pool.prepared.spawn(task);
        }
    }

    /// The `max_instances` of `function` (1 when there is none).
    pub(crate) fn max_instances(&self, function: &str) -> usize {
        self.inner
            .pools
            .get(function)
            .map_or(1, |(_, p)| p.settings.max_instances as usize)
    }

    /// Runs one execution of a plain or scheduled function.
    pub(crate) async fn execute(
        &self,
        function: &str,
        input: &[u8],
        trigger: Trigger,
        run: Run,
    ) -> Execution {
        let started_at = SystemTime::now();
        let start = Instant::now();
        let Run {
            run_id,
            call_id,
            nesting,
        } = run;
        let reject = |e: Error| {
            let mut execution = self.rejected(function, trigger, started_at, start, e);
            // A scheduled run that could not start is still its fire time's.
            execution.run_id = run_id.clone();
            execution.call_id = call_id.clone();
            execution.nest(&nesting);
            execution
        };
        let (name, pool) = match self.pool(function) {
            Ok(found) => found,
            Err(e) => return reject(e),
        };
        if pool.web {
            return reject(Error::WrongKind(format!(
                "`{function}` is a web function: send it an HTTP request instead of a call"
            )));
        }
        // A nested call gets no more than its caller's remaining time.
        let mut timeout = pool.settings.timeout;
        if let Some(deadline) = nesting.deadline {
            timeout = timeout.min(deadline.saturating_duration_since(start));
            if timeout.is_zero() {
                let e = Error::Timeout {
                    function: function.to_string(),
                    limit: timeout,
                };
                let execution = reject(e);
                self.record(&execution);
                return execution;
            }
        }
        // A spawned call was accepted and stored: it waits for capacity
        // instead of failing as overloaded.
        let wait = (trigger != Trigger::Spawn).then(|| pool.queue_timeout().min(timeout));
        let nested = nesting.depth > 0;
        let mut lease = match pool.checkout_within(wait, nested).await {
            Ok(lease) => lease,
            Err(e) => {
                let mut execution = reject(e);
                execution.function = name.clone();
                // A version that stopped taking calls is not a failure of
                // the function: the caller retries on the live version.
                if !matches!(execution.outcome, Err(Error::ShuttingDown(_))) {
                    self.record(&execution);
                }
                return execution;
            }
        };
        let instance = lease.instance();
        instance.store.data_mut().frame = Frame {
            app: Some(self.clone()),
            run_id: run_id.clone(),
            call_id,
            root_call_id: nesting.root_call_id.clone(),
            depth: nesting.depth,
        };
        let outcome = invoke(instance, name, input, timeout, &self.inner.cancel).await;
        let frame = std::mem::take(&mut instance.store.data_mut().frame);
        let logs = instance.take_logs();
        let secrets = &self.inner.meta.secrets;
        let outcome = outcome.map_err(|e| secrets.mask_error(refine(e, &logs)));
        let healthy = !matches!(&outcome, Err(e) if e.poisons_instance());
        let cold = lease.fresh;
        let memory = lease.instance().memory_size();
        let mut execution = self.execution(name, trigger, started_at, start, outcome, logs, cold);
        execution.memory = memory;
        execution.run_id = run_id;
        execution.nest(&nesting);
        execution.root_call_id = frame.root_call_id;
        execution.call_id = frame.call_id;
        // Recorded before the instance goes back: once a version's
        // instances are all gone (a drain, a shutdown), so are its records.
        self.record(&execution);
        pool.checkin(lease, healthy);
        execution
    }

    fn rejected(
        &self,
        function: &str,
        trigger: Trigger,
        started_at: SystemTime,
        start: Instant,
        e: Error,
    ) -> Execution {
        self.execution(
            &Arc::from(function),
            trigger,
            started_at,
            start,
            Err(e),
            String::new(),
            false,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn execution(
        &self,
        function: &Arc<str>,
        trigger: Trigger,
        started_at: SystemTime,
        start: Instant,
        outcome: Result<Vec<u8>, Error>,
        logs: String,
        cold: bool,
    ) -> Execution {
        Execution {
            app: self.inner.name.clone(),
            version: self.inner.meta.version,
            function: function.clone(),
            trigger,
            started_at,
            duration: start.elapsed(),
            outcome,
            logs,
            cold,
            memory: 0,
            run_id: None,
            call_id: None,
            http_status: None,
            parent_call_id: None,
            root_call_id: None,
            depth: 0,
            request: None,
        }
    }

    pub(crate) fn record(&self, execution: &Execution) {
        if let Some(sink) = &self.inner.sink {
            sink(execution);
        }
    }

    /// Stops taking executions and drops idle instances; those running
    /// finish (see [`drain`](Self::drain) to wait for them).
    pub fn close(&self) {
        for (_, pool) in self.inner.pools.values() {
            pool.close();
        }
    }

    /// Stops taking executions, lets those in progress finish and drops
    /// every instance (after its `exit` hook). Returns when all are gone.
    pub async fn drain(&self) {
        self.close();
        for (_, pool) in self.inner.pools.values() {
            pool.drained().await;
        }
    }
}

/// Calls the guest's `call` export under the execution's limits.
async fn invoke(
    instance: &mut Instance,
    function: &str,
    input: &[u8],
    timeout: Duration,
    cancel: &Cancel,
) -> Result<Vec<u8>, Error> {
    instance.begin(timeout);
    let Instance {
        store,
        function: guest,
        ..
    } = &mut *instance;
    let Some(guest) = guest.as_ref() else {
        return Err(Error::WrongKind(format!(
            "`{function}` cannot be called: the component has no `call` export"
        )));
    };
    let call = guest.call_call(&mut *store, function, input);
    // The epoch deadline stops a guest that computes; the timer stops one
    // blocked in the host (e.g. sleeping). Polling the call first means a
    // call that finishes at once never registers the timer or the waiter.
    let result = tokio::select! {
        biased;
        result = call => result,
        () = tokio::time::sleep(timeout) => {
            return Err(Error::Timeout {
                function: function.to_string(),
                limit: timeout,
            });
        }
        reason = cancel.cancelled() => {
            return Err(Error::Cancelled {
                function: function.to_string(),
                reason: reason.to_string(),
            });
        }
    };
    match result {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(CallError::BadInput(message))) => Err(Error::BadInput(message)),
        Ok(Err(CallError::Failed(message))) => Err(Error::Failed {
            function: function.to_string(),
            message,
        }),
        Ok(Err(CallError::UnknownFunction(name))) => Err(Error::Failed {
            function: function.to_string(),
            message: format!("the guest has no function `{name}` although it described one"),
        }),
        Err(trap) => Err(classify(trap, instance, function, timeout)),
    }
}
