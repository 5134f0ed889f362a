//! `export.tta: flip` end to end: export, verify against Candle, predict without a second
//! softmax.

mod common;
use common::*;
use std::path::Path;

const SPEC: &str = "specs/quickstart.yaml";

/// `wrnc predict MODEL IMAGE --json --top 10`: the probability of each of the 10 classes.
fn probabilities(model: &Path, image: &Path) -> Vec<f64> {
    let r = wrnc(&["predict", utf8(model), utf8(image), "--json", "--top", "10"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let mut p = vec![f64::NAN; 10];
    for e in v[0]["predictions"].as_array().unwrap() {
        p[e["class"].as_u64().unwrap() as usize] = e["probability"].as_f64().unwrap();
    }
    p
}

#[test]
fn flip_tta_export_verifies_and_predicts_the_mean_of_image_and_mirror() {
    let dir = tempdir();
    let w = dir.path().join("w.safetensors");
    init(SPEC, &w, &["--seed", "3"]);
    let plain = dir.path().join("plain.onnx");
    let tta = dir.path().join("tta.onnx");
    let r = export(SPEC, &w, &plain, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("test-time"), "{}", r.stdout);
    let r = export(SPEC, &w, &tta, &["--set", "export.tta=flip"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("test-time augmentation flip"),
        "{}",
        r.stdout
    );

    // verify compares the file's probabilities with Candle's flip evaluation.
    let v = verify(&tta, SPEC, &w, &["--batch", "4"]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert!(
        v.stdout
            .contains("outputs: probabilities averaged over test-time augmentation `flip`")
            && v.stdout.contains("batch 4:")
            && v.stdout.contains("verified:"),
        "{}",
        v.stdout
    );
    // ... and it is no formality: other weights fail it.
    let other = dir.path().join("other.safetensors");
    init(SPEC, &other, &["--seed", "4"]);
    let v = verify(&tta, SPEC, &other, &["--batch", "2"]);
    assert_eq!(v.code, 1, "{}{}", v.stdout, v.stderr);
    assert!(v.stderr.contains("probabilities beyond"), "{}", v.stderr);

    // predict: the probabilities are the mean of the plain model's on the image and on its
    // mirror (a softmax applied twice would flatten them towards 0.1).
    let tt = wrnc_data::digits::load_digits().unwrap();
    let px = tt.test.image(0).unwrap().to_vec();
    let img = image::GrayImage::from_raw(8, 8, px).unwrap();
    let (file, mirror) = (dir.path().join("d.png"), dir.path().join("m.png"));
    img.save(&file).unwrap();
    image::imageops::flip_horizontal(&img)
        .save(&mirror)
        .unwrap();
    let (a, b) = (probabilities(&plain, &file), probabilities(&plain, &mirror));
    assert_ne!(a, b, "the digit must not be symmetric");
    let got = probabilities(&tta, &file);
    for j in 0..10 {
        let want = (a[j] + b[j]) / 2.0;
        assert!(
            (got[j] - want).abs() < 1e-5,
            "class {j}: {} vs {want}",
            got[j]
        );
    }
}
