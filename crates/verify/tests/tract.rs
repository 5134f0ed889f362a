//! Exported models run in tract and match the plain-Rust reference executor.

use std::collections::BTreeMap;
use wrnc_ir::{passes, Graph, Op};
use wrnc_onnx::{export, to_bytes, ExportMetadata, ExportOptions, Normalization};
use wrnc_testkit::graphs::conv;
use wrnc_testkit::seeded::{input, weights};
use wrnc_testkit::{reference, Lcg, Net};
use wrnc_verify::{compare, top_k, Predictor, TractModel, VerifyError};

/// conv -> bn -> relu -> conv -> add -> bn -> relu -> gap -> flatten -> linear -> softmax.
fn plain(channels: usize) -> Graph {
    let mut b = Net::new("plain", [channels, 6, 6]);
    let x = b.then("conv0", conv(4, 3, 1), b.input());
    let r = b.bn_relu("bn0", "relu0", x);
    let y = b.then("conv1", conv(4, 3, 1), r);
    let z = b.layer("add", &Op::Add, &[y, r]);
    let z = b.bn_relu("bn1", "relu1", z);
    let z = b.classifier(z, 5, true);
    b.then("softmax", Op::Softmax, z);
    b.finish()
}

/// Stem conv + pre-activation block (stride-2 conv0, dropout, 1x1 stride-2 shortcut) +
/// identity block + avg pool (padded) + head without softmax.
fn preact() -> Graph {
    let mut b = Net::new("preact", [3, 9, 9]);
    let x = b.then("conv", conv(4, 3, 1), b.input());
    // block0: widening, strided, with a projection shortcut; block1: identity shortcut.
    let x = b.preact_block("b0", x, 4, 6, 2, 0.3, "shortcut");
    let x = b.preact_block("b1", x, 6, 6, 1, 0.0, "shortcut");
    let x = b.bn_relu("bn", "relu", x);
    let x = b.then("pool", Op::avg_pool(3, 2, 1), x);
    b.classifier(x, 7, true);
    b.finish()
}

/// The ImageNet form in small: a 7x7 stride-2 stem conv, BN, ReLU, the 3x3 stride-2 max pool
/// with padding 1, one post-activation bottleneck with a projection shortcut (conv + BN),
/// ReLU after the add, and a non-overlapping max pool over an odd size before the head.
fn pooled() -> Graph {
    let mut b = Net::new("pooled", [3, 13, 13]);
    let x = b.then("conv1", Op::conv(6, 7, 2, 3, false), b.input());
    let x = b.bn_relu("bn1", "relu", x);
    let x = b.then("maxpool", Op::max_pool(3, 2, 1), x);
    let y = b.then("b.conv1", conv(4, 1, 1), x);
    let y = b.bn_relu("b.bn1", "b.relu1", y);
    let y = b.then("b.conv2", conv(4, 3, 1), y);
    let y = b.bn_relu("b.bn2", "b.relu2", y);
    let y = b.then("b.conv3", conv(8, 1, 1), y);
    let y = b.then("b.bn3", wrnc_testkit::graphs::BN, y);
    let s = b.then("b.down.0", conv(8, 1, 1), x);
    let s = b.then("b.down.1", wrnc_testkit::graphs::BN, s);
    let z = b.layer("b.add", &Op::Add, &[y, s]);
    let z = b.then("b.relu3", Op::Relu, z);
    let z = b.then("pool2", Op::max_pool(2, 2, 0), z);
    b.classifier(z, 6, true);
    b.finish()
}

fn meta(classes: usize) -> ExportMetadata {
    ExportMetadata {
        class_labels: (0..classes).map(|i| format!("class{i}")).collect(),
        ..Default::default()
    }
}

fn probs_of(logits: &[f32], classes: usize) -> Vec<f32> {
    logits
        .chunks(classes)
        .flat_map(|row| {
            let r: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            reference::softmax(&r).into_iter().map(|v| v as f32)
        })
        .collect()
}

