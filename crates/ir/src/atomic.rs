//! Crash-safe file writes: write a temporary file beside the target, sync it, rename it over
//! the target, and sync the directory. A reader sees the old file or the new one, never half.
//!
//! Temporary files are named `.NAME.tmp-PID`; [`remove_stale_temps`] deletes those left by a
//! process that was killed mid-write.
//!
//! For tests only, the environment variable [`FAULT_ENV`] injects a failure into one write
//! (see [`fault`]); it is read once per process and costs nothing when unset.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// The fault-injection variable: `fail:FILE:N` makes the N-th atomic write (from 1, counted
/// per process) of a file named FILE fail with "No space left on device" after writing half
/// of it; `kill:FILE:N[:PHASE]` sends SIGKILL to the process at that write, with PHASE `torn`
/// (default: half the temporary file written, not synced), `written` (temporary file complete
/// and synced, not renamed) or `renamed` (renamed over the target, directory not synced).
pub const FAULT_ENV: &str = crate::knobs::FAULT.name;

/// Test-only fault injection (see [`FAULT_ENV`]).
pub mod fault {
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// Where a `kill` fault strikes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Phase {
        /// Half of the temporary file written, not synced.
        Torn,
        /// The temporary file complete and synced, not yet renamed.
        Written,
        /// Renamed over the target; the directory not yet synced.
        Renamed,
    }

    /// What a fault does.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Action {
        /// The write fails with ENOSPC.
        Fail,
        /// The process kills itself with SIGKILL.
        Kill(Phase),
    }

    /// A parsed fault: which write and what happens.
    #[derive(Debug)]
    pub struct Fault {
        /// What happens.
        pub action: Action,
        /// File name (no directory) of the target.
        pub file: String,
        /// Which write of that file, from 1.
        pub nth: u64,
        seen: AtomicU64,
    }

    /// Parses `fail:FILE:N` or `kill:FILE:N[:torn|written|renamed]`.
    pub fn parse(s: &str) -> Option<Fault> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let action = match (parts.first().copied(), parts.get(3).copied()) {
            (Some("fail"), None) => Action::Fail,
            (Some("kill"), None | Some("torn")) => Action::Kill(Phase::Torn),
            (Some("kill"), Some("written")) => Action::Kill(Phase::Written),
            (Some("kill"), Some("renamed")) => Action::Kill(Phase::Renamed),
            _ => return None,
        };
        let file = parts.get(1).filter(|f| !f.is_empty())?.to_string();
        let nth = parts.get(2)?.parse().ok().filter(|&n| n >= 1)?;
        if parts.len() > 4 {
            return None;
        }
        Some(Fault {
            action,
            file,
            nth,
            seen: AtomicU64::new(0),
        })
    }

    fn active() -> Option<&'static Fault> {
        static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
        FAULT
            .get_or_init(|| {
                let v = crate::knobs::fault()?;
                let f = parse(&v);
                if f.is_none() {
                    eprintln!("warning: ignoring malformed {}={v:?}", super::FAULT_ENV);
                }
                f
            })
            .as_ref()
    }

    /// The fault that strikes this write of `path`, if any (counts the write).
    pub(super) fn hit(path: &Path) -> Option<Action> {
        let f = active()?;
        if path.file_name()? != f.file.as_str() {
            return None;
        }
        let n = f.seen.fetch_add(1, Ordering::SeqCst) + 1;
        (n == f.nth).then_some(f.action)
    }

    /// Kills this process with SIGKILL (no destructors, no buffered output flushed).
    pub(super) fn kill_self() -> ! {
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status();
        // `kill` missing: the nearest equivalent.
        std::process::abort()
    }
}

/// Deletes `.NAME.tmp-PID` files in `dir` left by processes that no longer run (Linux; elsewhere
/// only those of this process's PID are recognised as not in flight and nothing is removed).
/// Returns how many were removed. Call it only while holding the directory's lock.
pub fn remove_stale_temps(dir: &Path) -> io::Result<usize> {
    remove_dead_temps(dir, None)
}

