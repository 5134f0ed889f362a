//! The global allocator: mimalloc, with a failed allocation turned into a clear message and
//! exit code 1 instead of Rust's abort (`memory allocation of N bytes failed`, a backtrace
//! and status 134). The failure path allocates nothing: it formats into a stack buffer and
//! writes to standard error with one `write` call before `_exit`.

use std::alloc::{GlobalAlloc, Layout};

/// mimalloc, exiting cleanly when it returns no memory.
pub struct ExitOnOom;

/// mimalloc keeps freed pages mapped and reuses them: training allocates and frees the same
/// large activation buffers every step, which glibc would return to the kernel (>32 MiB always
/// goes through mmap) and fault back in, zeroed, on the next step.
static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Writes `digits` of `n` into `buf` from `at` and returns the new position.
fn put_u64(buf: &mut [u8], mut at: usize, n: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut len = 0;
    let mut v = n;
    loop {
        digits[len] = b'0' + (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in (0..len).rev() {
        if at < buf.len() {
            buf[at] = digits[i];
            at += 1;
        }
    }
    at
}

/// Copies `s` into `buf` from `at` and returns the new position.
fn put(buf: &mut [u8], mut at: usize, s: &[u8]) -> usize {
    for &b in s {
        if at < buf.len() {
            buf[at] = b;
            at += 1;
        }
    }
    at
}

/// The message for a failed allocation of `size` bytes, in `buf`; returns its length.
fn oom_message(buf: &mut [u8], size: usize) -> usize {
    let mut at = put(buf, 0, b"error: out of memory: could not allocate ");
    at = put_u64(buf, at, size as u64);
    put(
        buf,
        at,
        b" bytes. Lower the memory the command needs (for training: a smaller \
          `--set train.batch_size=N` or `train.eval_batch_size`, a smaller model) or raise \
          the limit (ulimit -v, the container's memory limit)\n",
    )
}

/// Reports the failed allocation of `size` bytes and ends the process with status 1.
#[cold]
fn out_of_memory(size: usize) -> ! {
    let mut buf = [0u8; 512];
    let len = oom_message(&mut buf, size);
    // SAFETY: writes `len` initialised bytes of a stack buffer to fd 2, then exits without
    // running destructors or allocating (no Rust code runs after `_exit`).
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len);
        libc::_exit(1);
    }
}

// SAFETY: every call is forwarded to mimalloc unchanged; a null result does not return.
unsafe impl GlobalAlloc for ExitOnOom {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = INNER.alloc(layout);
        if p.is_null() {
            out_of_memory(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = INNER.alloc_zeroed(layout);
        if p.is_null() {
            out_of_memory(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        INNER.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = INNER.realloc(ptr, layout, new_size);
        if p.is_null() {
            out_of_memory(new_size);
        }
        p
    }
}

/// Whether a panic message says that a thread could not be started (the tensor library and
/// the thread pool panic when `pthread_create` fails, which under a memory limit means that
/// no address space is left for the thread's stack).
pub fn is_thread_spawn_failure(msg: &str) -> bool {
    let spawn = msg.contains("failed to spawn") || msg.contains("ThreadPoolBuildError");
    let resources = msg.contains("Resource temporarily unavailable")
        || msg.contains("Cannot allocate memory")
        || msg.contains("WouldBlock")
        || msg.contains("OutOfMemory");
    spawn && resources
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_size_and_what_to_do() {
        let mut buf = [0u8; 512];
        let len = oom_message(&mut buf, 123_456_789);
        let text = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(text.starts_with("error: out of memory: could not allocate 123456789 bytes."));
        assert!(
            text.contains("train.batch_size") && text.ends_with('\n'),
            "{text}"
        );
        let len = oom_message(&mut buf, 0);
        assert!(std::str::from_utf8(&buf[..len])
            .unwrap()
            .contains("allocate 0 bytes"));
        // a buffer too small is filled, not overrun
        let mut tiny = [0u8; 8];
        assert_eq!(oom_message(&mut tiny, usize::MAX), 8);
    }

    #[test]
    fn thread_spawn_failures_are_recognised() {
        let candle = "failed to spawn candle barrier pool worker: Os { code: 11, kind: \
                      WouldBlock, message: \"Resource temporarily unavailable\" }";
        assert!(is_thread_spawn_failure(candle));
        assert!(!is_thread_spawn_failure("index out of bounds"));
        assert!(!is_thread_spawn_failure(
            "failed to spawn: permission denied"
        ));
    }
}