#[test]
fn every_opset_runs_in_tract_and_matches_reference() {
    let (mut worst, mut largest) = (0.0f32, 0.0f32);
    for (g, seed) in [(plain(3), 1), (preact(), 2), (pooled(), 3)] {
        let w = weights(&g, seed);
        let classes = g.classes();
        for opset in 13..=17 {
            for fold_bn in [false, true] {
                let opts = ExportOptions { opset, fold_bn };
                let bytes = to_bytes(&export(&g, &w, &opts, &meta(classes)).unwrap());
                for n in [1, 4] {
                    let x = input(&g, n, 100 + n as u64);
                    let (ref_logits, _) = reference::evaluate(&g, &w, &x, n).unwrap();
                    let ref_probs = probs_of(&ref_logits, classes);
                    let m = TractModel::load(&bytes, Some(n)).unwrap();
                    let [c, h, wd] = m.info().input_shape;
                    let (logits, probs) = m.run(&x, [n, c, h, wd]).unwrap();
                    let cl = compare(&ref_logits, &logits, classes).unwrap();
                    let cp = compare(&ref_probs, &probs, classes).unwrap();
                    let what = format!("{} opset {opset} fold {fold_bn} batch {n}", g.name);
                    assert!(cl.max_abs_diff <= 1e-4, "{what}: logits {cl:?}");
                    assert!(cp.max_abs_diff <= 1e-4, "{what}: probabilities {cp:?}");
                    assert_eq!(cl.top1_agree, n, "{what}");
                    worst = worst.max(cl.max_abs_diff).max(cp.max_abs_diff);
                    largest = ref_logits.iter().fold(largest, |m, v| m.max(v.abs()));
                }
            }
        }
    }
    eprintln!("worst abs diff {worst:e}, largest |logit| {largest}");
    assert!(largest > 0.1, "logits are too small to test anything");
}

#[test]
fn symbolic_batch_runs_any_size() {
    let g = preact();
    let w = weights(&g, 3);
    let bytes = to_bytes(&export(&g, &w, &ExportOptions::default(), &meta(7)).unwrap());
    let m = TractModel::load(&bytes, None).unwrap();
    assert_eq!(m.batch(), None);
    for n in [1, 3, 4] {
        let x = input(&g, n, 7);
        let (ref_logits, _) = reference::evaluate(&g, &w, &x, n).unwrap();
        let (logits, _) = m.run(&x, [n, 3, 9, 9]).unwrap();
        assert!(compare(&ref_logits, &logits, 7).unwrap().max_abs_diff <= 1e-4);
    }
}

#[test]
fn folding_preserves_reference_outputs() {
    for (g, seed) in [(plain(3), 4), (preact(), 5)] {
        let w = weights(&g, seed);
        let (f, fw) = passes::inference_form(&g, &w, true);
        let removed = g
            .nodes
            .iter()
            .filter(|n| n.op.kind() == "batch_norm")
            .count()
            - f.nodes
                .iter()
                .filter(|n| n.op.kind() == "batch_norm")
                .count();
        // plain: bn0 after conv0. preact: stem (only read by b0.bn0) and bn1 of both blocks.
        assert_eq!(removed, if g.name == "plain" { 1 } else { 3 });
        let x = input(&g, 3, 9);
        let (a, _) = reference::evaluate(&g, &w, &x, 3).unwrap();
        let (b, _) = reference::evaluate(&f, &fw, &x, 3).unwrap();
        let c = compare(&a, &b, g.classes()).unwrap();
        assert!(c.max_abs_diff <= 1e-5, "{c:?}");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let g = plain(3);
    let w = weights(&g, 6);
    let bytes = to_bytes(&export(&g, &w, &ExportOptions::default(), &meta(5)).unwrap());
    let m = TractModel::load(&bytes, Some(2)).unwrap();
    let x = input(&g, 2, 1);
    assert!(matches!(
        m.run(&x, [1, 3, 6, 6]),
        Err(VerifyError::Input(_))
    ));
    assert!(matches!(
        m.run(&x, [2, 1, 6, 6]),
        Err(VerifyError::Input(_))
    ));
    assert!(matches!(
        m.run(&x[1..], [2, 3, 6, 6]),
        Err(VerifyError::Input(_))
    ));
    assert!(matches!(
        TractModel::load(&b"not onnx".to_vec(), None),
        Err(VerifyError::Onnx(_))
    ));
    assert!(TractModel::load(&bytes, Some(0)).is_err());
    let missing = std::path::Path::new("/nonexistent/model.onnx");
    assert!(matches!(
        TractModel::load(missing, None),
        Err(VerifyError::Io { .. })
    ));
}

fn png(img: &image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn predict_png_with_metadata_normalisation() {
    let g = plain(3);
    let w = weights(&g, 8);
    let mean = vec![0.4, 0.5, 0.6];
    let std = vec![0.2, 0.25, 0.3];
    let m = ExportMetadata {
        normalization: Some(Normalization::mean_std(mean.clone(), std.clone())),
        ..meta(5)
    };
    let dir = wrnc_testkit::tempdir();
    let path = dir.path().join("m.onnx");
    wrnc_onnx::write(&path, &g, &w, &ExportOptions::default(), &m).unwrap();
    let p = Predictor::load(&path).unwrap();

    // A 6x6 RGB image: no resize needed, so preprocessing is exact.
    let mut r = Lcg::new(11);
    let img = image::RgbImage::from_fn(6, 6, |_, _| {
        image::Rgb([0, 0, 0].map(|_: u8| (r.uniform() * 255.0) as u8))
    });
    let file = dir.path().join("x.png");
    std::fs::write(&file, png(&image::DynamicImage::ImageRgb8(img.clone()))).unwrap();
    let preds = p.predict_files(&[&file], 3).unwrap();
    assert_eq!(preds.len(), 1);
    assert_eq!(preds[0].len(), 3);
    assert!(preds[0][0].probability >= preds[0][1].probability);

    // Expected: manual CHW normalisation, then the reference executor.
    let mut x = vec![0.0f32; 3 * 36];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            x[c * 36 + i] = (px.0[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    let (_, probs) = reference::evaluate(&g, &w, &x, 1).unwrap();
    let want = top_k(&probs, 3, p.info());
    for (a, b) in preds[0].iter().zip(&want) {
        assert_eq!(a.class, b.class);
        assert_eq!(a.label, format!("class{}", a.class));
        assert!((a.probability - b.probability).abs() < 1e-4);
    }

    // A larger RGBA image is resized and its alpha dropped; a grey one is expanded.
    let big = image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
        20,
        13,
        image::Rgba([10, 200, 30, 128]),
    ));
    let grey =
        image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(6, 6, image::Luma([77])));
    let out = p.predict_images(&[big, grey], 5).unwrap();
    assert_eq!(out.len(), 2);
    let total: f32 = out[0].iter().map(|p| p.probability).sum();
    assert!((total - 1.0).abs() < 1e-4);

    // Garbage is a clear error naming the file.
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"definitely not a png").unwrap();
    let e = p.predict_files(&[bad], 1).unwrap_err();
    assert!(e.to_string().contains("bad.png"), "{e}");
}

