//! The counter app: shows warm instance reuse and versions.
//!
//! `incr` returns how many calls this instance has served, so calling it
//! twice on a warm instance gives 1 then 2. `slow` sleeps without blocking
//! the host and reports the app version that served it:
//! `modal run counter.wasm::slow '{"ms": 200}'`.

#[modal_guest::app]
mod counter {
    use serde::{Deserialize, Serialize};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    static CALLS: AtomicU64 = AtomicU64::new(0);
    static ENTERED: AtomicBool = AtomicBool::new(false);

    /// Runs once per instance, before its first call (load state here).
    #[enter]
    fn ready() {
        ENTERED.store(true, Ordering::Relaxed);
    }

    /// Whether the `enter` hook ran in this instance.
    #[function]
    fn entered() -> bool {
        ENTERED.load(Ordering::Relaxed)
    }

    /// Counts the calls this instance has served.
    #[function]
    fn incr() -> u64 {
        CALLS.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Like `incr`, but every call gets a fresh instance, so it always
    /// returns 1.
    #[function(max_requests = 1)]
    fn once() -> u64 {
        incr()
    }

    /// How long `slow` sleeps.
    #[derive(Deserialize)]
    pub struct SlowArgs {
        ms: u64,
    }

    /// Which version answered.
    #[derive(Serialize)]
    pub struct Answer {
        version: String,
    }

    /// Sleeps `ms` milliseconds, then says which app version ran it.
    #[function(timeout = "5m")]
    fn slow(args: SlowArgs) -> Answer {
        std::thread::sleep(Duration::from_millis(args.ms));
        Answer {
            version: std::env::var("MODAL_APP_VERSION").unwrap_or_default(),
        }
    }
}
