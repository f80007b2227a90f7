//! A test fixture: an app whose cron expression is invalid (a weekday
//! named `FUNDAY`), so the host must reject it at deploy with a message
//! naming the function and the expression. (A number out of range, such
//! as second 61, already fails to compile.) `modal describe
//! bad_schedule.wasm` shows the error.

#[modal_guest::app]
mod bad_schedule {
    /// Would run at noon on a day that does not exist.
    #[function(schedule = cron("0 0 12 * * FUNDAY"))]
    fn never() {}
}
