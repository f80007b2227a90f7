//! Python functions: `modal build` of examples/python-hello with
//! componentize-py (installed by `.ci/setup` into `.cache/venv`), then the
//! component through a real `modal server`, calls between functions
//! included, and its local entrypoint through `modal run app.py`.

use crate::http::{Http, get};
use crate::server::Server;
use modal_test_support::HELLO;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// componentize-py: `$MODAL_COMPONENTIZE_PY`, else the one `.ci/setup`
/// installs.
pub fn componentize_py() -> PathBuf {
    let path = std::env::var_os("MODAL_COMPONENTIZE_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/venv/bin/componentize-py"));
    assert!(
        path.exists(),
        "componentize-py is missing at {}: run .ci/setup",
        path.display()
    );
    path
}

/// examples/python-hello built once per test run with `modal build`.
fn python_hello() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = repo().join("target/test-artifacts/python-hello.wasm");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let result = Command::new(env!("CARGO_BIN_EXE_modal"))
            .args(["build", "examples/python-hello/app.py", "-o"])
            .arg(&out)
            .current_dir(repo())
            .env("MODAL_COMPONENTIZE_PY", componentize_py())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(result.status.success(), "modal build failed:\n{stderr}");
        assert!(stderr.contains("✓ Built "), "{stderr}");
        // Piped, the build says what it does in a plain line (no spinner).
        let source = repo().join("examples/python-hello/app.py");
        let first = format!(
            "Building {} with componentize-py…\n✓ Built ",
            source.canonicalize().unwrap().display()
        );
        assert!(
            stderr.starts_with(&first) && !stderr.contains('\r'),
            "{stderr:?}"
        );
        out
    })
}