/// [`remove_stale_temps`] limited to the temporaries of `only` (a file name) when given.
fn remove_dead_temps(dir: &Path, only: Option<&str>) -> io::Result<usize> {
    let me = std::process::id();
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some((target, pid)) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".tmp-"))
            .and_then(|(target, pid)| Some((target, pid.parse::<u32>().ok()?)))
        else {
            continue;
        };
        if only.is_some_and(|o| o != target) {
            continue;
        }
        let dead =
            cfg!(target_os = "linux") && pid != me && !Path::new(&format!("/proc/{pid}")).exists();
        if dead && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Writes a file atomically with a writer callback (for streaming large files).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    // A process killed mid-write left its temporary behind: the next write of the same file
    // removes it (best effort; only temporaries of processes that no longer run).
    let _ = remove_dead_temps(dir, Some(&file_name.to_string_lossy()));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let strike = fault::hit(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        write(&mut f)?;
        if let Some(fault::Action::Fail | fault::Action::Kill(fault::Phase::Torn)) = strike {
            let len = f.metadata()?.len();
            f.set_len(len / 2)?;
            if strike == Some(fault::Action::Fail) {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            fault::kill_self();
        }
        f.sync_all()?;
        drop(f);
        if strike == Some(fault::Action::Kill(fault::Phase::Written)) {
            fault::kill_self();
        }
        fs::rename(&tmp, path)?;
        if strike == Some(fault::Action::Kill(fault::Phase::Renamed)) {
            fault::kill_self();
        }
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("wrnc-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.txt");
        write_atomic(&p, b"first version").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fault_specs_parse() {
        let f = fault::parse("kill:state.json:2:renamed").unwrap();
        assert_eq!(
            (f.action, f.file.as_str(), f.nth),
            (fault::Action::Kill(fault::Phase::Renamed), "state.json", 2)
        );
        assert_eq!(
            fault::parse("kill:a:1").unwrap().action,
            fault::Action::Kill(fault::Phase::Torn)
        );
        assert_eq!(
            fault::parse("fail:a:3").unwrap().action,
            fault::Action::Fail
        );
        for bad in [
            "",
            "fail",
            "fail:a",
            "fail:a:0",
            "fail::1",
            "kill:a:1:later",
            "x:a:1",
        ] {
            assert!(fault::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn stale_temps_of_dead_processes_are_removed() {
        let dir = std::env::temp_dir().join(format!("wrnc-atomic-stale-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let dead = dir.join(".last.safetensors.tmp-4294967295");
        let mine = dir.join(format!(".state.json.tmp-{}", std::process::id()));
        let other = dir.join("notes.tmp-4294967295");
        for p in [&dead, &mine, &other] {
            fs::write(p, b"x").unwrap();
        }
        let n = remove_stale_temps(&dir).unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(n, 1);
            assert!(!dead.exists());
        }
        assert!(mine.exists() && other.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_write_removes_the_dead_temporaries_of_its_own_file() {
        let dir = std::env::temp_dir().join(format!("wrnc-atomic-own-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let dead_same = dir.join(".w.safetensors.tmp-4294967295");
        let dead_other = dir.join(".x.safetensors.tmp-4294967295");
        for p in [&dead_same, &dead_other] {
            fs::write(p, b"x").unwrap();
        }
        write_atomic(&dir.join("w.safetensors"), b"new").unwrap();
        assert_eq!(fs::read(dir.join("w.safetensors")).unwrap(), b"new");
        if cfg!(target_os = "linux") {
            assert!(!dead_same.exists());
        }
        assert!(
            dead_other.exists(),
            "another file's temporary is not this write's business"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failed_write_keeps_old_file() {
        let dir = std::env::temp_dir().join(format!("wrnc-atomic-fail-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("b.txt");
        write_atomic(&p, b"good").unwrap();
        let r = write_atomic_with(&p, |f| {
            f.write_all(b"partial")?;
            Err(io::Error::other("disk full"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"good");
        fs::remove_dir_all(&dir).unwrap();
    }
}
