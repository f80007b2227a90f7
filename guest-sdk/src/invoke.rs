//! Calling other functions from a function: of the same app through the
//! typed stubs `#[app]` generates (`square::remote(7)`), of any app through
//! [`Function::lookup`]. Inputs and outputs travel as JSON.
//!
//! Each call has an `_async` form for `async fn` functions
//! (`square::remote_async(7).await`). The host's `modal:app/invoke`
//! imports are synchronous, so an async call yields to the runtime once
//! (the futures beside it start their work: a `fetch_async` sends its
//! request) and then blocks the guest until the host answers. Requests
//! already sent go on in the host meanwhile, but no other task of the
//! guest runs until the call returns.

use crate::__bindings::modal::app::invoke;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Returns `Pending` once (waking its task at once), then `Ready`: lets
/// the other futures of the task, and the other tasks, run before a
/// blocking host call.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// What every async form awaits before its blocking host call.
fn yield_once() -> YieldOnce {
    YieldOnce(false)
}

/// Why a call to another function failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallFailure {
    /// No such app or function, or the app does not allow this caller.
    NotFound(String),
    /// The callee could not decode its input.
    BadInput(String),
    /// The callee ran and returned an error: its text.
    Failed(String),
    /// The callee trapped (panicked).
    Trap(String),
    /// The callee ran past its timeout or this function's remaining time.
    Timeout(String),
    /// The callee passed its memory limit.
    MemoryLimit(String),
    /// Every instance of the callee stayed busy.
    Overloaded(String),
    /// The call was cancelled.
    Cancelled(String),
    /// Calls nested too deeply (a function calling itself without end?).
    DepthExceeded(String),
    /// Anything else.
    Other(String),
}

impl From<invoke::CallFailure> for CallFailure {
    fn from(f: invoke::CallFailure) -> CallFailure {
        use invoke::CallFailure as F;
        match f {
            F::NotFound(m) => CallFailure::NotFound(m),
            F::BadInput(m) => CallFailure::BadInput(m),
            F::Failed(m) => CallFailure::Failed(m),
            F::Trap(m) => CallFailure::Trap(m),
            F::Timeout(m) => CallFailure::Timeout(m),
            F::MemoryLimit(m) => CallFailure::MemoryLimit(m),
            F::Overloaded(m) => CallFailure::Overloaded(m),
            F::Cancelled(m) => CallFailure::Cancelled(m),
            F::DepthExceeded(m) => CallFailure::DepthExceeded(m),
            F::Other(m) => CallFailure::Other(m),
        }
    }
}

impl CallFailure {
    /// The host's or the callee's message.
    pub fn message(&self) -> &str {
        match self {
            CallFailure::NotFound(m)
            | CallFailure::BadInput(m)
            | CallFailure::Failed(m)
            | CallFailure::Trap(m)
            | CallFailure::Timeout(m)
            | CallFailure::MemoryLimit(m)
            | CallFailure::Overloaded(m)
            | CallFailure::Cancelled(m)
            | CallFailure::DepthExceeded(m)
            | CallFailure::Other(m) => m,
        }
    }

    /// A short name of the kind of failure, e.g. `trap`.
    pub fn kind(&self) -> &'static str {
        match self {
            CallFailure::NotFound(_) => "not found",
            CallFailure::BadInput(_) => "bad input",
            CallFailure::Failed(_) => "failed",
            CallFailure::Trap(_) => "trap",
            CallFailure::Timeout(_) => "timeout",
            CallFailure::MemoryLimit(_) => "memory limit",
            CallFailure::Overloaded(_) => "overloaded",
            CallFailure::Cancelled(_) => "cancelled",
            CallFailure::DepthExceeded(_) => "depth exceeded",
            CallFailure::Other(_) => "error",
        }
    }
}

/// Lets `?` pass a `CallFailure` up from a function that returns
/// `Result<_, String>`, as its text.
impl From<CallFailure> for String {
    fn from(e: CallFailure) -> String {
        e.to_string()
    }
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The callee's own error reads as it wrote it.
            CallFailure::Failed(m) => f.write_str(m),
            other => write!(f, "{}: {}", other.kind(), other.message()),
        }
    }
}

