//! The state directory of one platform: private to its user (0700, files
//! 0600, existing modes fixed at start-up) and held by one process at a
//! time through an exclusive lock on `state/lock`, which the kernel
//! releases when the holder exits or crashes.

use crate::error::Error;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "lock";

/// The held lock on a state directory; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// Creates `dir` (and its parents) if needed and makes it private (0700).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Creates (or truncates) a file readable and writable by its owner only.
pub(crate) fn private_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Makes the state directory private, takes its lock and fixes the modes
/// of what an earlier release left readable by others. Fails with
/// [`Error::StateInUse`] when another process holds the lock.
pub fn lock(dir: &Path) -> Result<StateLock, Error> {
    private_dir(dir).map_err(io(format!(
        "creating the state directory {}",
        dir.display()
    )))?;
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(Error::StateInUse {
                dir: dir.display().to_string(),
                pid: holder.trim().parse().ok(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(io(format!("locking {}", path.display()))(e));
        }
    }
    let write_pid = |file: &mut File| -> std::io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()
    };
    write_pid(&mut file).map_err(io(format!("writing {}", path.display())))?;
    secure_tree(dir).map_err(io(format!(
        "making the state directory {} private",
        dir.display()
    )))?;
    Ok(StateLock { _file: file })
}

/// Sets every directory below `dir` to 0700 and every file to 0600
/// (symbolic links are left alone).
fn secure_tree(dir: &Path) -> std::io::Result<()> {
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    // Another process (`modal run` filling the compiled-code cache) may
    // remove a temporary file while we walk: what is gone is skipped.
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Err(e) if gone(&e) => continue,
            entries => entries?,
        };
        for entry in entries {
            let entry = entry?;
            let kind = match entry.file_type() {
                Err(e) if gone(&e) => continue,
                kind => kind?,
            };
            let mode = if kind.is_dir() {
                stack.push(entry.path());
                0o700
            } else if kind.is_file() {
                0o600
            } else {
                continue;
            };
            let path = entry.path();
            let current = match entry.metadata() {
                Err(e) if gone(&e) => continue,
                meta => meta?.permissions().mode() & 0o777,
            };
            if current != mode {
                match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)) {
                    Err(e) if gone(&e) => {}
                    done => done?,
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_modes_are_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(state.join("artifacts")).unwrap();
        std::fs::write(state.join("registry.db"), b"x").unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        let held = lock(&state).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("artifacts")), 0o700);
        assert_eq!(mode(&state.join("registry.db")), 0o600);
        assert_eq!(mode(&state.join(LOCK_FILE)), 0o600);
        let e = lock(&state).unwrap_err();
        assert!(
            matches!(&e, Error::StateInUse { pid: Some(p), .. } if *p == std::process::id()),
            "{e}"
        );
        drop(held);
        lock(&state).unwrap();
    }
}
