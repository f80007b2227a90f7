//! What a failed guest call means: a wasmtime error classified as a
//! timeout, memory limit, stack overflow or trap, and bare trap messages
//! replaced with the guest's panic message. Used by the call path
//! (`app.rs`, `web.rs`) and by `describe` in the pool.

use crate::compile::one_line;
use crate::error::Error;
use crate::pool::Instance;
use std::time::Duration;
use wasmtime::Trap;

/// Turns a wasmtime error from a guest call into what the user needs to
/// know: timeout, memory limit, stack overflow or trap.
pub(crate) fn classify(
    error: wasmtime::Error,
    instance: &Instance,
    function: &str,
    timeout: Duration,
) -> Error {
    let function = function.to_string();
    if instance.hit_memory_limit() || holds_too_many_resources(&error) {
        return Error::MemoryLimit {
            function,
            limit: instance.store.data().memory.limit,
        };
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Error::Trap {
            function,
            message: format!(
                "the guest exited (status {}); its instance is dropped",
                exit.0
            ),
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Error::Timeout {
            function,
            limit: timeout,
        },
        Some(Trap::StackOverflow) => Error::StackOverflow { function },
        Some(trap) => Error::Trap {
            function,
            message: trap.to_string(),
        },
        None => Error::Trap {
            function,
            message: one_line(&format!("{error:#}")),
        },
    }
}

/// Whether a guest failed because its host resources (header maps,
/// streams, ...) reached the instance's cap (see
/// `sandbox::resource_capacity`): host memory spent on its behalf.
pub(crate) fn holds_too_many_resources(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        )
    })
}

/// Replaces a bare trap message with the guest's panic message when its
/// logs have one (Rust prints `panicked at FILE:LINE:COL:` then the
/// message).
pub(crate) fn refine(error: Error, logs: &str) -> Error {
    match error {
        Error::Trap { function, message } => {
            let panic = logs
                .lines()
                .position(|l| l.contains("panicked at"))
                .and_then(|i| logs.lines().nth(i + 1))
                .map(str::trim)
                .filter(|m| !m.is_empty());
            match panic {
                Some(p) => Error::Trap {
                    function,
                    message: format!("panicked: {p}"),
                },
                None => Error::Trap { function, message },
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_replace_bare_traps() {
        let logs = "hello\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nboom here\nnote: run with `RUST_BACKTRACE=1`\n";
        let e = refine(
            Error::Trap {
                function: "trap".into(),
                message: "wasm trap: unreachable".into(),
            },
            logs,
        );
        assert_eq!(
            e.to_string(),
            "function `trap` trapped: panicked: boom here"
        );
        let e = refine(
            Error::Trap {
                function: "t".into(),
                message: "wasm trap: unreachable".into(),
            },
            "no panic here",
        );
        assert_eq!(
            e.to_string(),
            "function `t` trapped: wasm trap: unreachable"
        );
    }
}
