//! Golden files for the errors a deploy fails with. Error messages are
//! part of the interface: each case is one input under `tests/ui/KIND/`
//! beside `CASE.err`, the exact message it must fail with, and this test
//! fails when a message changes. To accept new messages, re-bless (rewrite
//! every `.err` from what the code says now, and drop those whose input is
//! gone), then review the diff:
//!
//! ```text
//! BLESS=1 cargo test -p modal-host --test ui
//! ```
//!
//! The kinds, each fed to the code path a deploy takes (see `README.md`
//! beside this file):
//! - `spec/CASE.json`: what a guest's `describe` returns, as JSON
//!   ([`RawAppSpec`]), checked by [`AppSpec::validate`];
//! - `component/CASE.wat` (compiled with `wat`) and `component/CASE.raw`
//!   (bytes as they are): a component deployed as app `CASE`;
//! - `deploy/CASE.json`: a deploy request for one of the example
//!   components (`modal-test-support`), see [`DeployCase`];
//! - `duration/CASE.txt`: a duration option (`--timeout`, `period(..)`),
//!   read by [`parse_duration`]; the guest SDK's macros are checked
//!   against the same files;
//! - `guest/CASE.rs`: the `lib.rs` of a guest crate that must not compile
//!   (a web function returning what is not a response, ...), built for
//!   `wasm32-wasip2` beside the examples; the message is the compiler's
//!   errors ([`compile_guest`]).

use modal_host::spec::{PoolSettings, RawAppSpec};
use modal_host::{
    AppSpec, DeployRequest, HostConfig, Platform, PlatformConfig, PoolingLimits, parse_duration,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where the cases live.
fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ui")
}

/// Whether this run rewrites the expected messages (`BLESS=1`).
fn blessing() -> bool {
    std::env::var_os("BLESS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Runs every case of `kind` whose input ends in one of `extensions`:
/// `run` returns the error message, or `Ok` with what was made instead
/// when the input was accepted (which fails the case). Compares each
/// message with `CASE.err`, or rewrites it when blessing.
async fn check<F, Fut>(kind: &str, extensions: &[&str], run: F)
where
    F: Fn(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let dir = ui_dir().join(kind);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no cases in {}", dir.display());
    let bless = blessing();
    let mut failures = Vec::new();
    for input in &inputs {
        let expected_path = input.with_extension("err");
        let shown = input.strip_prefix(ui_dir()).unwrap_or(input).display();
        let actual = match run(input.clone()).await {
            Ok(message) => format!("{message}\n"),
            Err(accepted) => {
                failures.push(format!(
                    "{shown}: expected an error, but it was accepted: {accepted}"
                ));
                continue;
            }
        };
        if bless {
            std::fs::write(&expected_path, &actual)
                .unwrap_or_else(|e| panic!("writing {}: {e}", expected_path.display()));
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{shown}: the message changed\n  expected: {}\n  actual:   {}",
                expected.trim_end(),
                actual.trim_end()
            )),
            Err(e) => failures.push(format!(
                "{shown}: no expected message ({}: {e})\n  actual:   {}",
                expected_path.display(),
                actual.trim_end()
            )),
        }
    }
    // An expected message without its input is a case deleted by halves.
    for stale in std::fs::read_dir(&dir)
        .expect("the directory was just read")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "err"))
        .filter(|p| !inputs.iter().any(|i| i.with_extension("err") == *p))
    {
        if bless {
            std::fs::remove_file(&stale)
                .unwrap_or_else(|e| panic!("removing {}: {e}", stale.display()));
        } else {
            let shown = stale.strip_prefix(ui_dir()).unwrap_or(&stale).display();
            failures.push(format!("{shown}: an expected message without its input"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} `{kind}` golden files disagree with the code; if the new messages are \
         right, run `BLESS=1 cargo test -p modal-host --test ui` and review the diff:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The file name without its extension: the case's name.
fn stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .expect("case names are UTF-8")
        .to_string()
}

/// A platform on a fresh state directory with a small pool (tests run in
/// parallel); failed deploys change nothing, so all cases share it.
async fn platform() -> (Platform, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("a temporary directory");
    let config = HostConfig {
        pooling: Some(PoolingLimits {
            total_component_instances: 16,
            total_core_instances: 160,
            total_memories: 16,
            total_tables: 16,
            total_stacks: 16,
            ..PoolingLimits::default()
        }),
        ..HostConfig::default()
    };
    let platform = Platform::open(state.path(), config, PlatformConfig::default(), None)
        .await
        .expect("the platform opens");
    (platform, state)
}

#[tokio::test]
async fn spec_errors() {
    check("spec", &["json"], |input| async move {
        let raw: RawAppSpec = serde_json::from_str(&read(&input))
            .unwrap_or_else(|e| panic!("{} is not a describe output: {e}", input.display()));
        match AppSpec::validate(raw, &HostConfig::default()) {
            Ok(spec) => Err(format!("{:?}", spec.names())),
            Err(e) => Ok(e.to_string()),
        }
    })
    .await;
}

#[tokio::test]
async fn duration_errors() {
    check("duration", &["txt"], |input| async move {
        match parse_duration(&read(&input)) {
            Ok(d) => Err(format!("{d:?}")),
            Err(message) => Ok(message),
        }
    })
    .await;
}

#[tokio::test]
async fn component_errors() {
    let (platform, _state) = platform().await;
    let platform = &platform;
    check("component", &["wat", "raw"], |input| async move {
        let wasm = if input.extension().is_some_and(|e| e == "wat") {
            wat::parse_file(&input)
                .unwrap_or_else(|e| panic!("{} does not assemble: {e}", input.display()))
        } else {
            std::fs::read(&input).unwrap_or_else(|e| panic!("reading {}: {e}", input.display()))
        };
        let request = DeployRequest {
            name: stem(&input),
            ..DeployRequest::default()
        };
        match platform.deploy(&wasm, request).await {
            Ok(deployment) => Err(format!("version {}", deployment.version)),
            Err(e) => Ok(e.to_string()),
        }
    })
    .await;
}

/// A deploy request in `deploy/CASE.json`: an example component and the
/// options `modal deploy` would send with it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployCase {
    /// The example, by crate name (`hello`, `http-plain`, `bad-schedule`, ...).
    component: String,
    /// The app name.
    name: String,
    /// `--env KEY=VALUE`, in order.
    #[serde(default)]
    env: Vec<(String, String)>,
    /// `--allow-http HOST[:PORT]`.
    #[serde(default)]
    allow_http: Vec<String>,
    /// `--timeout`, `--min-warm`, `--max-instances`, `--max-requests`.
    #[serde(default)]
    pool: PoolCase,
}

/// The pool options of a [`DeployCase`]; the timeout as written on the
/// command line.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolCase {
    timeout: Option<String>,
    min_warm: Option<u32>,
    max_instances: Option<u32>,
    max_requests: Option<u32>,
}

