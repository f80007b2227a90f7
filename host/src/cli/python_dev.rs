//! The development build of a Python app, for `modal serve app.py`: a
//! component whose snapshot holds the interpreter, the SDK and every
//! module the app imports from elsewhere, but not the app's own modules.
//! Those are read at instance start from a read-only mount of the app's
//! sources (`modal/_dev.py` in the SDK), so an edit is served by packing
//! the sources again and deploying the same component: its compiled code
//! is cached, and no componentize-py run or compile stands between a save
//! and the new version. The build is made again only when the set of
//! modules the app imports from elsewhere changes (componentize-py cannot
//! import a module at run time that its snapshot lacks).
//!
//! Deployed builds (`modal deploy app.py`) stay whole snapshots.

use super::python::{SDK, WIT, collect_py, componentize, componentize_py, interpreter};
use anyhow::{Context, bail};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Where the app's sources are mounted in the guest.
pub const APP_PATH: &str = "/modal/app";

/// Modules imported into every development build besides the app's own
/// imports: the standard library's common ones, so that an edit that
/// starts using one of them needs no new build.
const COMMON_MODULES: &[&str] = &[
    "base64",
    "bisect",
    "calendar",
    "collections",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "enum",
    "fractions",
    "functools",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "itertools",
    "json",
    "math",
    "operator",
    "random",
    "re",
    "secrets",
    "statistics",
    "string",
    "struct",
    "textwrap",
    "time",
    "typing",
    "unicodedata",
    "urllib.parse",
    "uuid",
    "zlib",
];

/// Lists the modules the Python files of a directory import from outside
/// it (not its own modules or packages, not `modal`), sorted; files that
/// do not parse are skipped (importing them reports the error).
const FIND_IMPORTS: &str = r#"
import ast, json, os, sys
root = sys.argv[1]
def wanted(entry):
    return not entry.name.startswith(".") and entry.name != "__pycache__"
def walk(d, depth):
    for e in sorted(os.scandir(d), key=lambda e: e.name):
        if not wanted(e):
            continue
        if e.is_dir():
            if depth > 0 and not os.path.exists(os.path.join(e.path, "pyvenv.cfg")):
                yield from walk(e.path, depth - 1)
        elif e.name.endswith(".py"):
            yield e.path
local = {"modal"}
for e in os.scandir(root):
    if wanted(e):
        local.add(e.name[:-3] if e.name.endswith(".py") else e.name)
found = set()
for path in walk(root, 3):
    try:
        tree = ast.parse(open(path, "rb").read(), path)
    except (SyntaxError, ValueError):
        continue
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if a.name != "*"]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] not in local)
print(json.dumps(sorted(found)))
"#;

/// The modules the app in `dir` imports from elsewhere.
fn outside_imports(dir: &Path) -> anyhow::Result<Vec<String>> {
    let python = interpreter();
    let output = Command::new(&python)
        .args(["-c", FIND_IMPORTS])
        .arg(dir)
        .output()
        .with_context(|| format!("running {} to read the app's imports", python.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "reading the imports of {} failed: {}",
            dir.display(),
            stderr.lines().last().unwrap_or("no output")
        );
    }
    serde_json::from_slice(&output.stdout).context("reading the app's imports")
}

