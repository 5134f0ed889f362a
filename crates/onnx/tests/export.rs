//! Export tests: decode the written bytes and check the contract.

use prost::Message;
use std::collections::BTreeMap;
use wrnc_ir::{Graph, Op, Weights};
use wrnc_onnx::proto::tensor_shape_proto::dimension::Value as DimValue;
use wrnc_onnx::proto::{type_proto, Dim, ModelProto};
use wrnc_onnx::{
    check_structure, export, read_model, read_model_with, to_bytes, write, ExportMetadata,
    ExportOptions, ModelInfo, Normalization, OnnxError, ReadLimits, TrainingSummary,
};
use wrnc_recipe::Normalize;
use wrnc_testkit::graphs::conv;
use wrnc_testkit::Net;

/// A pre-activation block with a 1x1 stride-2 shortcut, dropout, avg pool and softmax.
fn net(softmax: bool) -> Graph {
    let mut b = Net::new("tiny", [3, 8, 8]);
    let x = b.then("conv", conv(4, 3, 1), b.input());
    let x = b.preact_block("block", x, 4, 6, 2, 0.3, "shortcut");
    let x = b.then("pool", Op::avg_pool(2, 1, 0), x);
    let x = b.classifier(x, 5, true);
    if softmax {
        b.then("softmax", Op::Softmax, x);
    }
    b.finish()
}

fn weights(g: &Graph) -> Weights {
    wrnc_testkit::weights(g, 42)
}

fn meta() -> ExportMetadata {
    ExportMetadata {
        class_labels: ["a", "b", "c", "d", "e"].map(String::from).to_vec(),
        normalization: Some(Normalization::mean_std(
            vec![0.49, 0.48, 0.45],
            vec![0.25, 0.24, 0.26],
        )),
        spec_yaml: Some("name: tiny\n".into()),
        training: Some(TrainingSummary {
            epochs_completed: Some(3),
            epoch: Some(2),
            selected_on: Some(wrnc_onnx::SelectedOn::Val),
            eval_split: Some(wrnc_onnx::EvalSplit::Val),
            eval_accuracy: Some(0.5),
            test_accuracy: None,
        }),
        doc_string: None,
        description: None,
        weights_file: None,
        resize: Some(wrnc_recipe::Resize {
            mode: wrnc_recipe::ResizeMode::ShorterSide,
            filter: wrnc_recipe::ResizeFilter::Lanczos3,
        }),
        extra: BTreeMap::from([("note".to_string(), "hello".to_string())]),
    }
}

fn ops(m: &ModelProto) -> Vec<String> {
    m.graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .map(|n| n.op().to_string())
        .collect()
}

