//! `modal build app.py`: turns a Python module written with the Python SDK
//! into a component with componentize-py. The SDK and the WIT contract are
//! built into the `modal` binary, so only componentize-py is needed.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The componentize-py release the Python SDK is tested with.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

pub(super) const SDK: &[(&str, &str)] = &[
    (
        "modal/__init__.py",
        include_str!("../../../guest-sdk/python/modal/__init__.py"),
    ),
    (
        "modal/_world.py",
        include_str!("../../../guest-sdk/python/modal/_world.py"),
    ),
    (
        "modal/_dev.py",
        include_str!("../../../guest-sdk/python/modal/_dev.py"),
    ),
    (
        "modal/exception.py",
        include_str!("../../../guest-sdk/python/modal/exception.py"),
    ),
];

pub(super) const WIT: &[(&str, &str)] = &[
    ("modal.wit", include_str!("../../../wit/modal.wit")),
    ("deps/cli.wit", include_str!("../../../wit/deps/cli.wit")),
    (
        "deps/clocks.wit",
        include_str!("../../../wit/deps/clocks.wit"),
    ),
    (
        "deps/filesystem.wit",
        include_str!("../../../wit/deps/filesystem.wit"),
    ),
    ("deps/http.wit", include_str!("../../../wit/deps/http.wit")),
    ("deps/io.wit", include_str!("../../../wit/deps/io.wit")),
    (
        "deps/keyvalue.wit",
        include_str!("../../../wit/deps/keyvalue.wit"),
    ),
    (
        "deps/random.wit",
        include_str!("../../../wit/deps/random.wit"),
    ),
    (
        "deps/sockets.wit",
        include_str!("../../../wit/deps/sockets.wit"),
    ),
];

/// componentize-py: `$MODAL_COMPONENTIZE_PY`, else on `PATH`.
pub(super) fn componentize_py() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MODAL_COMPONENTIZE_PY").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("componentize-py"))
        .find(|p| p.is_file());
    match found {
        Some(path) => Ok(path),
        None => bail!(
            "componentize-py was not found; install it with `pip install {COMPONENTIZE_PY}` \
             (or point MODAL_COMPONENTIZE_PY at it)"
        ),
    }
}

fn write_all(dir: &Path, files: &[(&str, &str)]) -> anyhow::Result<()> {
    for (name, text) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The module name of the Python file `source` (canonical), checked to be
/// importable.
pub(super) fn module_name(source: &Path) -> anyhow::Result<&str> {
    source
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .with_context(|| {
            format!(
                "{} is not an importable Python module name",
                source.display()
            )
        })
}

/// Runs componentize-py on the entry module `entry` (its text), with the
/// SDK, the WIT and `app_dir` on the Python path, writing the component to
/// `out`, with `label` on a spinner (a line when not on a terminal). On
/// failure, componentize-py's output is shown and its last line is the
/// error.
pub(super) fn componentize(
    what: &Path,
    label: String,
    entry: &str,
    app_dir: &Path,
    out: &Path,
    portable: bool,
) -> anyhow::Result<()> {
    let tool = componentize_py()?;
    let work = std::env::temp_dir().join(format!("modal-build-{}", std::process::id()));
    let _cleanup = super::common::RemoveOnDrop(work.clone());
    write_all(&work.join("sdk"), SDK)?;
    write_all(&work.join("wit"), WIT)?;
    std::fs::write(work.join("modal_entry.py"), entry)?;
    let building = super::progress::Spinner::or_line(label);
    let output = Command::new(&tool)
        .arg("-d")
        .arg(work.join("wit"))
        .arg("-w")
        .arg(if portable {
            "modal:app/portable-app"
        } else {
            "modal:app/app"
        })
        .args(["componentize", "-p"])
        .arg(app_dir)
        .arg("-p")
        .arg(work.join("sdk"))
        .arg("-p")
        .arg(&work)
        .arg("modal_entry")
        .arg("-o")
        .arg(out)
        .output()
        .with_context(|| format!("running {}", tool.display()))?;
    drop(building);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        eprint!("{stderr}");
        bail!("building {} failed: {}", what.display(), reason.trim());
    }
    Ok(())
}

