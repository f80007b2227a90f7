//! Mounts: a local directory packed at deploy into a tar archive
//! ([`pack_dir`], deterministic, so an unchanged directory has the same
//! SHA-256 and is uploaded once), stored as an artifact, recorded with the
//! version (a rollback brings its files back, garbage collection removes
//! it with the last version that names it), unpacked once per host under
//! `mounts/` in the state directory and seen by the guest read-only.
//!
//! Only regular files and directories travel. A symlink is followed when
//! it stays inside the directory and refused when it leaves it; sockets,
//! devices and pipes are refused. The server checks the archive again on
//! upload: it trusts no client.

use super::Platform;
use crate::Mount;
use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// A mount as a version records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// The archive's SHA-256 (an artifact).
    pub digest: String,
    /// Where the guest sees it, e.g. `/assets`.
    pub path: String,
    /// The local directory it was packed from, as given (for display).
    pub source: String,
    /// Files in it.
    pub files: u64,
    /// Bytes of its files.
    pub bytes: u64,
}

/// What an uploaded archive holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// Its SHA-256.
    pub digest: String,
    /// Files in it.
    pub files: u64,
    /// Bytes of its files.
    pub bytes: u64,
}

fn bad(message: String) -> Error {
    Error::BadInput(message)
}

/// Packs `dir` into a tar archive of its regular files and directories,
/// in name order, with fixed times, owners and modes.
pub fn pack_dir(dir: &Path) -> Result<Vec<u8>, Error> {
    let root = dir
        .canonicalize()
        .map_err(|e| bad(format!("cannot read {}: {e}", dir.display())))?;
    if !root.is_dir() {
        return Err(bad(format!("{} is not a directory", dir.display())));
    }
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    add_dir(&mut builder, &root, &root, dir)?;
    builder
        .into_inner()
        .map_err(|e| Error::Internal(format!("packing {}: {e}", dir.display())))
}

fn add_dir(
    builder: &mut tar::Builder<Vec<u8>>,
    root: &Path,
    here: &Path,
    shown: &Path,
) -> Result<(), Error> {
    let read = |e: std::io::Error| bad(format!("cannot read {}: {e}", here.display()));
    let mut entries: Vec<_> = std::fs::read_dir(here)
        .map_err(read)?
        .collect::<Result<_, _>>()
        .map_err(read)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let relative = path.strip_prefix(root).unwrap_or(&path);
        let named = shown.join(relative);
        let meta = std::fs::symlink_metadata(&path).map_err(read)?;
        let target = if meta.file_type().is_symlink() {
            let target = path
                .canonicalize()
                .map_err(|_| bad(format!("{} is a broken symlink", named.display())))?;
            if !target.starts_with(root) {
                return Err(bad(format!(
                    "{} is a symlink that leaves the directory",
                    named.display()
                )));
            }
            target
        } else {
            path.clone()
        };
        let meta = std::fs::metadata(&target).map_err(read)?;
        if meta.is_dir() {
            builder
                .append_dir(relative, &target)
                .map_err(|e| Error::Internal(format!("packing {}: {e}", named.display())))?;
            add_dir(builder, root, &target, &shown.join(relative))?;
        } else if meta.is_file() {
            builder
                .append_path_with_name(&target, relative)
                .map_err(|e| Error::Internal(format!("packing {}: {e}", named.display())))?;
        } else {
            return Err(bad(format!(
                "{} is not a regular file or directory (sockets, devices and pipes cannot be mounted)",
                named.display()
            )));
        }
    }
    Ok(())
}

/// An archive entry: its relative path, and its contents (`None` for a
/// directory).
type Entry = (PathBuf, Option<Vec<u8>>);

