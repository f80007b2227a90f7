//! Calls between functions: where a guest's call comes from ([`Caller`]),
//! where the execution it starts sits in the tree of calls ([`Nesting`]),
//! how a failure reaches the guest ([`Failure`]), and the [`Invoker`] that
//! runs the calls. A loaded app on its own calls only its own functions
//! ([`Local`]); the platform's invoker adds other apps and stored spawned
//! calls.

use crate::app::{LoadedApp, Trigger};
use crate::error::Error;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A new id for a call: `call-` and 24 hex digits, a random 48-bit prefix
/// drawn once per process and a 48-bit counter, so ids never repeat
/// across restarts (short of a 1-in-2^48 prefix collision) and cost no
/// syscall each. They are names, not credentials: reading a call's result
/// takes the control token, or, for a guest, being of its app.
pub(crate) fn new_call_id() -> Result<String, Error> {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<Result<String, String>> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes)
            .map(|()| hex::encode(bytes))
            .map_err(|e| format!("no randomness for call ids: {e}"))
    });
    match prefix {
        Ok(prefix) => Ok(format!(
            "call-{prefix}{:012x}",
            NEXT.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff_ffff
        )),
        Err(e) => Err(Error::Internal(e.clone())),
    }
}

/// The execution that makes a call between functions.
#[derive(Clone)]
pub(crate) struct Caller {
    /// The version it runs on: calls into its own app run there too.
    pub(crate) app: LoadedApp,
    /// Its call id (created when it first calls, for web and scheduled runs).
    pub(crate) call_id: String,
    /// The call id of the root of its tree of calls.
    pub(crate) root_call_id: String,
    /// Its depth: 0 for a call from outside.
    pub(crate) depth: u32,
    /// When it must end; a nested call never outlives it.
    pub(crate) deadline: Instant,
}

impl Caller {
    /// Where a call to `function` from here sits, or why it may not run.
    pub(crate) fn child(&self, function: &str) -> Result<Nesting, Error> {
        let limit = self.app.inner.max_call_depth;
        if self.depth >= limit {
            return Err(Error::DepthExceeded {
                function: function.to_string(),
                limit,
            });
        }
        Ok(Nesting {
            parent_call_id: Some(self.call_id.clone()),
            root_call_id: Some(self.root_call_id.clone()),
            depth: self.depth + 1,
            deadline: Some(self.deadline),
        })
    }

    /// The caller's remaining time, capped at `wait`.
    pub(crate) fn remaining(&self, wait: Duration) -> Duration {
        wait.min(self.deadline.saturating_duration_since(Instant::now()))
    }

    /// Whether `app` names the caller's own app (`None` does).
    pub(crate) fn is_own(&self, app: Option<&str>) -> bool {
        app.is_none_or(|a| a == &*self.app.inner.name)
    }
}

/// Where an execution sits in a tree of calls; the default is a root.
#[derive(Clone, Debug, Default)]
pub(crate) struct Nesting {
    /// The call id of the execution that called it.
    pub(crate) parent_call_id: Option<String>,
    /// The call id of the root of the tree.
    pub(crate) root_call_id: Option<String>,
    /// 0 for a root, 1 for what a root calls, ...
    pub(crate) depth: u32,
    /// The caller's deadline, which the execution's own timeout is cut to.
    pub(crate) deadline: Option<Instant>,
}

/// The kinds of `call-failure` a guest tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureKind {
    NotFound,
    BadInput,
    Failed,
    Trap,
    Timeout,
    MemoryLimit,
    Overloaded,
    Cancelled,
    DepthExceeded,
    Other,
}

impl FailureKind {
    /// The kind of a failure of [`Error::kind`] `kind`.
    pub(crate) fn of(kind: &str) -> FailureKind {
        match kind {
            "unknown_function" | "app_not_found" | "app_stopped" | "wrong_kind"
            | "version_not_found" => FailureKind::NotFound,
            "bad_input" => FailureKind::BadInput,
            "failed" => FailureKind::Failed,
            "trap" | "stack_overflow" => FailureKind::Trap,
            "timeout" => FailureKind::Timeout,
            "memory_limit" => FailureKind::MemoryLimit,
            "overloaded" | "host_at_capacity" => FailureKind::Overloaded,
            "cancelled" | "shutting_down" => FailureKind::Cancelled,
            "depth_exceeded" => FailureKind::DepthExceeded,
            _ => FailureKind::Other,
        }
    }
}

/// A failed call between functions, as the caller's guest gets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    /// The callee's own error text for [`FailureKind::Failed`], else the
    /// host's message.
    pub(crate) message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let kind = FailureKind::of(e.kind());
        let message = match e {
            Error::Failed { message, .. } | Error::BadInput(message) => message,
            // Other apps are found only when they granted the caller; the
            // answer is the same whether the app is absent or refused.
            Error::AppStopped(app) => Error::AppNotFound(app).to_string(),
            e => e.to_string(),
        };
        Failure { kind, message }
    }
}

/// The result of one call between functions.
pub(crate) type Outcome = Result<Vec<u8>, Failure>;

/// Runs the calls a guest makes to other functions.
#[async_trait::async_trait]
pub(crate) trait Invoker: Send + Sync {
    /// Calls `function` of `app` (`None`: the caller's) and waits.
    async fn call(
        &self,
        caller: Caller,
        app: Option<String>,
        function: String,
        input: Vec<u8>,
    ) -> Outcome;

    /// How many calls of `function` of `app` a fan-out runs at once (its
    /// `max_instances`), or why it cannot call it.
    fn width(&self, caller: &Caller, app: Option<&str>, function: &str) -> Result<usize, Failure>;

