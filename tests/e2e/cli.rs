//! The real `modal` binary: `modal run` and `modal describe`.

use modal_test_support::{COUNTER, CRON, FAULTY, HELLO, HTTP_PLAIN, SITE, SITE_ASSETS};
use std::process::{Command, Output};

/// Runs `modal` with a private state directory.
fn modal(args: &[&str]) -> Output {
    let state = tempfile::tempdir().expect("temp dir");
    Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(args)
        .env("MODAL_STATE", state.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("modal runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
fn succeeds(args: &[&str]) -> String {
    let o = modal(args);
    assert!(o.status.success(), "modal {args:?} failed:\n{}", stderr(&o));
    stdout(&o)
}

/// Asserts failure with exactly `message` as the one-line reason, and
/// returns the whole stderr.
fn fails_with(args: &[&str], message: &str) -> String {
    let o = modal(args);
    assert_eq!(o.status.code(), Some(1), "modal {args:?}: {}", stderr(&o));
    let err = stderr(&o);
    let last = err.lines().last().unwrap_or_default();
    assert_eq!(last, format!("error: {message}"), "stderr was:\n{err}");
    assert!(stdout(&o).is_empty(), "nothing on stdout on failure");
    err
}

fn target(path: &str, function: &str) -> String {
    format!("{path}::{function}")
}

#[test]
fn run_prints_the_json_result() {
    assert_eq!(succeeds(&["run", &target(HELLO, "square"), "7"]), "49\n");
    assert_eq!(
        succeeds(&["run", &target(FAULTY, "echo"), r#"{"a": [1, 2]}"#]),
        "{\"a\":[1,2]}\n"
    );
    assert_eq!(
        succeeds(&["run", &target(COUNTER, "slow"), r#"{"ms": 10}"#]),
        "{\"version\":\"1\"}\n"
    );
}

#[test]
fn run_without_input_calls_a_function_without_parameters() {
    assert_eq!(succeeds(&["run", &target(COUNTER, "incr")]), "1\n");
}

#[test]
fn run_serves_a_web_function_a_path() {
    assert_eq!(
        succeeds(&["run", &target(HELLO, "greet"), "/?name=Ada"]),
        "Hello, Ada!\n"
    );
    assert_eq!(
        succeeds(&["run", &target(HTTP_PLAIN, "web"), "/x"]),
        "Hello from wasi:http! You asked for /x\n"
    );
}

#[test]
fn run_sends_a_web_function_the_method_headers_and_body_given() {
    use std::io::Write as _;
    let web = target(HTTP_PLAIN, "web");
    // --data: POST by default (the function declares no method), echoed.
    assert_eq!(succeeds(&["run", &web, "--data", "a body"]), "a body\n");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), b"line one\nline two\n").unwrap();
    let at_file = format!("@{}", file.path().display());
    assert_eq!(
        succeeds(&["run", &web, "/echo", "--data", &at_file]),
        "line one\nline two\n"
    );
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["run", &web, "--data", "-"])
        .env("MODAL_STATE", state.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "from stdin\n");
    // --method wins over the default (the guest ignores a GET's body).
    assert_eq!(
        succeeds(&["run", &web, "/x", "--method", "get", "--data", "ignored"]),
        "Hello from wasi:http! You asked for /x\n"
    );
    // A method the function does not take: its 405, and exit 1.
    let o = modal(&["run", &target(HELLO, "greet"), "--method", "POST"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "`greet` accepts GET requests only\n");
    assert_eq!(
        stderr(&o),
        "error: the web function answered 405 Method Not Allowed\n"
    );
    // --header reaches the guest: a revalidation gets 304, said on stderr.
    let mount = format!("{SITE_ASSETS}:/assets");
    let site = target(SITE, "web");
    let page = ["run", &site, "/assets/index.html", "--mount", &mount];
    assert!(succeeds(&page).contains("<html"));
    let o = modal(&[&page[..], &["--header", "If-None-Match: *"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o), "the web function answered 304 Not Modified\n");
    // Bad flags: usage errors, or one line.
    let o = modal(&["run", &site, "--header", "no colon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("expected 'NAME: VALUE', got `no colon`"),
        "{}",
        stderr(&o)
    );
    let o = modal(&["run", &site, "--method", "G T"]);
    assert!(stderr(&o).contains("`G T` is not an HTTP method"));
    fails_with(
        &["run", &target(HELLO, "square"), "3", "--data", "x"],
        "--method, --header and --data are for web functions; `square` is not one",
    );
    fails_with(
        &["run", &web, "--data", "@/nonexistent/body"],
        "cannot read the request body from /nonexistent/body: No such file or directory (os error 2)",
    );
}

#[test]
fn guest_logs_go_to_stderr() {
    let o = modal(&["run", &target(CRON, "tick")]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "null\n");
    assert!(stderr(&o).starts_with("tick at "), "{}", stderr(&o));
}

#[test]
fn faults_exit_non_zero_with_one_line() {
    let err = fails_with(
        &["run", &target(FAULTY, "trap")],
        "function `trap` trapped: panicked: the trap function panics on purpose",
    );
    assert!(
        err.contains("panicked at"),
        "the guest's own output is kept: {err}"
    );
    fails_with(
        &["run", &target(FAULTY, "spin")],
        "function `spin` timed out after 2s",
    );
    fails_with(
        &["run", "--memory", "32", &target(FAULTY, "hog")],
        "function `hog` exceeded the memory limit of 32 MiB",
    );
    fails_with(
        &["run", &target(FAULTY, "recurse"), "0"],
        "function `recurse` overflowed its stack (unbounded recursion?)",
    );
    fails_with(
        &["run", &target(CRON, "flaky")],
        "function `flaky` failed: flaky failed, as it always does",
    );
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "these are notes, not wasm\n").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();

    fails_with(
        &["run", &format!("{}::f", path(&text))],
        "not a WebAssembly file: it looks like a text file",
    );
    fails_with(
        &["run", &format!("{}::f", path(&core))],
        "this is a core WebAssembly module, not a component: build it for `wasm32-wasip2` \
         (or wrap it with `wasm-tools component new`)",
    );
    fails_with(
        &["run", &format!("{}::f", path(&empty))],
        "the component exports neither `modal:app/function` (build it with modal-guest) \
         nor `wasi:http/incoming-handler`",
    );
    fails_with(
        &["run", &target(HELLO, "square"), "{not json"],
        "bad input: input is not valid JSON: key must be a string at line 1 column 2",
    );
    fails_with(
        &["run", &target(HELLO, "cube"), "3"],
        "no function named `cube`; the app has `square`, `greet`",
    );
    fails_with(
        &["run", "/no/such/app.wasm::f"],
        "cannot read /no/such/app.wasm: No such file or directory (os error 2)",
    );
    fails_with(
        &["run", HELLO],
        &format!("say which function to run, as `{HELLO}::FUNCTION`; the app has square, greet"),
    );
}

#[test]
fn describe_lists_functions_and_settings() {
    let out = succeeds(&["describe", FAULTY]);
    assert!(out.contains("  spin     plain\n"), "{out}");
    assert!(out.contains("timeout 2s, max_instances 64"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&succeeds(&["describe", "--json", CRON])).unwrap();
    assert_eq!(json["functions"][0]["name"], "tick");
    assert_eq!(
        json["functions"][0]["kind"]["schedule"]["cron"]["expression"],
        "* * * * * *"
    );
    assert_eq!(json["functions"][1]["settings"]["retries"], 2);
}

#[test]
fn a_second_run_uses_the_compiled_code_cache() {
    let state = tempfile::tempdir().unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_modal"))
            .args(["run", &target(HELLO, "square"), "3"])
            .env("MODAL_STATE", state.path())
            .output()
            .unwrap()
    };
    assert!(run().status.success());
    let cached: Vec<_> = walk(state.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(
        cached.len(),
        1,
        "the compiled component is cached: {cached:?}"
    );
    let modified = std::fs::metadata(&cached[0]).unwrap().modified().unwrap();
    assert_eq!(stdout(&run()), "9\n");
    assert_eq!(
        std::fs::metadata(&cached[0]).unwrap().modified().unwrap(),
        modified,
        "not recompiled"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn completion_scripts_complete_the_subcommands_in_a_real_bash() {
    let script = succeeds(&["completion", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("modal.bash");
    std::fs::write(&file, script).unwrap();
    let complete = |words: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}'; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
                 _modal modal \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; echo \"${{COMPREPLY[*]}}\"",
                file.display()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(complete("modal de"), "describe deploy");
    assert!(complete("modal host ''").contains("list"));
    assert!(complete("modal server --data").contains("--database"));
    for shell in ["zsh", "fish"] {
        assert!(
            succeeds(&["completion", shell]).contains("deploy"),
            "{shell}"
        );
    }
    let o = modal(&["completion", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "a usage error");
    assert!(stderr(&o).contains("[possible values: bash, elvish, fish, powershell, zsh]"));
}

/// `modal ARGS` against `server` with the environment `env` and no
/// colour settings but those.
fn with_env(server: &crate::server::Server, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_modal"));
    command
        .args(args)
        .env("MODAL_SERVER", format!("http://{}", server.addr))
        .env("MODAL_STATE", &server.state)
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn colours_only_on_request_or_a_terminal_and_never_with_no_color() {
    let state = tempfile::tempdir().unwrap();
    let server = crate::server::Server::start(state.path());
    let run = |env: &[(&str, &str)], args: &[&str]| with_env(&server, env, args);
    // Piped: plain text.
    let plain = run(&[], &["deploy", HELLO]);
    assert!(
        stdout(&plain).starts_with("✓ Uploaded"),
        "{}",
        stdout(&plain)
    );
    // Forced (as a terminal would get): green marks, a red error.
    let forced = run(&[("CLICOLOR_FORCE", "1")], &["deploy", HELLO]);
    assert!(
        stdout(&forced).starts_with("\x1b[32m✓\x1b[0m Uploaded"),
        "{:?}",
        stdout(&forced)
    );
    let failed = run(&[("CLICOLOR_FORCE", "1")], &["call", "nope", "f"]);
    assert_eq!(
        stderr(&failed),
        "\x1b[1;31merror:\x1b[0m no app named `nope`\n"
    );
    // NO_COLOR wins.
    let off = run(
        &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")],
        &["deploy", HELLO],
    );
    assert!(!stdout(&off).contains('\x1b'), "{:?}", stdout(&off));
}

#[test]
fn states_in_tables_are_coloured_on_request_and_plain_when_piped() {
    let state = tempfile::tempdir().unwrap();
    let server = crate::server::Server::start(state.path());
    server.ok(&["deploy", HELLO]);
    server.ok(&["deploy", CRON, "--name", "cron"]);
    server.ok(&["schedule", "pause", "cron", "tick"]);
    server.ok(&["call", "hello", "square", "3"]);
    let forced = [("CLICOLOR_FORCE", "1")];
    // Records are written in the background: wait for the call's.
    crate::eventually(std::time::Duration::from_secs(10), || {
        match server.json(&["app", "logs", "hello", "--json"]) {
            logs if logs == serde_json::json!([]) => Err("the call is not recorded".into()),
            _ => Ok(()),
        }
    });
    // Each command: coloured when forced, plain and otherwise the same
    // when piped (but for the rows of the schedules that still run, whose
    // counts may widen their columns meanwhile).
    let steady = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with("cron ") && !l.starts_with("flaky "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let both = |args: &[&str]| {
        let coloured = stdout(&with_env(&server, &forced, args));
        let piped = stdout(&with_env(&server, &[], args));
        assert!(!piped.contains('\x1b'), "{args:?}: {piped:?}");
        let uncoloured = anstream::adapter::strip_str(&coloured).to_string();
        assert_eq!(steady(&uncoloured), steady(&piped), "{args:?}");
        coloured
    };
    let green = |word: &str| format!("\x1b[32m{word}\x1b[0m");
    let list = both(&["app", "list"]);
    assert!(list.contains(&green("deployed")), "{list:?}");
    assert!(
        list.contains(&format!("v1 {} (", green("live"))),
        "{list:?}"
    );
    let history = both(&["app", "history", "hello"]);
    assert!(history.contains(&green("live")), "{history:?}");
    let schedules = both(&["schedule", "list", "cron"]);
    assert!(
        schedules
            .lines()
            .any(|l| l.starts_with("tick ") && l.contains("\x1b[33mpaused\x1b[0m")),
        "{schedules:?}"
    );
    let logs = both(&["app", "logs", "hello"]);
    assert!(
        logs.contains(&format!("[call] {} ", green("ok"))),
        "{logs:?}"
    );
    server.ok(&["app", "stop", "hello"]);
    let list = both(&["app", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("hello ") && l.contains("\x1b[31mstopped\x1b[0m")),
        "{list:?}"
    );
    let history = both(&["app", "history", "hello"]);
    assert!(
        history.starts_with("(app \x1b[31mstopped\x1b[0m)\n"),
        "{history:?}"
    );
    // NO_COLOR wins over CLICOLOR_FORCE.
    let off = with_env(
        &server,
        &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")],
        &["app", "list"],
    );
    assert!(!stdout(&off).contains('\x1b'), "{:?}", stdout(&off));
}

#[test]
fn every_command_that_prints_data_prints_json_with_rfc3339_times() {
    let state = tempfile::tempdir().unwrap();
    let server = crate::server::Server::start(state.path());
    let deployed = server.json(&["deploy", HELLO, "--json"]);
    assert_eq!(deployed["deployment"]["version"], 1, "{deployed}");
    let call = server.json(&["call", "hello", "square", "6", "--json"]);
    assert_eq!(call["output"], 36, "{call}");
    let spawned = server.json(&["spawn", "hello", "square", "5", "--json"]);
    let id = spawned["call_id"].as_str().unwrap().to_string();
    let result = server.json(&["result", &id, "--wait", "10s", "--json"]);
    assert_eq!(result["state"], "succeeded", "{result}");
    let at = result["created_at"].as_u64().unwrap() as i64;
    let text = result["created_at_rfc3339"].as_str().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc3339(text).unwrap();
    assert_eq!(parsed.timestamp_millis(), at, "the same time: {text}");
    // Records are written in the background: wait for both calls'.
    let logs = crate::eventually(std::time::Duration::from_secs(10), || {
        let logs = server.json(&["app", "logs", "hello", "--json"]);
        match logs.as_array().unwrap().len() {
            2.. => Ok(logs),
            _ => Err(logs.to_string()),
        }
    });
    let logs = logs.as_array().unwrap();
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert!(
        logs[0]["started_at_rfc3339"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    server.ok(&["deploy", CRON, "--name", "cron"]);
    let schedules = server.json(&["schedule", "list", "cron", "--json"]);
    assert!(schedules[0]["next_fire_rfc3339"].is_string(), "{schedules}");
    let history = server.json(&["schedule", "history", "cron", "tick", "--json"]);
    assert!(history.is_array(), "{history}");
    server.ok(&["dict", "put", "hello", "notes", "a", "1"]);
    assert_eq!(
        server.json(&["dict", "keys", "hello", "notes", "--json"]),
        serde_json::json!(["a"])
    );
    assert!(server.json(&["dict", "list", "hello", "--json"]).is_array());
    // A call that failed: its JSON, and exit 1.
    let failed = server.modal(&["call", "hello", "square", "\"x\"", "--json"]);
    assert_eq!(failed.status.code(), Some(1));
    let failed: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert!(failed["error"]["message"].is_string(), "{failed}");
}

#[test]
fn call_and_run_take_arguments_by_name_or_json_from_stdin() {
    use std::io::Write as _;
    let state = tempfile::tempdir().unwrap();
    let server = crate::server::Server::start(state.path());
    server.ok(&["deploy", HELLO]);
    assert_eq!(server.ok(&["call", "hello", "square", "--x", "7"]), "49\n");
    assert_eq!(server.ok(&["call", "hello", "square", "--x=8"]), "64\n");
    let out = server.json(&["call", "hello", "square", "--x", "3", "--json"]);
    assert_eq!(out["output"], 9, "{out}");
    assert_eq!(
        server.ok(&["call", "hello", "square", "4", "--version", "1"]),
        "16\n"
    );
    assert!(
        server
            .err(&["call", "hello", "square", "--y", "1"])
            .contains("`square` has no parameter `y`; it takes --x")
    );
    let id = server.ok(&["spawn", "hello", "square", "--x", "5"]);
    assert_eq!(server.ok(&["result", id.trim(), "--wait", "10s"]), "25\n");
    // `-`: the JSON from stdin.
    let mut child = Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["call", "hello", "square", "-"])
        .env("MODAL_SERVER", format!("http://{}", server.addr))
        .env("MODAL_STATE", state.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"6\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "36\n");
    // The same without a server.
    assert_eq!(
        succeeds(&["run", &target(HELLO, "square"), "--x", "9"]),
        "81\n"
    );
    let e = modal(&[
        "run",
        &target(HELLO, "square"),
        "--x",
        "9",
        "--memory",
        "32",
    ]);
    assert_eq!(stdout(&e), "81\n", "{}", stderr(&e));
}
