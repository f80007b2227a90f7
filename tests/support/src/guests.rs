//! The cargo command that builds guest crates for `wasm32-wasip2` into
//! `target/guests`: the examples (by this crate's build script, which
//! includes this file) and the guests of the golden compile errors (by
//! `tests/ui`), so that both share one build of the dependencies.

use std::path::Path;
use std::process::Command;

/// `cargo build --release --target wasm32-wasip2` of the crate or
/// workspace in `dir`, into `{root}/target/guests`, without the settings
/// meant for the host's build.
pub fn build_command(cargo: &str, root: &Path, dir: &Path) -> Command {
    let mut command = Command::new(cargo);
    // A directory of its own: the outer cargo holds the lock of its build
    // directory, so a nested build there would wait forever.
    command
        .current_dir(dir)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(root.join("target").join("guests"));
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        command.env_remove(var);
    }
    command
}
