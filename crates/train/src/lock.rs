//! The run-directory lock: a `run.lock` file holding the owner's PID. A lock left by a
//! process that no longer exists is taken over.

use crate::error::{Result, TrainError};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the lock file inside a run directory.
pub const LOCK_FILE: &str = "run.lock";

/// Holds the lock; the file is removed when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

/// Whether a process with this PID exists (Linux: `/proc/PID`; elsewhere assumed alive).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

impl RunLock {
    /// Takes the lock of `dir` (which must exist).
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        let path = dir.join(LOCK_FILE);
        for _ in 0..3 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    write!(f, "{}", std::process::id())
                        .and_then(|_| f.sync_all())
                        .map_err(|e| TrainError::io(&path, e))?;
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    match text.trim().parse::<u32>() {
                        Ok(pid) if alive(pid) => {
                            return Err(TrainError::Locked {
                                dir: dir.to_path_buf(),
                                pid,
                                lock: path,
                            })
                        }
                        // Stale (dead owner) or unreadable: take it over.
                        _ => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(TrainError::io(&path, e)),
            }
        }
        Err(TrainError::RunDir {
            dir: dir.to_path_buf(),
            message: format!("could not take the lock file {}", path.display()),
        })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
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
        // A PID that cannot exist (above Linux's pid_max limit).
        std::fs::write(dir.path().join(LOCK_FILE), "4294967295").unwrap();
        let _lock = RunLock::acquire(dir.path()).unwrap();
        let pid = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(pid, std::process::id().to_string());
    }
}
