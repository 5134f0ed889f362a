//! The run-directory lock: a `run.lock` file holding the owner's PID, locked with an
//! exclusive advisory lock (`flock` on Unix) while the run is in progress. The kernel drops the
//! lock when its process dies, even by SIGKILL, so a lock file left behind by a killed run never
//! blocks the next one (and a reused PID cannot fake an owner).

use crate::error::{Result, TrainError};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the lock file inside a run directory.
pub const LOCK_FILE: &str = "run.lock";

/// Holds the lock; the file is removed (then unlocked) when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    _file: File,
    /// Why the file could not be locked (a file system without advisory locks), if so.
    warning: Option<String>,
}

/// Whether `file` is still the file at `path` (a previous owner may have removed it between
/// our open and our lock; then the lock we hold is on a deleted file and proves nothing).
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// The PID written in a held lock file (the owner writes it right after locking: wait briefly).
fn owner_pid(path: &Path) -> Option<u32> {
    for _ in 0..50 {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            return Some(pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

impl RunLock {
    /// Takes the lock of `dir` (which must exist).
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        let path = dir.join(LOCK_FILE);
        let io = |e| TrainError::io(&path, e);
        let mut warning = None;
        for _ in 0..20 {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            match f.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return match owner_pid(&path) {
                        Some(pid) => Err(TrainError::Locked {
                            dir: dir.to_path_buf(),
                            pid,
                            lock: path,
                        }),
                        None => Err(TrainError::RunDir {
                            dir: dir.to_path_buf(),
                            message: format!(
                                "another process holds the lock file {}; wait for it to finish or \
                                 choose another output directory",
                                path.display()
                            ),
                        }),
                    };
                }
                // A file system without advisory locks (some network or FUSE mounts): go on,
                // as before locks existed, but say so (RunLock::warning).
                Err(TryLockError::Error(e)) => {
                    warning = Some(format!(
                        "cannot lock {}: {e}; make sure no other process trains into {}",
                        path.display(),
                        dir.display()
                    ))
                }
            }
            if !same_file(&f, &path) {
                continue; // the previous owner removed it as we opened it: try again
            }
            f.set_len(0)
                .and_then(|_| write!(f, "{}", std::process::id()))
                .and_then(|_| f.sync_all())
                .map_err(io)?;
            return Ok(RunLock {
                path,
                _file: f,
                warning,
            });
        }
        Err(TrainError::RunDir {
            dir: dir.to_path_buf(),
            message: format!("could not take the lock file {}", path.display()),
        })
    }

    /// Why the directory is not really locked (its file system has no advisory locks), for
    /// the user to hear; `None` when the lock is held.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked; the lock itself goes with the file handle.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_owner_and_stale_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap();
        let e = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&std::process::id().to_string()), "{e}");
        drop(lock);
        assert!(!dir.path().join(LOCK_FILE).exists());
        // A lock file left by a killed process (no lock held on it) is taken over.
        std::fs::write(dir.path().join(LOCK_FILE), "4294967295").unwrap();
        let _lock = RunLock::acquire(dir.path()).unwrap();
        let pid = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(pid, std::process::id().to_string());
    }
}
