//! The apps pages in a real browser: Debian's headless Chromium driven
//! through chromedriver's WebDriver protocol. Screenshots of every page
//! (list, app, charts, logs, execution, confirmations, errors, login, a
//! narrow screen) are saved under `target/test-artifacts/`.

use crate::http::get;
use crate::server::Server;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use modal_test_support::{COUNTER, CRON, FANOUT, HELLO};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a5ec-4f2d6e2a5b9b";

/// A chromedriver process and one browser session, ended on drop.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    runtime: tokio::runtime::Runtime,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let driver_path = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is installed (`.ci/setup` installs Debian's chromium-driver)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            runtime,
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!(
            "--user-data-dir={}",
            browser._profile.path().display()
        ));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let created = browser.command("POST", "/session", Some(caps));
        browser.session = created["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.try_command(method, path, body) {
            Ok(value) => value,
            Err((status, value)) => {
                panic!("WebDriver {method} {path} failed ({status}): {value}")
            }
        }
    }

    /// A WebDriver command; its status and answer when it failed.
    fn try_command(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, (u16, Value)> {
        let port = self.port;
        let (status, text) = self.runtime.block_on(async move {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let bytes = body.map(|b| b.to_string()).unwrap_or_default();
            let request = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", format!("127.0.0.1:{port}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(bytes)))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.into_body().collect().await.unwrap().to_bytes(),
            )
        });
        let value: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        if status < 300 {
            Ok(value)
        } else {
            Err((status, value))
        }
    }

    fn session_command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.command(method, &format!("/session/{}{path}", self.session), body)["value"].clone()
    }

    fn go(&self, url: &str) {
        self.session_command("POST", "/url", Some(json!({"url": url})));
    }

    fn url(&self) -> String {
        self.session_command("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits (up to 10 s) until the page is `url`: a click that submits a
    /// form may return before the navigation ends.
    fn wait_url(&self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.url() != url {
            assert!(
                Instant::now() < deadline,
                "still at {} instead of {url}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to 15 s: live pages refresh every 2 s) until element
    /// `css` exists and its text holds `part`.
    fn wait_text(&self, css: &str, part: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(text) = self.text_of(css).filter(|t| t.contains(part)) {
                return text;
            }
            assert!(Instant::now() < deadline, "no `{css}` containing {part:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The rendered text of element `css`, read in one step in the page
    /// (a live page may swap the element between two WebDriver commands).
    fn text_of(&self, css: &str) -> Option<String> {
        let css = serde_json::to_string(css).unwrap();
        self.script(&format!(
            "const e = document.querySelector({css}); return e ? e.innerText.trim() : null;"
        ))
        .as_str()
        .map(str::to_string)
    }

    fn find(&self, css: &str) -> String {
        let found = self.session_command(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        // The reference is under the W3C element key (the only entry).
        found
            .get(ELEMENT)
            .or_else(|| found.as_object().and_then(|o| o.values().next()))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    fn text(&self, css: &str) -> String {
        self.text_of(css)
            .unwrap_or_else(|| panic!("no element {css}"))
    }

    /// Clicks element `css`, finding it again if a live refresh replaced
    /// it between the two commands.
    fn click(&self, css: &str) {
        for _ in 0..5 {
            let element = self.find(css);
            let path = format!("/session/{}/element/{element}/click", self.session);
            match self.try_command("POST", &path, Some(json!({}))) {
                Ok(_) => return,
                Err((_, e)) if e.to_string().contains("stale element") => continue,
                Err((status, e)) => panic!("clicking {css} failed ({status}): {e}"),
            }
        }
        panic!("{css} kept being replaced");
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.session_command(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        );
    }

    /// Runs `script` (a function body) in the page; its return value.
    fn script(&self, script: &str) -> Value {
        self.session_command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// How many elements match `css`.
    fn count(&self, css: &str) -> u64 {
        let css = serde_json::to_string(css).unwrap();
        self.script(&format!("return document.querySelectorAll({css}).length;"))
            .as_u64()
            .unwrap_or(0)
    }

    /// Waits (up to 15 s: live pages poll every 2 s) until `done` holds.
    fn wait_until(&self, what: &str, done: impl Fn(&Browser) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Logs in with `token` from the login page `next` sends to.
    fn log_in(&self, base: &str, token: &str) {
        self.go(&format!("{base}/apps"));
        self.wait_text("h1", "Log in");
        self.type_into("#token", token);
        self.click("button[type=submit]");
        self.wait_url(&format!("{base}/apps"));
    }

    /// On `page`, clicks `button`, checks that the confirmation asks
    /// `asks` (saved as screenshot `shot` if given), confirms, and waits
    /// back on `page` for the notice that `says`.
    fn confirm(&self, page: &str, button: &str, asks: &str, shot: Option<&str>, says: &str) {
        self.go(page);
        self.click(button);
        self.wait_text("h1", asks);
        if let Some(shot) = shot {
            self.screenshot(shot);
        }
        self.click("#confirm");
        self.wait_url(page);
        self.wait_text("#notice", says);
    }

    /// Whether the page is no wider than the window (no sideways scroll).
    fn fits(&self, width: u64) -> (bool, Value) {
        let sizes = self.script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth, window.innerWidth];",
        );
        let scroll = sizes[0].as_u64().unwrap_or(u64::MAX);
        (scroll <= width, sizes)
    }

    fn resize(&self, width: u32, height: u32) {
        self.session_command(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// A screenshot of the whole page (the window made as tall as the
    /// page for it), at `width`.
    fn screenshot_page(&self, name: &str, width: u32) -> PathBuf {
        let height = self
            .script("return document.documentElement.scrollHeight;")
            .as_u64()
            .unwrap_or(900)
            .clamp(600, 6_000) as u32;
        self.resize(width, height + 100);
        let path = self.screenshot(name);
        self.resize(width, 900);
        path
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.session_command("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let port = self.port;
            let _ = self.runtime.block_on(async move {
                let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .ok()?;
                tokio::spawn(conn);
                let request = hyper::Request::delete(path)
                    .header("host", "127.0.0.1")
                    .body(Full::new(Bytes::new()))
                    .ok()?;
                sender.send_request(request).await.ok()
            });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn log_in_see_apps_and_stop_one_in_a_real_browser() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", HELLO]);
    assert_eq!(server.ok(&["call", "hello", "square", "6"]), "36\n");
    let base = format!("http://{}", server.addr);

    // Without logging in, no app data.
    let (status, body) = get(&server.addr, &server.addr, "/apps");
    assert_eq!(status, 303);
    assert!(!body.contains("hello"));

    let browser = Browser::start();
    browser.go(&format!("{base}/apps"));
    assert!(
        browser.url().starts_with(&format!("{base}/login")),
        "{}",
        browser.url()
    );
    browser.type_into("#token", "wrong");
    browser.click("button[type=submit]");
    browser.wait_text(".error-text", "not right");
    browser.type_into("#token", &server.token());
    browser.click("button[type=submit]");
    browser.wait_url(&format!("{base}/apps"));
    let row = browser.wait_text("#apps tr[data-app=hello]", "hello");
    assert!(row.contains("deployed") && row.contains("v1"), "{row}");
    browser.screenshot("apps.png");

    browser.click("#apps a[href='/apps/hello']");
    let port = server.addr.rsplit(':').next().unwrap();
    assert_eq!(
        browser.text("#functions .web-url"),
        format!("http://hello--greet.localhost:{port}/")
    );
    let executions = browser.text("#executions");
    assert!(
        executions.contains("square") && executions.contains("ok"),
        "{executions}"
    );
    browser.screenshot("app.png");
    browser.resize(390, 844);
    browser.screenshot("app-phone.png");
    browser.resize(1280, 900);

    // The calls a function made are shown indented under it.
    server.ok(&["deploy", FANOUT]);
    assert_eq!(
        server.ok(&["call", "fanout", "sum_squares", "[1,2]"]),
        "5\n"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .ok(&["app", "logs", "fanout"])
        .contains("sum_squares")
    {
        assert!(Instant::now() < deadline, "the call was never recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    browser.go(&format!("{base}/apps/fanout"));
    let root = browser.wait_text("#executions .execution:first-child", "sum_squares");
    assert!(root.contains("call-"), "{root}");
    let child = browser.text("#executions .execution:first-child + .execution.nested");
    assert!(
        child.contains("square") && !child.contains("sum_squares"),
        "{child}"
    );
    browser.screenshot("app-tree.png");
    browser.go(&format!("{base}/apps/hello"));

    browser.click("#stop");
    browser.wait_text("h1", "Stop hello?");
    browser.click("#confirm-stop");
    browser.wait_url(&format!("{base}/apps/hello"));
    assert_eq!(browser.wait_text("h1 .badge", "stopped"), "stopped");
    browser.screenshot("app-stopped.png");

    assert_eq!(
        server.err(&["call", "hello", "square", "2"]),
        "error: app `hello` is stopped; deploy it again to restart it"
    );
    let (status, _) = get(&server.addr, "hello--greet.localhost", "/");
    assert_eq!(status, 410);
}

/// Live updates, charts, the logs view and its filters, an execution's
/// page with its parent and children, the schedule and rollback buttons,
/// the error pages, a 400 px screen and logout, in a real browser.
#[test]
fn the_dashboard_in_a_real_browser() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", HELLO]);
    // 60 calls (more than a page of the logs view) and one failure.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut http = crate::http::Http::connect(&server.addr, &server.token()).await;
        for x in 0..60 {
            let (status, body) = http
                .post(
                    "/api/v1/apps/hello/functions/square/call",
                    x.to_string().as_bytes(),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
    });
    server.err(&["call", "hello", "square", "\"abc\""]);
    let base = format!("http://{}", server.addr);
    let browser = Browser::start();
    browser.go(&format!("{base}/login"));
    browser.wait_text("h1", "Log in");
    browser.screenshot("login.png");
    browser.log_in(&base, &server.token());

    // The list updates itself: an app deployed while it is open appears
    // without a reload (the marker set in the page survives).
    browser.wait_text("#apps tr[data-app=hello]", "hello");
    browser.script("window.stillHere = 'yes';");
    server.ok(&["deploy", FANOUT]);
    let row = browser.wait_text("#apps tr[data-app=fanout]", "fanout");
    assert!(row.contains("deployed") && row.contains("v1"), "{row}");
    assert_eq!(
        browser.script("return window.stillHere;"),
        "yes",
        "the page was reloaded"
    );
    browser.screenshot_page("dashboard-apps.png", 1280);

    // The app page too: a request made while it is open shows up.
    browser.go(&format!("{base}/apps/hello"));
    browser.wait_text("#executions", "square");
    browser.script("window.stillHere = 'yes';");
    let (status, _) = get(&server.addr, "hello--greet.localhost", "/?name=Ada");
    assert_eq!(status, 200);
    browser.wait_text("#executions", "greet");
    assert_eq!(
        browser.script("return window.stillHere;"),
        "yes",
        "the page was reloaded"
    );
    assert_eq!(browser.text("#live-status"), "live");
    // Every 30 s the page also asks for its charts, which then count the
    // new request.
    let slow = browser.script(
        "const x = new XMLHttpRequest(); \
         x.open('GET', document.querySelector('main').dataset.live + '&slow=1', false); \
         x.send(); return x.responseText;",
    );
    let slow = slow.as_str().unwrap_or_default();
    assert!(slow.contains("62 executions, 1 failed"), "{slow}");
    assert!(slow.contains("id=\"chart-calls\""), "{slow}");
    // The charts (drawn when the page loads) have points for the minutes
    // with calls.
    browser.go(&format!("{base}/apps/hello"));
    assert!(browser.count("#chart-calls svg circle.point") >= 1);
    assert!(
        browser.count("#chart-latency svg circle.point") >= 2,
        "p50 and p99"
    );
    assert!(
        browser.count("#chart-errors svg circle.point") >= 1,
        "the failed call"
    );
    let summary = browser.text("#chart-summary");
    assert!(
        summary.starts_with("62 executions, 1 failed, in the last 3 h"),
        "{summary}"
    );
    browser.screenshot_page("dashboard-app.png", 1280);
    browser.click("#charts select[name=hours] option[value='1']");
    browser.click("#charts button[type=submit]");
    browser.wait_text("#chart-summary", "in the last 1 h");

    // The logs view: pages by cursor, filters, search.
    browser.click("#logs-tab");
    browser.wait_url(&format!("{base}/apps/hello/logs"));
    assert_eq!(browser.count("#logs tbody tr"), 50);
    let ids = |b: &Browser| -> Vec<u64> {
        b.script("return [...document.querySelectorAll('#logs tbody tr')].map(r => +r.dataset.id);")
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    let first = ids(&browser);
    browser.screenshot_page("logs.png", 1280);
    browser.click("#older");
    browser.wait_text("#newest", "Newest");
    let second = ids(&browser);
    assert_eq!(first.len() + second.len(), 62, "{first:?} {second:?}");
    assert!(second.iter().all(|id| id < first.iter().min().unwrap()));
    browser.go(&format!("{base}/apps/hello/logs"));
    browser.click("#log-filters select[name=function] option[value=greet]");
    browser.click("#apply-filters");
    browser.wait_until("the filter", |b| b.url().contains("function=greet"));
    assert_eq!(browser.count("#logs tbody tr"), 1);
    assert_eq!(
        browser.count("#logs tbody tr[data-function=greet][data-trigger=web]"),
        1
    );
    browser.go(&format!("{base}/apps/hello/logs?outcome=error"));
    assert_eq!(browser.count("#logs tbody tr"), 1);
    let error = browser.text("#logs tbody tr td.wrap");
    assert!(!error.is_empty());
    let word: String = error
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    browser.go(&format!("{base}/apps/hello/logs"));
    browser.type_into("#log-filters input[name=q]", &word);
    browser.click("#apply-filters");
    browser.wait_until("the search", |b| b.url().contains("q="));
    assert_eq!(
        browser.count("#logs tbody tr[data-outcome=error]"),
        1,
        "{word}"
    );
    assert_eq!(browser.count("#logs tbody tr"), 1, "{word}");
    browser.screenshot_page("logs-filtered.png", 1280);
    browser.go(&format!("{base}/apps/hello/logs?q=nothing+says+this"));
    browser.wait_text("#no-logs", "No execution matches.");

    // An execution's page: its parent and the calls it made.
    assert_eq!(
        server.ok(&["call", "fanout", "sum_squares", "[1,2]"]),
        "5\n"
    );
    browser.go(&format!("{base}/apps/fanout"));
    browser.wait_text("#executions .execution:first-child", "sum_squares");
    browser.click("#executions .execution:first-child a");
    browser.wait_text("h1", "sum_squares");
    assert_eq!(browser.count("#children .execution"), 2);
    assert!(browser.text("#children").contains("square"));
    assert!(browser.text("#facts").contains("Memory"));
    browser.screenshot_page("execution.png", 1280);
    browser.click("#children .execution:first-child a");
    browser.wait_text("h1", "square");
    assert!(browser.text("#parent").contains("sum_squares"));
    assert!(browser.text("#facts").contains("Depth"));
    browser.screenshot_page("execution-child.png", 1280);

    // Schedules: pause, run now while paused, resume; each confirmed.
    server.ok(&["deploy", CRON]);
    let cron = format!("{base}/apps/cron");
    let tick = |action: &str| format!("tr[data-function=tick] a[data-action={action}]");
    let (pause, run, resume) = (tick("pause"), tick("run"), tick("resume"));
    browser.confirm(
        &cron,
        &pause,
        "Pause tick?",
        Some("confirm-pause.png"),
        "Paused the schedule of tick.",
    );
    browser.wait_text("tr[data-function=tick] .next-fire", "paused");
    browser.screenshot_page("notice.png", 1280);
    std::thread::sleep(Duration::from_millis(1_500));
    let ticks = |b: &Browser| {
        b.go(&format!("{base}/apps/cron/logs?function=tick"));
        b.count("#logs tbody tr")
    };
    let before = ticks(&browser);
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(ticks(&browser), before, "a paused schedule fired");
    browser.confirm(&cron, &run, "Run tick now?", None, "Started a run of tick");
    browser.wait_until("the run", |b| ticks(b) == before + 1);
    browser.confirm(
        &cron,
        &resume,
        "Resume tick?",
        None,
        "Resumed the schedule of tick.",
    );
    browser.wait_until("the next fire time", |b| {
        !b.text("tr[data-function=tick] .next-fire")
            .contains("paused")
    });
    browser.wait_until("ticks again", |b| ticks(b) > before + 1);
    browser.go(&cron);
    browser.wait_text("#chart-summary", "failed");
    browser.screenshot_page("dashboard-cron.png", 1280);

    // Rollback to a version, confirmed.
    server.ok(&["deploy", HELLO]);
    browser.confirm(
        &format!("{base}/apps/hello"),
        "#versions tr[data-version='1'] a.rollback",
        "Roll hello back to v1?",
        Some("confirm-rollback.png"),
        "v3 now runs the code of v1",
    );
    assert!(
        browser
            .text("#versions tr[data-version='3']")
            .contains("live")
    );

    // While a version drains, its calls in flight show, live.
    server.ok(&["deploy", COUNTER]);
    browser.go(&format!("{base}/apps/counter"));
    browser.wait_text("#versions tr[data-version='1']", "live");
    server.ok(&["spawn", "counter", "slow", r#"{"ms": 6000}"#]);
    browser.wait_text("#versions tr[data-version='1'] .in-flight", "1");
    server.ok(&["deploy", COUNTER]);
    browser.wait_text("#draining", "v1 is draining: 1 in flight");
    assert!(
        browser
            .text("#versions tr[data-version='1']")
            .contains("draining")
    );
    browser.screenshot_page("draining.png", 1280);
    browser.wait_until("the drain to end", |b| b.count("#draining") == 0);

    // Styled error pages, in the same layout.
    for (path, says) in [
        ("/apps/nope", "no app named"),
        ("/apps/hello/no/such/page", "There is no such page."),
        (
            "/apps/hello/executions/99999999",
            "has no execution 99999999",
        ),
        (
            "/apps/cron/schedules/nope/pause",
            "has no schedule named `nope`",
        ),
    ] {
        browser.go(&format!("{base}{path}"));
        browser.wait_text("#error", says);
        let heading = browser.text("#error h1");
        assert!(
            heading.starts_with("Not found") && heading.ends_with("404"),
            "{path}: {heading}"
        );
        assert_eq!(browser.count("header #logout"), 1, "{path}");
    }
    browser.screenshot("404.png");

    // A 400 px wide screen: no page scrolls sideways.
    browser.resize(400, 860);
    let mut pages = vec![
        ("/apps", "narrow-apps.png"),
        ("/apps/hello", "narrow-app.png"),
        ("/apps/hello/logs", "narrow-logs.png"),
        ("/apps/hello/stop", "narrow-confirm.png"),
        ("/apps/nope", "narrow-404.png"),
        ("/apps/cron", "narrow-cron.png"),
    ];
    browser.go(&format!("{base}/apps/fanout/logs?function=sum_squares"));
    let root =
        browser.script("return document.querySelector('#logs tbody tr a').getAttribute('href');");
    let root = root.as_str().unwrap().to_string();
    pages.push((&root, "narrow-execution.png"));
    for (path, shot) in &pages {
        browser.go(&format!("{base}{path}"));
        let (fits, sizes) = browser.fits(400);
        browser.screenshot_page(shot, 400);
        assert!(fits, "{path} is wider than 400 px: {sizes}");
    }
    browser.resize(1280, 900);

    // Logout ends the session.
    browser.go(&format!("{base}/apps"));
    browser.click("#logout");
    browser.wait_until("the login page", |b| {
        b.url().starts_with(&format!("{base}/login"))
    });
    browser.go(&format!("{base}/apps/hello"));
    assert!(
        browser.url().starts_with(&format!("{base}/login")),
        "{}",
        browser.url()
    );
    browser.wait_text("h1", "Log in");
}

/// One request with a session cookie and a form body; the status, the
/// `Set-Cookie` and `Content-Type` headers and the body.
fn form_request(
    rt: &tokio::runtime::Runtime,
    addr: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> (u16, Option<String>, String, String) {
    let (addr, method, path, cookie, body) = (
        addr.to_string(),
        method.to_string(),
        path.to_string(),
        cookie.map(str::to_string),
        body.to_string(),
    );
    rt.block_on(async move {
        let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut request = hyper::Request::builder()
            .method(method.as_str())
            .uri(path)
            .header("host", &addr)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            request = request.header("cookie", c);
        }
        let response = sender
            .send_request(request.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let (cookie, kind) = (
            header("set-cookie"),
            header("content-type").unwrap_or_default(),
        );
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            cookie,
            kind,
            String::from_utf8_lossy(&body).into_owned(),
        )
    })
}

#[test]
fn every_action_needs_the_session_and_its_csrf_token() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", HELLO]);
    server.ok(&["deploy", CRON]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let post = |path: &str, cookie: Option<&str>, body: &str| {
        form_request(&rt, &server.addr, "POST", path, cookie, body)
    };
    let get =
        |path: &str, cookie: &str| form_request(&rt, &server.addr, "GET", path, Some(cookie), "");
    // A cross-site form without the session is sent to the login page.
    assert_eq!(post("/apps/hello/stop", None, "csrf=x").0, 303);
    let (status, cookie, _, _) = post(
        "/login",
        None,
        &format!("token={}&next=/apps", server.token()),
    );
    assert_eq!(status, 303);
    let cookie = cookie.unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    // With the session but without its CSRF token: every action is
    // refused with a styled 403 page, and nothing changes.
    for action in [
        "/apps/hello/stop",
        "/apps/hello/rollback/1",
        "/apps/cron/schedules/tick/pause",
        "/apps/cron/schedules/tick/resume",
        "/apps/cron/schedules/tick/run",
        "/logout",
    ] {
        for body in ["", "csrf=guess"] {
            let (status, _, kind, page) = post(action, Some(&session), body);
            assert_eq!(status, 403, "{action} {body}: {page}");
            assert_eq!(kind, "text/html; charset=utf-8", "{action}");
            assert!(
                page.contains("Form refused") && page.contains("<header>"),
                "{page}"
            );
        }
    }
    assert_eq!(
        server.ok(&["call", "hello", "square", "3"]),
        "9\n",
        "still running"
    );
    // The session was not ended by the refused logout; its pages carry
    // the token, which is what a real form sends.
    let (status, _, _, page) = get("/apps/hello/stop", &session);
    assert_eq!(status, 200, "{page}");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the confirmation carries the token")
        .to_string();
    // Pages the session asks for that do not exist are styled 404s.
    let (status, _, kind, page) = get("/apps/nope", &session);
    assert_eq!(
        (status, kind.as_str()),
        (404, "text/html; charset=utf-8"),
        "{page}"
    );
    assert!(page.contains("no app named `nope`"), "{page}");
    // An action that fails says why on a styled page, with its status.
    for (action, status, says) in [
        (
            "/apps/hello/rollback/99",
            404,
            "app `hello` has no version 99",
        ),
        (
            "/apps/cron/schedules/nope/run",
            404,
            "no function named `nope`",
        ),
        ("/apps/nope/stop", 404, "no app named `nope`"),
        (
            "/apps/hello/schedules/square/pause",
            400,
            "`square` is not a scheduled function",
        ),
    ] {
        let (got, _, kind, page) = post(action, Some(&session), &format!("csrf={csrf}"));
        assert_eq!(
            (got, kind.as_str()),
            (status, "text/html; charset=utf-8"),
            "{action}: {page}"
        );
        assert!(
            page.contains(says) && page.contains("<header>"),
            "{action}: {page}"
        );
    }
    // A browser that strays outside the pages gets a styled 404 too; other
    // clients get one line.
    let stray = |accept: &str| {
        let request = format!(
            "GET /nowhere HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n",
            server.addr
        );
        crate::hardening::raw(&server.addr, &request, Duration::from_secs(5))
    };
    let page = stray("text/html,application/xhtml+xml,*/*;q=0.8");
    assert!(page.starts_with("HTTP/1.1 404"), "{page}");
    assert!(
        page.contains("<header>") && page.contains("Nothing lives here"),
        "{page}"
    );
    let line = stray("*/*");
    assert!(line.starts_with("HTTP/1.1 404"), "{line}");
    assert!(
        line.contains("\r\n\r\nnot found: the control API is under /api/v1/"),
        "{line}"
    );
    // With the token, logout ends the session.
    let (status, _, _, _) = post("/logout", Some(&session), &format!("csrf={csrf}"));
    assert_eq!(status, 303);
    assert_eq!(get("/apps/hello", &session).0, 303, "the session is over");
    assert_eq!(
        post("/apps/hello/stop", Some(&session), &format!("csrf={csrf}")).0,
        303
    );
    assert_eq!(server.ok(&["call", "hello", "square", "4"]), "16\n");
}

/// The podcast app's frontend (examples/podcasts, mounted at `/assets`)
/// searches through the app's JSON API in a real browser.
#[test]
fn the_podcast_frontend_searches_in_a_real_browser() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    crate::podcasts::deploy_and_index(&server);
    let browser = Browser::start();
    let page = format!("http://{}/web/podcasts/web/assets/index.html", server.addr);
    browser.go(&page);
    // The podcasts and the index status load on their own.
    browser.wait_text("#podcasts", "Night Sky Notes with Ines Carvalho");
    browser.wait_text("#status", "6 episodes transcribed;");
    browser.type_into("#q", "pleiades");
    browser.click("button[type=submit]");
    let summary = browser.wait_text("#summary", "for “pleiades”");
    assert_eq!(summary, "1 episode for “pleiades”");
    let result = browser.text("#results li");
    assert!(result.contains("Winter hexagon"), "{result}");
    assert!(result.contains("night-sky · at "), "{result}");
    assert!(
        result.contains("Binoculars") || result.contains("binoculars"),
        "{result}"
    );
    // The query is in the address, so the page can be shared or reloaded.
    assert_eq!(browser.url(), format!("{page}?q=pleiades"));
    browser.go(&format!("{page}?q=zzzz"));
    browser.wait_text("#summary", "No episode says “zzzz”.");
    browser.screenshot("podcasts.png");
}
