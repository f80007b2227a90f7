//! The fanout app: functions that call functions.
//!
//! `modal call fanout sum_squares '[1,2,3]'` maps `square` over the list
//! on up to eight instances and prints `14`; `via_hello 7` calls the
//! deployed app `hello` (deploy it with `--allow-caller fanout`);
//! `GET /?x=7` on the web function answers with `square(7)`; `forever 0`
//! calls itself until the host's depth limit stops it.

#[modal_guest::app]
mod fanout {
    use modal_guest::{CallFailure, Function, Request, Response};

    /// Squares a number.
    #[function(max_instances = 8)]
    fn square(x: i64) -> i64 {
        x * x
    }

    /// `square(x)`, computed by a call to `square` (one nested call).
    #[function]
    fn square_via(x: i64) -> Result<i64, CallFailure> {
        square::remote(x)
    }

    /// The sum of the squares of `xs`, computed in parallel by `square`.
    #[function]
    fn sum_squares(xs: Vec<i64>) -> Result<i64, CallFailure> {
        square::map(xs).into_iter().sum()
    }

    /// `square` of the deployed app `hello`.
    #[function]
    fn via_hello(x: i64) -> Result<i64, CallFailure> {
        Function::lookup("hello", "square").call(&x)
    }

    /// Answers `GET /?x=N` with the square of N, computed by `square`.
    #[function(web(method = "GET"))]
    fn squared(req: Request) -> Response {
        let x = req.query("x").and_then(|x| x.parse().ok()).unwrap_or(0);
        match square::remote(x) {
            Ok(y) => Response::text(y.to_string()),
            Err(e) => Response::text(e.to_string()).with_status(502),
        }
    }

    /// Calls itself with `n + 1`, without end: the host's depth limit ends it.
    #[function]
    fn forever(n: u64) -> Result<u64, CallFailure> {
        forever::remote(n + 1)
    }

    /// Half of a cycle: calls `pong`.
    #[function]
    fn ping(n: u64) -> Result<u64, CallFailure> {
        pong::remote(n + 1)
    }

    /// The other half: calls `ping`.
    #[function]
    fn pong(n: u64) -> Result<u64, CallFailure> {
        ping::remote(n + 1)
    }

    /// Panics.
    #[function]
    fn boom(x: i64) -> i64 {
        panic!("boom at {x}")
    }

    /// Calls `boom` and reports how it failed, as `kind: message`.
    #[function]
    fn catch_boom(x: i64) -> String {
        match boom::remote(x) {
            Ok(_) => "no failure".to_string(),
            Err(e) => format!("{}: {}", e.kind(), e.message()),
        }
    }

    /// The app version that ran it, after `ms` milliseconds.
    #[function(max_instances = 8)]
    fn version_after(ms: u64) -> String {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        std::env::var("MODAL_APP_VERSION").unwrap_or_default()
    }

    /// Maps `version_after(ms)` over `n` inputs; returns each distinct
    /// version seen (one, unless a fan-out mixed versions) and the count.
    #[function(timeout = "5m")]
    fn versions(n: usize, ms: u64) -> Result<(Vec<String>, usize), CallFailure> {
        let seen = version_after::map(std::iter::repeat_n(ms, n))
            .into_iter()
            .collect::<Result<Vec<String>, _>>()?;
        let count = seen.len();
        let mut distinct = seen;
        distinct.sort();
        distinct.dedup();
        Ok((distinct, count))
    }

    /// Sleeps `ms` milliseconds, then returns them.
    #[function]
    fn sleepy(ms: u64) -> u64 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        ms
    }

    /// Calls `sleepy(ms)` with a timeout of one second of its own.
    #[function(timeout = "1s")]
    fn impatient(ms: u64) -> Result<u64, CallFailure> {
        sleepy::remote(ms)
    }

    /// Spawns `sleepy(ms)` and returns the call's id at once.
    #[function]
    fn spawn_sleepy(ms: u64) -> Result<String, CallFailure> {
        Ok(sleepy::spawn(ms)?.id().to_string())
    }

    /// The output of spawned call `id` if it finished within a second.
    #[function]
    fn result_of(id: String) -> Result<Option<modal_guest::json::Value>, CallFailure> {
        modal_guest::FunctionCall::from_id(id).get_within(std::time::Duration::from_secs(1))
    }

    /// Spawns `square(x)` and waits for it.
    #[function]
    fn spawn_and_get(x: i64) -> Result<i64, CallFailure> {
        square::spawn(x)?.get()
    }
}
