//! Memory limits (issue 12, item 13): a training run that cannot fit the address-space limit
//! is refused before the run directory exists, with the estimate, the limit and what to do
//! (exit 2); an allocation that fails anyway is a clear message and exit 1, never Rust's
//! abort with a backtrace.

mod common;

use common::{root, tempdir, utf8, wrnc_limited};

/// `ulimit -v` of the refusal test: the reproduction (100 MB).
const TIGHT_KIB: u64 = 100_000;

fn no_crash(stderr: &str) {
    for bad in [
        "panicked",
        "RUST_BACKTRACE",
        "stack backtrace",
        "internal error",
    ] {
        assert!(!stderr.contains(bad), "`{bad}` in stderr:\n{stderr}");
    }
}

#[test]
fn a_run_over_the_address_space_limit_is_refused_before_it_starts() {
    let tmp = tempdir();
    let out = tmp.path().join("run");
    let spec = root().join("specs/quickstart.yaml");
    let args = [
        "train",
        utf8(&spec),
        "--out",
        utf8(&out),
        "--set",
        "train.epochs=1",
        "--device",
        "cpu",
    ];
    let (r, _) = wrnc_limited(tmp.path(), &args, TIGHT_KIB);
    assert_eq!(r.code, 2, "stderr:\n{}", r.stderr);
    no_crash(&r.stderr);
    for needle in [
        "not enough memory for this run",
        "training needs about",
        "activations",
        "ulimit -v",
        "allows 97.7 MiB",
        "raise the limit",
    ] {
        assert!(
            r.stderr.contains(needle),
            "missing `{needle}`:\n{}",
            r.stderr
        );
    }
    assert!(!out.exists(), "the refused run created {}", out.display());
}

#[test]
fn the_estimate_is_printed_when_a_run_starts() {
    let tmp = tempdir();
    let out = tmp.path().join("run");
    let spec = root().join("specs/quickstart.yaml");
    let args = [
        "train",
        utf8(&spec),
        "--out",
        utf8(&out),
        "--set",
        "train.epochs=1",
        "--set",
        "export.onnx=false",
        "--device",
        "cpu",
        "--quiet",
    ];
    // a generous limit: the check runs and passes
    let (r, _) = wrnc_limited(tmp.path(), &args, 4 << 20);
    assert_eq!(r.code, 0, "stderr:\n{}", r.stderr);
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("memory: about "))
        .unwrap_or_else(|| panic!("no memory line in:\n{}", r.stderr));
    for part in [
        "weights+gradients+optimizer",
        "activations",
        "data",
        "runtime",
    ] {
        assert!(line.contains(part), "{line}");
    }
}

#[test]
fn an_allocation_that_fails_is_a_clear_error_not_an_abort() {
    // Initialising WRN-28-10 (36.5 M parameters, 146 MB of weights, copied to serialise them)
    // cannot fit in 200 MB of address space; nothing checks it beforehand, so the allocation
    // itself fails.
    let tmp = tempdir();
    let out = tmp.path().join("w.safetensors");
    let spec = root().join("specs/wrn-28-10.yaml");
    let args = ["init", utf8(&spec), "-o", utf8(&out)];
    let (r, _) = wrnc_limited(tmp.path(), &args, 200_000);
    assert_eq!(r.code, 1, "stderr:\n{}", r.stderr);
    no_crash(&r.stderr);
    assert!(
        r.stderr
            .contains("error: out of memory: could not allocate"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
}
