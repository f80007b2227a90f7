//! Running functions: calls (with retries), web requests, spawned calls
//! and their results, and the scheduler's handle for running fire times.
//! A call that reaches a version just replaced by a deploy is retried on
//! the new one, so deploys fail no call.

use super::backoff::Backoff;
use super::records::{CallEnd, CallParent, CallRecord, CallState, SpawnedCall};
use super::scheduler::{Key, Runner, Wanted};
use super::{Inner, Platform, now_ms};
use crate::app::{Execution, LoadedApp, Run, Trigger};
use crate::error::Error;
use crate::invoke::{Caller, Failure, FailureKind, Invoker, Nesting, Outcome, new_call_id};
use crate::spec::FunctionKind;
use std::collections::HashMap;
use std::sync::Weak;

/// How often a reader waiting for a spawned call's end reads it again
/// (a call another host runs wakes no one here).
const RESULT_POLL: Duration = Duration::from_millis(200);
use std::time::{Duration, Instant};

/// Attempts of an execution that keeps reaching versions that were just
/// replaced (each attempt takes the live version anew).
const RETRIES: u32 = 5;

/// Which version an execution runs on.
#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    /// The live version of the app, taken anew at each attempt.
    Live(&'a str),
    /// This version of the app.
    Version(&'a str, u64),
    /// A version in hand: the caller's own, for a call into its app.
    Loaded(&'a LoadedApp),
}

impl<'a> Target<'a> {
    fn of(app: &'a str, version: Option<u64>) -> Target<'a> {
        match version {
            Some(v) => Target::Version(app, v),
            None => Target::Live(app),
        }
    }
}

impl Platform {
    /// Looks up a deployed function. The handle always calls the version
    /// live at the time of the call.
    pub fn function(&self, app: &str, function: &str) -> Result<FunctionHandle, Error> {
        let live = self.live(app)?;
        if live.spec().function(function).is_none() {
            return Err(Error::UnknownFunction {
                name: function.to_string(),
                available: live.spec().names(),
            });
        }
        Ok(FunctionHandle {
            platform: self.clone(),
            app: app.to_string(),
            function: function.to_string(),
        })
    }

    /// Calls `function` of `app` (of `version` when given, else the live
    /// one). A call that reaches a version just replaced by a deploy is
    /// retried on the new one, so deploys fail no call.
    pub async fn call(
        &self,
        app: &str,
        function: &str,
        input: &[u8],
        version: Option<u64>,
        trigger: Trigger,
    ) -> Result<Execution, Error> {
        let run = Run {
            call_id: Some(new_call_id()?),
            ..Run::default()
        };
        let target = Target::of(app, version);
        self.call_with_retries(target, function, input, trigger, run)
            .await
    }

    /// Runs a call, and runs it again (after a growing pause) while it
    /// fails inside the guest, the function's `retries` allow and its
    /// caller (if any) has time left. Every attempt is recorded with the
    /// run's call id; the last one is returned.
    async fn call_with_retries(
        &self,
        target: Target<'_>,
        function: &str,
        input: &[u8],
        trigger: Trigger,
        run: Run,
    ) -> Result<Execution, Error> {
        let mut attempt = 0;
        loop {
            let (execution, retries) = self
                .execute(target, function, input, trigger, run.clone())
                .await?;
            let failed = execution.outcome.as_ref().err();
            let out_of_time = run.nesting.deadline.is_some_and(|d| Instant::now() >= d);
            if !failed.is_some_and(Error::is_retryable) || attempt >= retries || out_of_time {
                return Ok(execution);
            }
            attempt += 1;
            let call_id = run.call_id.as_deref().unwrap_or_default();
            tracing::info!(app = %execution.app, function, call_id, attempt, "call failed; retrying");
            Backoff::RETRY.wait(attempt).await;
        }
    }

    /// The version an execution runs on: `version`, or the live one.
    async fn target(&self, app: &str, version: Option<u64>) -> Result<LoadedApp, Error> {
        match version {
            Some(v) => self.version(app, v).await,
            None => self.live(app),
        }
    }

    /// Runs one execution, taking the live version anew while it reaches
    /// versions that were just replaced; also returns the function's
    /// `retries`.
    pub(super) async fn execute(
        &self,
        target: Target<'_>,
        function: &str,
        input: &[u8],
        trigger: Trigger,
        run: Run,
    ) -> Result<(Execution, u32), Error> {
        let mut attempts = 0;
        loop {
            let loaded = match target {
                Target::Live(app) => self.live(app)?,
                Target::Version(app, v) => self.version(app, v).await?,
                Target::Loaded(loaded) => loaded.clone(),
            };
            let execution = loaded.execute(function, input, trigger, run.clone()).await;
            attempts += 1;
            if matches!(execution.outcome, Err(Error::ShuttingDown(_))) && attempts < RETRIES {
                tokio::task::yield_now().await;
                continue;
            }
            let retries = loaded
                .spec()
                .function(function)
                .map_or(0, |f| f.settings.retries);
            return Ok((execution, retries));
        }
    }

    /// Serves an HTTP request with web function `function` of the live
    /// version of `app`. A request that reaches a version just replaced by
    /// a deploy is passed on, untouched, to the new one. An [`ErrorId`]
    /// extension on the request goes into the logs of a failed execution.
    ///
    /// [`ErrorId`]: crate::ErrorId
    pub async fn serve_http<B>(
        &self,
        app: &str,
        function: &str,
        mut request: hyper::Request<B>,
    ) -> Result<crate::WebResponse, Error>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let error_id = request.extensions_mut().remove::<crate::ErrorId>();
        let pick = |_: &LoadedApp| Some(function.to_string());
        self.serve_http_picked(app, pick, request, error_id)
            .await?
            .ok_or_else(|| Error::UnknownFunction {
                name: function.to_string(),
                available: Vec::new(),
            })
    }

    /// Serves an HTTP request with the web function that `pick` names in
    /// the live version of `app`, picked from the version that serves it:
    /// a deploy between the two cannot send a name of the old version to
    /// the new one. `Ok(None)`: `pick` named none.
    pub(crate) async fn serve_http_picked<B>(
        &self,
        app: &str,
        pick: impl Fn(&LoadedApp) -> Option<String>,
        mut request: hyper::Request<B>,
        error_id: Option<crate::ErrorId>,
    ) -> Result<Option<crate::WebResponse>, Error>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let live = self.live(app)?;
            let Some(function) = pick(&live) else {
                return Ok(None);
            };
            match live
                .try_serve_http(&function, request, error_id.clone())
                .await
            {
                Ok(response) => return Ok(Some(response)),
                Err((_, Some(untouched))) if attempts < RETRIES => {
                    request = *untouched;
                    tokio::task::yield_now().await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Accepts a call to run in the background and returns its id at once.
    /// The call is stored first, so one accepted before a crash runs after
    /// the restart (at least once).
    pub async fn spawn(
        &self,
        app: &str,
        function: &str,
        input: &[u8],
        version: Option<u64>,
    ) -> Result<String, Error> {
        let loaded = self.target(app, version).await?;
        spawnable(&loaded, function)?;
        let call = SpawnedCall {
            id: new_call_id()?,
            app: app.to_string(),
            function: function.to_string(),
            version,
            input: input.to_vec(),
            parent: None,
        };
        self.accept(call).await
    }

    /// Stores a spawned call and starts it, together, even if the caller
    /// stops waiting; returns its id.
    async fn accept(&self, call: SpawnedCall) -> Result<String, Error> {
        let this = self.clone();
        self.to_the_end(async move {
            let store = &this.inner.recorder.store;
            let (owner, lease) = (&this.inner.host_id, this.inner.config.lease);
            store.insert_call(&call, now_ms(), owner, lease).await?;
            let id = call.id.clone();
            this.run_spawned(call);
            Ok(id)
        })
        .await
    }

    pub(super) fn run_spawned(&self, call: SpawnedCall) {
        let platform = self.clone();
        self.spawn_task(async move {
            let SpawnedCall {
                id,
                app,
                function,
                version,
                input,
                parent,
            } = call;
            // A spawned call outlives its caller: it keeps its place in
            // the tree but not the caller's deadline.
            let nesting = parent.map_or_else(Nesting::default, |p| Nesting {
                parent_call_id: Some(p.call_id),
                root_call_id: Some(p.root_call_id),
                depth: p.depth,
                deadline: None,
            });
            let run = Run {
                call_id: Some(id.clone()),
                nesting,
                ..Run::default()
            };
            let target = Target::of(&app, version);
            let mut waits = 0;
            let result = loop {
                let result = platform
                    .call_with_retries(target, &function, &input, Trigger::Spawn, run.clone())
                    .await
                    .and_then(|execution| execution.outcome);
                // An accepted call waits for the host to have room: it is
                // never rejected for load.
                match result {
                    Err(Error::HostAtCapacity(_)) => {
                        waits += 1;
                        let room = Backoff {
                            max: Duration::from_secs(5),
                            ..Backoff::RETRY
                        };
                        room.wait(waits).await;
                    }
                    result => break result,
                }
            };
            platform.finish_spawned(&id, result).await;
        });
    }

    /// Stores how a spawned call ended and wakes its readers; a call cut
    /// by the shutdown stays pending and runs again at the next start (at
    /// least once).
    async fn finish_spawned(&self, id: &str, result: Result<Vec<u8>, Error>) {
        if self.is_shutting_down()
            && matches!(
                result,
                Err(Error::Cancelled { .. } | Error::ShuttingDown(_))
            )
        {
            tracing::info!(call = %id, "spawned call cut by the shutdown; it runs again after the restart");
            return;
        }
        let end = CallEnd::of(&result);
        if let Err(e) = self
            .inner
            .recorder
            .store
            .finish_call(id, end, now_ms())
            .await
        {
            tracing::error!(call = %id, "could not store the result of a spawned call: {e}");
        }
        self.inner.calls_done.send_modify(|n| *n += 1);
    }

    /// The state of a spawned call, waiting up to `wait` for it to finish.
    pub async fn result(&self, id: &str, wait: Duration) -> Result<CallRecord, Error> {
        let deadline = Instant::now() + wait;
        let mut done = self.inner.calls_done.subscribe();
        loop {
            let record = self
                .inner
                .recorder
                .store
                .call(id)
                .await?
                .ok_or_else(|| Error::BadInput(format!("no spawned call with id `{id}`")))?;
            if record.state != CallState::Pending || Instant::now() >= deadline {
                return Ok(record);
            }
            // Another host may run it: its end is read again now and then.
            let wake = deadline.min(Instant::now() + RESULT_POLL);
            let _ = tokio::time::timeout_at(wake.into(), done.changed()).await;
        }
    }

    /// Checks that `function` is a scheduled function of the live version;
    /// returns its retries.
    pub(super) fn scheduled_function(&self, app: &str, function: &str) -> Result<u32, Error> {
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

/// Checks that `function` of `loaded` can be spawned (exists, not web).
fn spawnable(loaded: &LoadedApp, function: &str) -> Result<(), Error> {
    match loaded.spec().function(function) {
        None => Err(Error::UnknownFunction {
            name: function.to_string(),
            available: loaded.spec().names(),
        }),
        Some(f) if matches!(f.kind, FunctionKind::Web { .. }) => Err(Error::WrongKind(format!(
            "`{function}` is a web function and cannot be spawned"
        ))),
        Some(_) => Ok(()),
    }
}

impl Platform {
    /// The version a guest's call into `app` runs on: the caller's own for
    /// its app, else the live version of an app that grants the caller.
    /// An app that does not is reported as absent.
    fn callee(&self, caller: &Caller, app: Option<&str>) -> Result<LoadedApp, Error> {
        let Some(app) = app.filter(|_| !caller.is_own(app)) else {
            return Ok(caller.app.clone());
        };
        let absent = || Error::AppNotFound(app.to_string());
        let live = self.live(app).map_err(|_| absent())?;
        if !live.meta().allows_caller(&caller.app.meta().name) {
            return Err(absent());
        }
        Ok(live)
    }

    /// A guest's call: on the caller's version within its app, on the
    /// live version of another; with the callee's retries, within the
    /// caller's deadline.
    async fn call_nested(
        &self,
        caller: &Caller,
        app: Option<&str>,
        function: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let nesting = caller.child(function)?;
        let callee = self.callee(caller, app)?;
        let run = Run {
            call_id: Some(new_call_id()?),
            nesting,
            ..Run::default()
        };
        let target = if caller.is_own(app) {
            Target::Loaded(&callee)
        } else {
            Target::Live(&callee.inner.name)
        };
        let execution = self
            .call_with_retries(target, function, input, Trigger::Call, run)
            .await?;
        execution.outcome
    }

    /// A guest's spawn, stored with its place in the caller's tree.
    async fn spawn_nested(
        &self,
        caller: &Caller,
        app: Option<&str>,
        function: &str,
        input: Vec<u8>,
    ) -> Result<String, Error> {
        let nesting = caller.child(function)?;
        let callee = self.callee(caller, app)?;
        spawnable(&callee, function)?;
        let own = caller.is_own(app);
        let meta = callee.meta();
        let call = SpawnedCall {
            id: new_call_id()?,
            app: meta.name.clone(),
            function: function.to_string(),
            version: own.then_some(meta.version),
            input,
            parent: Some(CallParent {
                app: caller.app.meta().name.clone(),
                call_id: caller.call_id.clone(),
                root_call_id: caller.root_call_id.clone(),
                depth: nesting.depth,
            }),
        };
        self.accept(call).await
    }

    /// A guest's read of a call it spawned (or that its app runs); other
    /// calls are reported as absent.
    async fn get_nested(
        &self,
        caller: &Caller,
        id: &str,
        wait: Duration,
    ) -> Result<Option<Vec<u8>>, Failure> {
        let app = &caller.app.meta().name;
        let absent = || Failure::from(Error::BadInput(format!("no spawned call with id `{id}`")));
        let visible = |record: &CallRecord| {
            record.app == *app || record.caller.as_deref() == Some(app.as_str())
        };
        let known = self.inner.recorder.store.call(id).await?;
        if !known.as_ref().is_some_and(visible) {
            return Err(Failure {
                kind: FailureKind::NotFound,
                ..absent()
            });
        }
        let record = self.result(id, wait).await?;
        match record.state {
            CallState::Pending => Ok(None),
            CallState::Succeeded => Ok(Some(record.output.unwrap_or_default())),
            CallState::Failed => Err(Failure {
                kind: FailureKind::of(record.error_kind.as_deref().unwrap_or_default()),
                message: record.error.unwrap_or_default(),
            }),
        }
    }
}

/// The invoker of the platform's versions: calls between functions of one
/// app and, where granted, of different apps; spawned calls. Weak, so
/// loaded versions never keep the platform alive.
pub(super) struct Calls(pub(super) Weak<Inner>);

impl Calls {
    fn platform(&self) -> Result<Platform, Failure> {
        match self.0.upgrade() {
            Some(inner) => Ok(Platform { inner }),
            None => Err(Error::ShuttingDown("the host".into()).into()),
        }
    }
}

#[async_trait::async_trait]
impl Invoker for Calls {
    async fn call(
        &self,
        caller: Caller,
        app: Option<String>,
        function: String,
        input: Vec<u8>,
    ) -> Outcome {
        let platform = self.platform()?;
        Ok(platform
            .call_nested(&caller, app.as_deref(), &function, &input)
            .await?)
    }

    fn width(&self, caller: &Caller, app: Option<&str>, function: &str) -> Result<usize, Failure> {
        let callee = self.platform()?.callee(caller, app)?;
        Ok(callee.max_instances(function))
    }

    async fn spawn(
        &self,
        caller: Caller,
        app: Option<String>,
        function: String,
        input: Vec<u8>,
    ) -> Result<String, Failure> {
        let platform = self.platform()?;
        Ok(platform
            .spawn_nested(&caller, app.as_deref(), &function, input)
            .await?)
    }

    async fn get(
        &self,
        caller: Caller,
        id: String,
        wait: Duration,
    ) -> Result<Option<Vec<u8>>, Failure> {
        self.platform()?.get_nested(&caller, &id, wait).await
    }
}

/// The scheduler's handle on its platform: what it needs to run a fire
/// time, and nothing else. Weak, so the scheduler never keeps the
/// platform alive.
pub(super) struct Runs(pub(super) Weak<Inner>);

impl Runs {
    fn platform(&self) -> Option<Platform> {
        self.0.upgrade().map(|inner| Platform { inner })
    }
}

#[async_trait::async_trait]
impl Runner for Runs {
    fn wanted(&self) -> HashMap<Key, Wanted> {
        let mut wanted = HashMap::new();
        let Some(platform) = self.platform() else {
            return wanted;
        };
        for (app, slot) in platform.slots().iter() {
            let super::live::Slot::Serving(live) = slot else {
                continue;
            };
            for f in &live.spec().functions {
                if let FunctionKind::Scheduled { schedule } = &f.kind {
                    let want = Wanted {
                        schedule: schedule.clone(),
                        retries: f.settings.retries,
                        version: live.meta().version,
                    };
                    wanted.insert((app.clone(), f.name.clone()), want);
                }
            }
        }
        wanted
    }

    fn live_version(&self, app: &str) -> Option<u64> {
        let platform = self.platform()?;
        platform.live(app).ok().map(|l| l.meta().version)
    }

    async fn run(&self, app: &str, function: &str, run_id: &str) -> Result<Execution, Error> {
        let platform = self
            .platform()
            .ok_or_else(|| Error::ShuttingDown(function.to_string()))?;
        let run = Run {
            run_id: Some(run_id.to_string()),
            ..Run::default()
        };
        let (execution, _) = platform
            .execute(Target::Live(app), function, b"", Trigger::Schedule, run)
            .await?;
        Ok(execution)
    }

    fn record(&self, execution: &Execution) {
        if let Some(platform) = self.platform() {
            platform.inner.recorder.record(execution);
        }
    }

    fn leadership_changed(&self) {
        if let Some(platform) = self.platform() {
            let reporting = platform.clone();
            platform.spawn_task(async move { reporting.report().await });
        }
    }

    async fn notify_url(&self, app: &str, version: u64) -> Option<String> {
        let platform = self.platform()?;
        let record = platform.inner.registry.version(app, version).await;
        record
            .ok()
            .flatten()
            .and_then(|v| v.notify)
            .or_else(|| platform.inner.config.notify.clone())
    }
}

/// A deployed function, found by app and name.
#[derive(Clone)]
pub struct FunctionHandle {
    platform: Platform,
    app: String,
    function: String,
}

impl FunctionHandle {
    /// Calls the function on the live version and waits for the result.
    pub async fn call(&self, input: &[u8]) -> Result<Execution, Error> {
        self.platform
            .call(&self.app, &self.function, input, None, Trigger::Call)
            .await
    }
}