/// Builds `app.py` into `out` (default: `app.wasm` beside it); returns the
/// component's path. `portable` leaves out the host's imports, `context`
/// and `invoke` (see `world portable-app`). Progress goes to stderr.
pub fn build(source: &Path, out: Option<&Path>, portable: bool) -> anyhow::Result<PathBuf> {
    let source = source
        .canonicalize()
        .with_context(|| format!("cannot read {}", source.display()))?;
    let module = module_name(&source)?;
    // Read first: a declaration the build cannot use fails before the
    // (long) componentize step.
    let mounts = declared_mounts(&source)?;
    let app_dir = source.parent().unwrap_or(Path::new("."));
    let out = out.map_or_else(|| source.with_extension("wasm"), Path::to_path_buf);
    let entry = format!(
        "import {module}  # registers the functions\nfrom modal._world import Function, Lifecycle, IncomingHandler{}\n",
        if portable { "" } else { ", Needs" }
    );
    let start = Instant::now();
    let label = format!("Building {} with componentize-py…", source.display());
    componentize(&source, label, &entry, app_dir, &out, portable)?;
    if !mounts.is_empty() {
        embed_mounts(&out, &mounts)?;
    }
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    esay!(
        "✓ Built {} ({:.1} MiB) in {:.1}s.",
        out.display(),
        size as f64 / (1 << 20) as f64,
        start.elapsed().as_secs_f64()
    );
    for (dir, path) in &mounts {
        eprintln!("  mounts {} at {path}", dir.display());
    }
    Ok(out)
}

/// The component for `path`: for a `.py` file, the one built from the same
/// sources before (componentize-py's output differs from build to build,
/// so reusing it is what lets an unchanged app hit the compiled-code
/// cache), else a new build; any other path is returned as it is.
/// Builds are kept under `builds/` of the state directory `state` (see
/// `state_dir`).
pub fn component(path: &Path, state: Option<&Path>) -> anyhow::Result<PathBuf> {
    if !super::common::is_python(path) {
        return Ok(path.to_path_buf());
    }
    let key = sources_key(path)?;
    let dir = super::common::state_dir(state)?.join("builds");
    modal_host::platform::state::private_dir(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let cached = dir.join(format!("{key}.wasm"));
    if cached.is_file() {
        esay!(
            "✓ {} is unchanged; using its earlier build.",
            path.display()
        );
        return Ok(cached);
    }
    let tmp = dir.join(format!(".{key}.{}.wasm", std::process::id()));
    build(path, Some(&tmp), false)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, &cached)?;
    Ok(cached)
}

/// A hash of everything a build depends on: the Python files beside the
/// module (and below, three levels deep), the SDK, the WIT and the tool.
fn sources_key(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let path = path
        .canonicalize()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    hasher.update(path.to_string_lossy().as_bytes());
    let mut files = Vec::new();
    collect_py(path.parent().unwrap_or(Path::new(".")), 3, &mut files);
    files.sort();
    for file in files {
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&file).unwrap_or_default());
    }
    for (name, text) in SDK.iter().chain(WIT) {
        hasher.update(name.as_bytes());
        hasher.update(text.as_bytes());
    }
    hasher.update(componentize_py()?.to_string_lossy().as_bytes());
    Ok(hex::encode(hasher.finalize()))
}

/// The `.py` files in `dir` and below (`depth` levels), skipping hidden
/// entries, `__pycache__` and virtual environments (a `pyvenv.cfg`).
pub(super) fn collect_py(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "__pycache__" {
            continue;
        }
        if path.is_dir() {
            if depth > 0 && !path.join("pyvenv.cfg").exists() {
                collect_py(&path, depth - 1, out);
            }
        } else if path.extension().is_some_and(|e| e == "py") {
            out.push(path);
        }
    }
}

/// The custom section in which a Python build records the mounts its app
/// declares, so `modal deploy app.wasm` finds them as `modal deploy app.py`
/// does.
const MOUNTS_SECTION: &str = "modal:mounts";

