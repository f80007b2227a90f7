//! Secrets: created, listed and deleted with `modal secret`, attached at
//! deploy, recorded per version by revision, given to the guest as
//! variables, and never shown: not in history, API answers, pages,
//! metrics, stored logs or errors.

use crate::server::Server;
use modal_test_support::{CONFIG, STATE};

const VALUE: &str = "hunter2-very-secret";
const OLD: &str = "old-value-of-the-key";

/// Everything a user or an attacker with the token could read of the
/// server about `app`, and every file of its state directory: none of it
/// may hold a secret value.
pub(crate) fn assert_nowhere(server: &Server, app: &str, value: &str) {
    let token = server.token();
    let pages = [
        "/api/v1/apps".to_string(),
        format!("/api/v1/apps/{app}"),
        format!("/api/v1/apps/{app}/history"),
        format!("/api/v1/apps/{app}/logs?limit=500"),
        "/api/v1/secrets".to_string(),
        "/metrics".to_string(),
    ];
    for page in &pages {
        let (status, body) =
            crate::http::Http::blocking_raw(&server.addr, Some(&token), "GET", page);
        assert_eq!(status, 200, "{page}: {body}");
        assert!(!body.contains(value), "{page} shows the secret: {body}");
    }
    // The pages, as a logged-in browser gets them.
    let wait = std::time::Duration::from_secs(5);
    let raw = |request: String| crate::hardening::raw(&server.addr, &request, wait);
    let form = format!("token={token}");
    let login = raw(format!(
        "POST /login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        server.addr,
        form.len()
    ));
    let cookie = login
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session from the login: {login}"))
        .to_string();
    for page in ["/apps".to_string(), format!("/apps/{app}")] {
        let body = raw(format!(
            "GET {page} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
            server.addr
        ));
        assert!(body.starts_with("HTTP/1.1 200"), "{page}: {body}");
        assert!(!body.contains(value), "{page} shows the secret: {body}");
    }
    for args in [
        &["app", "history", app, "--json"][..],
        &["app", "logs", app, "-n", "500"],
        &["secret", "list", "--json"],
    ] {
        let out = server.ok(args);
        assert!(
            !out.contains(value),
            "modal {args:?} shows the secret: {out}"
        );
    }
    // Sealed in secrets.db; in clear in no file (databases, their WALs,
    // artifacts, mounts).
    let mut dirs = vec![server.state.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let found = bytes.windows(value.len()).any(|w| w == value.as_bytes());
                assert!(!found, "{} holds the secret in clear", path.display());
            }
        }
    }
}

#[test]
fn secrets_reach_the_guest_and_appear_nowhere_else() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    let elsewhere = tempfile::tempdir().unwrap();
    let dotenv = elsewhere.path().join("api.env");
    std::fs::write(
        &dotenv,
        format!("API_KEY={OLD}\n# a comment\nREGION=\"eu west\"\n"),
    )
    .unwrap();
    let out = server.ok(&[
        "secret",
        "create",
        "api",
        "--from-dotenv",
        dotenv.to_str().unwrap(),
    ]);
    assert_eq!(
        out,
        "✓ Created secret api (revision 1) with API_KEY, REGION.\n"
    );
    assert_eq!(
        server.err(&["secret", "create", "api", &format!("API_KEY={VALUE}")]),
        "error: bad input: secret `api` already exists; add --force to replace it (versions \
         deployed with it keep their values; the next deploy takes the new ones)"
    );
    assert_eq!(
        server.err(&["deploy", STATE, "--secret", "nope"]),
        "error: bad input: no secret named `nope`; create it with `modal secret create nope KEY=VALUE`"
    );
    assert_eq!(
        server.err(&["secret", "create", "x", "not-a-pair"]),
        "error: argument 2 is not KEY=VALUE (its text is not shown)"
    );

    let out = server.ok(&["deploy", STATE, "--secret", "api"]);
    assert!(out.contains("🔨 Attached secret api (revision 1)"), "{out}");
    assert_eq!(
        server.ok(&["call", "state", "print_env", "\"REGION\""]),
        "7\n",
        "the guest sees the variables"
    );

    // A new revision takes effect at the next deploy; a rollback brings
    // back the revision its version ran with.
    let out = server.ok(&[
        "secret",
        "create",
        "api",
        &format!("API_KEY={VALUE}"),
        "--force",
    ]);
    assert!(
        out.contains("(revision 2)") && out.contains("Redeploy state"),
        "{out}"
    );
    let len = |s: &str| format!("{}\n", s.len());
    assert_eq!(
        server.ok(&["call", "state", "print_env", "\"API_KEY\""]),
        len(OLD)
    );
    server.ok(&["deploy", STATE, "--secret", "api"]);
    assert_eq!(
        server.ok(&["call", "state", "print_env", "\"API_KEY\""]),
        len(VALUE)
    );
    server.ok(&["app", "rollback", "state"]);
    assert_eq!(
        server.ok(&["call", "state", "print_env", "\"API_KEY\""]),
        len(OLD)
    );
    server.ok(&["deploy", STATE, "--secret", "api"]);
    assert_eq!(
        server.ok(&["call", "state", "print_env", "\"API_KEY\""]),
        len(VALUE)
    );

    // Printed or put in an error by the guest, the value is masked.
    assert_eq!(
        server.err(&["call", "state", "fail_with_env", "\"API_KEY\""]),
        "error: function `fail_with_env` failed: API_KEY was ***"
    );
    let logs = server.ok(&["app", "logs", "state", "--function", "print_env", "-n", "1"]);
    assert!(logs.contains("API_KEY is ***"), "{logs}");

    let list = server.ok(&["secret", "list"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("api"))
        .unwrap_or_else(|| panic!("{list}"));
    // Revision 2 replaced the variables of revision 1.
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        (cells[1], cells[2], cells[5]),
        ("API_KEY", "2", "state"),
        "{row}"
    );

    // Survives a restart (sealed in secrets.db, opened with secret.key).
    let server = server.restart();
    assert_eq!(
        server.ok(&["call", "state", "print_env", "\"API_KEY\""]),
        len(VALUE)
    );
    assert_nowhere(&server, "state", VALUE);
    assert_nowhere(&server, "state", OLD);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.state.join("secret.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Deleting a secret a live version uses needs --force.
    assert_eq!(
        server.err(&["secret", "delete", "api"]),
        "error: bad input: secret `api` is used by the live version of state; redeploy without \
         it, or add --force (a version using it could then not be loaded again)"
    );
    server.ok(&["deploy", STATE]);
    assert_eq!(
        server.ok(&["call", "state", "print_env", "\"API_KEY\""]),
        "null\n"
    );
    assert_eq!(
        server.ok(&["secret", "delete", "api"]),
        "✓ Deleted secret api.\n"
    );
    assert_eq!(
        server.ok(&["secret", "list"]),
        "No secrets yet; create one with `modal secret create NAME KEY=VALUE`.\n"
    );
}

