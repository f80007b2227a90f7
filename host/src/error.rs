//! The errors of loading and running apps, typed so that callers can match
//! on what failed.

use std::time::Duration;

/// What went wrong loading a component or running one of its functions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly file: {0}")]
    NotWasm(String),
    /// A core module was given where a component is needed.
    #[error(
        "this is a core WebAssembly module, not a component: build it for `wasm32-wasip2` \
         (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    /// The component failed validation or compilation.
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    /// The component imports something the host does not provide.
    #[error("the component cannot be linked: {0}")]
    UnsupportedImports(String),
    /// The component exports neither the modal contract nor a web handler.
    #[error(
        "the component exports neither `modal:app/function` (build it with modal-guest) \
         nor `wasi:http/incoming-handler`"
    )]
    MissingExports,
    /// The guest's `describe` trapped, timed out or returned garbage.
    #[error("`describe` failed: {0}")]
    Describe(String),
    /// The spec the guest described is invalid; every problem is listed.
    #[error("invalid app spec: {}", .0.join("; "))]
    InvalidSpec(Vec<String>),
    /// No function of that name in the app.
    #[error("no function named `{name}`; the app has {}", list(.available))]
    UnknownFunction {
        /// The name asked for.
        name: String,
        /// The functions the app has.
        available: Vec<String>,
    },
    /// The function exists but cannot be run that way (e.g. `call` on a
    /// web function).
    #[error("{0}")]
    WrongKind(String),
    /// The guest rejected the input.
    #[error("bad input: {0}")]
    BadInput(String),
    /// The function ran and returned an error.
    #[error("function `{function}` failed: {message}")]
    Failed {
        /// The function.
        function: String,
        /// The guest's error text.
        message: String,
    },
    /// The guest trapped (a Rust panic, `unreachable`, an invalid access).
    #[error("function `{function}` trapped: {message}")]
    Trap {
        /// The function.
        function: String,
        /// The panic message when there is one, else the trap.
        message: String,
    },
    /// The guest exhausted its stack (unbounded recursion).
    #[error("function `{function}` overflowed its stack (unbounded recursion?)")]
    StackOverflow {
        /// The function.
        function: String,
    },
    /// The execution ran past its timeout.
    #[error("function `{function}` timed out after {}", secs(*.limit))]
    Timeout {
        /// The function.
        function: String,
        /// The timeout that was hit.
        limit: Duration,
    },
    /// The guest tried to grow its memory past the limit.
    #[error("function `{function}` exceeded the memory limit of {} MiB", .limit >> 20)]
    MemoryLimit {
        /// The function.
        function: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// Every instance was busy for the whole queue timeout.
    #[error("function `{function}` is overloaded: all {max} instances stayed busy for {}", secs(*.waited))]
    Overloaded {
        /// The function.
        function: String,
        /// Its `max_instances`.
        max: u32,
        /// How long the call waited.
        waited: Duration,
    },
    /// A new instance could not be created or its `enter` hook failed.
    #[error("function `{function}`: could not start an instance: {message}")]
    Instantiate {
        /// The function.
        function: String,
        /// Why.
        message: String,
    },
    /// A web function ended without setting a response.
    #[error("web function `{function}` returned without setting a response")]
    NoResponse {
        /// The function.
        function: String,
    },
    /// The app is being drained or was shut down.
    #[error("app `{0}` is shutting down and takes no new calls")]
    ShuttingDown(String),
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A host-side failure that is not the guest's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "no functions".into();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// The outcome class of an execution, as recorded and exported as metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Succeeded.
    Ok,
    /// The guest returned an error or rejected its input.
    Error,
    /// The guest trapped or overflowed its stack.
    Trap,
    /// It ran past its timeout.
    Timeout,
    /// It hit the memory limit.
    MemoryLimit,
    /// It never ran: overloaded, shutting down, or could not start.
    Rejected,
}

impl Outcome {
    /// The lower-case name used in records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Trap => "trap",
            Outcome::Timeout => "timeout",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::Rejected => "rejected",
        }
    }
}

impl Error {
    /// The outcome class of an execution that failed with this error.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::BadInput(_) | Error::Failed { .. } | Error::NoResponse { .. } => Outcome::Error,
            Error::Trap { .. } | Error::StackOverflow { .. } => Outcome::Trap,
            Error::Timeout { .. } => Outcome::Timeout,
            Error::MemoryLimit { .. } => Outcome::MemoryLimit,
            _ => Outcome::Rejected,
        }
    }

    /// Whether the failure happened while the guest ran (so the instance
    /// that ran it must be discarded).
    pub(crate) fn poisons_instance(&self) -> bool {
        matches!(
            self,
            Error::Trap { .. }
                | Error::StackOverflow { .. }
                | Error::Timeout { .. }
                | Error::MemoryLimit { .. }
                | Error::Internal(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_one_line() {
        let e = Error::Timeout {
            function: "spin".into(),
            limit: Duration::from_secs(2),
        };
        assert_eq!(e.to_string(), "function `spin` timed out after 2s");
        let e = Error::UnknownFunction {
            name: "nope".into(),
            available: vec!["square".into(), "greet".into()],
        };
        assert_eq!(
            e.to_string(),
            "no function named `nope`; the app has `square`, `greet`"
        );
        let e = Error::MemoryLimit {
            function: "hog".into(),
            limit: 256 << 20,
        };
        assert_eq!(
            e.to_string(),
            "function `hog` exceeded the memory limit of 256 MiB"
        );
    }
}
