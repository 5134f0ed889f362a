//! Hostile and surprising inputs to `predict`, `verify` and `eval` (issue 12, items 3, 10,
//! 11, 12, 14, 18, 19 and 20), through the binary.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wrnc_onnx::MetaKey;

/// A random-weight quickstart model exported to ONNX: (weights, onnx).
fn quickstart(dir: &Path) -> (PathBuf, PathBuf) {
    let w = dir.join("w.safetensors");
    init("specs/quickstart.yaml", &w, &["--seed", "1"]);
    let onnx = dir.join("m.onnx");
    let r = export("specs/quickstart.yaml", &w, &onnx, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    (w, onnx)
}

/// Writes an 8x8 grey PNG.
fn png(path: &Path) {
    let px: Vec<u8> = (0..64).map(|i| (i * 4) as u8).collect();
    image::GrayImage::from_raw(8, 8, px)
        .unwrap()
        .save(path)
        .unwrap();
}

/// Rewrites metadata entry `key` of an ONNX file (removes it for None).
fn set_meta(onnx: &Path, key: MetaKey, value: Option<&str>, out: &Path) {
    use prost::Message;
    let mut m = wrnc_onnx::read_model(&std::fs::read(onnx).unwrap()).unwrap();
    m.metadata_props
        .retain(|p| p.key.as_deref() != Some(key.as_str()));
    if let Some(v) = value {
        m.metadata_props
            .push(wrnc_onnx::proto::StringStringEntryProto {
                key: Some(key.as_str().into()),
                value: Some(v.into()),
            });
    }
    std::fs::write(out, m.encode_to_vec()).unwrap();
}

fn assert_no_panic(r: &Run) {
    assert!(
        !r.stderr.contains("panicked") && !r.stderr.contains("internal error"),
        "{}",
        r.stderr
    );
}

#[test]
fn verify_refuses_a_file_whose_normalization_was_tampered_with() {
    let dir = tempdir();
    let (w, onnx) = quickstart(dir.path());
    let bad = dir.path().join("tampered.onnx");
    let n = wrnc_onnx::Normalization::mean_std(vec![0.9], vec![0.1]);
    set_meta(
        &onnx,
        MetaKey::Normalization,
        Some(&serde_json::to_string(&n).unwrap()),
        &bad,
    );
    let r = verify(&bad, "specs/quickstart.yaml", &w, &[]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("normalization: MISMATCH"), "{}", r.stdout);
    assert!(r.stdout.contains("mean[0]"), "{}", r.stdout);
    // The untouched file still verifies, and says the normalisation was checked.
    let r = verify(&onnx, "specs/quickstart.yaml", &w, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("normalization: ok"), "{}", r.stdout);
}

#[test]
fn predict_needs_a_normalization_for_files_that_record_none() {
    let dir = tempdir();
    let (_, onnx) = quickstart(dir.path());
    let bare = dir.path().join("bare.onnx");
    set_meta(&onnx, MetaKey::Normalization, None, &bare);
    let img = dir.path().join("a.png");
    png(&img);
    let r = wrnc(&["predict", utf8(&bare), utf8(&img)]);
    assert_usage_error(
        &r,
        &["bare.onnx", "no input normalisation", "--normalize none"],
    );
    let r = wrnc(&["predict", utf8(&bare), utf8(&img), "--normalize", "none"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The flag is refused for a file that records its normalisation.
    let r = wrnc(&["predict", utf8(&onnx), utf8(&img), "--normalize", "none"]);
    assert_usage_error(&r, &["records its input normalisation"]);
}

#[test]
fn predict_classifies_folders_and_goes_on_after_a_bad_image() {
    let dir = tempdir();
    let (_, onnx) = quickstart(dir.path());
    let imgs = dir.path().join("imgs");
    std::fs::create_dir_all(imgs.join("sub")).unwrap();
    std::fs::create_dir_all(imgs.join(".hidden")).unwrap();
    png(&imgs.join("b.png"));
    png(&imgs.join("sub/a.PNG"));
    png(&imgs.join(".hidden/h.png"));
    png(&imgs.join(".dot.png"));
    std::fs::write(imgs.join("notes.txt"), "not an image").unwrap();
    std::fs::write(imgs.join("a-broken.png"), "not a png").unwrap();
    let r = wrnc(&["predict", utf8(&onnx), utf8(&imgs), "--top", "1", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("a-broken.png"), "{}", r.stderr);
    assert!(r.stderr.contains("1 of 3 images"), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["image"].as_str().unwrap().to_string())
        .collect();
    // Sorted, recursive, hidden files and non-images skipped.
    let want: Vec<String> = ["a-broken.png", "b.png", "sub/a.PNG"]
        .iter()
        .map(|n| imgs.join(n).display().to_string())
        .collect();
    assert_eq!(names, want);
    assert!(v[0]["error"].is_string());
    assert_eq!(v[1]["predictions"].as_array().unwrap().len(), 1);
    assert_eq!(v[2]["predictions"].as_array().unwrap().len(), 1);
}

#[test]
fn predict_escapes_control_characters_in_labels_and_paths() {
    let dir = tempdir();
    let (_, onnx) = quickstart(dir.path());
    let evil = dir.path().join("evil.onnx");
    let labels: Vec<String> = (0..10).map(|i| format!("\u{1b}[2Jfake{i}\rX")).collect();
    set_meta(
        &onnx,
        MetaKey::ClassLabels,
        Some(&serde_json::to_string(&labels).unwrap()),
        &evil,
    );
    let img = dir.path().join("a\u{1b}[31m.png");
    png(&img);
    let r = wrnc(&["predict", utf8(&evil), utf8(&img), "--top", "10"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stdout.contains('\u{1b}') && !r.stdout.contains('\r'),
        "{:?}",
        r.stdout
    );
    assert!(r.stdout.contains("\\u{1b}[2Jfake3\\rX"), "{}", r.stdout);
    assert!(r.stdout.contains("a\\u{1b}[31m.png"), "{}", r.stdout);
}

#[test]
fn predict_decodes_one_image_at_a_time() {
    // Eight 8000x8000 grey PNGs: decoding all before preprocessing needs 8 x 64 MB; one at a
    // time needs 64 MB (plus a copy). The address-space limit separates the two.
    let dir = tempdir();
    let (_, onnx) = quickstart(dir.path());
    let big = image::GrayImage::from_fn(8000, 8000, |x, y| image::Luma([((x ^ y) & 0xff) as u8]));
    let first = dir.path().join("big0.png");
    big.save(&first).unwrap();
    let mut args = vec!["predict".to_string(), onnx.display().to_string()];
    for i in 0..8 {
        let p = dir.path().join(format!("big{i}.png"));
        if i > 0 {
            std::fs::copy(&first, &p).unwrap();
        }
        args.push(p.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (r, _) = wrnc_limited(&root(), &args, 600 * 1024);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.matches("big").count(), 8, "{}", r.stdout);
}

/// A generic spec: a conv, `relus` ReLU layers, pooling and a linear layer.
fn relu_chain(dir: &Path, relus: usize) -> String {
    let mut s = String::from(
        "name: chain\nmodel:\n  input: [1, 8, 8]\n  classes: 10\n  layers:\n    - {op: conv, out: 2, kernel: 3}\n",
    );
    for _ in 0..relus {
        s.push_str("    - {op: relu}\n");
    }
    s.push_str("    - {op: global_avg_pool}\n    - {op: flatten}\n    - {op: linear}\ndata:\n  dataset: digits\n");
    write(dir, &format!("chain{relus}.yaml"), &s)
}

#[test]
fn long_node_chains_are_refused_quickly_and_short_ones_run() {
    // tract plans a graph in time that grows faster than n^2 (2,000 nodes: over 20 s), so
    // predict and verify refuse graphs over the documented node limit at once.
    let dir = tempdir();
    let img = dir.path().join("a.png");
    png(&img);
    for (relus, ok) in [(100, true), (wrnc_onnx::MAX_NODES, false)] {
        let spec = relu_chain(dir.path(), relus);
        let w = dir.path().join(format!("w{relus}.safetensors"));
        init(&spec, &w, &[]);
        let onnx = dir.path().join(format!("c{relus}.onnx"));
        let r = export(&spec, &w, &onnx, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let t = Instant::now();
        let p = wrnc(&["predict", utf8(&onnx), utf8(&img)]);
        let v = verify(&onnx, &spec, &w, &[]);
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        if ok {
            assert_eq!(p.code, 0, "{}", p.stderr);
            assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
        } else {
            for r in [&p, &v] {
                assert_usage_error(r, &["nodes", "limit of 1024"]);
                assert_eq!(r.stderr.matches(&format!("c{relus}.onnx")).count(), 1);
            }
        }
    }
}

#[test]
fn verify_batch_is_bounded_and_its_inputs_are_described_truthfully() {
    let dir = tempdir();
    let (w, onnx) = quickstart(dir.path());
    let r = verify(
        &onnx,
        "specs/quickstart.yaml",
        &w,
        &["--batch", "1000000000"],
    );
    assert_usage_error(&r, &["--batch 1000000000", "limit of 1024"]);
    let r = verify(&onnx, "specs/quickstart.yaml", &w, &["--batch", "400"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(
            "seeded random inputs (the digits test split has 360 images, fewer than --batch 400)"
        ),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("not on this machine"), "{}", r.stdout);
}

#[test]
fn verify_reports_a_broken_cifar_folder_as_a_data_error() {
    let dir = tempdir();
    let cifar = dir.path().join("cifar");
    std::fs::create_dir_all(&cifar).unwrap();
    let record = |label: u8| {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(7u8, 3072));
        r
    };
    for f in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
    ] {
        std::fs::write(cifar.join(f), record(1)).unwrap();
    }
    std::fs::write(cifar.join("test_batch.bin"), record(200)).unwrap();
    let spec = write(
        dir.path(),
        "c.yaml",
        &format!(
            "name: tiny\nmodel:\n  wrn: {{depth: 10, width: 1}}\ndata:\n  dataset: cifar10\n  root: {}\n",
            cifar.display()
        ),
    );
    let w = dir.path().join("w.safetensors");
    init(&spec, &w, &[]);
    let onnx = dir.path().join("m.onnx");
    // Export without the dataset's statistics is fine (the file records `none`); verify must
    // not pass the broken folder off as "not on this machine".
    let _ = export(&spec, &w, &onnx, &[]);
    if !onnx.exists() {
        let nodata = write(
            dir.path(),
            "n.yaml",
            "name: tiny\nmodel:\n  wrn: {depth: 10, width: 1}\ndata:\n  dataset: cifar10\n  root: /nonexistent\n",
        );
        let r = export(&nodata, &w, &onnx, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let r = verify(&onnx, &spec, &w, &[]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_no_panic(&r);
    assert!(r.stderr.contains("label 200"), "{}", r.stderr);
    assert!(r.stderr.contains("cannot be read"), "{}", r.stderr);
    assert!(!r.stdout.contains("not on this machine"), "{}", r.stdout);
}

#[test]
fn a_malformed_onnx_file_is_exit_2_in_verify_and_predict() {
    let dir = tempdir();
    let (w, onnx) = quickstart(dir.path());
    // Structurally malformed: a node reads a value nothing defines.
    use prost::Message;
    let mut m = wrnc_onnx::read_model(&std::fs::read(&onnx).unwrap()).unwrap();
    m.graph.as_mut().unwrap().node[1].input[0] = "nowhere".into();
    let bad = dir.path().join("bad.onnx");
    std::fs::write(&bad, m.encode_to_vec()).unwrap();
    let img = dir.path().join("a.png");
    png(&img);
    let r = verify(&bad, "specs/quickstart.yaml", &w, &[]);
    assert_usage_error(&r, &["bad.onnx", "nowhere"]);
    let r = wrnc(&["predict", utf8(&bad), utf8(&img)]);
    assert_usage_error(&r, &["bad.onnx", "nowhere"]);
}

#[test]
fn an_onnx_file_given_as_weights_is_named_as_such() {
    let dir = tempdir();
    let (_, onnx) = quickstart(dir.path());
    let r = wrnc(&["eval", "specs/quickstart.yaml", "--weights", utf8(&onnx)]);
    assert_usage_error(&r, &["m.onnx", "this is an ONNX file", "wrnc verify"]);
    assert!(!r.stderr.contains("header too large"), "{}", r.stderr);
}

#[test]
fn error_messages_name_the_file_once() {
    let dir = tempdir();
    let missing = dir.path().join("missing.onnx");
    let img = dir.path().join("a.png");
    png(&img);
    let r = wrnc(&["predict", utf8(&missing), utf8(&img)]);
    assert_usage_error(&r, &["missing.onnx"]);
    assert_eq!(r.stderr.matches("missing.onnx").count(), 1, "{}", r.stderr);
}
