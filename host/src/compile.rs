//! Checking that bytes are a component, compiling them, and the on-disk
//! cache of compiled code keyed by content hash and engine.

use crate::error::Error;
use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The hex SHA-256 of a component's bytes: its identity in stores and caches.
pub(crate) fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Rejects bytes that are not a WebAssembly component, with a message that
/// says what they are instead.
pub(crate) fn check_component_bytes(bytes: &[u8]) -> Result<(), Error> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        let what = if bytes.is_empty() {
            "the file is empty".to_string()
        } else if std::str::from_utf8(&bytes[..bytes.len().min(512)]).is_ok() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]);
            let start = text.trim_start();
            if start.starts_with("(component") || start.starts_with("(module") {
                "it is WebAssembly text (.wat); compile it to binary first".to_string()
            } else {
                "it looks like a text file".to_string()
            }
        } else {
            "it does not start with the `\\0asm` magic number".to_string()
        };
        return Err(Error::NotWasm(what));
    }
    // Bytes 4..8: version (2 bytes) then layer (2 bytes); layer 1 is a
    // component, layer 0 a core module.
    match (&bytes[4..6], &bytes[6..8]) {
        (_, [1, 0]) => Ok(()),
        ([1, 0], [0, 0]) => Err(Error::CoreModule),
        _ => Err(Error::NotWasm(format!(
            "unknown WebAssembly version/layer {:02x?}",
            &bytes[4..8]
        ))),
    }
}

/// How a component was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileStats {
    /// True when compiled code came from the cache (no compilation).
    pub cached: bool,
    /// Time spent compiling or loading compiled code.
    pub elapsed: Duration,
}

/// Compiles components, through the cache when there is one.
pub(crate) struct Compiler {
    engine: Engine,
    cache: Option<PathBuf>,
    compilations: AtomicU64,
}

impl Compiler {
    pub(crate) fn new(engine: Engine, cache_root: Option<&Path>) -> Self {
        let cache = cache_root.map(|root| root.join(engine_key(&engine)));
        Compiler {
            engine,
            cache,
            compilations: AtomicU64::new(0),
        }
    }

    /// Components compiled (not loaded from cache) since the host started.
    pub(crate) fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// Where compiled code for `digest` is cached, if caching is on.
    pub(crate) fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        self.cache
            .as_ref()
            .map(|dir| dir.join(format!("{digest}.cwasm")))
    }

    /// The compiled component for `bytes` (checked first), from the cache
    /// when possible. Blocking: compilation takes milliseconds to seconds.
    pub(crate) fn load(
        &self,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(Component, CompileStats), Error> {
        check_component_bytes(bytes)?;
        let start = Instant::now();
        if let Some(path) = self.cache_path(digest)
            && path.exists()
        {
            match deserialize(&self.engine, &path) {
                Ok(component) => {
                    let stats = CompileStats {
                        cached: true,
                        elapsed: start.elapsed(),
                    };
                    return Ok((component, stats));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), "discarding unusable compiled code: {e:#}");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| Error::InvalidComponent(one_line(&format!("{e:#}"))))?;
        self.compilations.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = self.cache_path(digest)
            && let Err(e) = store(&component, &path)
        {
            tracing::warn!(path = %path.display(), "could not cache compiled code: {e}");
        }
        let stats = CompileStats {
            cached: false,
            elapsed: start.elapsed(),
        };
        Ok((component, stats))
    }
}

/// Compiled code is only valid for an engine with the same settings and
/// wasmtime version; the cache keeps one folder per such engine.
fn engine_key(engine: &Engine) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("wasmtime-{:016x}", h.finish())
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file was written by `store` below from
    // `Component::serialize` into the host's private state directory, and
    // wasmtime checks its header against this engine before using it.
    unsafe { Component::deserialize_file(engine, path) }
}

fn store(component: &Component, path: &Path) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::platform::state::private_dir(dir)?;
    // Write then rename, so a crash never leaves a half-written file that
    // a later start would try to load.
    let tmp = dir.join(format!(
        ".tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::io::Write::write_all(&mut crate::platform::state::private_file(&tmp)?, &bytes)?;
    std::fs::rename(&tmp, path)
}

/// Folds a multi-line wasmtime error into one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_files_and_core_modules_are_named() {
        let e = check_component_bytes(b"hello there\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "not a WebAssembly file: it looks like a text file"
        );
        let e = check_component_bytes(b"(module)").unwrap_err();
        assert!(e.to_string().contains("WebAssembly text"), "{e}");
        let e = check_component_bytes(b"").unwrap_err();
        assert_eq!(e.to_string(), "not a WebAssembly file: the file is empty");
        let e = check_component_bytes(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(matches!(e, Error::CoreModule));
        check_component_bytes(b"\0asm\x0d\0\x01\0").unwrap();
    }
}
