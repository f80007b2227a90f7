//! Builds every example guest for `wasm32-wasip2` once per test run (one
//! cargo invocation for the whole examples workspace) and exposes their
//! paths to `src/lib.rs`.

use std::path::PathBuf;

#[path = "src/guests.rs"]
mod guests;

/// The example apps, by crate name.
const EXAMPLES: &[&str] = &[
    "hello",
    "fanout",
    "state",
    "site",
    "config",
    "podcasts",
    "counter",
    "cron",
    "faulty",
    "http-plain",
    "fetch",
    "bad-schedule",
    "json-api",
    "async-fetch",
];

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("the repository root exists");
    let examples = root.join("examples");
    let target_dir = root.join("target").join("guests");
    for watched in ["examples", "guest-sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = guests::build_command(&cargo, &root, &examples)
        .status()
        .expect("running cargo to build the example guests");
    if !status.success() {
        panic!(
            "building the example guests failed ({status}); run `cargo build --release --target wasm32-wasip2` in {} to see why",
            examples.display()
        );
    }
    let out = target_dir.join("wasm32-wasip2").join("release");
    for name in EXAMPLES {
        let file = out.join(format!("{}.wasm", name.replace('-', "_")));
        assert!(
            file.exists(),
            "the build did not produce {}",
            file.display()
        );
        let var = format!(
            "MODAL_EXAMPLE_{}",
            name.to_ascii_uppercase().replace('-', "_")
        );
        println!("cargo:rustc-env={var}={}", file.display());
    }
}
