//! Building a Rust guest crate: `cargo build --release --target
//! wasm32-wasip2` in the crate's directory, with the compiler's messages
//! shown as cargo renders them, and the component it produced found in
//! cargo's own report of its artifacts (so a crate inside a workspace, or
//! with its own target directory, needs no guessing).

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The target a guest crate is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Whether `dir` is a crate directory (it holds a `Cargo.toml`).
pub fn is_crate(dir: &Path) -> bool {
    dir.is_dir() && dir.join("Cargo.toml").is_file()
}

/// A guest crate: its directory and where cargo writes its build outputs.
#[derive(Clone, Debug)]
pub struct GuestCrate {
    /// The directory holding `Cargo.toml`.
    pub dir: PathBuf,
    /// Cargo's target directory for it (inside `dir` for a crate of its
    /// own, the workspace's otherwise); changes there are build outputs.
    pub target_dir: PathBuf,
    /// The package's name.
    pub name: String,
}

/// What `cargo metadata` says of the package and the workspace.
#[derive(serde::Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    target_directory: PathBuf,
}

#[derive(serde::Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
}

#[derive(serde::Deserialize)]
struct Target {
    crate_types: Vec<String>,
}

/// One line of `cargo build --message-format json`: only artifacts matter.
#[derive(serde::Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    filenames: Vec<PathBuf>,
    #[serde(default)]
    target: Option<Target>,
}

impl GuestCrate {
    /// Reads the crate at `dir` (which must be a `cdylib`, the crate type
    /// a component is built from).
    pub fn open(dir: &Path) -> anyhow::Result<GuestCrate> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot read {}", dir.display()))?;
        let manifest = dir.join("Cargo.toml");
        let output = Command::new(cargo())
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--manifest-path",
            ])
            .arg(&manifest)
            .stderr(Stdio::piped())
            .output()
            .context("running cargo metadata (is cargo installed?)")?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            bail!(
                "cargo cannot read {}: {}",
                manifest.display(),
                last_line(&stderr)
            );
        }
        let metadata: Metadata =
            serde_json::from_slice(&output.stdout).context("reading cargo metadata's output")?;
        let package = metadata
            .packages
            .into_iter()
            .find(|p| p.manifest_path == manifest)
            .with_context(|| {
                format!(
                    "{} is a workspace without a package of its own; serve one of its members",
                    manifest.display()
                )
            })?;
        if !package
            .targets
            .iter()
            .any(|t| t.crate_types.iter().any(|c| c == "cdylib"))
        {
            bail!(
                "{} builds no cdylib; a guest needs `[lib] crate-type = [\"cdylib\"]` in its Cargo.toml",
                package.name
            );
        }
        Ok(GuestCrate {
            dir,
            target_dir: metadata.target_directory,
            name: package.name,
        })
    }

    /// Builds the crate in release mode for [`TARGET`]; cargo's progress
    /// and the compiler's messages go to stderr as cargo renders them.
    /// Returns the component's path.
    pub fn build(&self) -> anyhow::Result<PathBuf> {
        let mut child = Command::new(cargo())
            .args(["build", "--release", "--target", TARGET])
            .args(["--message-format", "json-render-diagnostics"])
            .arg("--manifest-path")
            .arg(self.dir.join("Cargo.toml"))
            .current_dir(&self.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("running cargo build (is cargo installed?)")?;
        let stdout = child.stdout.take().context("cargo's output")?;
        let mut component = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(message) = serde_json::from_str::<Message>(&line?) else {
                continue;
            };
            let is_cdylib = message
                .target
                .is_some_and(|t| t.crate_types.iter().any(|c| c == "cdylib"));
            if message.reason == "compiler-artifact" && is_cdylib {
                component = message
                    .filenames
                    .into_iter()
                    .find(|f| f.extension().is_some_and(|e| e == "wasm"));
            }
        }
        let status = child.wait().context("waiting for cargo build")?;
        if !status.success() {
            bail!("cargo build of {} failed (its errors are above)", self.name);
        }
        component.with_context(|| {
            format!(
                "cargo built {} but reported no .wasm component (is the {TARGET} target installed? `rustup target add {TARGET}`)",
                self.name
            )
        })
    }

    /// Whether a change at `path` can change the build: anything under the
    /// crate's directory but build outputs and hidden files (editors'
    /// swap files, `.git`).
    pub fn is_source(&self, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(&self.dir) else {
            return false;
        };
        !path.starts_with(&self.target_dir)
            && !relative.components().any(|c| {
                let name = c.as_os_str().to_string_lossy();
                name.starts_with('.') || name.ends_with('~') || name == "target"
            })
    }
}

/// The cargo on `PATH` (rustup's proxy picks the toolchain the crate
/// pins in its `rust-toolchain.toml`).
fn cargo() -> &'static str {
    "cargo"
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output")
}
