//! `wrnc bench`: runs on a small spec and prints the documented JSON (no timing checks).

use std::process::Command;

fn wrnc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wrnc"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[test]
fn bench_json_has_every_phase() {
    let out = wrnc(&[
        "bench",
        "specs/quickstart.yaml",
        "--batch",
        "4",
        "--steps",
        "1",
        "--device",
        "cpu",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for phase in ["train", "eval", "tract"] {
        assert!(v[phase]["images_per_sec"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v[phase]["gflops"].as_f64().unwrap() > 0.0, "{v}");
    }
    if cfg!(target_os = "linux") {
        assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0);
    }
}

#[test]
fn bench_rejects_a_batch_of_one() {
    let out = wrnc(&["bench", "specs/quickstart.yaml", "--batch", "1"]);
    assert_eq!(out.status.code(), Some(2));
}
