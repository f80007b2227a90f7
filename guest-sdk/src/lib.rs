//! Write modal functions in plain Rust.
//!
//! Put your functions in a module marked `#[modal_guest::app]` and mark each
//! one with `#[function]`, optionally with its kind and settings. Arguments
//! and results are ordinary serde types; the SDK generates the component's
//! `describe`, the JSON dispatch of `call`, and the HTTP handler of web
//! functions, so there are no bindings to write.
//!
//! ```ignore
//! #[modal_guest::app]
//! mod hello {
//!     use modal_guest::{Request, Response};
//!
//!     /// Squares a number.
//!     #[function]
//!     fn square(x: f64) -> f64 {
//!         x * x
//!     }
//!
//!     /// Says hello to `?name=`.
//!     #[function(web(method = "GET"))]
//!     fn greet(req: Request) -> Response {
//!         let name = req.query("name").unwrap_or_else(|| "world".into());
//!         Response::text(format!("Hello, {name}!"))
//!     }
//!
//!     /// Runs every minute, retried twice when it fails.
//!     #[function(schedule = cron("0 * * * * *"), retries = 2, timeout = "30s")]
//!     fn cleanup() -> Result<(), String> {
//!         Ok(())
//!     }
//! }
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` (crate type
//! `cdylib`) and run it with `modal run target/.../hello.wasm::square 7`.
//!
//! # Settings of `#[function(...)]`
//! - kind: nothing for a plain function, `web` or `web(method = "GET")`,
//!   `schedule = cron("sec min hour dom month dow")` or
//!   `schedule = period("30s")`;
//! - `schedule = cron("0 9 * * * *", tz = "Europe/Paris")` evaluates the
//!   expression in a time zone (default UTC);
//! - `timeout = "2s"` (or a number of seconds), `retries = N`,
//!   `min_warm = N`, `max_instances = N`, `max_requests = N` (executions an
//!   instance serves before it is replaced);
//! - `secrets = ["openai"]` attaches secrets (`modal secret create`) at
//!   deploy, as `modal deploy --secret` does: their variables are in the
//!   environment of every instance of the app.
//!
//! # Arguments
//! A function without parameters takes no input (or `null`). A function with
//! one parameter takes the whole JSON input as that parameter. A function
//! with several takes a JSON object keyed by parameter name (or an array in
//! parameter order). A `Result` return type turns `Err` into a failed call
//! carrying the error's `Display` text.
//!
//! # Web functions
//! A web function takes a [`Request`] (or nothing) and returns, with no
//! annotation:
//! - a [`Response`] (`Response::text`, `html`, `json`, `new(status)`), as
//!   it is; a `String` or `&'static str` as text; `()` as `204`;
//! - any other `serde::Serialize` value (`Vec<Item>`, your struct) as
//!   JSON: `200`, `content-type: application/json`;
//! - a `Result<T, E>` of one of these whose error is `Display`: `Ok` as
//!   above, `Err` as a `500` whose body is the error's text;
//! - a type of yours that implements [`IntoResponse`] (it wins over
//!   `Serialize`).
//!
//! Anything else fails to compile with one error, at the return type,
//! naming the function and this list. [`Response::json`] takes a `Result`
//! apart as well: `Response::json(&Ok(x))` sends `x`, and
//! `Response::json(&Err(e))` a `500` with `e` as JSON (not serde's
//! `{"Ok": …}`).
//!
//! # Async functions
//! Plain, scheduled and web functions may be `async fn`. Each execution
//! runs on [`wstd`]'s single-threaded runtime (`wasi:io/poll` underneath,
//! re-exported here: use this one), so a function can await
//! [`fetch_async`] requests side by side (join them with any combinator,
//! e.g. `futures_lite::future::zip`, or spawn tasks with
//! `modal_guest::wstd::runtime::spawn`), timers (`wstd::task::sleep`) and
//! streams. The execution ends when every task it spawned has finished.
//!
//! ```ignore
//! #[function(web(method = "GET"))]
//! async fn both(req: Request) -> Result<Vec<String>, String> {
//!     let (a, b) = futures_lite::future::zip(
//!         modal_guest::fetch_async("GET", "https://example.com/a", &[], b""),
//!         modal_guest::fetch_async("GET", "https://example.com/b", &[], b""),
//!     )
//!     .await;
//!     Ok(vec![a?.status.to_string(), b?.status.to_string()])
//! }
//! ```
//!
//! Calls between functions have async forms too (`f::remote_async(x)`,
//! `spawn_async`, `map_async`, [`Function::call_async`],
//! [`FunctionCall::get_async`]), but the host's `modal:app/invoke` imports
//! are synchronous: such a call yields to the runtime once, so that the
//! futures beside it start (a `fetch_async` sends its request, which then
//! goes on in the host), and then blocks the guest until the callee
//! answers. The blocking forms (`fetch`, `f::remote`) still work in an
//! `async fn`, and block it the same way.
//!
//! # Calling other functions
//! For every plain or scheduled function `f` of the app, `#[app]` also
//! generates a module `f` of typed stubs that call it through the host, on
//! the caller's version: `f::remote(x)` waits for the output,
//! `f::spawn(x)` starts it in the background (`.get()` waits for it) and
//! `f::map(xs)` runs it over many inputs in parallel, results in input
//! order; each has an `_async` form for `async fn` functions. A function with several parameters takes them as a tuple in
//! `map`. Functions of other apps are reached with
//! [`Function::lookup`]`("other", "f").call::<_, Out>(&x)`. Failures are
//! [`CallFailure`]s: not found, the callee's error, trap, timeout, memory
//! limit, overloaded, cancelled, depth exceeded.
//!
//! `#[enter]` and `#[exit]` mark optional hooks that run once after an
//! instance is created and before a healthy instance is dropped.

