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

/// Replaces a bare trap message with the guest's own account of it when
/// its logs have one: a Python traceback's exception and the place it was
/// raised (componentize-py traps after printing it), else a Rust panic's
/// message (printed as `panicked at FILE:LINE:COL:` and then the message).
pub(crate) fn refine(error: Error, logs: &str) -> Error {
    match error {
        Error::Trap { function, message } => {
            let message = python_exception(logs)
                .or_else(|| rust_panic(logs).map(|p| format!("panicked: {p}")))
                .unwrap_or(message);
            Error::Trap { function, message }
        }
        other => other,
    }
}

fn rust_panic(logs: &str) -> Option<&str> {
    logs.lines()
        .position(|l| l.contains("panicked at"))
        .and_then(|i| logs.lines().nth(i + 1))
        .map(str::trim)
        .filter(|m| !m.is_empty())
}

/// The last Python traceback in `logs` as `Exception: message (file, line
/// N)`: its final line, and the last frame it names.
fn python_exception(logs: &str) -> Option<String> {
    let start = logs.rfind("Traceback (most recent call last):")?;
    let lines: Vec<&str> = logs[start..].lines().skip(1).collect();
    // The frames are indented; the exception is the first line that is not.
    let end = lines
        .iter()
        .position(|l| !l.starts_with(' ') && !l.trim().is_empty())?;
    let exception = lines[end].trim();
    let place = lines[..end].iter().rev().find_map(|l| {
        let frame = l.trim().strip_prefix("File \"")?;
        let (file, rest) = frame.split_once('"')?;
        let line = rest.trim_start_matches(", line ").split(',').next()?;
        let file = file.rsplit('/').next().unwrap_or(file);
        Some(format!(" ({file}, line {line})"))
    });
    Some(format!("{exception}{}", place.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_tracebacks_replace_bare_traps() {
        let trap = || Error::Trap {
            function: "describe".into(),
            message: "wasm trap: unreachable".into(),
        };
        let syntax = "Traceback (most recent call last):\n  File \"/modal/app/_dev.py\", line 31, in _load\n    importlib.import_module(MODULE)\n  File \"/modal/app/app.py\", line 14\n    def square(x)\n                 ^\nSyntaxError: expected ':'\nthread '<unnamed>' panicked at src/lib.rs:9:9:\nPython function threw an unexpected exception\n";
        assert_eq!(
            refine(trap(), syntax).to_string(),
            "function `describe` trapped: SyntaxError: expected ':' (app.py, line 14)"
        );
        let missing = "Traceback (most recent call last):\n  File \"/modal/app/app.py\", line 3, in <module>\n    import nope\nModuleNotFoundError: No module named 'nope'\n";
        assert_eq!(
            refine(trap(), missing).to_string(),
            "function `describe` trapped: ModuleNotFoundError: No module named 'nope' (app.py, line 3)"
        );
    }

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