impl std::error::Error for CallFailure {}

fn encode<T: Serialize + ?Sized>(input: &T) -> Result<Vec<u8>, CallFailure> {
    serde_json::to_vec(input)
        .map_err(|e| CallFailure::BadInput(format!("the input could not be encoded as JSON: {e}")))
}

fn decode<O: DeserializeOwned>(function: &str, output: &[u8]) -> Result<O, CallFailure> {
    // A function without a result answers `null`, or nothing.
    let output = if output.is_empty() { b"null" } else { output };
    serde_json::from_slice(output).map_err(|e| {
        CallFailure::Other(format!(
            "the output of `{function}` does not decode as the expected type: {e}"
        ))
    })
}

/// A function of a deployed app, found by name: `Function::lookup("other",
/// "f").call::<_, Out>(&x)`. Calls into another app need its grant
/// (`modal deploy --allow-caller`); calls within the app are always allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    app: Option<String>,
    name: String,
}

impl Function {
    /// Function `function` of app `app`.
    pub fn lookup(app: &str, function: &str) -> Function {
        Function {
            app: Some(app.to_string()),
            name: function.to_string(),
        }
    }

    /// Function `function` of the caller's own app, run on the caller's
    /// version.
    pub fn own(function: &str) -> Function {
        Function {
            app: None,
            name: function.to_string(),
        }
    }

    /// Calls it with `input` and waits for its output.
    pub fn call<I: Serialize + ?Sized, O: DeserializeOwned>(
        &self,
        input: &I,
    ) -> Result<O, CallFailure> {
        let output = invoke::call(self.app.as_deref(), &self.name, &encode(input)?)?;
        decode(&self.name, &output)
    }

    /// Starts it with `input` in the background; the host stores the call
    /// and runs it at least once, even if this function ends first.
    pub fn spawn<I: Serialize + ?Sized, O>(
        &self,
        input: &I,
    ) -> Result<FunctionCall<O>, CallFailure> {
        let id = invoke::spawn(self.app.as_deref(), &self.name, &encode(input)?)?;
        Ok(FunctionCall {
            id,
            function: self.name.clone(),
            output: PhantomData,
        })
    }

    /// Calls it once per input, in parallel on up to its `max_instances`
    /// instances; the results come in input order.
    pub fn map<I: Serialize, O: DeserializeOwned>(
        &self,
        inputs: impl IntoIterator<Item = I>,
    ) -> Vec<Result<O, CallFailure>> {
        let mut encoded = Vec::new();
        let mut failed = Vec::new();
        for (index, input) in inputs.into_iter().enumerate() {
            match encode(&input) {
                Ok(bytes) => encoded.push(bytes),
                Err(e) => {
                    failed.push((index, e));
                    encoded.push(b"null".to_vec());
                }
            }
        }
        let mut results: Vec<Result<O, CallFailure>> =
            invoke::map(self.app.as_deref(), &self.name, &encoded)
                .into_iter()
                .map(|r| {
                    r.map_err(CallFailure::from)
                        .and_then(|output| decode(&self.name, &output))
                })
                .collect();
        for (index, e) in failed {
            results[index] = Err(e);
        }
        results
    }

    /// [`call`](Function::call) in an `async fn`: yields once, then blocks
    /// the guest for the call (see the module's documentation).
    pub async fn call_async<I: Serialize + ?Sized, O: DeserializeOwned>(
        &self,
        input: &I,
    ) -> Result<O, CallFailure> {
        yield_once().await;
        self.call(input)
    }

    /// [`spawn`](Function::spawn) in an `async fn`: yields once, then
    /// blocks the guest until the host stored the call (not until it ran).
    pub async fn spawn_async<I: Serialize + ?Sized, O>(
        &self,
        input: &I,
    ) -> Result<FunctionCall<O>, CallFailure> {
        yield_once().await;
        self.spawn(input)
    }

