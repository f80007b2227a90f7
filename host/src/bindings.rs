//! Host bindings of the `modal:app/functions` world (generated from `wit/`)
//! and the host side of its imports `context` and `invoke`
//! (`wasi:keyvalue` is in [`crate::kv`]).

use crate::invoke::{Caller, Failure, FailureKind, Invoker, new_call_id};
use crate::sandbox::Sandbox;
use std::sync::Arc;
use std::time::Duration;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "modal:app/functions",
    exports: { default: async },
    imports: {
        "modal:app/invoke.call": async,
        "modal:app/invoke.spawn": async,
        "modal:app/invoke.get": async,
        "modal:app/invoke.map": async,
        "wasi:keyvalue/store.open": async,
        "wasi:keyvalue/store.[method]bucket.get": async,
        "wasi:keyvalue/store.[method]bucket.set": async,
        "wasi:keyvalue/store.[method]bucket.delete": async,
        "wasi:keyvalue/store.[method]bucket.exists": async,
        "wasi:keyvalue/store.[method]bucket.list-keys": async,
        "wasi:keyvalue/atomics.increment": async,
        "wasi:keyvalue/batch.get-many": async,
        "wasi:keyvalue/batch.set-many": async,
        "wasi:keyvalue/batch.delete-many": async,
    },
    with: {
        "wasi:keyvalue/store.bucket": crate::kv::Bucket,
    },
});

pub(crate) use exports::modal::app::function::AppSpec as RawSpec;
pub(crate) use exports::modal::app::function::{
    CallError, FunctionKind as RawKind, FunctionSpec as RawFunction, Guest as FunctionGuest,
    GuestIndices as FunctionIndices, Schedule as RawSchedule,
};
pub(crate) use exports::modal::app::lifecycle::{
    Guest as LifecycleGuest, GuestIndices as LifecycleIndices,
};
pub(crate) use exports::modal::app::needs::{Guest as NeedsGuest, GuestIndices as NeedsIndices};
use modal::app::invoke::CallFailure;

impl modal::app::context::Host for Sandbox {
    fn run_id(&mut self) -> Option<String> {
        self.frame.run_id.clone()
    }
}

impl From<Failure> for CallFailure {
    fn from(Failure { kind, message }: Failure) -> CallFailure {
        match kind {
            FailureKind::NotFound => CallFailure::NotFound(message),
            FailureKind::BadInput => CallFailure::BadInput(message),
            FailureKind::Failed => CallFailure::Failed(message),
            FailureKind::Trap => CallFailure::Trap(message),
            FailureKind::Timeout => CallFailure::Timeout(message),
            FailureKind::MemoryLimit => CallFailure::MemoryLimit(message),
            FailureKind::Overloaded => CallFailure::Overloaded(message),
            FailureKind::Cancelled => CallFailure::Cancelled(message),
            FailureKind::DepthExceeded => CallFailure::DepthExceeded(message),
            FailureKind::Other => CallFailure::Other(message),
        }
    }
}

impl Sandbox {
    /// The execution in progress as a caller, and who runs its calls. It
    /// gets a call id now if it had none, so its children can name it.
    fn caller(&mut self) -> Result<(Arc<dyn Invoker>, Caller), Failure> {
        let deadline = self.deadline;
        let frame = &mut self.frame;
        let Some(app) = frame.app.clone() else {
            return Err(Failure {
                kind: FailureKind::Other,
                message: "functions can be called only while an execution runs \
                          (not from `enter` or `exit`)"
                    .into(),
            });
        };
        let call_id = match &frame.call_id {
            Some(id) => id.clone(),
            None => frame.call_id.insert(new_call_id()?).clone(),
        };
        let root_call_id = frame
            .root_call_id
            .get_or_insert_with(|| call_id.clone())
            .clone();
        let caller = Caller {
            call_id,
            root_call_id,
            depth: frame.depth,
            deadline,
            app,
        };
        Ok((caller.app.inner.invoker.clone(), caller))
    }
}

impl modal::app::invoke::Host for Sandbox {
    async fn call(
        &mut self,
        app: Option<String>,
        function: String,
        input: Vec<u8>,
    ) -> Result<Vec<u8>, CallFailure> {
        let (invoker, caller) = self.caller()?;
        Ok(invoker.call(caller, app, function, input).await?)
    }

    async fn spawn(
        &mut self,
        app: Option<String>,
        function: String,
        input: Vec<u8>,
    ) -> Result<String, CallFailure> {
        let (invoker, caller) = self.caller()?;
        Ok(invoker.spawn(caller, app, function, input).await?)
    }

    async fn get(&mut self, id: String, timeout_ms: u64) -> Result<Option<Vec<u8>>, CallFailure> {
        let (invoker, caller) = self.caller()?;
        let asked = Duration::from_millis(timeout_ms);
        let wait = caller.remaining(asked);
        match invoker.get(caller, id.clone(), wait).await? {
            // The caller's own time ran out first: waiting on is pointless.
            None if wait < asked => Err(CallFailure::Timeout(format!(
                "spawned call `{id}` did not finish within the caller's remaining time"
            ))),
            output => Ok(output),
        }
    }

    async fn map(
        &mut self,
        app: Option<String>,
        function: String,
        inputs: Vec<Vec<u8>>,
    ) -> Vec<Result<Vec<u8>, CallFailure>> {
        let caller = match self.caller() {
            Ok(found) => found,
            Err(e) => return inputs.iter().map(|_| Err(e.clone().into())).collect(),
        };
        let (invoker, caller) = caller;
        let outcomes = crate::invoke::map(invoker, caller, app, function, inputs).await;
        outcomes
            .into_iter()
            .map(|o| o.map_err(CallFailure::from))
            .collect()
    }
}
