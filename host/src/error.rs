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
    /// Every instance slot of the host is taken (see `PoolingLimits`).
    #[error("the host is at capacity: {0}")]
    HostAtCapacity(String),
    /// A scheduled fire time that did not run (previous run still going,
    /// or missed while the host was down).
    #[error("{0}")]
    Skipped(String),
    /// A web function ended without setting a response.
    #[error("web function `{function}` returned without setting a response")]
    NoResponse {
        /// The function.
        function: String,
    },
    /// The execution was cancelled: its version drained past the deadline,
    /// or the host shut down.
    #[error("function `{function}` was cancelled: {reason}")]
    Cancelled {
        /// The function.
        function: String,
        /// Why.
        reason: String,
    },
    /// A call between functions nested deeper than the host allows (a
    /// function that calls itself without end, or a cycle).
    #[error(
        "calling `{function}` would nest calls deeper than {limit} (a function that calls itself without end, or a cycle?)"
    )]
    DepthExceeded {
        /// The function that would have been called.
        function: String,
        /// The host's limit.
        limit: u32,
    },
    /// No value at that key of the bucket.
    #[error("no key `{key}` in bucket `{bucket}`")]
    KeyNotFound {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// An app name that is not a DNS label.
    #[error(
        "invalid app name `{0}`: use 1 to 63 lower-case letters, digits and `-`, not starting or ending with `-`"
    )]
    InvalidAppName(String),
    /// No app of that name is deployed.
    #[error("no app named `{0}`")]
    AppNotFound(String),
    /// The app was stopped.
    #[error("app `{0}` is stopped; deploy it again to restart it")]
    AppStopped(String),
    /// The app has no such version.
    #[error("app `{app}` has no version {version}")]
    VersionNotFound {
        /// The app.
        app: String,
        /// The version asked for.
        version: u64,
    },
    /// An upload larger than the limit.
    #[error("the request body is larger than the limit of {} MiB", .limit >> 20)]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A store (the registry of apps and versions, the artifact store or
    /// the records of executions and spawned calls) failed.
    #[error("{context}: {source}")]
    Storage {
        /// Which store, and what it was doing.
        context: String,
        /// The cause, as the storage backend reported it.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The function's version is draining or was shut down.
    #[error("function `{0}` is draining and takes no new executions")]
    ShuttingDown(String),
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Another process (e.g. a second `modal server`) holds the state
    /// directory's lock.
    #[error("the state directory {dir} is in use by another process{}", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    StateInUse {
        /// The state directory.
        dir: String,
        /// The holder's process id, as it wrote it into the lock file.
        pid: Option<u32>,
    },
    /// Another deploy of the app (on another host) took the version number
    /// first.
    #[error("another deploy of app `{app}` took v{version} at the same time; deploy again")]
    VersionTaken {
        /// The app.
        app: String,
        /// The version number taken.
        version: u64,
    },
    /// This host no longer holds a lease it acted under (another host of
    /// the cluster took it over).
    #[error("this host no longer holds the {0} lease")]
    NotLeader(String),
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
    /// It was cancelled while running (drain deadline, shutdown).
    Cancelled,
    /// It never ran: overloaded, shutting down, or could not start.
    Rejected,
    /// A web function returned without setting a response.
    NoResponse,
}

impl Outcome {
    /// Every outcome, in the order of [`index`](Self::index).
    pub const ALL: [Outcome; 8] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Trap,
        Outcome::Timeout,
        Outcome::MemoryLimit,
        Outcome::Cancelled,
        Outcome::Rejected,
        Outcome::NoResponse,
    ];

    /// The position of this outcome in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The outcome named `name` (as [`as_str`](Self::as_str) writes it).
    pub fn parse(name: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == name)
    }

    /// The lower-case name used in records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Trap => "trap",
            Outcome::Timeout => "timeout",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::Cancelled => "cancelled",
            Outcome::Rejected => "rejected",
            Outcome::NoResponse => "no_response",
        }
    }
}

