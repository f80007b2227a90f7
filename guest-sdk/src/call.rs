//! JSON decoding of arguments, encoding of results and dispatch of `call`.

use crate::__bindings::exports::modal::app::function::{AppSpec, CallError, FunctionSpec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Display;

/// The name and version the SDK reports in `describe`.
const SDK: &str = concat!("modal-guest-rust ", env!("CARGO_PKG_VERSION"));

/// A generated adapter from JSON input bytes to one function's result.
pub type CallHandler = fn(&[u8]) -> Result<Vec<u8>, CallError>;

/// The spec `describe` returns; `hooks` says which of `enter` and `exit`
/// the app defines.
pub fn app_spec(functions: Vec<FunctionSpec>, (has_enter, has_exit): (bool, bool)) -> AppSpec {
    AppSpec {
        functions,
        sdk: Some(SDK.to_string()),
        has_enter,
        has_exit,
    }
}

/// Runs the handler registered under `function`.
pub fn dispatch(
    function: &str,
    input: &[u8],
    handlers: &[(&str, CallHandler)],
) -> Result<Vec<u8>, CallError> {
    match handlers.iter().find(|(name, _)| *name == function) {
        Some((_, handler)) => handler(input),
        None => Err(CallError::UnknownFunction(function.to_string())),
    }
}

fn is_blank(input: &[u8]) -> bool {
    input.iter().all(u8::is_ascii_whitespace)
}

fn parse(input: &[u8]) -> Result<serde_json::Value, CallError> {
    serde_json::from_slice(input)
        .map_err(|e| CallError::BadInput(format!("input is not valid JSON: {e}")))
}

/// Checks the input of a function without parameters: nothing, `null`,
/// `{}` or `[]`.
pub fn decode_none(input: &[u8], function: &str) -> Result<(), CallError> {
    if is_blank(input) {
        return Ok(());
    }
    match parse(input)? {
        serde_json::Value::Null => Ok(()),
        serde_json::Value::Object(o) if o.is_empty() => Ok(()),
        serde_json::Value::Array(a) if a.is_empty() => Ok(()),
        other => Err(CallError::BadInput(format!(
            "`{function}` takes no arguments, but was given {}",
            describe_value(&other)
        ))),
    }
}

/// Decodes the whole input as the single parameter `param` (e.g. `x: f64`).
pub fn decode_one<T: DeserializeOwned>(
    input: &[u8],
    function: &str,
    param: &str,
) -> Result<T, CallError> {
    let value = if is_blank(input) {
        serde_json::Value::Null
    } else {
        parse(input)?
    };
    let blank = value.is_null();
    serde_json::from_value(value).map_err(|e| {
        if blank {
            CallError::BadInput(format!(
                "`{function}` takes an argument ({param}), but none was given"
            ))
        } else {
            CallError::BadInput(format!("invalid argument {param} for `{function}`: {e}"))
        }
    })
}

/// Decodes the parameters of a function with several, from a JSON object
/// keyed by name or an array in order. `T` is a generated struct.
pub fn decode_args<T: DeserializeOwned>(
    input: &[u8],
    function: &str,
    params: &str,
) -> Result<T, CallError> {
    let value = if is_blank(input) {
        serde_json::Value::Null
    } else {
        parse(input)?
    };
    serde_json::from_value(value).map_err(|e| {
        CallError::BadInput(format!(
            "invalid arguments for `{function}({params})`: {e} (pass a JSON object keyed by parameter name)"
        ))
    })
}

fn describe_value(v: &serde_json::Value) -> String {
    let text = v.to_string();
    if text.len() > 60 {
        format!("{}…", &text[..text.floor_char_boundary(60)])
    } else {
        text
    }
}

/// Encodes a function's return value as JSON.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CallError> {
    serde_json::to_vec(value)
        .map_err(|e| CallError::Failed(format!("the result could not be encoded as JSON: {e}")))
}

/// Encodes a `Result` return value: `Err` becomes a failed call.
pub fn encode_result<T: Serialize, E: Display>(result: Result<T, E>) -> Result<Vec<u8>, CallError> {
    match result {
        Ok(value) => encode(&value),
        Err(e) => Err(CallError::Failed(e.to_string())),
    }
}

/// Lets an `#[enter]` hook return either `()` or a `Result`.
pub trait HookResult {
    /// The hook's outcome, an error as text.
    fn into_hook_result(self) -> Result<(), String>;
}

impl HookResult for () {
    fn into_hook_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> HookResult for Result<(), E> {
    fn into_hook_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// Converts what an `#[enter]` hook returned.
pub fn hook_result(r: impl HookResult) -> Result<(), String> {
    r.into_hook_result()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_input(r: Result<impl std::fmt::Debug, CallError>) -> String {
        match r {
            Err(CallError::BadInput(m)) => m,
            other => panic!("expected bad input, got {other:?}"),
        }
    }

    #[test]
    fn one_argument_is_the_whole_input() {
        assert_eq!(decode_one::<f64>(b"7", "square", "x: f64").unwrap(), 7.0);
        assert_eq!(
            decode_one::<Option<u32>>(b"", "f", "x: Option<u32>").unwrap(),
            None
        );
    }

    #[test]
    fn missing_and_invalid_arguments_are_named() {
        let m = bad_input(decode_one::<f64>(b"", "square", "x: f64"));
        assert_eq!(m, "`square` takes an argument (x: f64), but none was given");
        let m = bad_input(decode_one::<f64>(b"{oops", "square", "x: f64"));
        assert!(m.starts_with("input is not valid JSON: "), "{m}");
        let m = bad_input(decode_one::<f64>(b"\"seven\"", "square", "x: f64"));
        assert!(
            m.starts_with("invalid argument x: f64 for `square`: invalid type"),
            "{m}"
        );
    }

    #[test]
    fn no_argument_accepts_nothing_or_empty_values() {
        for input in [&b""[..], b" null ", b"{}", b"[]"] {
            decode_none(input, "tick").unwrap();
        }
        let m = bad_input(decode_none(b"3", "tick"));
        assert_eq!(m, "`tick` takes no arguments, but was given 3");
    }

    #[test]
    fn errors_become_failed_calls() {
        let r: Result<u8, &str> = Err("boom");
        match encode_result(r) {
            Err(CallError::Failed(m)) => assert_eq!(m, "boom"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_function_is_reported() {
        fn h(_: &[u8]) -> Result<Vec<u8>, CallError> {
            Ok(b"1".to_vec())
        }
        assert_eq!(dispatch("a", b"", &[("a", h)]).unwrap(), b"1");
        match dispatch("b", b"", &[("a", h)]) {
            Err(CallError::UnknownFunction(n)) => assert_eq!(n, "b"),
            other => panic!("{other:?}"),
        }
    }
}
