//! Progress on a terminal: the spinner of a deploy and of a Python build,
//! seen through a real pseudo-terminal (`script` from util-linux runs the
//! `modal` binary on one), and nothing of it when the output is piped.

use crate::server::Server;
use modal_test_support::HELLO;
use std::process::Command;

/// The spinner's frames (see `cli/progress.rs`).
const FRAMES: &[char] = &['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// `args` quoted for `sh`.
fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `modal ARGS` on a pseudo-terminal `cols` columns wide (stdout and
/// stderr both) with the environment `env`, and returns all it wrote
/// there.
fn on_a_terminal(args: &[&str], env: &[(&str, &str)], cols: u16) -> String {
    // Without a terminal of its own, `script`'s has no size (and the
    // spinner assumes 79 columns): give it one.
    let command = format!(
        "stty cols {cols} rows 50 && exec {} {}",
        shell_words(&[env!("CARGO_BIN_EXE_modal")]),
        shell_words(args)
    );
    let mut script = Command::new("script");
    script
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        script.env(k, v);
    }
    let out = script
        .output()
        .expect("`script` (util-linux) runs the command on a pseudo-terminal");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "modal {args:?} failed:\n{text}");
    text
}

/// The spinner lines of `screen` that show `message`: a frame, the
/// message, the elapsed time in seconds.
fn spinner_lines<'a>(screen: &'a str, message: &str) -> Vec<&'a str> {
    screen
        .split(['\r', '\n'])
        .map(|l| l.trim_start_matches("\x1b[2K").trim_end())
        .filter(|l| {
            let mut chars = l.chars();
            chars.next().is_some_and(|c| FRAMES.contains(&c))
                && chars.as_str().starts_with(&format!(" {message} "))
                && l.ends_with('s')
        })
        .collect()
}

/// What is left on the screen once the spinner line was cleared: the text
/// after its last clear.
fn after_the_spinner(screen: &str) -> &str {
    screen.rsplit("\x1b[2K").next().unwrap_or(screen)
}

#[test]
fn a_deploy_shows_a_spinner_on_a_terminal_and_nothing_extra_when_piped() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    let addr = format!("http://{}", server.addr);
    let env = [
        ("MODAL_SERVER", addr.as_str()),
        ("MODAL_STATE", state.path().to_str().unwrap()),
    ];
    let screen = on_a_terminal(&["deploy", HELLO], &env, 250);
    let spinning = spinner_lines(&screen, "Compiling and starting hello on the server…");
    assert!(!spinning.is_empty(), "{screen:?}");
    // Cleared, then today's lines (coloured, on a terminal).
    let rest = after_the_spinner(&screen);
    assert!(
        rest.starts_with("\x1b[32m✓\x1b[0m Uploaded hello.wasm"),
        "{rest:?}"
    );
    assert!(
        rest.contains("✓\x1b[0m App deployed as hello v1"),
        "{rest:?}"
    );
    assert!(!rest.contains(FRAMES), "{rest:?}");

    // On a narrow terminal the message is cut to fit one line, and the
    // elapsed time stays in sight: no line wraps (which would move the
    // cursor up to redraw).
    let narrow = on_a_terminal(&["deploy", HELLO], &env, 40);
    assert!(!narrow.contains("\x1b[1A"), "{narrow:?}");
    let cut: Vec<&str> = narrow
        .split(['\r', '\n'])
        .map(|l| l.trim_start_matches("\x1b[2K").trim_end())
        .filter(|l| l.starts_with(FRAMES) && l.contains("Compiling"))
        .collect();
    assert!(!cut.is_empty(), "{narrow:?}");
    for line in cut {
        assert!(line.chars().count() <= 40, "{line:?}");
        assert!(line.ends_with('s'), "{line:?}");
    }

    // Piped: the report alone, no progress on stderr.
    let out = server.modal(&["deploy", HELLO]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("✓ Uploaded hello.wasm"), "{stdout:?}");
    assert!(
        !stdout.contains(FRAMES) && !stdout.contains('\r'),
        "{stdout:?}"
    );
}

#[test]
fn a_python_build_shows_a_spinner_on_a_terminal() {
    let out = tempfile::tempdir().unwrap();
    let wasm = out.path().join("app.wasm");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/python-hello/app.py")
        .canonicalize()
        .unwrap();
    let tool = crate::python::componentize_py();
    let screen = on_a_terminal(
        &[
            "build",
            source.to_str().unwrap(),
            "-o",
            wasm.to_str().unwrap(),
        ],
        &[("MODAL_COMPONENTIZE_PY", tool.to_str().unwrap())],
        250,
    );
    let message = format!("Building {} with componentize-py…", source.display());
    let spinning = spinner_lines(&screen, &message);
    // The build takes seconds: the spinner turns and its time goes up.
    let frames: std::collections::HashSet<char> =
        spinning.iter().filter_map(|l| l.chars().next()).collect();
    assert!(frames.len() > 1, "{spinning:?}");
    assert_ne!(spinning.first(), spinning.last());
    // The plain line of a pipe is not printed as well.
    assert!(!screen.contains(&format!("{message}\r\n")), "{screen:?}");
    let rest = after_the_spinner(&screen);
    assert!(
        rest.starts_with(&format!("\x1b[32m✓\x1b[0m Built {}", wasm.display())),
        "{rest:?}"
    );
}