/// The entry module of a development build of `module`: imports
/// `modules` (each may fail: a name from `from x import y` may be no
/// module) and exports `_dev`'s classes.
fn entry(module: &str, modules: &[String]) -> String {
    let list = modules
        .iter()
        .map(|m| format!("{m:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "import importlib\n\
         for _name in [{list}]:\n    \
             try:\n        \
                 importlib.import_module(_name)\n    \
             except Exception:\n        \
                 pass\n\
         import modal._dev as _dev\n\
         _dev.MODULE = {module:?}\n\
         _dev.APP_DIR = {APP_PATH:?}\n\
         from modal._dev import Function, Lifecycle, IncomingHandler, Needs\n"
    )
}

/// The development build for the module `source` (a `.py` file): one
/// from `builds/` in the state directory whose snapshot holds every module
/// the app imports from elsewhere (and those of `known`, the modules seen
/// before in this session, so that a file that does not parse for a moment
/// costs no build), else a new one. `known` grows by the modules found.
pub fn component(
    source: &Path,
    state: Option<&Path>,
    known: &mut BTreeSet<String>,
) -> anyhow::Result<PathBuf> {
    let source = source
        .canonicalize()
        .with_context(|| format!("cannot read {}", source.display()))?;
    let module = super::python::module_name(&source)?.to_string();
    let app_dir = source.parent().unwrap_or(Path::new("/"));
    known.extend(COMMON_MODULES.iter().map(|m| m.to_string()));
    known.extend(outside_imports(app_dir)?);
    // Builds of the same SDK, WIT, tool and module share a prefix; each
    // lists the modules its snapshot holds beside it.
    let prefix = {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(entry(&module, &[]).as_bytes());
        for (name, file) in SDK.iter().chain(WIT) {
            hasher.update(name.as_bytes());
            hasher.update(file.as_bytes());
        }
        hasher.update(componentize_py()?.to_string_lossy().as_bytes());
        format!("dev-{}", &hex::encode(hasher.finalize())[..16])
    };
    let dir = super::common::state_dir(state)?.join("builds");
    modal_host::platform::state::private_dir(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    if let Some(found) = covering_build(&dir, &prefix, known) {
        return Ok(found);
    }
    let modules: Vec<String> = known.iter().cloned().collect();
    let text = entry(&module, &modules);
    let key = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(text.as_bytes()))
    };
    let name = format!("{prefix}-{}", &key[..16]);
    let start = Instant::now();
    let tmp = dir.join(format!(".{name}.{}.wasm", std::process::id()));
    // An empty directory stands for the app's: its modules must not be in
    // the snapshot.
    let empty = dir.join(format!(".empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty)?;
    let _cleanup = super::common::RemoveOnDrop(empty.clone());
    let label = format!(
        "Building the development component for {} (again only when it imports new modules)…",
        source.display()
    );
    componentize(&source, label, &text, &empty, &tmp, false)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    let wasm = dir.join(format!("{name}.wasm"));
    std::fs::rename(&tmp, &wasm)?;
    // The list last: a build without one is never picked.
    let list = dir.join(format!("{name}.json"));
    std::fs::write(&list, serde_json::to_vec(&modules)?)
        .with_context(|| format!("writing {}", list.display()))?;
    esay!(
        "✓ Built the development component in {:.1}s.",
        start.elapsed().as_secs_f64()
    );
    Ok(wasm)
}

/// A build in `dir` named `{prefix}-*` whose modules include `needed`:
/// the newest such.
fn covering_build(dir: &Path, prefix: &str, needed: &BTreeSet<String>) -> Option<PathBuf> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(prefix) && name.ends_with(".json")) {
            continue;
        }
        let wasm = path.with_extension("wasm");
        let Ok(list) = std::fs::read(&path) else {
            continue;
        };
        let Ok(modules) = serde_json::from_slice::<BTreeSet<String>>(&list) else {
            continue;
        };
        let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        if wasm.is_file()
            && modules.is_superset(needed)
            && best.as_ref().is_none_or(|(t, _)| modified > *t)
        {
            best = Some((modified, wasm));
        }
    }
    best.map(|(_, wasm)| wasm)
}

/// Copies the app's Python sources (the `.py` files beside `source` and
/// below, as a build takes them) into `to`, emptied first: the directory
/// mounted at [`APP_PATH`].
pub fn stage_sources(source: &Path, to: &Path) -> anyhow::Result<()> {
    let source = source
        .canonicalize()
        .with_context(|| format!("cannot read {}", source.display()))?;
    let app_dir = source.parent().unwrap_or(Path::new("/"));
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("emptying {}", to.display()))?;
    }
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let mut files = Vec::new();
    collect_py(app_dir, 3, &mut files);
    for file in files {
        let Ok(relative) = file.strip_prefix(app_dir) else {
            continue;
        };
        let target = to.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&file, &target).with_context(|| format!("copying {}", file.display()))?;
    }
    Ok(())
}
