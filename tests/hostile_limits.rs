//! Resource limits against hostile input (issue 12, items 8 and 9): each is refused quickly
//! with a clear message and exit code 2, inside a 1 GiB address space (`ulimit -v`), so an
//! unbounded read or recursion fails the test instead of exhausting the machine.

mod common;

use common::{assert_usage_error, root, tempdir, utf8, wrnc_limited};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Address space allowed to every run here.
const VM_KIB: u64 = 1 << 20;
/// Wall time allowed to every refusal (each takes well under a second normally).
const QUICK: Duration = Duration::from_secs(10);

#[test]
fn a_spec_from_dev_zero_is_refused_by_size() {
    let (r, took) = wrnc_limited(&root(), &["check", "/dev/zero"], VM_KIB);
    assert!(took < QUICK, "took {took:?}");
    assert_usage_error(&r, &["/dev/zero", "longer than 1048576 bytes"]);
}

#[test]
fn an_endless_spec_on_stdin_is_refused_by_size() {
    // `yes | wrnc check /dev/stdin`: the size from metadata is 0, the input never ends.
    let t = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {VM_KIB} && yes | \"$0\" check /dev/stdin; echo \"exit $?\" >&2"
        ))
        .arg(env!("CARGO_BIN_EXE_wrnc"))
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh");
    let out = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        if t.elapsed() > QUICK {
            child.kill().unwrap();
            panic!("`yes | wrnc check /dev/stdin` did not end in {QUICK:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("longer than 1048576 bytes"), "{stderr}");
    assert!(stderr.contains("exit 2"), "{stderr}");
}

#[test]
fn a_deep_set_key_path_is_refused_without_a_stack_overflow() {
    let path = vec!["a"; 20_000].join(".");
    let set = format!("{path}=1");
    let (r, took) = wrnc_limited(
        &root(),
        &["check", "specs/quickstart.yaml", "--set", &set],
        VM_KIB,
    );
    assert!(took < QUICK, "took {took:?}");
    assert_usage_error(&r, &["20000 parts", "128 levels"]);
    // The limit is the spec's own nesting limit: a path of 128 parts is not refused for depth.
    let ok = format!("{}=1", vec!["a"; 128].join("."));
    let (r, _) = wrnc_limited(
        &root(),
        &["check", "specs/quickstart.yaml", "--set", &ok],
        VM_KIB,
    );
    assert!(!r.stderr.contains("parts"), "{}", r.stderr);
}

#[test]
fn a_huge_weights_file_is_refused_before_it_is_read() {
    let dir = tempdir();
    let big = dir.path().join("big.safetensors");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(6 << 30) // 6 GiB, sparse
        .unwrap();
    for cmd in ["eval", "export"] {
        let out = dir.path().join("m.onnx");
        let mut args = vec![cmd, "specs/quickstart.yaml", "--weights", utf8(&big)];
        if cmd == "export" {
            args.extend(["-o", utf8(&out)]);
        }
        let (r, took) = wrnc_limited(&root(), &args, VM_KIB);
        assert!(took < QUICK, "{cmd} took {took:?}");
        assert_usage_error(
            &r,
            &[
                "big.safetensors",
                "larger than",
                "the weights of `quickstart`",
            ],
        );
        assert!(!out.exists());
    }
}
