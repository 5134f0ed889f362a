//! End-to-end tests of export, verify and predict on randomly initialised models.

mod common;
use common::*;
use std::path::Path;
use wrnc_onnx::MetaKey;

fn onnx_ops(path: &Path, op: &str) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let m = wrnc_onnx::read_model(&bytes).unwrap();
    m.graph
        .unwrap()
        .node
        .iter()
        .filter(|n| n.op_type.as_deref() == Some(op))
        .count()
}

fn blocks(spec: &str) -> usize {
    let s = wrnc_spec::load(&root().join(spec), &[]).unwrap();
    s.graph
        .nodes
        .iter()
        .filter(|n| n.name.ends_with(".add"))
        .count()
}

#[test]
fn every_example_spec_exports_and_verifies_with_and_without_folding() {
    let dir = tempdir();
    let specs: Vec<String> = std::fs::read_dir(root().join("specs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| format!("specs/{}", p.file_name().unwrap().to_string_lossy()))
        // the ImageNet form (post-activation, 224x224) has its own test below
        .filter(|s| s != IMAGENET_SPEC)
        .collect();
    assert!(specs.len() >= 7, "{specs:?}");
    for spec in &specs {
        let w = dir.path().join("w.safetensors");
        init(spec, &w, &["--seed", "3"]);
        let mut bn_counts = Vec::new();
        for fold in [true, false] {
            let out = dir.path().join(if fold { "f.onnx" } else { "nf.onnx" });
            let r = export(spec, &w, &out, if fold { &[] } else { &["--no-fold-bn"] });
            assert_eq!(r.code, 0, "{spec}: {}", r.stderr);
            let v = verify(&out, spec, &w, &["--batch", "4", "--atol", "1e-4"]);
            assert_eq!(v.code, 0, "{spec} fold={fold}: {}{}", v.stdout, v.stderr);
            assert!(v.stdout.contains("batch 1:") && v.stdout.contains("batch 4:"));
            bn_counts.push(onnx_ops(&out, "BatchNormalization"));
            assert_eq!(onnx_ops(&out, "Dropout"), 0);
        }
        // Unfolded: bn0 + bn1 per block + the final bn. Folding removes each block's bn1 (and
        // the stem conv's BN where the first block reads only relu(bn0(conv0))).
        let b = blocks(spec);
        assert_eq!(bn_counts[1], 2 * b + 1, "{spec}");
        let removed = bn_counts[1] - bn_counts[0];
        assert!(
            removed == b || removed == b + 1,
            "{spec}: removed {removed} of {b} blocks"
        );
    }
}

/// WRN-50-2, the ImageNet form of `model.wrn`.
const IMAGENET_SPEC: &str = "specs/wrn-50-2-imagenet.yaml";

/// WRN-50-2 (68.9M parameters, 224x224) exports with and without BN folding, and each file
/// verifies in tract at batch 1 and 2 against the Candle model: about half a minute on 2 cores.
#[test]
fn wrn_50_2_exports_and_verifies_in_tract() {
    let dir = tempdir();
    let w = dir.path().join("w.safetensors");
    init(IMAGENET_SPEC, &w, &["--seed", "5"]);
    for fold in [true, false] {
        let out = dir.path().join("m.onnx");
        let extra: &[&str] = if fold { &[] } else { &["--no-fold-bn"] };
        let r = export(IMAGENET_SPEC, &w, &out, extra);
        assert_eq!(r.code, 0, "{}", r.stderr);
        // every BN follows a conv (post-activation) and folds into it
        let bns = onnx_ops(&out, "BatchNormalization");
        assert_eq!(bns, if fold { 0 } else { 53 }, "fold {fold}");
        assert_eq!(onnx_ops(&out, "MaxPool"), 1);
        assert_eq!(onnx_ops(&out, "Conv"), 53);
        let v = verify(&out, IMAGENET_SPEC, &w, &["--batch", "2"]);
        assert_eq!(v.code, 0, "fold {fold}: {}{}", v.stdout, v.stderr);
        assert!(v.stdout.contains("batch 1:") && v.stdout.contains("batch 2:"));
    }
}

#[test]
fn exported_file_has_opset_ir_symbolic_batch_and_metadata() {
    let dir = tempdir();
    let w = dir.path().join("w.safetensors");
    init("specs/quickstart.yaml", &w, &[]);
    for (opset, ir) in [(13, 7), (14, 7), (15, 8), (16, 8), (17, 8)] {
        let out = dir.path().join(format!("m{opset}.onnx"));
        let o = opset.to_string();
        let r = export("specs/quickstart.yaml", &w, &out, &["--opset", &o]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let m = wrnc_onnx::read_model(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(m.ir_version, Some(ir));
        let ops = &m.opset_import;
        assert!(ops
            .iter()
            .any(|o| o.version == Some(opset) && o.domain.as_deref().unwrap_or("").is_empty()));
        let g = m.graph.as_ref().unwrap();
        let input = &g.input[0];
        assert_eq!(input.name.as_deref(), Some("input"));
        let outs: Vec<_> = g.output.iter().map(|o| o.name.clone().unwrap()).collect();
        assert_eq!(outs, vec!["logits", "probabilities"]);
        let keys: Vec<String> = m
            .metadata_props
            .iter()
            .map(|p| p.key.clone().unwrap_or_default())
            .collect();
        for k in [
            MetaKey::ClassLabels,
            MetaKey::Normalization,
            MetaKey::InputLayout,
            MetaKey::Spec,
            MetaKey::WrncVersion,
        ] {
            assert!(
                keys.iter().any(|x| x == k.as_str()),
                "missing {k} in {keys:?}"
            );
        }
        let info = wrnc_onnx::ModelInfo::from_model(&m).unwrap();
        assert_eq!(info.input_shape, [1, 8, 8]);
        assert_eq!(info.class_labels.len(), 10);
        let dims = format!("{:?}", input);
        assert!(dims.contains("\"N\""), "{dims}");
    }
    // Tract runs the file at several batch sizes without re-export (symbolic N).
    let t = wrnc_verify::TractModel::load(dir.path().join("m17.onnx").as_path(), None).unwrap();
    for n in [1, 3] {
        let (l, p) = t.run(&vec![0.5; n * 64], [n, 1, 8, 8]).unwrap();
        assert_eq!(l.len(), n * 10);
        assert!((p[..10].iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

#[test]
fn bad_inputs_are_clear_errors_and_write_nothing() {
    let dir = tempdir();
    let w16 = dir.path().join("w16.safetensors");
    init("specs/wrn-16-4.yaml", &w16, &[]);
    let out = dir.path().join("x.onnx");
    // Weights of another spec: names the first mismatching tensor with both shapes.
    let r = export("specs/wrn-16-8.yaml", &w16, &out, &[]);
    assert_usage_error(
        &r,
        &[
            "w16.safetensors",
            "conv0",
            "[64, 16, 3, 3]",
            "[128, 16, 3, 3]",
        ],
    );
    assert!(!out.exists());
    // Opset out of range.
    let r = export("specs/wrn-16-4.yaml", &w16, &out, &["--opset", "12"]);
    assert_usage_error(&r, &["--opset 12", "13 to 17"]);
    assert!(!out.exists());
    // A file that is not ONNX.
    let junk = write(
        dir.path(),
        "junk.onnx",
        "this is not a protobuf at all \u{1}\u{2}",
    );
    let r = verify(Path::new(&junk), "specs/wrn-16-4.yaml", &w16, &[]);
    assert_usage_error(&r, &["junk.onnx"]);
    let r = wrnc(&["predict", &junk, &junk]);
    assert_usage_error(&r, &["junk.onnx"]);
    // Not a weights file.
    let r = wrnc(&["export", "specs/wrn-16-4.yaml", "--weights", &junk]);
    assert_usage_error(&r, &["junk.onnx", "safetensors"]);
}