impl Error {
    /// A storage failure: `context` says which store and what it did.
    pub fn storage(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Error {
        Error::Storage {
            context: context.into(),
            source: source.into(),
        }
    }

    /// The outcome class of an execution that failed with this error.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::BadInput(_) | Error::Failed { .. } => Outcome::Error,
            Error::NoResponse { .. } => Outcome::NoResponse,
            Error::Trap { .. } | Error::StackOverflow { .. } => Outcome::Trap,
            Error::Timeout { .. } => Outcome::Timeout,
            Error::MemoryLimit { .. } => Outcome::MemoryLimit,
            Error::Cancelled { .. } => Outcome::Cancelled,
            _ => Outcome::Rejected,
        }
    }

    /// A stable snake_case name of the variant, used in API error bodies.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotWasm(_) => "not_wasm",
            Error::CoreModule => "core_module",
            Error::InvalidComponent(_) => "invalid_component",
            Error::UnsupportedImports(_) => "unsupported_imports",
            Error::MissingExports => "missing_exports",
            Error::Describe(_) => "describe_failed",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::UnknownFunction { .. } => "unknown_function",
            Error::WrongKind(_) => "wrong_kind",
            Error::BadInput(_) => "bad_input",
            Error::Failed { .. } => "failed",
            Error::Trap { .. } => "trap",
            Error::StackOverflow { .. } => "stack_overflow",
            Error::Timeout { .. } => "timeout",
            Error::MemoryLimit { .. } => "memory_limit",
            Error::Overloaded { .. } => "overloaded",
            Error::Instantiate { .. } => "instantiate_failed",
            Error::NoResponse { .. } => "no_response",
            Error::HostAtCapacity(_) => "host_at_capacity",
            Error::Skipped(_) => "skipped",
            Error::Cancelled { .. } => "cancelled",
            Error::DepthExceeded { .. } => "depth_exceeded",
            Error::KeyNotFound { .. } => "key_not_found",
            Error::InvalidAppName(_) => "invalid_app_name",
            Error::AppNotFound(_) => "app_not_found",
            Error::AppStopped(_) => "app_stopped",
            Error::VersionNotFound { .. } => "version_not_found",
            Error::TooLarge { .. } => "too_large",
            Error::Storage { .. } => "storage",
            Error::ShuttingDown(_) => "shutting_down",
            Error::Io { .. } => "io",
            Error::StateInUse { .. } => "state_in_use",
            Error::NotLeader(_) => "not_leader",
            Error::VersionTaken { .. } => "version_taken",
            Error::Internal(_) => "internal",
        }
    }

    /// The HTTP status that reports this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::NotWasm(_)
            | Error::CoreModule
            | Error::InvalidComponent(_)
            | Error::UnsupportedImports(_)
            | Error::MissingExports
            | Error::Describe(_)
            | Error::InvalidSpec(_)
            | Error::WrongKind(_)
            | Error::BadInput(_)
            | Error::DepthExceeded { .. }
            | Error::InvalidAppName(_) => 400,
            Error::AppNotFound(_)
            | Error::KeyNotFound { .. }
            | Error::UnknownFunction { .. }
            | Error::VersionNotFound { .. } => 404,
            Error::AppStopped(_) => 410,
            Error::TooLarge { .. } => 413,
            Error::VersionTaken { .. } => 409,
            Error::Timeout { .. } => 504,
            Error::Overloaded { .. }
            | Error::HostAtCapacity(_)
            | Error::ShuttingDown(_)
            | Error::NotLeader(_)
            | Error::Cancelled { .. } => 503,
            _ => 500,
        }
    }

    /// Whether a call that failed this way is tried again when its
    /// function sets `retries`: the guest ran and failed (not rejected
    /// input, not a refusal for load or a cancellation).
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Failed { .. }
                | Error::Trap { .. }
                | Error::StackOverflow { .. }
                | Error::Timeout { .. }
                | Error::MemoryLimit { .. }
                | Error::Instantiate { .. }
        )
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
                | Error::Cancelled { .. }
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
