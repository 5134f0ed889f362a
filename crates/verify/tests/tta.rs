//! `export.tta: flip`: the ONNX file averages the softmax of each image and of its mirror,
//! run by tract, checked against the plain-Rust reference executor run on both images.

use wrnc_ir::{Graph, Op, Weights};
use wrnc_onnx::{export, to_bytes, ExportMetadata, ExportOptions, MetaKey};
use wrnc_recipe::ExportTta;
use wrnc_testkit::graphs::conv;
use wrnc_testkit::seeded::{input, weights};
use wrnc_testkit::{reference, Net};
use wrnc_verify::TractModel;

/// conv -> bn -> relu -> gap -> flatten -> linear (-> softmax when `softmax`), 5 classes.
fn net(softmax: bool) -> Graph {
    let mut b = Net::new("tta", [2, 5, 7]);
    let x = b.then("conv0", conv(4, 3, 1), b.input());
    let x = b.bn_relu("bn0", "relu0", x);
    let x = b.classifier(x, 5, true);
    if softmax {
        b.then("softmax", Op::Softmax, x);
    }
    b.finish()
}

/// Seeded weights with the first conv made deliberately asymmetric: every kernel's right
/// column is zeroed, so that a mirrored image gives other logits.
fn asymmetric(g: &Graph, seed: u64) -> Weights {
    let mut w = weights(g, seed);
    let t = w.tensors.get_mut("conv0.weight").expect("conv0.weight");
    for (i, v) in t.data.iter_mut().enumerate() {
        if i % 3 == 2 {
            *v = 0.0;
        }
    }
    w
}

/// `x` (row-major `[n, c, h, w]`) mirrored along its width.
fn mirrored(x: &[f32], w: usize) -> Vec<f32> {
    let mut m = x.to_vec();
    for row in m.chunks_mut(w) {
        row.reverse();
    }
    m
}

/// Softmax of every row, in f64.
fn softmax_rows(logits: &[f32], k: usize) -> Vec<f64> {
    logits
        .chunks(k)
        .flat_map(|r| reference::softmax(&r.iter().map(|&v| v as f64).collect::<Vec<_>>()))
        .collect()
}

fn tta_model(g: &Graph, w: &Weights) -> wrnc_onnx::ModelProto {
    let m = export(g, w, &ExportOptions::default(), &ExportMetadata::default()).unwrap();
    wrnc_onnx::tta::apply(m, ExportTta::Flip).unwrap()
}

#[test]
fn flip_tta_outputs_the_mean_of_the_two_softmaxes_and_differs_from_the_plain_model() {
    let (n, k) = (3, 5);
    for softmax in [false, true] {
        let g = net(softmax);
        let w = asymmetric(&g, 4);
        let x = input(&g, n, 9);
        let [c, h, wd] = [2, 5, 7];
        let (plain_logits, _) = reference::evaluate(&g, &w, &x, n).unwrap();
        let (mirror_logits, _) = reference::evaluate(&g, &w, &mirrored(&x, wd), n).unwrap();
        let a = softmax_rows(&plain_logits, k);
        let b = softmax_rows(&mirror_logits, k);
        let want: Vec<f64> = a.iter().zip(&b).map(|(a, b)| (a + b) / 2.0).collect();

        let bytes = to_bytes(&tta_model(&g, &w));
        for batch in [None, Some(n)] {
            let m = TractModel::load(bytes.as_slice(), batch).unwrap();
            assert_eq!(m.tta(), ExportTta::Flip);
            assert_eq!(m.info().tta, ExportTta::Flip);
            let got = m.run_probabilities(&x, [n, c, h, wd]).unwrap();
            assert_eq!(got.len(), n * k);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() < 1e-5,
                    "softmax={softmax} batch={batch:?} [{i}]: {g} vs {w}"
                );
            }
            // No logits: run refuses, naming the reason.
            let e = m.run(&x, [n, c, h, wd]).unwrap_err().to_string();
            assert!(e.contains("no logits") && e.contains("flip"), "{e}");
        }

        // The plain file's probabilities are those of the image alone, which the mirror moves.
        let plain = export(
            &g,
            &w,
            &ExportOptions::default(),
            &ExportMetadata::default(),
        )
        .unwrap();
        let pm = TractModel::load(to_bytes(&plain).as_slice(), None).unwrap();
        assert_eq!(pm.tta(), ExportTta::None);
        let p = pm.run_probabilities(&x, [n, c, h, wd]).unwrap();
        let (_, p2) = pm.run(&x, [n, c, h, wd]).unwrap();
        assert_eq!(p, p2);
        let moved = p
            .iter()
            .zip(&want)
            .map(|(p, w)| (*p as f64 - w).abs())
            .fold(0.0, f64::max);
        assert!(moved > 1e-3, "the mirror changed nothing ({moved})");
        for (p, a) in p.iter().zip(&a) {
            assert!((*p as f64 - a).abs() < 1e-5);
        }
    }
}

#[test]
fn flip_tta_file_records_it_and_has_one_output() {
    let g = net(false);
    let w = asymmetric(&g, 1);
    let m = tta_model(&g, &w);
    assert_eq!(m.metadata(MetaKey::Tta.as_str()), Some("flip"));
    assert_eq!(
        m.metadata(MetaKey::Outputs.as_str()),
        Some(r#"["probabilities"]"#)
    );
    let graph = m.graph.as_ref().unwrap();
    let outputs: Vec<_> = graph
        .output
        .iter()
        .map(|o| o.name.clone().unwrap())
        .collect();
    assert_eq!(outputs, ["probabilities"]);
    let ops: Vec<&str> = graph.node.iter().map(|n| n.op()).collect();
    for op in ["Slice", "Concat", "Softmax", "Reshape", "ReduceMean"] {
        assert_eq!(
            ops.iter().filter(|o| **o == op).count(),
            1,
            "{op} in {ops:?}"
        );
    }
    assert!(m.doc_string.as_deref().unwrap().contains("mirror"));
    wrnc_onnx::check_structure(&m).unwrap();
    // Applying it twice is refused; `none` leaves a model as it is.
    assert!(wrnc_onnx::tta::apply(m.clone(), ExportTta::Flip).is_err());
    let plain = export(
        &g,
        &w,
        &ExportOptions::default(),
        &ExportMetadata::default(),
    )
    .unwrap();
    assert_eq!(
        wrnc_onnx::tta::apply(plain.clone(), ExportTta::None).unwrap(),
        plain
    );
    assert_eq!(plain.metadata(MetaKey::Tta.as_str()), None);
}

#[test]
fn an_unknown_tta_value_is_refused_when_read() {
    let g = net(false);
    let mut m = tta_model(&g, &weights(&g, 2));
    for e in &mut m.metadata_props {
        if e.key.as_deref() == Some("tta") {
            e.value = Some("rotate".into());
        }
    }
    let e = wrnc_onnx::ModelInfo::from_model(&m)
        .unwrap_err()
        .to_string();
    assert!(e.contains("tta") && e.contains("rotate"), "{e}");
}