fn example(name: &str) -> &'static str {
    match name {
        "hello" => modal_test_support::HELLO,
        "counter" => modal_test_support::COUNTER,
        "cron" => modal_test_support::CRON,
        "faulty" => modal_test_support::FAULTY,
        "http-plain" => modal_test_support::HTTP_PLAIN,
        "fetch" => modal_test_support::FETCH,
        "bad-schedule" => modal_test_support::BAD_SCHEDULE,
        other => panic!("no example component `{other}`"),
    }
}

#[tokio::test]
async fn deploy_errors() {
    let (platform, _state) = platform().await;
    let platform = &platform;
    check("deploy", &["json"], |input| async move {
        let case: DeployCase = serde_json::from_str(&read(&input))
            .unwrap_or_else(|e| panic!("{} is not a deploy case: {e}", input.display()));
        let timeout = case
            .pool
            .timeout
            .as_deref()
            .map(|t| parse_duration(t).unwrap_or_else(|e| panic!("{}: {e}", input.display())));
        let request = DeployRequest {
            name: case.name,
            env: case.env,
            allow_http: case.allow_http,
            pool: PoolSettings {
                timeout,
                min_warm: case.pool.min_warm,
                max_instances: case.pool.max_instances,
                max_requests: case.pool.max_requests,
            },
            ..DeployRequest::default()
        };
        let wasm = modal_test_support::wasm(example(&case.component));
        match platform.deploy(&wasm, request).await {
            Ok(deployment) => Err(format!("version {}", deployment.version)),
            Err(e) => Ok(e.to_string()),
        }
    })
    .await;
}

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `[profile.release]` section of `examples/Cargo.toml`, so that a
/// guest case is built with the examples' settings and reuses their
/// compiled dependencies.
fn examples_release_profile() -> String {
    let manifest = read(&root().join("examples/Cargo.toml"));
    let start = manifest
        .find("[profile.release]")
        .expect("examples/Cargo.toml has a [profile.release]");
    let rest = &manifest[start..];
    let end = rest[1..].find("\n[").map_or(rest.len(), |i| i + 2);
    rest[..end].to_string()
}

