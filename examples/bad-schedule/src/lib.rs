//! A test fixture: an app whose cron expression is invalid (second 61), so
//! the host must reject it at deploy with a message naming the function and
//! the expression. `modal describe bad_schedule.wasm` shows the error.

#[modal_guest::app]
mod bad_schedule {
    /// Would run at second 61 of every minute, which does not exist.
    #[function(schedule = cron("61 * * * * *"))]
    fn never() {}
}
