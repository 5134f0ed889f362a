//! The executor's forward pass (inference mode, Candle's ops and the fast CPU kernels) against
//! the plain f64 reference executor of the test kit.

use candle_core::{DType, Device};
use wrnc_ir::{Graph, Op};
use wrnc_testkit::graphs::{conv, BN};
use wrnc_testkit::seeded::{input, weights};
use wrnc_testkit::{reference, Net};
use wrnc_train::{Mode, Model};

/// A ResNet-style stem (conv, BN, ReLU, the 3x3 stride-2 max pool with padding 1), a
/// non-overlapping max pool over an odd size, a linear head and softmax.
fn pooled() -> Graph {
    let mut b = Net::new("pooled", [3, 11, 11]);
    let x = b.then("conv1", conv(5, 3, 2), b.input());
    let x = b.then("bn1", BN, x);
    // no ReLU before the first pool: negative maxima show that the padding is not zero
    let x = b.then("maxpool", Op::max_pool(3, 2, 1), x);
    let x = b.then("relu", Op::Relu, x);
    let x = b.then("pool2", Op::max_pool(2, 2, 0), x);
    let x = b.then("flatten", Op::Flatten, x);
    let x = b.then("fc", Op::linear(4, true), x);
    b.then("softmax", Op::Softmax, x);
    b.finish()
}

#[test]
fn max_pool_forward_matches_the_reference_executor() {
    let g = pooled();
    assert_eq!(g.shape(g.nodes[2].output), [5, 3, 3]);
    assert_eq!(g.shape(g.nodes[4].output), [5, 1, 1]);
    let w = weights(&g, 3);
    let n = 3;
    let x = input(&g, n, 8);
    let (want, _) = reference::evaluate(&g, &w, &x, n).unwrap();
    for reference_ops in [true, false] {
        let mut m = Model::new(&g, &w, &Device::Cpu, DType::F32).unwrap();
        m.set_reference_ops(reference_ops);
        let t = m.input_tensor(&x, n).unwrap();
        let got: Vec<f32> = m
            .logits(&t, Mode::Eval)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-5,
                "reference ops {reference_ops}: {a} vs {b}"
            );
        }
    }
}
