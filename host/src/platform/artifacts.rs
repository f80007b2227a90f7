//! The content-addressed store of components. [`ArtifactStore`] is the
//! narrow interface (a cluster would use object storage); [`FileArtifacts`]
//! keeps one file per SHA-256 in a directory.

use crate::compile::digest;
use crate::error::Error;
use bytes::Bytes;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where component bytes (and mount archives) are kept, by their SHA-256.
#[async_trait::async_trait]
pub trait ArtifactStore: Send + Sync + 'static {
    /// Stores `bytes` under `digest` (their SHA-256), durably; idempotent.
    async fn put(&self, digest: &str, bytes: Bytes) -> Result<(), Error>;
    /// The bytes stored under `digest`, checked against it.
    async fn get(&self, digest: &str) -> Result<Bytes, Error>;
    /// The digests stored, or stored again, before `before` (Unix ms; the
    /// newer ones may belong to a deploy in progress on some host).
    async fn list(&self, before: u64) -> Result<Vec<String>, Error>;
    /// Deletes what is stored under `digest`.
    async fn delete(&self, digest: &str) -> Result<(), Error>;
    /// Whether something is stored under `digest`.
    async fn exists(&self, digest: &str) -> Result<bool, Error> {
        Ok(self.list(u64::MAX).await?.iter().any(|d| d == digest))
    }
}

/// Artifacts as files `{dir}/{sha256}.wasm`; file work runs on tokio's
/// blocking pool.
pub struct FileArtifacts {
    dir: Arc<Path>,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::storage(context, source)
}

/// Runs blocking file work off the runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::storage("artifacts", e))?
}

impl FileArtifacts {
    /// A store in `dir` (created if needed).
    pub fn open(dir: &Path) -> Result<FileArtifacts, Error> {
        super::state::private_dir(dir).map_err(io(format!("creating {}", dir.display())))?;
        Ok(FileArtifacts { dir: dir.into() })
    }

    fn path(&self, digest: &str) -> Result<PathBuf, Error> {
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::storage(
                "artifacts",
                format!("`{digest}` is not a SHA-256 digest"),
            ));
        }
        Ok(self.dir.join(format!("{digest}.wasm")))
    }
}

#[async_trait::async_trait]
impl ArtifactStore for FileArtifacts {
    async fn put(&self, digest: &str, bytes: Bytes) -> Result<(), Error> {
        let path = self.path(digest)?;
        // Write, sync, then rename: a crash never leaves a partial artifact
        // under its final name.
        // Its own name: two deploys of the same component (as two apps)
        // may store it at once.
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| Error::storage("artifacts", e.to_string()))?;
        let tmp = self
            .dir
            .join(format!(".{digest}.{}.tmp", hex::encode(nonce)));
        let context = format!("storing artifact {digest}");
        blocking(move || {
            if path.exists() {
                // Stored again: as new for garbage collection.
                let touch = std::fs::File::open(&path)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                return touch.map_err(io(context));
            }
            let write = || -> std::io::Result<()> {
                let mut file = super::state::private_file(&tmp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)
            };
            write().map_err(io(context))
        })
        .await
    }

    async fn get(&self, wanted: &str) -> Result<Bytes, Error> {
        let path = self.path(wanted)?;
        let wanted = wanted.to_string();
        blocking(move || {
            let bytes =
                std::fs::read(&path).map_err(io(format!("reading artifact {}", path.display())))?;
            let actual = digest(&bytes);
            if actual != wanted {
                return Err(Error::storage(
                    format!("artifact {wanted}"),
                    format!("corrupt: its content hashes to {actual}"),
                ));
            }
            Ok(Bytes::from(bytes))
        })
        .await
    }

    async fn list(&self, before: u64) -> Result<Vec<String>, Error> {
        let dir = self.dir.clone();
        let before = std::time::UNIX_EPOCH + std::time::Duration::from_millis(before);
        blocking(move || {
            let entries =
                std::fs::read_dir(&dir).map_err(io(format!("listing {}", dir.display())))?;
            Ok(entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let digest = name.strip_suffix(".wasm")?;
                    let stored = e.metadata().and_then(|m| m.modified()).ok()?;
                    (digest.len() == 64 && stored < before).then(|| digest.to_string())
                })
                .collect())
        })
        .await
    }

    async fn exists(&self, digest: &str) -> Result<bool, Error> {
        let path = self.path(digest)?;
        tokio::task::spawn_blocking(move || path.is_file())
            .await
            .map_err(|e| Error::storage("artifacts", e))
    }

    async fn delete(&self, digest: &str) -> Result<(), Error> {
        let path = self.path(digest)?;
        blocking(move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io(format!("deleting {}", path.display()))(e))
            }
            _ => Ok(()),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn artifacts_round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileArtifacts::open(dir.path()).unwrap();
        let d = digest(b"component");
        let bytes = Bytes::from_static(b"component");
        store.put(&d, bytes.clone()).await.unwrap();
        store.put(&d, bytes.clone()).await.unwrap();
        assert_eq!(store.get(&d).await.unwrap(), bytes);
        assert_eq!(
            store.list(u64::MAX).await.unwrap(),
            std::slice::from_ref(&d)
        );
        std::fs::write(dir.path().join(format!("{d}.wasm")), b"tampered").unwrap();
        let e = store.get(&d).await.unwrap_err();
        assert!(matches!(e, Error::Storage { .. }), "{e:?}");
        assert!(e.to_string().contains("corrupt"), "{e}");
        store.delete(&d).await.unwrap();
        store.delete(&d).await.unwrap();
        assert!(store.list(u64::MAX).await.unwrap().is_empty());
        assert!(store.get("../etc").await.is_err());
    }
}
