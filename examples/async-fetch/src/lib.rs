//! The async-fetch app: `async fn` functions on the SDK's async runtime.
//!
//! `both` fetches two URLs at the same time with `fetch_async` (grant the
//! hosts at deploy: `modal deploy async-fetch.wasm --allow-http
//! example.com`), then
//! `curl 'http://async-fetch--both.localhost:8000/?a=http://example.com/a&b=http://example.com/b'`
//! answers both bodies as JSON; `post` sends a body of `size` bytes.
//! `modal call async-fetch fourth_power 3`
//! prints `81`, computed by awaiting two calls to `square`; `heartbeat`
//! runs every second and awaits a timer.

#[modal_guest::app]
mod async_fetch {
    use modal_guest::wstd::task::sleep;
    use modal_guest::wstd::time::Duration;
    use modal_guest::{CallFailure, Request, fetch_async};
    use serde::Serialize;

    /// What `both` answers: the two statuses and bodies.
    #[derive(Serialize)]
    pub struct Both {
        a: Fetched,
        b: Fetched,
    }

    /// One fetched response.
    #[derive(Serialize)]
    pub struct Fetched {
        status: u16,
        body: String,
    }

    async fn get(url: &str) -> Result<Fetched, String> {
        let response = fetch_async("GET", url, &[], b"").await?;
        Ok(Fetched {
            status: response.status,
            body: String::from_utf8_lossy(&response.body).into_owned(),
        })
    }

    /// Fetches `?a=URL` and `?b=URL` concurrently; both answers as JSON.
    #[function(web(method = "GET"), timeout = "30s")]
    async fn both(req: Request) -> Result<Both, String> {
        let (a, b) = match (req.query("a"), req.query("b")) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err("give ?a=URL&b=URL".to_string()),
        };
        let (a, b) = futures_lite::future::zip(get(&a), get(&b)).await;
        Ok(Both { a: a?, b: b? })
    }

    /// Posts `size` bytes to `url`; answers `STATUS BODY`.
    #[function(timeout = "30s")]
    async fn post(url: String, size: usize) -> Result<String, String> {
        let body = vec![b'x'; size];
        let headers = [("content-type", "application/octet-stream")];
        let response = fetch_async("POST", &url, &headers, &body).await?;
        let text = String::from_utf8_lossy(&response.body);
        Ok(format!("{} {text}", response.status))
    }

    /// Squares a number.
    #[function]
    fn square(x: i64) -> i64 {
        x * x
    }

    /// `x` to the fourth power, by awaiting two calls to `square`.
    #[function]
    async fn fourth_power(x: i64) -> Result<i64, CallFailure> {
        let squared = square::remote_async(x).await?;
        square::remote_async(squared).await
    }

    /// Runs every second: awaits a 10 ms timer, then logs its run id.
    #[function(schedule = period("1s"))]
    async fn heartbeat() {
        sleep(Duration::from_millis(10)).await;
        let run = modal_guest::run_id().unwrap_or_else(|| "none".into());
        println!("heartbeat after an awaited timer (run {run})");
    }
}