#![deny(missing_docs)]

extern crate self as modal_guest;

mod call;
mod dict;
mod fetch;
mod invoke;
mod respond;
mod web;

pub use modal_guest_macros::app;
/// JSON values and numbers, for functions that take or return free-form JSON.
pub use serde_json as json;
/// The async runtime `async fn` functions run on (timers, tasks, HTTP,
/// streams over `wasi:io`): use this one, not another version of the
/// crate, whose runtime would not be the running one.
pub use wstd;

/// The id of the scheduled run being executed, stable across the retries of
/// one fire time (use it to make a scheduled function idempotent); `None`
/// outside scheduled runs.
pub fn run_id() -> Option<String> {
    __bindings::modal::app::context::run_id()
}
pub use dict::{Dict, DictError};
pub use fetch::{fetch, fetch_async};
pub use invoke::{CallFailure, Function, FunctionCall};
pub use respond::IntoResponse;
pub use web::{Request, Response, serve_dir};

/// The bindings of the `modal:app/functions` world (generated; not part of
/// the public API).
#[doc(hidden)]
#[allow(missing_docs, unsafe_code)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "modal:app/functions",
        pub_export_macro: true,
        export_macro_name: "__export_functions",
        default_bindings_module: "::modal_guest::__bindings",
        runtime_path: "::modal_guest::__private::wit_bindgen::rt",
        with: {
            "wasi:keyvalue/store@0.2.0-draft": generate,
            "wasi:keyvalue/atomics@0.2.0-draft": generate,
            "wasi:keyvalue/batch@0.2.0-draft": generate,
        },
    });
}

/// What the `#[app]` macro expands to refers to; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::__bindings::exports::modal::app::function::{
        AppSpec, CallError, CronSchedule, FunctionKind, FunctionSpec, Guest as FunctionGuest,
        Schedule, WebRoute,
    };
    pub use crate::__bindings::exports::modal::app::lifecycle::Guest as LifecycleGuest;
    pub use crate::__bindings::exports::modal::app::needs::Guest as NeedsGuest;
    pub use crate::call::{
        CallHandler, app_spec, decode_args, decode_none, decode_one, dispatch, encode,
        encode_result, hook_result,
    };
    pub use crate::invoke::{Checked, Typed};
    pub use crate::respond::{Returned, ViaIntoResponse, ViaResult, ViaSerialize};
    pub use crate::web::{WebHandler, serve};
    pub use serde;
    pub use wasip2;
    pub use wasip2::exports::wasi::http::incoming_handler::Guest as HttpGuest;
    pub use wasip2::http::types::{IncomingRequest, ResponseOutparam};
    pub use wit_bindgen;
    pub use wstd::runtime::block_on;
}