#[test]
fn python_functions_deploy_run_fail_and_call_each_other_like_rust_ones() {
    let wasm = python_hello().to_str().unwrap().to_string();
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    let out = server.ok(&["deploy", &wasm, "--name", "py"]);
    assert!(out.contains("Created web function greet"), "{out}");
    assert!(out.contains("Created scheduled function tick"), "{out}");
    assert_eq!(server.ok(&["call", "py", "square", "7"]), "49\n");
    assert_eq!(
        get(&server.addr, "py--greet.localhost", "/?name=Snake"),
        (200, "Hello, Snake!".to_string())
    );

    // An exception fails the call; its traceback is in the logs.
    assert_eq!(
        server.err(&["call", "py", "fail"]),
        "error: function `fail` failed: ValueError: fail raises on purpose"
    );
    let logs = crate::eventually(Duration::from_secs(5), || {
        let logs = server.ok(&["app", "logs", "py", "--function", "fail"]);
        match logs.contains("Traceback (most recent call last)") {
            true => Ok(logs),
            false => Err(format!("no traceback in the logs: {logs}")),
        }
    });
    assert!(
        logs.contains("ValueError: fail raises on purpose"),
        "{logs}"
    );

    // sys.exit ends the instance: that call fails, the next one runs fresh.
    let err = server.err(&["call", "py", "leave", "true"]);
    assert!(err.contains("the guest exited"), "{err}");
    assert_eq!(server.ok(&["call", "py", "leave", "false"]), "\"stayed\"\n");

    // tick fires on its schedule and sees its run id.
    let run = crate::eventually(Duration::from_secs(10), || {
        let body = Http::blocking_get_json(
            &server.addr,
            &server.token(),
            "/api/v1/apps/py/logs?function=tick&limit=5",
        );
        let runs = body["executions"].as_array().unwrap();
        let ran = runs.iter().find(|r| r["outcome"] == "ok").cloned();
        ran.ok_or_else(|| format!("tick never ran: {body}"))
    });
    assert!(
        run["logs"]
            .as_str()
            .unwrap()
            .contains("tick (run run-py-tick-"),
        "{run}"
    );

    // `modal.Dict`: durable state, shared with `modal dict`.
    assert_eq!(
        server.ok(&["call", "py", "visit", "\"ada\""]),
        "{\"keys\":[\"ada\"],\"known\":true,\"record\":{\"name\":\"ada\",\"visits\":1}}\n"
    );
    server.ok(&["call", "py", "visit", "\"ada\""]);
    assert_eq!(
        server.ok(&["dict", "get", "py", "visits", "ada"]),
        "{\"name\":\"ada\",\"visits\":2}\n"
    );

    // Calls between functions: `square.map`, `square.spawn(x).get()`.
    assert_eq!(server.ok(&["call", "py", "sum_squares", "[1,2,3]"]), "14\n");
    assert_eq!(server.ok(&["call", "py", "square_later", "6"]), "36\n");
    // The callee's exception arrives as a RemoteError with its text.
    assert_eq!(
        server.ok(&["call", "py", "try_fail"]),
        "\"RemoteError: ValueError: fail raises on purpose\"\n"
    );
    // `Function.from_name` into another app: refused (as if absent) until
    // the app allows the caller.
    let relay = || server.ok(&["call", "py", "relay", r#"["hello", "square", 3]"#]);
    let refused = "\"NotFoundError: no app named `hello`\"\n";
    assert_eq!(relay(), refused);
    server.ok(&["deploy", HELLO, "--name", "hello"]);
    assert_eq!(relay(), refused);
    server.ok(&["deploy", HELLO, "--name", "hello", "--allow-caller", "py"]);
    assert_eq!(relay(), "9\n");

    // Redeploying the unchanged component reuses the compiled code.
    let out = server.ok(&["deploy", &wasm, "--name", "py"]);
    assert!(out.contains("✓ Compiled (from cache"), "{out}");
}

#[test]
fn deploying_and_running_an_unchanged_py_file_reuse_its_build_and_compiled_code() {
    python_hello();
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    let deploy = || {
        let out = Command::new(env!("CARGO_BIN_EXE_modal"))
            .args(["deploy", "examples/python-hello/app.py"])
            .current_dir(repo())
            .env("MODAL_SERVER", format!("http://{}", server.addr))
            .env("MODAL_STATE", &server.state)
            .env("MODAL_COMPONENTIZE_PY", componentize_py())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (first, _) = deploy();
    // The name comes from `modal.App("python-hello")`, not the file name.
    assert!(
        first.contains("✓ App deployed as python-hello v1"),
        "{first}"
    );
    let (second, progress) = deploy();
    assert!(
        progress.contains("is unchanged; using its earlier build"),
        "{progress}"
    );
    assert!(second.contains("✓ Compiled (from cache"), "{second}");
    assert_eq!(server.ok(&["call", "python-hello", "square", "3"]), "9\n");
    // The build is kept in the state directory the deploy was given.
    let builds: Vec<_> = std::fs::read_dir(server.state.join("builds"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        builds
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "wasm")),
        "no build under $MODAL_STATE/builds: {builds:?}"
    );

    // `modal run app.py` runs the local entrypoint with the command line's
    // arguments (from the same build); its `.remote` and `.map` calls go
    // through the local host, and its prints are the command's output.
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_modal"))
            .args(["run", "examples/python-hello/app.py"])
            .args(args)
            .current_dir(repo())
            .env("MODAL_STATE", &server.state)
            .env("MODAL_COMPONENTIZE_PY", componentize_py())
            .output()
            .unwrap()
    };
    let out = run(&["--name", "Ada", "--n", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is unchanged; using its earlier build"),
        "{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Hello, Ada!\nsquare(7) = 49\nsquares of [1, 2]: [1, 4], summing to 5\n"
    );
    let out = run(&["--nmae", "Ada"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().last(),
        Some(
            "error: `main` has no parameter `nmae`; it takes --name (default 'world'), --n (default 3)"
        )
    );
}

#[test]
fn a_portable_build_runs_without_the_host_context() {
    let out = repo().join("target/test-artifacts/python-hello-portable.wasm");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let built = Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["build", "--portable", "examples/python-hello/app.py", "-o"])
        .arg(&out)
        .current_dir(repo())
        .env("MODAL_COMPONENTIZE_PY", componentize_py())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let state = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["run", &format!("{}::tick", out.display())])
        .env("MODAL_STATE", state.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&run.stderr), "tick (run None)\n");
    // Without the `invoke` import, calls to other functions raise.
    let run = Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["run", &format!("{}::sum_squares", out.display()), "[1]"])
        .env("MODAL_STATE", state.path())
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert_eq!(
        String::from_utf8_lossy(&run.stderr).lines().last(),
        Some(
            "error: function `sum_squares` failed: ExecutionError: calling other functions \
             needs the host's `invoke` import, which `modal build --portable` leaves out"
        )
    );
}

