//! The cron app: two functions scheduled every second.
//!
//! `tick` logs a line each run; `flaky` always fails, so its retries and
//! the failure webhook can be seen. Run one by hand with
//! `modal run cron.wasm::tick`.

#[modal_guest::app]
mod cron {
    /// Logs a tick every second.
    #[function(schedule = cron("* * * * * *"))]
    fn tick() {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let run = modal_guest::run_id().unwrap_or_else(|| "none".into());
        println!("tick at {at} ms (run {run})");
    }

    /// Fails every second, after two retries.
    #[function(schedule = period("1s"), retries = 2)]
    fn flaky() -> Result<(), String> {
        eprintln!("flaky is about to fail");
        Err("flaky failed, as it always does".to_string())
    }
}