#[test]
fn predict_grey_model_per_pixel_mean() {
    let g = plain(1);
    let w = weights(&g, 12);
    let mean_image: Vec<f32> = (0..36).map(|i| i as f32 / 100.0).collect();
    let m = ExportMetadata {
        normalization: Some(Normalization::per_pixel_mean(mean_image.clone())),
        extra: BTreeMap::new(),
        ..meta(5)
    };
    let bytes = to_bytes(&export(&g, &w, &ExportOptions::default(), &m).unwrap());
    let p = Predictor::load(&bytes).unwrap();
    let img =
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(6, 6, image::Rgb([90, 90, 90])));
    let x = p.preprocess(&img).unwrap();
    for (i, v) in x.iter().enumerate() {
        assert!((v - (90.0 / 255.0 - mean_image[i])).abs() < 1e-6);
    }
    let decoded = wrnc_verify::decode_image(&png(&img), std::path::Path::new("mem.png")).unwrap();
    let preds = p.predict_images(&[decoded], 1).unwrap();
    let (_, probs) = reference::evaluate(&g, &w, &x, 1).unwrap();
    assert_eq!(preds[0][0].class, wrnc_verify::argmax(&probs).unwrap());
}

#[test]
fn predict_applies_the_recorded_resize() {
    // A 6x6 grey model; a 6-wide, 3-high image of columns 10, 20, ..., 60.
    let g = plain(1);
    let w = weights(&g, 3);
    let img = image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(6, 3, |x, _| {
        image::Luma([10 * (x as u8 + 1)])
    }));
    let none = Normalization::none(1);
    let pixels = |resize: Option<wrnc_recipe::Resize>| {
        let m = ExportMetadata {
            normalization: Some(none.clone()),
            resize,
            ..meta(5)
        };
        let bytes = to_bytes(&export(&g, &w, &ExportOptions::default(), &m).unwrap());
        let p = Predictor::load(&bytes).unwrap();
        assert_eq!(p.resize(), resize.unwrap_or_default());
        let x = p.preprocess(&img).unwrap();
        x.iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect::<Vec<u8>>()
    };
    let nearest = |mode| {
        Some(wrnc_recipe::Resize {
            mode,
            filter: wrnc_recipe::ResizeFilter::Nearest,
        })
    };
    // pad: the image fits as it is (6x3), centred on black rows (one above, two below).
    let padded = pixels(nearest(wrnc_recipe::ResizeMode::Pad));
    let row: Vec<u8> = (1..=6).map(|v| 10 * v).collect();
    assert_eq!(&padded[..6], &[0; 6]);
    assert_eq!(&padded[6..12], &row[..]);
    assert_eq!(&padded[24..], &[0; 12]);
    // shorter_side: scaled x2 to 12x6, then the centre 6 columns (3 source columns) kept.
    let cropped = pixels(nearest(wrnc_recipe::ResizeMode::ShorterSide));
    assert_eq!(&cropped[..6], &[20, 30, 30, 40, 40, 50]);
    // A file without the entry: stretch (every row the same, all 6 columns kept).
    let stretched = pixels(None);
    assert_eq!(&stretched[..6], &stretched[30..]);
    assert_ne!(stretched, padded);
}