/// Reads the `Mount.from_local_dir(DIR, remote_path=PATH)` calls of a
/// Python module with Python's own parser (`ast`; the code is not run).
const FIND_MOUNTS: &str = r#"
import ast, json, sys
path = sys.argv[1]
tree = ast.parse(open(path, encoding="utf-8").read(), path)
found = []
for node in ast.walk(tree):
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "from_local_dir"):
        continue
    named = {k.arg: k.value for k in node.keywords}
    local = node.args[0] if node.args else named.get("local_path")
    remote = node.args[1] if len(node.args) > 1 else named.get("remote_path")
    literal = lambda v: isinstance(v, ast.Constant) and isinstance(v.value, str)
    if not (literal(local) and literal(remote)):
        sys.exit(f"{path}:{node.lineno}: Mount.from_local_dir takes its directory and "
                 "remote_path as string literals")
    found.append([local.value, remote.value])
print(json.dumps(found))
"#;

/// The Python interpreter that reads modules with `ast`: the one beside
/// componentize-py (its venv), else `python3`.
pub(super) fn interpreter() -> PathBuf {
    componentize_py()
        .ok()
        .and_then(|tool| Some(tool.parent()?.join("python3")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// The mounts the module `source` declares, directories resolved against
/// the module's own directory and checked as `--mount` checks them.
pub fn declared_mounts(source: &Path) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let text = std::fs::read_to_string(source)
        .with_context(|| format!("cannot read {}", source.display()))?;
    if !text.contains("from_local_dir") {
        return Ok(Vec::new());
    }
    let python = interpreter();
    let output = Command::new(&python)
        .args(["-c", FIND_MOUNTS])
        .arg(source)
        .output()
        .with_context(|| format!("running {} to read the mounts", python.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "{}",
            stderr.lines().last().unwrap_or("reading the mounts failed")
        );
    }
    let found: Vec<(String, String)> =
        serde_json::from_slice(&output.stdout).context("reading the mounts the module declares")?;
    let base = source.parent().unwrap_or(Path::new("."));
    found
        .into_iter()
        .map(|(dir, path)| {
            let dir = base.join(dir);
            super::common::parse_mount(&format!("{}:{path}", dir.display()))
                .map_err(|e| anyhow::anyhow!("{}: Mount.from_local_dir: {e}", source.display()))
        })
        .collect()
}

/// Records `mounts` in the component at `wasm` (a custom section).
fn embed_mounts(wasm: &Path, mounts: &[(PathBuf, String)]) -> anyhow::Result<()> {
    let dirs: Vec<(String, &str)> = mounts
        .iter()
        .map(|(dir, path)| {
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            (dir.display().to_string(), path.as_str())
        })
        .collect();
    let section = wasm_encoder::CustomSection {
        name: MOUNTS_SECTION.into(),
        data: serde_json::to_vec(&dirs)?.into(),
    };
    let mut bytes = std::fs::read(wasm)?;
    // A custom section may follow the others at the top level of a
    // component: its id, then its size, name and data.
    bytes.push(wasm_encoder::ComponentSectionId::CoreCustom as u8);
    wasm_encoder::Encode::encode(&section, &mut bytes);
    std::fs::write(wasm, bytes).with_context(|| format!("writing {}", wasm.display()))
}

/// The mounts a Python build recorded in component `wasm` (none for other
/// components).
pub fn embedded_mounts(wasm: &[u8]) -> anyhow::Result<Vec<(PathBuf, String)>> {
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else { break };
        match payload {
            wasmparser::Payload::CustomSection(c) if c.name() == MOUNTS_SECTION => {
                let dirs: Vec<(PathBuf, String)> = serde_json::from_slice(c.data())
                    .context("the component's mounts section is not valid")?;
                return Ok(dirs);
            }
            _ => {}
        }
    }
    Ok(Vec::new())
}

/// `explicit` (`--mount`) and then the mounts `wasm` records, except
/// those at a path `explicit` already mounts: a flag overrides the code.
pub fn with_declared_mounts(
    explicit: &[(PathBuf, String)],
    wasm: &[u8],
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut all = explicit.to_vec();
    for (dir, path) in embedded_mounts(wasm)? {
        if !all.iter().any(|(_, p)| *p == path) {
            if !dir.is_dir() {
                bail!(
                    "the app mounts {} at {path}, which is not a directory here",
                    dir.display()
                );
            }
            all.push((dir, path));
        }
    }
    Ok(all)
}