/// Builds the guest whose `lib.rs` is `input` (in a crate of its own under
/// `target/ui-guests/`, with the examples' lock file, profile and target
/// directory, so only the case itself compiles) and returns its errors,
/// each as its message, where it points (`src/lib.rs:LINE:COL: label`)
/// and its notes; `Err` if it compiled.
fn compile_guest(input: &Path) -> Result<String, String> {
    let root = root();
    let name = stem(input);
    let dir = root.join("target/ui-guests").join(&name);
    std::fs::create_dir_all(dir.join("src")).expect("the case's crate directory");
    let sdk = root.join("guest-sdk");
    let manifest = format!(
        "[package]\nname = \"ui-{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [lib]\ncrate-type = [\"cdylib\"]\n\n\
         [dependencies]\nmodal-guest = {{ path = {sdk:?} }}\n\
         serde = {{ version = \"1\", features = [\"derive\"] }}\n\n\
         # Not a member of the repository's workspace.\n[workspace]\n\n{}",
        examples_release_profile()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).expect("writing the case's manifest");
    std::fs::copy(root.join("examples/Cargo.lock"), dir.join("Cargo.lock"))
        .expect("copying the examples' lock file");
    std::fs::copy(input, dir.join("src/lib.rs")).expect("copying the case");
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let mut command = modal_test_support::guests::build_command(cargo, &root, &dir);
    command.args(["--offline", "--message-format", "json"]);
    let output = command.output().expect("cargo runs");
    let mut errors = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<CargoMessage>(line) else {
            continue;
        };
        if let Some(diagnostic) = message.message.filter(|d| d.level == "error") {
            errors.push(diagnostic.render(&root));
        }
    }
    if output.status.success() {
        return Err("it compiled".to_string());
    }
    if errors.is_empty() {
        panic!(
            "building {} failed without a compiler error:\n{}",
            input.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(errors.join("\n").trim_end().to_string())
}

/// One line of `cargo build --message-format json`.
#[derive(Deserialize)]
struct CargoMessage {
    message: Option<Diagnostic>,
}

/// A compiler diagnostic, as much of it as a golden file shows.
#[derive(Deserialize)]
struct Diagnostic {
    level: String,
    message: String,
    code: Option<DiagnosticCode>,
    #[serde(default)]
    spans: Vec<DiagnosticSpan>,
    #[serde(default)]
    children: Vec<Diagnostic>,
}

#[derive(Deserialize)]
struct DiagnosticCode {
    code: String,
}

#[derive(Deserialize)]
struct DiagnosticSpan {
    file_name: String,
    line_start: u32,
    column_start: u32,
    is_primary: bool,
    label: Option<String>,
}

impl Diagnostic {
    /// `error[CODE]: message`, then `  at FILE:LINE:COL: label` and one
    /// line per note; paths inside the repository are shown from its root
    /// (`$ROOT/guest-sdk/...`).
    fn render(&self, root: &Path) -> String {
        let code = self
            .code
            .as_ref()
            .map(|c| format!("[{}]", c.code))
            .unwrap_or_default();
        let mut text = format!("{}{code}: {}\n", self.level, self.message);
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        for span in self.spans.iter().filter(|s| s.is_primary) {
            let file = span.file_name.replace(&*root.to_string_lossy(), "$ROOT");
            text.push_str(&format!(
                "  at {file}:{}:{}",
                span.line_start, span.column_start
            ));
            if let Some(label) = span.label.as_deref().filter(|l| !l.is_empty()) {
                text.push_str(&format!(": {label}"));
            }
            text.push('\n');
        }
        for child in &self.children {
            text.push_str(&format!("  {}: {}\n", child.level, child.message));
        }
        text
    }
}

#[tokio::test]
async fn guest_compile_errors() {
    check(
        "guest",
        &["rs"],
        |input| async move { compile_guest(&input) },
    )
    .await;
}
