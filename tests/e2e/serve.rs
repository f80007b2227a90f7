//! `modal serve` on sources: a Rust guest crate built with cargo on each
//! change, and a Python module served from its development build, whose
//! edits need no build at all. (Serving a component file is tested in
//! `web.rs`.)

use crate::http::get;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The next line of `lines` that `wanted` accepts, within `timeout`; the
/// lines passed over are kept in `seen` for the failure message.
fn next_line(
    lines: &Receiver<String>,
    seen: &mut Vec<String>,
    timeout: Duration,
    wanted: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if wanted(&line) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no such line within {timeout:?}; seen: {seen:#?}"),
        }
    }
}

/// Polls `addr` until `/` answers `body`.
fn until_served(addr: &str, body: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (status, text) = get(addr, addr, "/");
        if status == 200 && text == body {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "still {status} {text:?}, not {body:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Serving {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(what: &Path, state: &Path, env: &[(&str, PathBuf)]) -> Serving {
    let mut command = Command::new(env!("CARGO_BIN_EXE_modal"));
    command
        .arg("serve")
        .arg(what)
        .args(["--listen", "127.0.0.1:0", "--state"])
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let stdout = crate::stdout_lines(&mut child);
    let stderr = crate::stderr_lines(&mut child);
    Serving {
        child,
        stdout,
        stderr,
    }
}

/// A guest crate of its own (not in a workspace) answering `text` at `/`.
fn write_crate(dir: &Path, text: &str) {
    let sdk = repo().join("guest-sdk");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"served\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n\
             [dependencies]\nmodal-guest = {{ path = {sdk:?} }}\n\n\
             # The examples' profile, so their compiled dependencies are reused.\n\
             [profile.release]\nopt-level = \"s\"\ndebug = false\nstrip = \"debuginfo\"\ncodegen-units = 4\n\n\
             [workspace]\n",
            sdk = sdk.display().to_string()
        ),
    )
    .unwrap();
    // The repository's toolchain and the examples' locked versions.
    std::fs::copy(
        repo().join("rust-toolchain.toml"),
        dir.join("rust-toolchain.toml"),
    )
    .unwrap();
    std::fs::copy(repo().join("examples/Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    write_lib(dir, text);
}

fn write_lib(dir: &Path, text: &str) {
    std::fs::write(
        dir.join("src/lib.rs"),
        format!(
            "#[modal_guest::app]\nmod served {{\n    use modal_guest::{{Request, Response}};\n\n    \
             #[function(web(method = \"GET\"))]\n    fn greet(_req: Request) -> Response {{\n        \
             Response::text({text:?})\n    }}\n}}\n"
        ),
    )
    .unwrap();
}

#[test]
fn serve_builds_a_rust_crate_on_each_change_and_keeps_serving_through_a_failed_build() {
    let dir = tempfile::tempdir().unwrap();
    let krate = dir.path().join("served");
    write_crate(&krate, "one");
    // The examples' target directory: the SDK and its dependencies are
    // built there already.
    let target = repo().join("target/guests");
    let serving = serve(
        &krate,
        &dir.path().join("state"),
        &[("CARGO_TARGET_DIR", target)],
    );
    let mut seen = Vec::new();
    let first = next_line(&serving.stdout, &mut seen, Duration::from_secs(300), |l| {
        l.starts_with("✓ Serving")
    });
    assert!(first.contains("as app served v1"), "{first}");
    let addr = crate::served_address(&first);
    let watching = next_line(&serving.stdout, &mut seen, Duration::from_secs(5), |l| {
        l.starts_with("Watching")
    });
    assert!(
        watching.contains("cargo build --release --target wasm32-wasip2"),
        "{watching}"
    );
    assert_eq!(get(&addr, &addr, "/"), (200, "one".to_string()));

    // An edit is built and served.
    write_lib(&krate, "two");
    let line = next_line(&serving.stdout, &mut seen, Duration::from_secs(120), |l| {
        l.starts_with('✓') || l.starts_with('✗')
    });
    assert!(line.starts_with("✓ Redeployed as v2"), "{line}");
    assert!(line.contains("built in "), "{line}");
    until_served(&addr, "two", Duration::from_secs(5));

    // A build that fails shows the compiler's error and keeps v2 serving.
    std::fs::write(krate.join("src/lib.rs"), "fn broken( {}\n").unwrap();
    let line = next_line(&serving.stdout, &mut seen, Duration::from_secs(120), |l| {
        l.starts_with('✓') || l.starts_with('✗')
    });
    assert!(
        line.starts_with(
            "✗ Not redeployed (the running version keeps serving): cargo build of served failed"
        ),
        "{line}"
    );
    let mut errors = Vec::new();
    next_line(&serving.stderr, &mut errors, Duration::from_secs(5), |l| {
        l.starts_with("error") && l.contains("delimiter")
    });
    assert_eq!(get(&addr, &addr, "/"), (200, "two".to_string()));

    // A burst of saves is one build, of the last state.
    for i in 0..6 {
        write_lib(&krate, &format!("burst {i}"));
        std::thread::sleep(Duration::from_millis(60));
    }
    let line = next_line(&serving.stdout, &mut seen, Duration::from_secs(120), |l| {
        l.starts_with('✓') || l.starts_with('✗')
    });
    assert!(line.starts_with("✓ Redeployed as v3"), "{line}");
    assert_eq!(get(&addr, &addr, "/"), (200, "burst 5".to_string()));
    assert!(
        serving.stdout.recv_timeout(Duration::from_secs(2)).is_err(),
        "no second build follows the burst"
    );
}

#[test]
fn serve_refuses_a_directory_that_is_no_guest_crate() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_modal"))
        .arg("serve")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--state"])
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is a directory without a Cargo.toml"),
        "{stderr}"
    );
    // A crate that builds no component is named as such.
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"plain\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/lib.rs"), "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_modal"))
        .arg("serve")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--state"])
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plain builds no cdylib") && stderr.contains("crate-type = [\"cdylib\"]"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// componentize-py: `$MODAL_COMPONENTIZE_PY`, else the one `.ci/setup`
/// installs.
fn componentize_py() -> PathBuf {
    std::env::var_os("MODAL_COMPONENTIZE_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/venv/bin/componentize-py"))
}

