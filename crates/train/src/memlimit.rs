//! The memory limit that applies to this process: the address-space limit (`ulimit -v`,
//! `RLIMIT_AS`) and the cgroup's memory limit (v2 `memory.max`, v1
//! `memory.limit_in_bytes`, of the process's cgroup and its ancestors), and the check of a
//! [`MemoryEstimate`] against them.

use crate::error::{Result, TrainError};
use crate::memory::{human_bytes, MemoryEstimate};
use std::path::{Path, PathBuf};

/// Where a memory limit comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitSource {
    /// The address-space limit (`ulimit -v`, `RLIMIT_AS`): it bounds virtual memory, so the
    /// address space already mapped counts against it.
    AddressSpace,
    /// A cgroup's memory limit file.
    Cgroup(PathBuf),
}

impl std::fmt::Display for LimitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitSource::AddressSpace => f.write_str("the address-space limit (ulimit -v)"),
            LimitSource::Cgroup(p) => write!(f, "the cgroup memory limit ({})", p.display()),
        }
    }
}

/// A memory limit in bytes and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimit {
    /// The limit.
    pub bytes: u64,
    /// Its source.
    pub source: LimitSource,
}

/// cgroup v1 reports "no limit" as a huge number (`PAGE_COUNTER_MAX` pages); anything from
/// 2^60 bytes up is no limit.
const V1_UNLIMITED: u64 = 1 << 60;

/// A cgroup limit file's contents: `max` (v2) or a huge number (v1) is no limit.
pub fn parse_cgroup_limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    t.parse::<u64>().ok().filter(|&n| n < V1_UNLIMITED)
}

/// The process's cgroup paths from `/proc/self/cgroup`: the v2 path (`0::/path`) and the v1
/// memory controller's path (`N:...memory...:/path`).
pub fn parse_proc_cgroup(text: &str) -> (Option<String>, Option<String>) {
    let (mut v2, mut v1) = (None, None);
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_string());
        }
    }
    (v2, v1)
}

/// The lowest limit of the files `file` in `dir` and its ancestors up to `root`.
fn lowest_in_hierarchy(root: &Path, cgroup: &str, file: &str) -> Option<MemoryLimit> {
    let mut best: Option<MemoryLimit> = None;
    let mut dir = root.join(cgroup.trim_start_matches('/'));
    loop {
        let path = dir.join(file);
        if let Some(bytes) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| parse_cgroup_limit(&t))
        {
            if best.as_ref().is_none_or(|b| bytes < b.bytes) {
                best = Some(MemoryLimit {
                    bytes,
                    source: LimitSource::Cgroup(path),
                });
            }
        }
        if dir == root || !dir.pop() || !dir.starts_with(root) {
            return best;
        }
    }
}

/// The lowest cgroup memory limit of this process, if any.
pub fn cgroup_limit() -> Option<MemoryLimit> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let (v2, v1) = parse_proc_cgroup(&text);
    let base = Path::new("/sys/fs/cgroup");
    let a = v2.and_then(|p| lowest_in_hierarchy(base, &p, "memory.max"));
    let b = v1.and_then(|p| lowest_in_hierarchy(&base.join("memory"), &p, "memory.limit_in_bytes"));
    [a, b].into_iter().flatten().min_by_key(|l| l.bytes)
}

/// The address-space limit (`ulimit -v`), if any.
pub fn address_space_limit() -> Option<MemoryLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(MemoryLimit {
        bytes: lim.rlim_cur,
        source: LimitSource::AddressSpace,
    })
}

/// Address space the process maps beyond the resident memory of [`MemoryEstimate`]: the
/// parts of the binary and its libraries never touched and the allocator's rounding of its
/// reservations. Measured (docs/reliability.md): the quickstart run needs about 90 MiB more
/// address space than its resident peak.
pub const VIRTUAL_BASE_BYTES: u64 = 32 << 20;
/// Address space each compute thread maps beyond what it touches: its stack, the tensor
/// library's worker beside it, and its allocator heap's reservation.
pub const VIRTUAL_PER_THREAD_BYTES: u64 = 16 << 20;

/// The memory the run needs against `limit`: the estimate itself for a cgroup limit (which
/// counts resident memory), and the estimate plus the address space mapped beyond it for the
/// address-space limit ([`VIRTUAL_BASE_BYTES`], [`VIRTUAL_PER_THREAD_BYTES`] per thread).
///
/// The process's current `VmSize` is no guide here: the allocator reserves address space
/// opportunistically (up to 1 GiB arenas when the limit allows, less when it does not), so
/// what is mapped says what was reserved, not what is needed.
pub fn needed_under(limit: &MemoryLimit, estimate: &MemoryEstimate, threads: u64) -> u64 {
    match limit.source {
        LimitSource::AddressSpace => {
            estimate.total() + VIRTUAL_BASE_BYTES + VIRTUAL_PER_THREAD_BYTES * threads
        }
        LimitSource::Cgroup(_) => estimate.total(),
    }
}