/// `secrets=[modal.Secret.from_name(...)]` attaches the secret at deploy,
/// as `--secret` does, and a deploy fails naming it while it is missing;
/// `modal.Mount.from_local_dir(...)` is read by the build, recorded in the
/// component and packed at deploy, as `--mount` would; `modal run` finds
/// both too (the secret in the state directory).
#[test]
fn python_functions_name_their_secrets_and_mounts_in_code() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("app.py");
    std::fs::create_dir(dir.path().join("static")).unwrap();
    std::fs::write(dir.path().join("static/hello.txt"), "from the mount\n").unwrap();
    std::fs::write(
        &source,
        "import os\n\nimport modal\n\n\
         app = modal.App(\"pysec\", mounts=[modal.Mount.from_local_dir(\"static\", remote_path=\"/static\")])\n\n\n\
         @app.function(secrets=[modal.Secret.from_name(\"cfg\")])\n\
         def mode():\n    return os.environ.get(\"MODE\")\n\n\n\
         @app.function()\n\
         def hello():\n    return open(\"/static/hello.txt\").read()\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    let modal = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_modal"))
            .args(args)
            .current_dir(state.path())
            .env("MODAL_SERVER", format!("http://{}", server.addr))
            .env("MODAL_STATE", state.path())
            .env("MODAL_COMPONENTIZE_PY", componentize_py())
            .output()
            .unwrap()
    };
    let app = source.to_str().unwrap();
    let refused = modal(&["deploy", app]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.ends_with(
            "error: bad input: no secret named `cfg`; create it with `modal secret create cfg KEY=VALUE`\n"
        ),
        "{stderr}"
    );
    server.ok(&["secret", "create", "cfg", "MODE=py-strict"]);
    let deployed = modal(&["deploy", app]);
    let stdout = String::from_utf8_lossy(&deployed.stdout);
    assert!(
        stdout.contains("🔨 Attached secret cfg (revision 1)"),
        "{stdout}"
    );
    let mounted = format!(
        "🔨 Mounted {} at /static (1 file, 15 B)",
        dir.path().join("static").canonicalize().unwrap().display()
    );
    assert!(stdout.contains(&mounted), "{stdout}");
    assert_eq!(server.ok(&["call", "pysec", "mode"]), "\"py-strict\"\n");
    assert_eq!(
        server.ok(&["call", "pysec", "hello"]),
        "\"from the mount\\n\"\n"
    );

    // The built component carries the mount: deployed as a .wasm (the
    // build `modal deploy` kept), it mounts the same directory.
    let builds: Vec<PathBuf> = std::fs::read_dir(state.path().join("builds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let [built] = &builds[..] else {
        panic!("one build expected: {builds:?}")
    };
    let out = server.ok(&["deploy", built.to_str().unwrap(), "--name", "pysec-wasm"]);
    assert!(out.contains(&mounted), "{out}");
    assert_eq!(
        server.ok(&["call", "pysec-wasm", "hello"]),
        "\"from the mount\\n\"\n"
    );

    // `modal run` mounts it and reads the secret from the state directory.
    let run = modal(&["run", &format!("{app}::hello")]);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "\"from the mount\\n\"\n"
    );
    let run = modal(&["run", &format!("{app}::mode")]);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "\"py-strict\"\n");

    // A mount the code cannot state as literals is refused at build.
    std::fs::write(
        &source,
        "import modal\n\nd = \"static\"\napp = modal.App(\"pysec\", mounts=[modal.Mount.from_local_dir(d, remote_path=\"/s\")])\n\n\n\
         @app.function()\ndef f():\n    return 1\n",
    )
    .unwrap();
    let refused = modal(&["deploy", app]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(
            ":4: Mount.from_local_dir takes its directory and remote_path as string literals"
        ),
        "{stderr}"
    );
}