#[test]
fn serve_python_serves_an_edit_without_a_build_and_names_a_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    let source = app.join("app.py");
    let original = std::fs::read_to_string(repo().join("examples/python-hello/app.py")).unwrap();
    std::fs::write(&source, &original).unwrap();
    // A module of the app's own, imported by an edit.
    std::fs::write(app.join("words.py"), "GREETING = 'Howdy'\n").unwrap();
    let state = dir.path().join("state");
    let env = [("MODAL_COMPONENTIZE_PY", componentize_py())];
    let serving = serve(&source, &state, &env);
    let mut seen = Vec::new();
    let first = next_line(&serving.stdout, &mut seen, Duration::from_secs(600), |l| {
        l.starts_with("✓ Serving")
    });
    let addr = crate::served_address(&first);
    assert_eq!(get(&addr, &addr, "/"), (200, "Hello, world!".to_string()));

    // An edit, using a module of the app's own: served without a build,
    // in well under the 8 s target (here: ≤ 5 s, with a loaded machine).
    let edited = original.replace(
        "def greet(request):",
        "def greet(request):\n    import words\n    return f\"{words.GREETING}, {request.query.get('name', 'world')}!\"\n\n\ndef _old_greet(request):",
    );
    assert_ne!(edited, original);
    std::fs::write(&source, &edited).unwrap();
    let took = until_served(&addr, "Howdy, world!", Duration::from_secs(30));
    assert!(took < Duration::from_secs(5), "{took:?}");
    let line = next_line(&serving.stdout, &mut seen, Duration::from_secs(5), |l| {
        l.starts_with('✓') || l.starts_with('✗')
    });
    assert!(line.starts_with("✓ Redeployed as v2"), "{line}");

    // A syntax error is named, with its line, and v2 keeps serving.
    std::fs::write(&source, edited.replace("def square(x):", "def square(x)")).unwrap();
    let line = next_line(&serving.stdout, &mut seen, Duration::from_secs(30), |l| {
        l.starts_with('✓') || l.starts_with('✗')
    });
    assert!(
        line.starts_with("✗ Not redeployed (the running version keeps serving):")
            && line.contains("SyntaxError: expected ':' (app.py, line "),
        "{line}"
    );
    assert_eq!(get(&addr, &addr, "/"), (200, "Howdy, world!".to_string()));
    drop(serving);

    // Neither the edits nor a restart built the component again: a
    // restarted serve starts from the build and compiled code it kept.
    std::fs::write(&source, &original).unwrap();
    let serving = serve(&source, &state, &env);
    let first = next_line(&serving.stdout, &mut seen, Duration::from_secs(60), |l| {
        l.starts_with("✓ Serving")
    });
    assert!(first.contains("(compiled code from the cache)"), "{first}");
    let addr = crate::served_address(&first);
    assert_eq!(get(&addr, &addr, "/"), (200, "Hello, world!".to_string()));
    let builds = std::fs::read_dir(state.join("builds"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        })
        .count();
    assert_eq!(builds, 1, "one development build for all of it");
}
