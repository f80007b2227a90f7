//! The apps pages in a real browser: Debian's headless Chromium driven
//! through chromedriver's WebDriver protocol. Screenshots of both pages are
//! saved under `target/test-artifacts/`.

use crate::http::get;
use crate::server::Server;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use modal_test_support::{FANOUT, HELLO};
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
        assert!(
            status < 300,
            "WebDriver {method} {path} failed ({status}): {value}"
        );
        value
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

    /// Waits (up to 10 s) until element `css` exists and its text holds `part`.
    fn wait_text(&self, css: &str, part: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.session_command(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            );
            let text = found
                .as_array()
                .and_then(|a| a.first())
                .and_then(|e| e.as_object()?.values().next()?.as_str().map(str::to_string))
                .map(|id| self.session_command("GET", &format!("/element/{id}/text"), None))
                .and_then(|t| t.as_str().map(str::to_string));
            if let Some(text) = text.filter(|t| t.contains(part)) {
                return text;
            }
            assert!(Instant::now() < deadline, "no `{css}` containing {part:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
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
        let element = self.find(css);
        self.session_command("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.session_command(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.session_command(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        );
    }

    fn resize(&self, width: u32, height: u32) {
        self.session_command(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
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

#[test]
fn stop_needs_the_session_and_its_csrf_token() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["deploy", HELLO]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let post = |path: &str, cookie: Option<&str>, body: &str| {
        let (addr, path, cookie, body) = (
            server.addr.clone(),
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
            let mut request = hyper::Request::post(path)
                .header("host", &addr)
                .header("content-type", "application/x-www-form-urlencoded");
            if let Some(c) = cookie {
                request = request.header("cookie", c);
            }
            let response = sender
                .send_request(request.body(Full::new(Bytes::from(body))).unwrap())
                .await
                .unwrap();
            let cookie = response
                .headers()
                .get("set-cookie")
                .map(|v| v.to_str().unwrap().to_string());
            (response.status().as_u16(), cookie)
        })
    };
    // A cross-site form without the session is sent to the login page.
    assert_eq!(post("/apps/hello/stop", None, "csrf=x").0, 303);
    let (status, cookie) = post(
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
    // With the session but without its CSRF token: refused.
    assert_eq!(
        post("/apps/hello/stop", Some(&session), "csrf=guess").0,
        403
    );
    assert_eq!(
        server.ok(&["call", "hello", "square", "3"]),
        "9\n",
        "still running"
    );
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