/// `modal deploy` of a Python source to `server` (state directory
/// `state`), which must succeed.
fn deploy_source(server: &Server, state: &std::path::Path, source: &std::path::Path) {
    let deployed = Command::new(env!("CARGO_BIN_EXE_modal"))
        .arg("deploy")
        .arg(source)
        .env("MODAL_SERVER", format!("http://{}", server.addr))
        .env("MODAL_STATE", state)
        .env("MODAL_COMPONENTIZE_PY", componentize_py())
        .output()
        .unwrap();
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
}

/// The HTTP/1.1 answers in `text`, each chunked body decoded (an answer
/// whose body is not complete when its head is sent streams chunked,
/// which a busy machine makes likely): heads as sent, then bodies whole.
fn unchunked(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((head, rest)) = text.split_once("\r\n\r\n") {
        out.push_str(head);
        out.push_str("\r\n\r\n");
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.trim().parse::<usize>().ok());
        if head.contains("\r\ntransfer-encoding: chunked") {
            text = rest;
            while let Some((size, after)) = text.split_once("\r\n") {
                let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                out.push_str(&after[..size.min(after.len())]);
                text = after.get(size + 2..).unwrap_or("");
                if size == 0 {
                    break;
                }
            }
        } else {
            let length = length.unwrap_or(rest.len()).min(rest.len());
            out.push_str(&rest[..length]);
            text = &rest[length..];
        }
    }
    out.push_str(text);
    out
}

#[test]
fn unchunked_decodes_chunked_answers_and_keeps_the_others() {
    let two = "http/1.1 200 ok\r\ntransfer-encoding: chunked\r\n\r\n4\r\nhere\r\n2\r\n!!\r\n0\r\n\r\n\
               http/1.1 200 ok\r\ncontent-length: 2\r\n\r\nhi";
    assert_eq!(
        unchunked(two),
        "http/1.1 200 ok\r\ntransfer-encoding: chunked\r\n\r\nhere!!\
         http/1.1 200 ok\r\ncontent-length: 2\r\n\r\nhi"
    );
}

