//! int8 QDQ and float16 forms of exported models, calibrated and run in tract.

use wrnc_onnx::proto::ModelProto;
use wrnc_onnx::quantize::{fp16, qdq};
use wrnc_onnx::{export, to_bytes, ExportMetadata, ExportOptions};
use wrnc_recipe::CalibrationMethod;
use wrnc_testkit::graphs::wrn;
use wrnc_testkit::seeded::{input, weights};
use wrnc_verify::{argmax, calibrate, TractModel};

fn float_model(g: &wrnc_ir::Graph, seed: u64) -> ModelProto {
    let opts = ExportOptions {
        opset: 13,
        fold_bn: true,
    };
    export(g, &weights(g, seed), &opts, &ExportMetadata::default()).unwrap()
}

fn run(model: &ModelProto, x: &[f32], n: usize, shape: [usize; 3]) -> Vec<f32> {
    let t = TractModel::load(&to_bytes(model), Some(n)).unwrap();
    t.run(x, [n, shape[0], shape[1], shape[2]]).unwrap().0
}

fn agreement(a: &[f32], b: &[f32], classes: usize) -> usize {
    a.chunks(classes)
        .zip(b.chunks(classes))
        .filter(|(x, y)| argmax(x) == argmax(y))
        .count()
}

fn count(model: &ModelProto, op: &str) -> usize {
    model
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .filter(|n| n.op() == op)
        .count()
}

#[test]
fn int8_wrn_runs_in_tract_close_to_float() {
    let shape = [3, 8, 8];
    let g = wrn(shape, 10, 2, 10, 0.0);
    let f32_model = float_model(&g, 3);
    let n = 32;
    let calib = input(&g, 64, 11);
    for method in CalibrationMethod::ALL {
        let ranges = calibrate(&f32_model, &calib, shape, 16, method).unwrap();
        let (q, summary) = qdq::rewrite(&f32_model, &ranges).unwrap();
        // Every conv and the Gemm read int8 weights; relus after convs are folded.
        assert_eq!(summary.quantized["Conv"], count(&f32_model, "Conv"));
        assert_eq!(summary.quantized["Gemm"], 1);
        assert!(summary.folded_relus > 0);
        assert_eq!(
            count(&q, "Relu"),
            count(&f32_model, "Relu") - summary.folded_relus
        );
        assert!(summary.float_ops.contains("Add"));
        let x = input(&g, n, 5);
        let (a, b) = (run(&f32_model, &x, n, shape), run(&q, &x, n, shape));
        let max = a.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        // Quantization did change the computation.
        assert!(diff > 0.0);
        if method == CalibrationMethod::Entropy {
            // Clipping is the point of entropy calibration: on these synthetic weights (logits
            // in the thousands) it clips hard; its ranges lie within minmax's.
            let full = calibrate(&f32_model, &calib, shape, 16, CalibrationMethod::Minmax).unwrap();
            for (k, (lo, hi)) in &ranges {
                assert!(*lo >= full[k].0 && *hi <= full[k].1, "{k}");
            }
            continue;
        }
        assert!(
            diff < 0.2 * max,
            "{method}: max diff {diff} vs max logit {max}"
        );
        assert!(agreement(&a, &b, 10) >= n * 3 / 4, "{method}");
    }
}

#[test]
fn int8_file_is_about_a_quarter_of_the_float_file() {
    let g = wrn([3, 8, 8], 16, 4, 10, 0.0);
    let f = float_model(&g, 1);
    let ranges = calibrate(
        &f,
        &input(&g, 4, 2),
        [3, 8, 8],
        4,
        CalibrationMethod::Minmax,
    )
    .unwrap();
    let (q, _) = qdq::rewrite(&f, &ranges).unwrap();
    let (a, b) = (to_bytes(&f).len(), to_bytes(&q).len());
    assert!(b * 10 < a * 3, "int8 {b} bytes vs float {a}");
}

#[test]
fn int8_needs_opset_13_and_every_range() {
    let g = wrn([3, 8, 8], 10, 1, 10, 0.0);
    let mut f = float_model(&g, 1);
    let e = qdq::rewrite(&f, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no calibrated range"), "{e}");
    f.opset_import[0].version = Some(12);
    let e = qdq::rewrite(&f, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("opset 13"), "{e}");
}

#[test]
fn fp16_wrn_agrees_with_float_and_keeps_float32_io() {
    let shape = [3, 8, 8];
    let g = wrn(shape, 10, 2, 10, 0.0);
    let f = float_model(&g, 7);
    let h = fp16::to_fp16(&f).unwrap();
    let gr = h.graph.as_ref().unwrap();
    assert_eq!(gr.node.first().unwrap().op(), "Cast");
    assert_eq!(gr.node.last().unwrap().op(), "Cast");
    assert!(gr
        .initializer
        .iter()
        .all(|t| t.data_type == Some(fp16::FLOAT16)));
    let n = 16;
    let x = input(&g, n, 9);
    let (a, b) = (run(&f, &x, n, shape), run(&h, &x, n, shape));
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    // The seeded weights give logits in the thousands: float16 keeps about 3 digits.
    let max = a.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    assert!(
        diff > 0.0 && diff < 0.01 * max,
        "max diff {diff} vs max logit {max}"
    );
    assert!(agreement(&a, &b, 10) >= n - 1);
    assert!(to_bytes(&h).len() * 10 < to_bytes(&f).len() * 6);
}