#[test]
fn every_opset_decodes_with_contract() {
    let g = net(true);
    let w = weights(&g);
    for opset in 13..=17 {
        for fold in [false, true] {
            let opts = ExportOptions {
                opset,
                fold_bn: fold,
            };
            let bytes = to_bytes(&export(&g, &w, &opts, &meta()).unwrap());
            let m = ModelProto::decode(bytes.as_slice()).unwrap();
            assert_eq!(m.default_opset(), Some(opset));
            assert_eq!(m.ir_version, Some(if opset <= 14 { 7 } else { 8 }));
            assert_eq!(m.producer_name.as_deref(), Some("wrnc"));
            assert_eq!(
                m.producer_version.as_deref(),
                Some(env!("CARGO_PKG_VERSION"))
            );
            check_structure(&m).unwrap();
            let gp = m.graph.as_ref().unwrap();
            // Input [N, 3, 8, 8] with a symbolic batch.
            assert_eq!(gp.input.len(), 1);
            assert_eq!(gp.input[0].name.as_deref(), Some("input"));
            let Some(type_proto::Value::TensorType(t)) =
                gp.input[0].r#type.as_ref().unwrap().value.as_ref()
            else {
                panic!("input is not a tensor")
            };
            let dims = &t.shape.as_ref().unwrap().dim;
            assert_eq!(dims[0].value, Some(DimValue::DimParam("N".into())));
            assert_eq!(
                gp.input[0].dims().unwrap()[1..],
                [Dim::Fixed(3), Dim::Fixed(8), Dim::Fixed(8)]
            );
            let outs: Vec<_> = gp.output.iter().map(|o| o.name.clone().unwrap()).collect();
            assert_eq!(outs, ["logits", "probabilities"]);
            // Inference form.
            let o = ops(&m);
            assert!(!o.contains(&"Dropout".to_string()));
            let bns = o.iter().filter(|s| *s == "BatchNormalization").count();
            assert_eq!(bns, if fold { 0 } else { 2 }, "opset {opset} fold {fold}");
            assert_eq!(o.last().unwrap(), "Softmax");
            // Node names are layer names; initializer names are parameter names.
            let names: Vec<_> = gp.node.iter().map(|n| n.name.clone().unwrap()).collect();
            assert!(names.contains(&"block.conv0".to_string()));
            let inits: Vec<_> = gp
                .initializer
                .iter()
                .map(|t| t.name.clone().unwrap())
                .collect();
            assert!(inits.contains(&"fc.weight".to_string()));
            assert_eq!(inits.contains(&"block.conv0.bias".to_string()), fold);
            // Explicit zeros are on the wire.
            let sc = gp
                .node
                .iter()
                .find(|n| n.name.as_deref() == Some("block.shortcut"))
                .unwrap();
            assert_eq!(sc.attr("pads").unwrap().ints, [0, 0, 0, 0]);
            let pool = gp.node.iter().find(|n| n.op() == "AveragePool").unwrap();
            assert_eq!(pool.attr("count_include_pad").unwrap().i, Some(0));
            assert_eq!(pool.attr("strides").unwrap().ints, [1, 1]);
            let gemm = gp.node.iter().find(|n| n.op() == "Gemm").unwrap();
            assert_eq!(gemm.attr("transB").unwrap().i, Some(1));
            assert_eq!(gemm.output, ["logits"]);
            // Metadata.
            for k in [
                "class_labels",
                "input_layout",
                "input_shape",
                "normalization",
                "spec",
                "training",
                "wrnc_version",
                "note",
            ] {
                assert!(m.metadata(k).is_some(), "missing metadata {k}");
            }
            assert_eq!(m.metadata("input_layout"), Some("NCHW"));
            assert_eq!(m.metadata("input_shape"), Some("[3,8,8]"));
            assert_eq!(m.metadata("class_labels"), Some(r#"["a","b","c","d","e"]"#));
            assert_eq!(
                m.metadata("training"),
                Some(
                    r#"{"epochs_completed":3,"epoch":2,"selected_on":"val","eval_split":"val","eval_accuracy":0.5}"#
                )
            );
            assert_eq!(
                m.metadata("resize"),
                Some(r#"{"mode":"shorter_side","filter":"lanczos3","size":[8,8]}"#)
            );
            assert!(gp.doc_string.is_some() && m.doc_string.is_some());
            let info = ModelInfo::from_model(&read_model(&bytes).unwrap()).unwrap();
            assert_eq!(info.input_shape, [3, 8, 8]);
            let r = info.resize.unwrap();
            assert_eq!(r.resize().mode, wrnc_recipe::ResizeMode::ShorterSide);
            assert_eq!(info.label(4), "e");
            assert_eq!(info.normalization.unwrap().mode, Normalize::MeanStd);
        }
    }
}

#[test]
fn softmax_is_added_when_missing() {
    let g = net(false);
    let m = export(&g, &weights(&g), &ExportOptions::default(), &meta()).unwrap();
    check_structure(&m).unwrap();
    let gp = m.graph.as_ref().unwrap();
    let last = gp.node.last().unwrap();
    assert_eq!(last.op(), "Softmax");
    assert_eq!(last.input, ["logits"]);
    assert_eq!(last.output, ["probabilities"]);
    assert_eq!(last.attr("axis").unwrap().i, Some(1));
}

#[test]
fn out_of_range_opsets_are_refused() {
    let g = net(true);
    let w = weights(&g);
    for opset in [0, 12, 18, -1] {
        let opts = ExportOptions {
            opset,
            fold_bn: true,
        };
        let e = export(&g, &w, &opts, &meta()).unwrap_err();
        assert!(matches!(e, OnnxError::UnsupportedOpset { .. }));
        let msg = e.to_string();
        assert!(msg.contains("13..=17"), "{msg}");
    }
}

#[test]
fn bad_weights_are_clear_errors_and_nothing_is_written() {
    let g = net(true);
    let dir = wrnc_testkit::tempdir();
    let path = dir.path().join("m.onnx");

    let mut w = weights(&g);
    w.tensors.remove("block.conv0.weight");
    let e = write(&path, &g, &w, &ExportOptions::default(), &meta()).unwrap_err();
    assert!(
        e.to_string()
            .contains("missing tensor `block.conv0.weight`"),
        "{e}"
    );
    assert!(!path.exists());

    let mut w = weights(&g);
    w.tensors.get_mut("fc.weight").unwrap().shape = vec![6, 5];
    let e = write(&path, &g, &w, &ExportOptions::default(), &meta()).unwrap_err();
    assert!(
        e.to_string().contains("`fc.weight` has shape [6, 5]"),
        "{e}"
    );
    assert!(!path.exists());

    let mut w = weights(&g);
    w.tensors.get_mut("fc.bias").unwrap().data[2] = f32::NAN;
    let e = write(&path, &g, &w, &ExportOptions::default(), &meta()).unwrap_err();
    assert!(e.to_string().contains("fc.bias"), "{e}");
    assert!(!path.exists());

    let mut w = weights(&g);
    w.tensors.get_mut("fc.bias").unwrap().data.pop();
    assert!(matches!(
        write(&path, &g, &w, &ExportOptions::default(), &meta()),
        Err(OnnxError::BadTensor { .. })
    ));

    let mut m = meta();
    m.class_labels.pop();
    assert!(matches!(
        write(&path, &g, &weights(&g), &ExportOptions::default(), &m),
        Err(OnnxError::Metadata(_))
    ));
    let mut m = meta();
    m.extra.insert("spec".into(), "x".into());
    assert!(write(&path, &g, &weights(&g), &ExportOptions::default(), &m).is_err());
    assert!(!path.exists());

    let n = write(&path, &g, &weights(&g), &ExportOptions::default(), &meta()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, n);
}

#[test]
fn reader_limits_and_structure_check() {
    let g = net(true);
    let m = export(&g, &weights(&g), &ExportOptions::default(), &meta()).unwrap();
    let bytes = to_bytes(&m);

    let tight = ReadLimits {
        max_file_bytes: 100,
        ..Default::default()
    };
    let few = ReadLimits {
        max_tensor_elements: 10,
        ..Default::default()
    };
    let short = ReadLimits {
        max_nodes: 3,
        ..Default::default()
    };
    for limits in [tight, few, short] {
        let r = read_model_with(&bytes, &limits);
        assert!(matches!(r, Err(OnnxError::TooLarge(_))), "{limits:?}");
    }
    assert!(matches!(
        read_model(b"\xff\xff\xff"),
        Err(OnnxError::Decode(_))
    ));

    // An initializer claiming more data than it holds.
    let mut bad = m.clone();
    bad.graph.as_mut().unwrap().initializer[0].dims = vec![1 << 40, 1 << 20];
    let e = read_model(&to_bytes(&bad)).unwrap_err();
    assert!(matches!(e, OnnxError::TooLarge(_)), "{e}");
    let mut bad = m.clone();
    bad.graph.as_mut().unwrap().initializer[0].dims.push(2);
    let e = read_model(&to_bytes(&bad)).unwrap_err();
    assert!(e.to_string().contains("holds data for"), "{e}");

    // Structural problems.
    let mut bad = m.clone();
    bad.opset_import.clear();
    let gp = bad.graph.as_mut().unwrap();
    gp.node[1].input[0] = "nowhere".into();
    let mut dropout = gp.node[2].clone();
    dropout.op_type = Some("Dropout".into());
    dropout.output = vec!["d".into()];
    gp.node.push(dropout);
    gp.initializer[1].raw_data.as_mut().unwrap().truncate(4);
    let Err(OnnxError::Invalid(p)) = check_structure(&bad) else {
        panic!("expected problems")
    };
    let all = p.join("\n");
    assert!(all.contains("opset"), "{all}");
    assert!(all.contains("`nowhere`"), "{all}");
    assert!(all.contains("Dropout"), "{all}");
    assert!(all.contains("holds 1"), "{all}");

    // A training-mode BatchNormalization.
    let unfolded = export(
        &g,
        &weights(&g),
        &ExportOptions {
            opset: 15,
            fold_bn: false,
        },
        &meta(),
    )
    .unwrap();
    let mut bad = unfolded.clone();
    let bn = bad
        .graph
        .as_mut()
        .unwrap()
        .node
        .iter_mut()
        .find(|n| n.op() == "BatchNormalization")
        .unwrap();
    bn.attribute
        .push(wrnc_onnx::proto::AttributeProto::int("training_mode", 1));
    bn.output.push("rm".into());
    let Err(OnnxError::Invalid(p)) = check_structure(&bad) else {
        panic!("expected problems")
    };
    assert_eq!(p.len(), 2, "{p:?}");
}

#[test]
fn an_input_shape_that_cannot_be_told_is_shown_as_its_dims() {
    let g = net(true);
    let mut m = export(&g, &weights(&g), &ExportOptions::default(), &meta()).unwrap();
    m.metadata_props
        .retain(|p| p.key.as_deref() != Some("input_shape"));
    let input = &mut m.graph.as_mut().unwrap().input[0];
    let Some(type_proto::Value::TensorType(t)) = input.r#type.as_mut().unwrap().value.as_mut()
    else {
        panic!("input is not a tensor")
    };
    t.shape.as_mut().unwrap().dim.truncate(2);
    let e = ModelInfo::from_model(&m).unwrap_err().to_string();
    assert!(
        e.contains("the input `input` is declared [N, 3], not [N, C, H, W]"),
        "{e}"
    );
    assert!(!e.contains("Fixed") && !e.contains("Some("), "{e}");
}
