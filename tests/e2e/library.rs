//! The embedding API: loading, calling, pooling, limits and faults.

use crate::{host, host_with, load};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use modal_host::spec::{FunctionKind, Schedule};
use modal_host::{AppMeta, Error, Outcome};
use modal_test_support::{COUNTER, CRON, FAULTY, HELLO, HTTP_PLAIN, wasm};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn ok(execution: modal_host::Execution) -> String {
    match execution.outcome {
        Ok(bytes) => String::from_utf8(bytes).expect("utf-8 output"),
        Err(e) => panic!(
            "`{}` failed: {e}\nlogs:\n{}",
            execution.function, execution.logs
        ),
    }
}

async fn get(app: &modal_host::LoadedApp, function: &str, path: &str) -> (u16, String) {
    let request = hyper::Request::get(path)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = app
        .serve_http(function, request)
        .await
        .expect("web function answers");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body streams")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Waits (ten seconds at most) until `n` calls of `function` run at once,
/// each on an instance made for it: the function must have had no
/// instance before these calls.
async fn running(app: &modal_host::LoadedApp, function: &str, n: usize) {
    crate::eventually_async(Duration::from_secs(10), || async {
        let stats = app.stats();
        match stats.iter().find(|s| s.function == function) {
            Some(p) if p.busy == n && p.created >= n as u64 => Ok(()),
            _ => Err(format!(
                "{n} calls of `{function}` never ran at once: {stats:?}"
            )),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_squares_and_greets() {
    let host = host();
    let app = load(&host, HELLO, "hello").await;
    assert_eq!(ok(app.call("square", b"7").await), "49");
    assert_eq!(ok(app.call("square", b"1.5").await), "2.25");
    assert_eq!(
        get(&app, "greet", "/?name=Ada%20L").await,
        (200, "Hello, Ada L!".to_string())
    );
    assert_eq!(
        get(&app, "greet", "/").await,
        (200, "Hello, world!".to_string())
    );
    let post = hyper::Request::post("/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = app.serve_http("greet", post).await.unwrap();
    assert_eq!(response.status(), 405, "greet declares GET only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_is_read_from_describe() {
    let host = host();
    let spec = host.describe(&wasm(HELLO)).await.unwrap();
    assert_eq!(spec.names(), ["square", "greet"]);
    assert_eq!(
        spec.functions[1].kind,
        FunctionKind::Web {
            method: Some("GET".into())
        }
    );
    let spec = host.describe(&wasm(CRON)).await.unwrap();
    let tick = spec.function("tick").unwrap();
    assert_eq!(
        tick.kind,
        FunctionKind::Scheduled {
            schedule: Schedule::Cron {
                expression: "* * * * * *".into(),
                timezone: None,
            }
        }
    );
    let flaky = spec.function("flaky").unwrap();
    assert_eq!(
        flaky.kind,
        FunctionKind::Scheduled {
            schedule: Schedule::Period(Duration::from_secs(1))
        }
    );
    assert_eq!(flaky.settings.retries, 2);
    let spec = host.describe(&wasm(FAULTY)).await.unwrap();
    assert_eq!(
        spec.function("spin").unwrap().settings.timeout,
        Duration::from_secs(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_wasi_http_component_is_one_web_function() {
    let host = host();
    let app = load(&host, HTTP_PLAIN, "plain").await;
    assert_eq!(app.spec().names(), ["web"]);
    let (status, body) = get(&app, "web", "/some/path?q=1").await;
    assert_eq!(status, 200);
    assert_eq!(body, "Hello from wasi:http! You asked for /some/path?q=1\n");
    let e = app.call("web", b"").await.outcome.unwrap_err();
    assert!(matches!(e, Error::WrongKind(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_instances_are_reused_and_keep_their_state() {
    let host = host();
    let app = load(&host, COUNTER, "counter").await;
    let first = app.call("incr", b"").await;
    assert!(first.cold, "the first call creates an instance");
    assert_eq!(ok(first), "1");
    let second = app.call("incr", b"").await;
    assert!(!second.cold, "the second call reuses it");
    assert_eq!(ok(second), "2");
    assert_eq!(ok(app.call("incr", b"").await), "3");
    let stats = app
        .stats()
        .into_iter()
        .find(|s| s.function == "incr")
        .unwrap();
    assert_eq!((stats.live, stats.created, stats.busy), (1, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enter_hook_runs_before_the_first_call() {
    let host = host();
    let app = load(&host, COUNTER, "counter").await;
    assert!(app.spec().has_enter && !app.spec().has_exit);
    assert_eq!(ok(app.call("entered", b"").await), "true");
    let hello = load(&host, HELLO, "hello").await;
    assert!(!hello.spec().has_enter, "apps without hooks skip the call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_one_gives_every_call_a_fresh_instance() {
    let host = host();
    let app = load(&host, COUNTER, "counter").await;
    for _ in 0..3 {
        let execution = app.call("once", b"").await;
        assert!(execution.cold);
        assert_eq!(ok(execution), "1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_sees_its_app_version_and_environment() {
    let host = host();
    let mut meta = AppMeta::new("counter", 7);
    meta.env.push(("GREETING".into(), "hi".into()));
    let app = host.load(&wasm(COUNTER), meta).await.unwrap();
    assert_eq!(
        ok(app.call("slow", br#"{"ms": 1}"#).await),
        r#"{"version":"7"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_get_their_own_instances_and_do_not_block_the_host() {
    let host = host();
    let app = load(&host, COUNTER, "counter").await;
    let start = Instant::now();
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.call("slow", br#"{"ms": 500}"#).await })
        })
        .collect();
    for call in calls {
        ok(call.await.unwrap());
    }
    // Sixteen 500 ms sleeps on two threads finish together only if
    // sleeping guests do not hold a thread: holding one, they would take
    // eight rounds (4 s).
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        start.elapsed()
    );
    let stats = app
        .stats()
        .into_iter()
        .find(|s| s.function == "slow")
        .unwrap();
    assert_eq!(stats.live, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_are_scaled_down() {
    let host = host_with(|c| c.idle_timeout = Duration::from_millis(200));
    let app = load(&host, COUNTER, "counter").await;
    ok(app.call("incr", b"").await);
    let incr = app
        .stats()
        .into_iter()
        .find(|s| s.function == "incr")
        .unwrap();
    assert_eq!(incr.live, 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let incr = app
        .stats()
        .into_iter()
        .find(|s| s.function == "incr")
        .unwrap();
    assert_eq!(incr.live, 0, "the idle instance is dropped");
    let again = app.call("incr", b"").await;
    assert!(again.cold);
    assert_eq!(ok(again), "1", "a new instance starts from scratch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_trap_the_next_call_runs_on_a_fresh_instance() {
    let host = host();
    let app = load(&host, FAULTY, "faulty").await;
    ok(app.call("echo", b"1").await);
    let trapped = app.call("trap", b"").await;
    let e = trapped.outcome.unwrap_err();
    assert_eq!(
        e.to_string(),
        "function `trap` trapped: panicked: the trap function panics on purpose"
    );
    assert_eq!(e.outcome(), Outcome::Trap);
    assert!(
        trapped.logs.contains("the trap function panics on purpose"),
        "{}",
        trapped.logs
    );
    let trap_stats = app
        .stats()
        .into_iter()
        .find(|s| s.function == "trap")
        .unwrap();
    assert_eq!((trap_stats.live, trap_stats.discarded), (0, 1));
    let next = app.call("trap", b"").await;
    assert!(next.cold, "the trapped instance was not reused");
    assert_eq!(
        ok(app.call("echo", br#"{"still":"fine"}"#).await),
        r#"{"still":"fine"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_times_out_near_its_limit() {
    let host = host();
    let app = load(&host, FAULTY, "faulty").await;
    let start = Instant::now();
    let e = app.call("spin", b"").await.outcome.unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(e, Error::Timeout { limit, .. } if limit == Duration::from_secs(2)),
        "{e}"
    );
    assert_eq!(e.to_string(), "function `spin` timed out after 2s");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(3500),
        "took {took:?}"
    );
    assert_eq!(ok(app.call("echo", b"2").await), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_does_not_starve_other_calls() {
    let host = host();
    let app = load(&host, FAULTY, "faulty").await;
    let spinning: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.call("spin", b"").await })
        })
        .collect();
    running(&app, "spin", 2).await;
    // Both runtime threads are running guests that never return; the
    // epoch ticks make them yield, so this call still answers promptly.
    let start = Instant::now();
    assert_eq!(ok(app.call("echo", b"3").await), "3");
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        start.elapsed()
    );
    for s in spinning {
        assert!(matches!(
            s.await.unwrap().outcome,
            Err(Error::Timeout { .. })
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_hits_the_limit() {
    let host = host_with(|c| c.memory_limit = 64 << 20);
    let app = load(&host, FAULTY, "faulty").await;
    let e = app.call("hog", b"").await.outcome.unwrap_err();
    assert_eq!(
        e.to_string(),
        "function `hog` exceeded the memory limit of 64 MiB"
    );
    assert_eq!(e.outcome(), Outcome::MemoryLimit);
    assert_eq!(ok(app.call("echo", b"4").await), "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_overflows_the_stack_not_the_host() {
    let host = host();
    let app = load(&host, FAULTY, "faulty").await;
    let e = app.call("recurse", b"0").await.outcome.unwrap_err();
    assert!(matches!(e, Error::StackOverflow { .. }), "{e}");
    assert_eq!(ok(app.call("echo", b"5").await), "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_unknown_functions_are_clear_errors() {
    let host = host();
    let app = load(&host, HELLO, "hello").await;
    let e = app.call("square", b"{oops").await.outcome.unwrap_err();
    assert_eq!(
        e.to_string(),
        "bad input: input is not valid JSON: key must be a string at line 1 column 2"
    );
    let e = app.call("square", b"").await.outcome.unwrap_err();
    assert_eq!(
        e.to_string(),
        "bad input: `square` takes an argument (x: Number), but none was given"
    );
    let e = app.call("cube", b"3").await.outcome.unwrap_err();
    assert_eq!(
        e.to_string(),
        "no function named `cube`; the app has `square`, `greet`"
    );
    let e = app.call("greet", b"").await.outcome.unwrap_err();
    assert!(matches!(e, Error::WrongKind(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_components_are_rejected_with_clear_errors() {
    let host = host();
    let load = |bytes: &'static [u8]| {
        let host = host.clone();
        async move {
            host.load(bytes, AppMeta::new("bad", 1))
                .await
                .err()
                .expect("rejected")
        }
    };
    let e = load(b"just some text\n").await;
    assert_eq!(
        e.to_string(),
        "not a WebAssembly file: it looks like a text file"
    );
    let e = load(b"\0asm\x01\0\0\0").await;
    assert!(matches!(e, Error::CoreModule), "{e}");
    // An empty component: valid, but it exports nothing.
    let e = load(b"\0asm\x0d\0\x01\0").await;
    assert!(matches!(e, Error::MissingExports), "{e}");
    let e = load(b"\0asm\x0d\0\x01\0\xff\xff").await;
    assert!(matches!(e, Error::InvalidComponent(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_captured_per_execution() {
    let host = host();
    let app = load(&host, CRON, "cron").await;
    let tick = app.call("tick", b"").await;
    assert!(tick.logs.starts_with("tick at "), "{:?}", tick.logs);
    assert_eq!(ok(tick), "null");
    let flaky = app.call("flaky", b"").await;
    assert_eq!(flaky.logs, "flaky is about to fail\n");
    let e = flaky.outcome.unwrap_err();
    assert_eq!(
        e.to_string(),
        "function `flaky` failed: flaky failed, as it always does"
    );
    assert_eq!(e.outcome(), Outcome::Error);
    let again = app.call("tick", b"").await;
    assert_eq!(
        again.logs.lines().count(),
        1,
        "earlier logs are not repeated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_execution_reaches_the_sink() {
    let host = host();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink_seen = seen.clone();
    let sink: modal_host::ExecutionSink = Arc::new(move |e: &modal_host::Execution| {
        let outcome = e.outcome.as_ref().map(|_| ()).map_err(|e| e.outcome());
        sink_seen
            .lock()
            .unwrap()
            .push((e.function.to_string(), e.trigger, outcome));
    });
    let (app, _) = host
        .load_with(&wasm(HELLO), AppMeta::new("hello", 1), Some(sink))
        .await
        .unwrap();
    ok(app.call("square", b"3").await);
    let _ = app.call("square", b"nope").await;
    get(&app, "greet", "/").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    use modal_host::Trigger::{Call, Web};
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("square".to_string(), Call, Ok(())),
            ("square".to_string(), Call, Err(Outcome::Error)),
            ("greet".to_string(), Web, Ok(())),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_code_is_cached_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().to_path_buf();
    let first = host_with(|c| c.cache_dir = Some(cache.clone()));
    assert!(!first.precompile(&wasm(HELLO)).await.unwrap().cached);
    assert!(first.precompile(&wasm(HELLO)).await.unwrap().cached);
    assert_eq!(first.compilations(), 1);
    // A new host (as after a restart) loads the cached code.
    let second = host_with(|c| c.cache_dir = Some(cache.clone()));
    let (app, stats) = second
        .load_with(&wasm(HELLO), AppMeta::new("hello", 1), None)
        .await
        .unwrap();
    assert!(stats.cached);
    assert_eq!(second.compilations(), 0);
    assert_eq!(ok(app.call("square", b"4").await), "16");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_calls_in_flight_then_refuses_new_ones() {
    let host = host();
    let app = load(&host, COUNTER, "counter").await;
    let running = {
        let app = app.clone();
        tokio::spawn(async move { app.call("slow", br#"{"ms": 300}"#).await })
    };
    crate::eventually_async(Duration::from_secs(10), || async {
        match app.in_flight() {
            1 => Ok(()),
            n => Err(format!("the call never started: {n} in flight")),
        }
    })
    .await;
    app.drain().await;
    assert_eq!(
        ok(running.await.unwrap()),
        r#"{"version":"1"}"#,
        "the call in flight finished"
    );
    assert!(app.stats().iter().all(|s| s.live == 0));
    let e = app.call("incr", b"").await.outcome.unwrap_err();
    assert!(matches!(e, Error::ShuttingDown(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_web_request_puts_its_error_id_in_the_logs() {
    let host = host();
    let logs = Arc::new(Mutex::new(String::new()));
    let sink_logs = logs.clone();
    let sink: modal_host::ExecutionSink = Arc::new(move |e: &modal_host::Execution| {
        sink_logs.lock().unwrap().push_str(&e.logs);
    });
    let (app, _) = host
        .load_with(&wasm(FAULTY), AppMeta::new("faulty", 1), Some(sink))
        .await
        .unwrap();
    let mut request = hyper::Request::get("/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    request
        .extensions_mut()
        .insert(modal_host::ErrorId("e1d2c3".into()));
    let e = app.serve_http("crash", request).await.unwrap_err();
    assert_eq!(e.http_status(), 500);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let logs = logs.lock().unwrap().clone();
    assert!(
        logs.contains("the crash endpoint panics on purpose"),
        "{logs}"
    );
    assert!(
        logs.ends_with("[modal] error e1d2c3: function `crash` trapped: panicked: the crash endpoint panics on purpose\n"),
        "{logs}"
    );
}

#[tokio::test]
async fn warm_instances_are_kept_within_the_warm_memory_budget() {
    // The linear memory of one warm instance of `counter`.
    let probe = host_with(|_| {});
    let counter = load(&probe, COUNTER, "counter").await;
    let one = counter.call("incr", b"").await;
    let size = one.memory;
    assert!(size > 0, "{one:?}");
    // Room for two and a half warm instances of it.
    let host = host_with(|c| c.warm_memory = Some(size * 5 / 2));
    let counter = load(&host, COUNTER, "counter").await;
    let live = |function: &str| {
        counter
            .stats()
            .into_iter()
            .find(|s| s.function == function)
            .map_or(0, |s| s.live)
    };
    assert_eq!(ok(counter.call("incr", b"").await), "1");
    assert_eq!(ok(counter.call("entered", b"").await), "true");
    assert_eq!((live("incr"), live("entered")), (1, 1));
    // A third warm instance passes the budget: the least recently used
    // goes, the others stay warm.
    ok(counter.call("slow", br#"{"ms": 0}"#).await);
    assert_eq!(live("incr"), 0, "the oldest warm instance went");
    assert_eq!((live("entered"), live("slow")), (1, 1));
    let again = counter.call("entered", b"").await;
    assert!(!again.cold, "`entered` stayed warm");
    // Without a budget all three stay warm.
    let unlimited = host_with(|c| c.warm_memory = None);
    let counter = load(&unlimited, COUNTER, "counter").await;
    for (function, input) in [
        ("incr", &b""[..]),
        ("entered", b""),
        ("slow", br#"{"ms": 0}"#),
    ] {
        ok(counter.call(function, input).await);
    }
    let warm: usize = counter.stats().iter().map(|s| s.live).sum();
    assert_eq!(warm, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_of_other_functions_make_room_when_the_host_is_full() {
    // Two instance slots in all, and three functions that each keep an
    // instance warm after their call.
    let host = host_with(|c| {
        c.queue_timeout = Duration::from_millis(1500);
        c.pooling = Some(modal_host::PoolingLimits {
            total_component_instances: 2,
            // Plenty of the rest (a component may hold several tables).
            total_core_instances: 40,
            total_memories: 20,
            total_tables: 20,
            total_stacks: 20,
            ..modal_host::PoolingLimits::default()
        });
    });
    let counter = load(&host, COUNTER, "counter").await;
    let hello = load(&host, HELLO, "hello").await;
    assert_eq!(ok(counter.call("incr", b"").await), "1");
    assert_eq!(ok(counter.call("entered", b"").await), "true");
    // Both slots hold idle instances: the least recently used (`incr`'s)
    // is dropped for the new one.
    assert_eq!(ok(hello.call("square", b"3").await), "9");
    let live = |app: &modal_host::LoadedApp, function: &str| {
        app.stats()
            .into_iter()
            .find(|s| s.function == function)
            .map_or(0, |s| s.live)
    };
    assert_eq!(live(&counter, "incr"), 0, "the oldest idle instance went");
    assert_eq!(live(&counter, "entered"), 1);
    let again = counter.call("incr", b"").await;
    assert!(again.cold);
    assert_eq!(ok(again), "1", "`incr` starts again on a fresh instance");
    // The idle instances are `square`'s (older) and `incr`'s: one of the
    // same component goes first, so its slot's memory image is reused.
    assert_eq!(ok(counter.call("entered", b"").await), "true");
    assert_eq!(live(&counter, "incr"), 0);
    assert_eq!(live(&hello, "square"), 1);
    // A deploy's `describe` needs an instance too.
    let plain = host
        .load(&wasm(HTTP_PLAIN), AppMeta::new("plain", 1))
        .await
        .expect("a full host still loads an app");
    assert_eq!(get(&plain, "web", "/").await.0, 200);

    // Instances in use are never taken: with both slots busy, a call that
    // needs a third instance waits for one up to the queue timeout, then
    // fails as the host being full.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let counter = counter.clone();
            tokio::spawn(async move { counter.call("slow", br#"{"ms": 3000}"#).await })
        })
        .collect();
    running(&counter, "slow", 2).await;
    let asked = Instant::now();
    let refused = hello.call("square", b"4").await;
    assert!(
        matches!(refused.outcome, Err(Error::HostAtCapacity(_))),
        "{:?}",
        refused.outcome
    );
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_millis(4500),
        "waited {waited:?} for a 1.5 s queue timeout"
    );
    // A slot that frees within the queue timeout is taken.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let square = hello.call("square", b"5");
    assert_eq!(ok(square.await), "25");
    assert!(asked.elapsed() >= Duration::from_millis(2500));
    for call in busy {
        ok(call.await.unwrap());
    }
}