    /// Stores a call to run in the background; returns its id.
    async fn spawn(
        &self,
        caller: Caller,
        app: Option<String>,
        function: String,
        input: Vec<u8>,
    ) -> Result<String, Failure>;

    /// The output of a spawned call, waiting up to `wait`; `None` while it
    /// runs.
    async fn get(
        &self,
        caller: Caller,
        id: String,
        wait: Duration,
    ) -> Result<Option<Vec<u8>>, Failure>;
}

/// The invoker of a loaded app without a platform (`modal run`, an
/// embedded [`LoadedApp`]): calls into its own app only, on its own
/// version, without retries; spawned calls run in this process and are
/// not stored.
#[derive(Default)]
pub(crate) struct Local {
    /// The spawned calls, by id: their outcome once they finished.
    spawned: std::sync::Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>,
}

fn needs_platform(what: &str) -> Failure {
    Failure {
        kind: FailureKind::Other,
        message: format!("{what} needs a platform (`modal server`, or `Platform` when embedding)"),
    }
}

/// A call of `function` on the caller's own version.
async fn call_local(caller: &Caller, app: Option<&str>, function: &str, input: &[u8]) -> Outcome {
    if !caller.is_own(app) {
        return Err(needs_platform("calling another app"));
    }
    let run = crate::app::Run {
        call_id: Some(new_call_id()?),
        nesting: caller.child(function)?,
        ..Default::default()
    };
    let execution = caller
        .app
        .execute(function, input, Trigger::Call, run)
        .await;
    Ok(execution.outcome?)
}

#[async_trait::async_trait]
impl Invoker for Local {
    async fn call(
        &self,
        caller: Caller,
        app: Option<String>,
        function: String,
        input: Vec<u8>,
    ) -> Outcome {
        call_local(&caller, app.as_deref(), &function, &input).await
    }

    fn width(&self, caller: &Caller, app: Option<&str>, function: &str) -> Result<usize, Failure> {
        if !caller.is_own(app) {
            return Err(needs_platform("calling another app"));
        }
        Ok(caller.app.max_instances(function))
    }

    async fn spawn(
        &self,
        caller: Caller,
        app: Option<String>,
        function: String,
        input: Vec<u8>,
    ) -> Result<String, Failure> {
        if !caller.is_own(app.as_deref()) {
            return Err(needs_platform("spawning a call into another app"));
        }
        let mut nesting = caller.child(&function)?;
        // A spawned call outlives its caller.
        nesting.deadline = None;
        let id = new_call_id()?;
        let (done, outcome) = watch::channel(None);
        self.spawned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone(), outcome);
        let run = crate::app::Run {
            call_id: Some(id.clone()),
            nesting,
            ..Default::default()
        };
        let app = caller.app.clone();
        let task = async move {
            let execution = app.execute(&function, &input, Trigger::Spawn, run).await;
            done.send_replace(Some(execution.outcome.map_err(Failure::from)));
        };
        caller.app.spawn(task);
        Ok(id)
    }

    async fn get(
        &self,
        _caller: Caller,
        id: String,
        wait: Duration,
    ) -> Result<Option<Vec<u8>>, Failure> {
        let known = self
            .spawned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned();
        let Some(mut outcome) = known else {
            return Err(Failure {
                kind: FailureKind::NotFound,
                message: format!("no spawned call with id `{id}`"),
            });
        };
        let finished = tokio::time::timeout(wait, outcome.wait_for(Option::is_some)).await;
        match finished {
            Ok(Ok(done)) => match done.clone() {
                Some(outcome) => outcome.map(Some),
                None => Ok(None),
            },
            Ok(Err(_)) => Err(Failure {
                kind: FailureKind::Cancelled,
                message: format!("spawned call `{id}` was dropped before it finished"),
            }),
            Err(_) => Ok(None),
        }
    }
}

/// Calls `function` of `app` once per input through `invoker`, as many at
/// once as the callee's `max_instances`; results in input order.
pub(crate) async fn map(
    invoker: Arc<dyn Invoker>,
    caller: Caller,
    app: Option<String>,
    function: String,
    inputs: Vec<Vec<u8>>,
) -> Vec<Outcome> {
    let width = match invoker.width(&caller, app.as_deref(), &function) {
        Ok(width) => width,
        Err(e) => return inputs.iter().map(|_| Err(e.clone())).collect(),
    };
    fan_out(inputs, width, move |input| {
        let (invoker, caller) = (invoker.clone(), caller.clone());
        let (app, function) = (app.clone(), function.clone());
        async move { invoker.call(caller, app, function, input).await }
    })
    .await
}

/// Runs `call` once per input with at most `width` at a time, on worker
/// tasks that take the next input as they finish one (so a fan-out holds
/// `width` calls, not one per input); results in input order. Dropping the
/// future stops the workers.
async fn fan_out<F, Fut>(inputs: Vec<Vec<u8>>, width: usize, call: F) -> Vec<Outcome>
where
    F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let count = inputs.len();
    let queue = Arc::new(std::sync::Mutex::new(inputs.into_iter().enumerate()));
    let call = Arc::new(call);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..width.clamp(1, count.max(1)) {
        let (queue, call) = (queue.clone(), call.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .next();
                let Some((index, input)) = next else {
                    return done;
                };
                done.push((index, call(input).await));
            }
        });
    }
    let mut results: Vec<Option<Outcome>> = (0..count).map(|_| None).collect();
    while let Some(finished) = workers.join_next().await {
        match finished {
            Ok(done) => {
                for (index, outcome) in done {
                    results[index] = Some(outcome);
                }
            }
            Err(e) => tracing::error!("a fan-out worker failed: {e}"),
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(Failure {
                    kind: FailureKind::Other,
                    message: "the call was lost: its worker failed".into(),
                })
            })
        })
        .collect()
}
