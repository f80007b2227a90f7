//! The record of one successful web execution, as modal stores it: the
//! rows of the serve bench's store figures and of the bare `wasi:http`
//! host's recording (`examples/bare_wasi_http.rs --record`).

use modal_host::platform::ExecutionRecord;

/// Execution `id` of function `web` of app `app` (version 1), started at
/// `started_at` (ms since the epoch), that answered `status`.
pub fn web_execution(
    id: u64,
    app: &str,
    started_at: u64,
    duration_ms: f64,
    status: u16,
) -> ExecutionRecord {
    ExecutionRecord {
        id,
        app: app.into(),
        version: 1,
        function: "web".into(),
        trigger: modal_host::Trigger::Web,
        started_at,
        duration_ms,
        outcome: modal_host::Outcome::Ok,
        error: None,
        logs: String::new(),
        memory: 1 << 20,
        run_id: None,
        call_id: None,
        http_status: Some(status),
        parent_call_id: None,
        root_call_id: None,
        depth: 0,
    }
}
