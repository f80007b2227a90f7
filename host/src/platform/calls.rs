//! Running functions: calls (with retries), web requests, spawned calls
//! and their results, and the scheduler's handle for running fire times.
//! A call that reaches a version just replaced by a deploy is retried on
//! the new one, so deploys fail no call.

use super::backoff::Backoff;
use super::records::{CallEnd, CallRecord, CallState, SpawnedCall};
use super::scheduler::{Key, Runner, Wanted};
use super::{Inner, Platform, now_ms};
use crate::app::{Execution, LoadedApp, Trigger};
use crate::error::Error;
use crate::spec::FunctionKind;
use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

/// Attempts of an execution that keeps reaching versions that were just
/// replaced (each attempt takes the live version anew).
const RETRIES: u32 = 5;

/// What an execution runs for: a call (with its id) or a scheduled run.
#[derive(Clone, Copy)]
enum Run<'a> {
    Call(&'a str),
    Scheduled(&'a str),
}

/// A new random id for a call (`call-` and 20 hex digits).
fn new_call_id() -> Result<String, Error> {
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness for a call id: {e}")))?;
    Ok(format!("call-{}", hex::encode(bytes)))
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
        let call_id = new_call_id()?;
        self.call_with_retries(app, function, input, version, trigger, &call_id)
            .await
    }

    /// Runs a call, and runs it again (after a growing pause) while it
    /// fails inside the guest and the function's `retries` allow. Every
    /// attempt is recorded with `call_id`; the last one is returned.
    async fn call_with_retries(
        &self,
        app: &str,
        function: &str,
        input: &[u8],
        version: Option<u64>,
        trigger: Trigger,
        call_id: &str,
    ) -> Result<Execution, Error> {
        let mut attempt = 0;
        loop {
            let (execution, retries) = self
                .execute(app, function, input, version, trigger, Run::Call(call_id))
                .await?;
            let failed = execution.outcome.as_ref().err();
            if !failed.is_some_and(Error::is_retryable) || attempt >= retries {
                return Ok(execution);
            }
            attempt += 1;
            tracing::info!(app, function, call_id, attempt, "call failed; retrying");
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
    async fn execute(
        &self,
        app: &str,
        function: &str,
        input: &[u8],
        version: Option<u64>,
        trigger: Trigger,
        run: Run<'_>,
    ) -> Result<(Execution, u32), Error> {
        let mut attempts = 0;
        loop {
            let loaded = self.target(app, version).await?;
            let execution = match run {
                Run::Scheduled(id) => loaded.run_scheduled(function, id).await,
                Run::Call(id) => loaded.call_with_id(function, input, trigger, id).await,
            };
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
        self.serve_http_as(app, function, request, error_id).await
    }

    /// [`serve_http`](Self::serve_http) with the error id given directly.
    pub(crate) async fn serve_http_as<B>(
        &self,
        app: &str,
        function: &str,
        mut request: hyper::Request<B>,
        error_id: Option<crate::ErrorId>,
    ) -> Result<crate::WebResponse, Error>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let live = self.live(app)?;
            match live
                .try_serve_http(function, request, error_id.clone())
                .await
            {
                Ok(response) => return Ok(response),
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
        match loaded.spec().function(function) {
            None => {
                return Err(Error::UnknownFunction {
                    name: function.to_string(),
                    available: loaded.spec().names(),
                });
            }
            Some(f) if matches!(f.kind, FunctionKind::Web { .. }) => {
                return Err(Error::WrongKind(format!(
                    "`{function}` is a web function and cannot be spawned"
                )));
            }
            Some(_) => {}
        }
        let call = SpawnedCall {
            id: new_call_id()?,
            app: app.to_string(),
            function: function.to_string(),
            version,
            input: input.to_vec(),
        };
        // Stored and started together, even if the caller stops waiting.
        let this = self.clone();
        self.to_the_end(async move {
            let store = &this.inner.recorder.store;
            store.insert_call(&call, now_ms()).await?;
            let id = call.id.clone();
            this.run_spawned(call);
            Ok(id)
        })
        .await
    }

    fn run_spawned(&self, call: SpawnedCall) {
        let platform = self.clone();
        self.spawn_task(async move {
            let SpawnedCall {
                id,
                app,
                function,
                version,
                input,
            } = call;
            let mut waits = 0;
            let result = loop {
                let result = platform
                    .call_with_retries(&app, &function, &input, version, Trigger::Spawn, &id)
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
        let shutting_down = self
            .inner
            .shutting_down
            .load(std::sync::atomic::Ordering::Acquire);
        if shutting_down
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

    /// Runs the calls accepted before a restart that never finished.
    pub(super) async fn resume_calls(&self) -> Result<(), Error> {
        for call in self.inner.recorder.store.unfinished_calls().await? {
            tracing::info!(call = %call.id, app = %call.app, function = %call.function, "resuming a spawned call accepted before the restart");
            self.run_spawned(call);
        }
        Ok(())
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
            let _ = tokio::time::timeout_at(deadline.into(), done.changed()).await;
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
        let run = Run::Scheduled(run_id);
        let (execution, _) = platform
            .execute(app, function, b"", None, Trigger::Schedule, run)
            .await?;
        Ok(execution)
    }

    fn record(&self, execution: &Execution) {
        if let Some(platform) = self.platform() {
            platform.inner.recorder.record(execution);
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
