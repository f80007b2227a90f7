//! The faulty app: functions that misbehave, to show that each fault fails
//! only its own call. `modal run faulty.wasm::spin` fails with a timeout
//! after 2 s; `hog` hits the memory limit; `recurse` overflows the stack;
//! `trap` panics; `flaky` fails twice per instance (and is retried);
//! `echo` returns its input. Web endpoints: `hang` never
//! answers (504 after 1 s), `crash` panics (500).

#[modal_guest::app]
mod faulty {
    /// Panics.
    #[function]
    fn trap() {
        panic!("the trap function panics on purpose");
    }

    /// Loops forever; stopped by its 2 s timeout.
    #[function(timeout = "2s")]
    fn spin() {
        let mut i: u64 = 0;
        loop {
            i = std::hint::black_box(i.wrapping_add(1));
        }
    }

    /// Allocates memory until the host's limit stops it.
    #[function]
    fn hog() -> usize {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut block = vec![0u8; 16 << 20];
            block[0] = 1;
            blocks.push(std::hint::black_box(block));
            if blocks.len() > 1 << 20 {
                return blocks.len();
            }
        }
    }

    /// Recurses without end.
    #[function]
    fn recurse(depth: u64) -> u64 {
        fn go(n: u64) -> u64 {
            if n == u64::MAX {
                return n;
            }
            std::hint::black_box(go(std::hint::black_box(n + 1))) + 1
        }
        go(depth)
    }

    /// A web endpoint that never answers; stopped by its 1 s timeout (504).
    /// One instance at most, so a second request waits in the queue.
    #[function(web, timeout = "1s", max_instances = 1)]
    fn hang() -> modal_guest::Response {
        let mut i: u64 = 0;
        loop {
            i = std::hint::black_box(i.wrapping_add(1));
        }
    }

    /// A web endpoint that panics (500 with an error id).
    #[function(web)]
    fn crash() -> modal_guest::Response {
        panic!("the crash endpoint panics on purpose");
    }

    /// Fails its first two calls on each instance, then succeeds: with
    /// `retries = 2` a call succeeds on its third attempt.
    #[function(retries = 2)]
    fn flaky() -> Result<u64, String> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static ATTEMPTS: AtomicU64 = AtomicU64::new(0);
        let attempt = ATTEMPTS.fetch_add(1, Ordering::Relaxed) + 1;
        if attempt <= 2 {
            return Err(format!("attempt {attempt} fails on purpose"));
        }
        Ok(attempt)
    }

    /// Returns its input.
    #[function]
    fn echo(input: modal_guest::json::Value) -> modal_guest::json::Value {
        input
    }
}