/// A secret named in the code (`secrets = ["config"]`) is attached like
/// one given with `--secret`.
#[test]
fn secrets_named_in_code_are_attached_at_deploy() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    assert_eq!(
        server.err(&["deploy", CONFIG]),
        "error: bad input: no secret named `config`; create it with `modal secret create config KEY=VALUE`"
    );
    server.ok(&["secret", "create", "config", "MODE=strict"]);
    let out = server.ok(&["deploy", CONFIG]);
    assert!(
        out.contains("🔨 Attached secret config (revision 1)"),
        "{out}"
    );
    assert_eq!(
        server.ok(&["call", "config", "setting", "\"MODE\""]),
        "\"strict\"\n"
    );
    let history = server.json(&["app", "history", "config", "--json"]);
    assert!(
        history
            .to_string()
            .contains(r#""secrets":[{"name":"config","revision":1}]"#),
        "{history}"
    );
}

/// `modal run` and `modal serve` run apart from the server, on the secrets
/// of its state directory: named with `--secret` or in the code.
#[test]
fn run_and_serve_read_the_secrets_of_the_state_directory() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    server.ok(&["secret", "create", "config", "MODE=local-strict"]);
    server.ok(&["secret", "create", "extra", "MODE_TOO=yes"]);
    server.kill();
    let modal = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_modal"))
            .args(args)
            .env("MODAL_STATE", state.path())
            .output()
            .unwrap()
    };
    let text = |out: &std::process::Output| {
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let setting = format!("{CONFIG}::setting");
    // Named in the code (`config`), and with --secret (`extra`).
    let out = modal(&["run", &setting, "\"MODE\""]);
    assert_eq!(text(&out).0, "\"local-strict\"\n", "{:?}", text(&out));
    let out = modal(&["run", &setting, "\"MODE_TOO\"", "--secret", "extra"]);
    assert_eq!(text(&out).0, "\"yes\"\n", "{:?}", text(&out));
    let out = modal(&["run", &setting, "\"MODE\"", "--secret", "nope"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.ends_with(
            "error: bad input: no secret named `nope`; create it with `modal secret create nope KEY=VALUE`\n"
        ),
        "{:?}",
        text(&out)
    );
    let out = modal(&["run", &setting, "\"MODE\"", "--env", "MODE=x"]);
    assert!(
        text(&out).1.contains("`MODE` is set twice"),
        "{:?}",
        text(&out)
    );
    // An empty state directory has no secrets: the code's is missing.
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["run", &setting, "\"MODE\"", "--state"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert!(
        text(&out).1.contains("no secret named `config`"),
        "{:?}",
        text(&out)
    );
    assert!(
        !empty.path().join("secrets.db").exists(),
        "reading creates nothing"
    );

    // `modal serve` deploys it into its temporary state with the secrets.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_modal"))
        .args([
            "serve",
            CONFIG,
            "--listen",
            "127.0.0.1:0",
            "--secret",
            "extra",
        ])
        .env("MODAL_STATE", state.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rx = crate::stdout_lines(&mut child);
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("modal serve starts with the secrets");
    assert!(first.contains("http://"), "{first}");
    let _ = child.kill();
    let _ = child.wait();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modal"))
        .args(["serve", CONFIG, "--listen", "127.0.0.1:0", "--state"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("no secret named `config`"),
        "{:?}",
        text(&out)
    );
}