    /// [`map`](Function::map) in an `async fn`: yields once, then blocks
    /// the guest while the host runs the calls in parallel.
    pub async fn map_async<I: Serialize, O: DeserializeOwned>(
        &self,
        inputs: impl IntoIterator<Item = I>,
    ) -> Vec<Result<O, CallFailure>> {
        yield_once().await;
        self.map(inputs)
    }
}

/// A spawned call: its id, and its output once it finished.
#[derive(Debug)]
pub struct FunctionCall<O> {
    id: String,
    function: String,
    output: PhantomData<fn() -> O>,
}

impl<O> FunctionCall<O> {
    /// The call's id (also what `modal result` takes).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A spawned call by id, e.g. one whose id was stored.
    pub fn from_id(id: impl Into<String>) -> FunctionCall<O> {
        FunctionCall {
            id: id.into(),
            function: String::from("the spawned call"),
            output: PhantomData,
        }
    }
}

impl<O: DeserializeOwned> FunctionCall<O> {
    /// Waits for the output (as long as the caller's own timeout allows).
    pub fn get(&self) -> Result<O, CallFailure> {
        loop {
            if let Some(output) = self.get_within(Duration::from_secs(60))? {
                return Ok(output);
            }
        }
    }

    /// [`get`](FunctionCall::get) in an `async fn`: yields once, then
    /// blocks the guest until the output is there.
    pub async fn get_async(&self) -> Result<O, CallFailure> {
        yield_once().await;
        self.get()
    }

    /// The output if the call finishes within `wait`, else `None`.
    pub fn get_within(&self, wait: Duration) -> Result<Option<O>, CallFailure> {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        match invoke::get(&self.id, ms)? {
            Some(output) => decode(&self.function, &output).map(Some),
            None => Ok(None),
        }
    }
}

/// What a generated stub checks at its call site (not where it is
/// defined): that the function's input serializes and its output
/// deserializes. Not part of the public API.
#[doc(hidden)]
pub struct Checked<'m, I, O>(PhantomData<(&'m (), I, O)>);

/// See [`Checked`]; not part of the public API.
#[doc(hidden)]
pub trait Typed<I, O> {
    /// Calls `function` of the caller's app with `input`.
    fn remote(function: &str, input: &I) -> Result<O, CallFailure>;
    /// Spawns `function` of the caller's app with `input`.
    fn spawn(function: &str, input: &I) -> Result<FunctionCall<O>, CallFailure>;
    /// Maps `function` of the caller's app over `inputs`.
    fn map(function: &str, inputs: Vec<I>) -> Vec<Result<O, CallFailure>>;
    /// [`Typed::remote`], awaited.
    fn remote_async(function: &str, input: I) -> impl Future<Output = Result<O, CallFailure>>;
    /// [`Typed::spawn`], awaited.
    fn spawn_async(
        function: &str,
        input: I,
    ) -> impl Future<Output = Result<FunctionCall<O>, CallFailure>>;
    /// [`Typed::map`], awaited.
    fn map_async(
        function: &str,
        inputs: Vec<I>,
    ) -> impl Future<Output = Vec<Result<O, CallFailure>>>;
}

impl<I: Serialize, O: DeserializeOwned> Typed<I, O> for Checked<'_, I, O> {
    fn remote(function: &str, input: &I) -> Result<O, CallFailure> {
        Function::own(function).call(input)
    }

    fn spawn(function: &str, input: &I) -> Result<FunctionCall<O>, CallFailure> {
        Function::own(function).spawn(input)
    }

    fn map(function: &str, inputs: Vec<I>) -> Vec<Result<O, CallFailure>> {
        Function::own(function).map(inputs)
    }

    async fn remote_async(function: &str, input: I) -> Result<O, CallFailure> {
        Function::own(function).call_async(&input).await
    }

    async fn spawn_async(function: &str, input: I) -> Result<FunctionCall<O>, CallFailure> {
        Function::own(function).spawn_async(&input).await
    }

    async fn map_async(function: &str, inputs: Vec<I>) -> Vec<Result<O, CallFailure>> {
        Function::own(function).map_async(inputs).await
    }
}