/// Refuses the run (a usage error: the settings do not fit) when `estimate` exceeds one of
/// `limits` with `threads` compute threads; `advice` names what to change.
pub fn check(
    estimate: &MemoryEstimate,
    limits: &[MemoryLimit],
    threads: u64,
    advice: &str,
) -> Result<()> {
    for limit in limits {
        let need = needed_under(limit, estimate, threads);
        if need > limit.bytes {
            let virt = match limit.source {
                LimitSource::AddressSpace => format!(
                    ", {} of address space with the binary's mappings and the threads' stacks \
                     and heaps,",
                    human_bytes(need)
                ),
                LimitSource::Cgroup(_) => String::new(),
            };
            return Err(TrainError::Invalid(format!(
                "not enough memory for this run: training needs {estimate}{virt} but {} \
                 allows {}. {advice}",
                limit.source,
                human_bytes(limit.bytes)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_limit_files_read_max_as_no_limit() {
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("536870912\n"), Some(512 << 20));
        // cgroup v1's "unlimited"
        assert_eq!(parse_cgroup_limit("9223372036854771712\n"), None);
        assert_eq!(parse_cgroup_limit("garbage"), None);
        assert_eq!(parse_cgroup_limit(""), None);
    }

    #[test]
    fn proc_cgroup_lines_give_the_v2_and_v1_memory_paths() {
        assert_eq!(
            parse_proc_cgroup("0::/user.slice/session-2.scope\n"),
            (Some("/user.slice/session-2.scope".into()), None)
        );
        let v1 = "12:pids:/docker/abc\n5:memory:/docker/abc\n1:name=systemd:/docker/abc\n";
        assert_eq!(parse_proc_cgroup(v1), (None, Some("/docker/abc".into())));
        let mixed = "4:cpu,memory:/a\n0::/b\n";
        assert_eq!(
            parse_proc_cgroup(mixed),
            (Some("/b".into()), Some("/a".into()))
        );
        assert_eq!(parse_proc_cgroup(""), (None, None));
    }

    #[test]
    fn cgroup_hierarchies_take_the_lowest_limit_of_the_ancestors() {
        let root = tempfile::tempdir().unwrap();
        let leaf = root.path().join("a/b");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(root.path().join("a/memory.max"), "1048576\n").unwrap();
        std::fs::write(leaf.join("memory.max"), "max\n").unwrap();
        let l = lowest_in_hierarchy(root.path(), "/a/b", "memory.max").unwrap();
        assert_eq!(l.bytes, 1 << 20);
        assert_eq!(
            l.source,
            LimitSource::Cgroup(root.path().join("a/memory.max"))
        );
        std::fs::write(leaf.join("memory.max"), "4096\n").unwrap();
        let l = lowest_in_hierarchy(root.path(), "/a/b", "memory.max").unwrap();
        assert_eq!(l.bytes, 4096);
        assert!(lowest_in_hierarchy(root.path(), "/c", "memory.max").is_none());
    }

    fn estimate(total_mib: u64) -> MemoryEstimate {
        MemoryEstimate {
            parameters: 0,
            activations: total_mib << 20,
            data: 0,
            runtime: 0,
        }
    }

    #[test]
    fn an_estimate_over_a_limit_is_a_usage_error_naming_both() {
        let cg = MemoryLimit {
            bytes: 100 << 20,
            source: LimitSource::Cgroup("/sys/fs/cgroup/x/memory.max".into()),
        };
        assert!(check(&estimate(99), std::slice::from_ref(&cg), 2, "").is_ok());
        let e = check(&estimate(101), &[cg], 2, "Try less.").unwrap_err();
        assert!(e.is_user_error());
        let msg = e.to_string();
        for needle in [
            "about 101.0 MiB",
            "allows 100.0 MiB",
            "memory.max",
            "Try less.",
        ] {
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
    }

    #[test]
    fn the_address_space_limit_counts_mappings_beyond_the_resident_estimate() {
        let vm = MemoryLimit {
            bytes: 200 << 20,
            source: LimitSource::AddressSpace,
        };
        let est = estimate(100);
        let need = needed_under(&vm, &est, 2);
        assert_eq!(
            need,
            (100 << 20) + VIRTUAL_BASE_BYTES + 2 * VIRTUAL_PER_THREAD_BYTES
        );
        assert!(need > est.total());
        assert_eq!(
            check(&est, std::slice::from_ref(&vm), 2, "").is_ok(),
            need <= 200 << 20
        );
        let e = check(&estimate(190), &[vm], 2, "").unwrap_err().to_string();
        assert!(
            e.contains("ulimit -v") && e.contains("of address space"),
            "{e}"
        );
    }
}
