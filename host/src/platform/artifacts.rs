//! The content-addressed store of components. [`ArtifactStore`] is the
//! narrow interface (a cluster would use object storage); [`FileArtifacts`]
//! keeps one file per SHA-256 in a directory.

use crate::compile::digest;
use crate::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where component bytes are kept, by their SHA-256.
pub trait ArtifactStore: Send + Sync + 'static {
    /// Stores `bytes` under `digest` (their SHA-256); idempotent.
    fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), Error>;
    /// The bytes stored under `digest`, checked against it.
    fn get(&self, digest: &str) -> Result<Vec<u8>, Error>;
    /// Every stored digest.
    fn list(&self) -> Result<Vec<String>, Error>;
    /// Deletes what is stored under `digest`.
    fn delete(&self, digest: &str) -> Result<(), Error>;
}

/// Artifacts as files `{dir}/{sha256}.wasm`.
pub struct FileArtifacts {
    dir: PathBuf,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

impl FileArtifacts {
    /// A store in `dir` (created if needed).
    pub fn open(dir: &Path) -> Result<FileArtifacts, Error> {
        super::state::private_dir(dir).map_err(io(format!("creating {}", dir.display())))?;
        Ok(FileArtifacts {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, digest: &str) -> Result<PathBuf, Error> {
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Internal(format!(
                "`{digest}` is not a SHA-256 digest"
            )));
        }
        Ok(self.dir.join(format!("{digest}.wasm")))
    }
}

impl ArtifactStore for FileArtifacts {
    fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), Error> {
        let path = self.path(digest)?;
        if path.exists() {
            return Ok(());
        }
        // Write, sync, then rename: a crash never leaves a partial artifact
        // under its final name.
        let tmp = self
            .dir
            .join(format!(".{digest}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = super::state::private_file(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(io(format!("storing artifact {digest}")))
    }

    fn get(&self, wanted: &str) -> Result<Vec<u8>, Error> {
        let path = self.path(wanted)?;
        let bytes =
            std::fs::read(&path).map_err(io(format!("reading artifact {}", path.display())))?;
        let actual = digest(&bytes);
        if actual != wanted {
            return Err(Error::Internal(format!(
                "artifact {wanted} is corrupt (its content hashes to {actual})"
            )));
        }
        Ok(bytes)
    }

    fn list(&self) -> Result<Vec<String>, Error> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(io(format!("listing {}", self.dir.display())))?;
        Ok(entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let digest = name.strip_suffix(".wasm")?;
                (digest.len() == 64).then(|| digest.to_string())
            })
            .collect())
    }

    fn delete(&self, digest: &str) -> Result<(), Error> {
        let path = self.path(digest)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io(format!("deleting {}", path.display()))(e))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileArtifacts::open(dir.path()).unwrap();
        let d = digest(b"component");
        store.put(&d, b"component").unwrap();
        store.put(&d, b"component").unwrap();
        assert_eq!(store.get(&d).unwrap(), b"component");
        assert_eq!(store.list().unwrap(), std::slice::from_ref(&d));
        std::fs::write(dir.path().join(format!("{d}.wasm")), b"tampered").unwrap();
        assert!(store.get(&d).unwrap_err().to_string().contains("corrupt"));
        store.delete(&d).unwrap();
        store.delete(&d).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(store.get("../etc").is_err());
    }
}
