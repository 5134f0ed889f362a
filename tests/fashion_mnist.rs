//! The real Fashion-MNIST from Debian's `dataset-fashion-mnist` package: the quick start's
//! recipe (WRN-10-2) trained for two epochs reaches at least 85% test accuracy.
//!
//! Too slow for CI (tens of minutes on 2 CPU cores), so ignored; run it with
//! `apt-get install dataset-fashion-mnist` and
//! `cargo test --release --test fashion_mnist -- --ignored --nocapture`.
//! Without the package it says so and passes.

mod common;
use common::*;
use std::path::Path;

#[test]
#[ignore = "trains on the real Fashion-MNIST: cargo test --release --test fashion_mnist -- --ignored"]
fn quickstart_recipe_reaches_85_percent_in_two_epochs() {
    let sys = Path::new(wrnc_recipe::FASHION_MNIST_SYSTEM_DIR);
    if !sys.is_dir() {
        eprintln!(
            "skipped: {} does not exist (apt-get install dataset-fashion-mnist)",
            sys.display()
        );
        return;
    }
    let dir = tempdir();
    let run = dir.path().join("run");
    // No data.root: the default root is the Debian package's folder.
    let sets = [
        "--set",
        "data.dataset=fashion_mnist",
        "--set",
        "train.epochs=2",
        "--quiet",
    ];
    let t = std::time::Instant::now();
    let r = train("specs/quickstart.yaml", &run, &sets);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = wrnc(&[
        "eval",
        "specs/quickstart.yaml",
        "--set",
        "data.dataset=fashion_mnist",
        "--weights",
        utf8(&run.join("last.safetensors")),
        "--split",
        "test",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let acc = v["accuracy"].as_f64().unwrap();
    eprintln!(
        "fashion_mnist, WRN-10-2, 2 epochs: test accuracy {:.2}% ({} images) in {:.0} s",
        acc * 100.0,
        v["count"],
        t.elapsed().as_secs_f64()
    );
    assert_eq!(v["count"], 10_000);
    assert!(acc >= 0.85, "test accuracy {acc}");
}