/// Every entry of an archive, checked.
fn entries(archive: &[u8]) -> Result<Vec<Entry>, Error> {
    let invalid = |why: String| bad(format!("the mount archive is invalid: {why}"));
    let mut out = Vec::new();
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries().map_err(|e| invalid(e.to_string()))? {
        let mut entry = entry.map_err(|e| invalid(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| invalid(e.to_string()))?
            .into_owned();
        if path.as_os_str().is_empty()
            || !path.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(invalid(format!(
                "`{}` leaves the directory",
                path.display()
            )));
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => out.push((path, None)),
            tar::EntryType::Regular => {
                let mut bytes = Vec::new();
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| invalid(e.to_string()))?;
                out.push((path, Some(bytes)));
            }
            other => {
                return Err(invalid(format!(
                    "`{}` is a {other:?}, not a file or directory",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

/// Writes the checked entries of `archive` under `dir` (which must not
/// exist yet).
fn unpack(archive: &[u8], dir: &Path) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::Io {
        context: format!("unpacking a mount into {}", dir.display()),
        source: e,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    for (path, contents) in entries(archive)? {
        let target = dir.join(&path);
        match contents {
            None => std::fs::create_dir_all(&target).map_err(io)?,
            Some(bytes) => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                std::fs::write(&target, bytes).map_err(io)?;
            }
        }
    }
    Ok(())
}

/// Checks a mount archive and says what it holds.
pub fn archive_info(archive: &[u8]) -> Result<ArchiveInfo, Error> {
    let files = entries(archive)?;
    Ok(ArchiveInfo {
        digest: crate::compile::digest(archive),
        files: files.iter().filter(|(_, c)| c.is_some()).count() as u64,
        bytes: files
            .iter()
            .filter_map(|(_, c)| c.as_ref())
            .map(|c| c.len() as u64)
            .sum(),
    })
}

impl Platform {
    /// Checks and stores a mount archive; returns its digest and contents.
    pub async fn put_archive(&self, archive: bytes::Bytes) -> Result<ArchiveInfo, Error> {
        self.check_upload(archive.len())?;
        let info = archive_info(&archive)?;
        if !self.inner.artifacts.exists(&info.digest).await? {
            self.inner.artifacts.put(&info.digest, archive).await?;
        }
        Ok(info)
    }

    /// Whether the archive with this digest is stored (so a client need
    /// not upload it again).
    pub async fn has_archive(&self, digest: &str) -> Result<bool, Error> {
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        self.inner.artifacts.exists(digest).await
    }

    /// The directories of `mounts`, unpacked under the state directory
    /// when this host has not done so yet.
    pub(super) async fn mount_dirs(&self, mounts: &[MountRecord]) -> Result<Vec<Mount>, Error> {
        let mut dirs = Vec::with_capacity(mounts.len());
        for m in mounts {
            let dir = self.inner.mounts_dir.join(&m.digest);
            if !dir.is_dir() {
                let archive = self.inner.artifacts.get(&m.digest).await?;
                let (root, digest) = (self.inner.mounts_dir.clone(), m.digest.clone());
                tokio::task::spawn_blocking(move || {
                    // Unpacked aside, then renamed: a crash leaves no half.
                    let mut suffix = [0u8; 6];
                    let _ = getrandom::fill(&mut suffix);
                    let temp = root.join(format!(".{digest}.{}", hex::encode(suffix)));
                    unpack(&archive, &temp)?;
                    let done = root.join(&digest);
                    if std::fs::rename(&temp, &done).is_err() && done.is_dir() {
                        let _ = std::fs::remove_dir_all(&temp);
                    }
                    Ok::<(), Error>(())
                })
                .await
                .map_err(|e| Error::Internal(format!("the unpack task failed: {e}")))??;
            }
            dirs.push(Mount {
                dir,
                path: m.path.clone(),
            });
        }
        Ok(dirs)
    }

    /// The mounts a deploy asks for, as the version records them: each
    /// archive stored, each path valid and used once.
    pub(super) async fn mount_records(
        &self,
        requested: &[MountRecord],
    ) -> Result<Vec<MountRecord>, Error> {
        let mut records: Vec<MountRecord> = Vec::new();
        for m in requested {
            crate::validate_mount_path(&m.path)?;
            if records.iter().any(|r| r.path == m.path) {
                return Err(bad(format!("two mounts at {}", m.path)));
            }
            if !self.has_archive(&m.digest).await? {
                return Err(bad(format!(
                    "the archive of the mount at {} ({}) was not uploaded",
                    m.path, m.source
                )));
            }
            records.push(m.clone());
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_packs_the_same_twice_and_unpacks_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("css")).unwrap();
        std::fs::write(dir.path().join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(dir.path().join("css/site.css"), "h1{}").unwrap();
        std::os::unix::fs::symlink("index.html", dir.path().join("home.html")).unwrap();
        let first = pack_dir(dir.path()).unwrap();
        assert_eq!(first, pack_dir(dir.path()).unwrap());
        let out = tempfile::tempdir().unwrap();
        unpack(&first, &out.path().join("m")).unwrap();
        let read = |p: &str| std::fs::read_to_string(out.path().join("m").join(p)).unwrap();
        assert_eq!(read("css/site.css"), "h1{}");
        assert_eq!(read("home.html"), "<h1>hi</h1>");
    }

    #[test]
    fn symlinks_out_and_escaping_archives_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        let e = pack_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.ends_with("passwd is a symlink that leaves the directory"),
            "{e}"
        );

        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_entry_type(tar::EntryType::Regular);
        header.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        header.set_cksum();
        builder.append(&header, &b"x"[..]).unwrap();
        let archive = builder.into_inner().unwrap();
        let e = entries(&archive).unwrap_err().to_string();
        assert!(e.contains("`../escape` leaves the directory"), "{e}");
    }
}