/// Python web functions see the whole request (method, path, query as
/// `parse_qs` decodes it, headers, a body of several reads) and shape
/// their answer; one that never looks at a body does not stall the
/// connection, and a request kept past its function cannot read its body.
#[test]
fn python_web_functions_see_the_whole_request_and_shape_their_answer() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("app.py");
    std::fs::write(
        &source,
        r#"import modal

app = modal.App("pyweb")
kept = []


@app.web()
def echo(request):
    body = request.body
    return modal.Response(status=201, headers={"x-size": str(len(body))}, body=repr((
        request.method, request.path, sorted(request.query.items()),
        request.headers.get("x-echo"), body[:3], body[-3:])))


@app.web(method="GET")
def hello():
    return "hi"


@app.web(max_instances=1)
def keep(request):
    if "late" in request.query:
        return kept[-1].text
    kept.append(request)
    return {"kept": len(kept)}
"#,
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    deploy_source(&server, state.path(), &source);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut http = Http::connect(&server.addr, "").await;
        let mut body = vec![b'.'; 300_000];
        body[..3].copy_from_slice(b"abc");
        body[299_997..].copy_from_slice(b"xyz");
        let path = "/p/a?b=1&b=2&c=&d&e=x%20y+z&%C3%A9=%E2%9C%93";
        let (status, text) = http
            .request("POST", "pyweb--echo.localhost", path, &body, false)
            .await;
        assert_eq!(status, 201, "{text}");
        assert_eq!(
            text,
            "('POST', '/p/a', [('b', '1'), ('c', ''), ('d', ''), ('e', 'x y z'), ('é', '✓')], \
             None, b'abc', b'xyz')"
        );
        let (status, text) = http
            .request("PURGE", "pyweb--echo.localhost", "/", b"", false)
            .await;
        assert_eq!(
            (status, text.as_str()),
            (201, "('PURGE', '/', [], None, b'', b'')")
        );
        // A body no one reads is read to its end after the answer, so the
        // connection goes on.
        let (status, text) = http
            .request("POST", "pyweb--hello.localhost", "/", &body, false)
            .await;
        assert_eq!(
            (status, text.as_str()),
            (405, "`hello` accepts GET requests only\n")
        );
        let (status, text) = http
            .request("POST", "pyweb--keep.localhost", "/", &body, false)
            .await;
        assert_eq!((status, text.as_str()), (200, "{\"kept\": 1}"));
        let (status, text) = http
            .request("GET", "pyweb--keep.localhost", "/?late", b"", false)
            .await;
        assert_eq!(
            (status, text.as_str()),
            (
                500,
                "ExecutionError: the body of a request can only be read while its web \
                 function runs\n"
            )
        );
    });

    // The answer's headers: a string is text, `Response` headers pass.
    let raw = |requests: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
        stream.write_all(requests.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        unchunked(&answer.to_ascii_lowercase())
    };
    let last = "Connection: close\r\n\r\n";
    let answer = raw(&format!(
        "GET / HTTP/1.1\r\nHost: pyweb--hello.localhost\r\n{last}"
    ));
    assert!(answer.starts_with("http/1.1 200 ok\r\n"), "{answer}");
    assert!(
        answer.contains("\r\ncontent-type: text/plain; charset=utf-8\r\n")
            && answer.ends_with("\r\n\r\nhi"),
        "{answer}"
    );
    let answer = raw(&format!(
        "GET / HTTP/1.1\r\nHost: pyweb--echo.localhost\r\nx-echo: here\r\n{last}"
    ));
    assert!(answer.starts_with("http/1.1 201 created\r\n"), "{answer}");
    assert!(answer.contains("\r\nx-size: 0\r\n"), "{answer}");
    assert!(
        answer.ends_with("('get', '/', [], 'here', b'', b'')"),
        "{answer}"
    );
    // A large chunked body, unread, then a request on the same connection.
    let answer = raw(&format!(
        "POST / HTTP/1.1\r\nHost: pyweb--hello.localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
         493e0\r\n{}\r\n0\r\n\r\n\
         GET / HTTP/1.1\r\nHost: pyweb--hello.localhost\r\n{last}",
        ".".repeat(300_000)
    ));
    assert!(
        answer.starts_with("http/1.1 405 method not allowed\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\nhi"), "{answer}");

    // A client that leaves mid-body: it was answered, and the body's
    // failed read after the answer fails nothing.
    {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
        stream
            .write_all(
                b"POST / HTTP/1.1\r\nHost: pyweb--hello.localhost\r\nContent-Length: 300000\r\n\r\n...",
            )
            .unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 405");
    }
    let logs = crate::eventually(Duration::from_secs(10), || {
        let logs = server.ok(&["app", "logs", "pyweb", "--function", "hello", "-n", "1"]);
        // The latest execution is the GET's (200) until the aborted one's
        // record lands.
        match logs.lines().next().is_some_and(|l| l.contains("HTTP 405")) {
            true => Ok(logs),
            false => Err(logs),
        }
    });
    assert!(logs.contains(" [web] ok "), "{logs}");

    // An app with one web function reads the headers only when asked.
    let one = dir.path().join("one.py");
    std::fs::write(
        &one,
        r#"import modal

app = modal.App("pyone")
kept = []


@app.web(max_instances=1)
def one(request):
    if "late" in request.query:
        return kept[-1].headers
    if "keep" in request.query:
        kept.append(request)
        return "kept"
    return request.headers.get("x-echo", "none")
"#,
    )
    .unwrap();
    deploy_source(&server, state.path(), &one);
    let answer = raw(&format!(
        "GET / HTTP/1.1\r\nHost: pyone--one.localhost\r\nx-echo: here\r\n{last}"
    ));
    assert!(answer.ends_with("\r\n\r\nhere"), "{answer}");
    runtime.block_on(async {
        let mut http = Http::connect(&server.addr, "").await;
        let body = vec![b'.'; 300_000];
        let (status, text) = http
            .request("GET", "pyone--one.localhost", "/?keep", b"", false)
            .await;
        assert_eq!((status, text.as_str()), (200, "kept"));
        let (status, text) = http
            .request("POST", "pyone--one.localhost", "/", &body, false)
            .await;
        assert_eq!((status, text.as_str()), (200, "none"));
        let (status, text) = http
            .request("GET", "pyone--one.localhost", "/?late", b"", false)
            .await;
        assert_eq!(
            (status, text.as_str()),
            (
                500,
                "ExecutionError: the headers of a request can only be read while its web \
                 function runs\n"
            )
        );
    });
}
