//! Autograd through the executor against central finite differences in f64.

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wrnc_ir::{Graph, Op};
use wrnc_testkit::graphs::{conv_bias, BN};
use wrnc_testkit::Net;
use wrnc_train::{cross_entropy, init_weights, Mode, Model};

fn loss(model: &mut Model, x: &Tensor, labels: &Tensor) -> Tensor {
    let logits = model.logits(x, Mode::Train { seed: 9, step: 3 }).unwrap();
    cross_entropy(&logits, labels).unwrap()
}

/// Compares d loss / d theta for a sample of elements of every trainable parameter and of
/// the input with central differences; returns the worst relative error.
fn check(graph: &Graph, n: usize) -> f64 {
    let mut weights = init_weights(graph, 5);
    // Non-trivial BN shifts and biases so every path matters.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (name, t) in weights.tensors.iter_mut() {
        if name.ends_with("bias") {
            t.data
                .iter_mut()
                .for_each(|v| *v = rng.random::<f32>() - 0.5);
        }
    }
    let dev = Device::Cpu;
    let mut model = Model::new(graph, &weights, &dev, DType::F64).unwrap();
    let per: usize = graph.input_shape().iter().product();
    let images: Vec<f32> = (0..n * per)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let x = candle_core::Var::from_tensor(&model.input_tensor(&images, n).unwrap()).unwrap();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % graph.classes() as u32).collect();
    let labels = Tensor::from_slice(&labels, n, &dev).unwrap();
    let l = loss(&mut model, x.as_tensor(), &labels);
    let grads = l.backward().unwrap();

    let eps = 1e-6;
    let mut worst: f64 = 0.0;
    let mut probe = |model: &mut Model,
                     get: &dyn Fn(&Model) -> Tensor,
                     set: &dyn Fn(&mut Model, &Tensor),
                     analytic: &Tensor,
                     what: &str| {
        let base = get(model);
        let flat: Vec<f64> = base.flatten_all().unwrap().to_vec1().unwrap();
        let ana: Vec<f64> = analytic.flatten_all().unwrap().to_vec1().unwrap();
        for k in 0..4 {
            let i = (k * 7919 + 13) % flat.len();
            let mut eval_at = |delta: f64| {
                let mut f = flat.clone();
                f[i] += delta;
                let t = Tensor::from_vec(f, base.shape(), &dev).unwrap();
                set(model, &t);
                loss(model, x.as_tensor(), &labels)
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let num = (eval_at(eps) - eval_at(-eps)) / (2.0 * eps);
            set(model, &base);
            let err = (num - ana[i]).abs() / (num.abs() + ana[i].abs()).max(1e-4);
            assert!(err < 1e-4, "{what}[{i}]: numeric {num} analytic {}", ana[i]);
            worst = worst.max(err);
        }
    };
    let trainable: Vec<_> = model
        .trainable()
        .into_iter()
        .map(|(id, v)| (id, v.as_tensor().clone()))
        .collect();
    for (id, t) in trainable {
        let g = grads
            .get(&t)
            .expect("every parameter gets a gradient")
            .clone();
        let name = graph.param(id).name.clone();
        probe(
            &mut model,
            &|m: &Model| m.param_tensor(id).unwrap().copy().unwrap(),
            &|m: &mut Model, v: &Tensor| m.set_param(id, v).unwrap(),
            &g,
            &name,
        );
    }
    // The input gradient.
    let gx = grads.get(x.as_tensor()).unwrap().clone();
    let xs = x.clone();
    probe(
        &mut model,
        &|_m: &Model| xs.as_tensor().copy().unwrap(),
        &|_m: &mut Model, v: &Tensor| xs.set(v).unwrap(),
        &gx,
        "input",
    );
    worst
}

#[test]
fn wrn_gradients_match_finite_differences() {
    // 7x7 input: the stride-2 convolutions have odd sizes (output padding in the backward).
    let g = wrnc_testkit::wrn([2, 7, 7], 10, 1, 3, 0.0);
    let worst = check(&g, 4);
    assert!(worst < 1e-5, "worst relative error {worst}");
}

#[test]
fn dropout_avgpool_linear_gradients_match_finite_differences() {
    let mut b = Net::new("misc", [2, 5, 5]);
    let c = b.then("conv", conv_bias(3, 3, 2), b.input());
    let d = b.then("drop", Op::dropout(0.4), c);
    let p = b.then("pool", Op::avg_pool(2, 1, 1), d);
    let f = b.then("flat", Op::Flatten, p);
    let n = b.then("bnf", BN, f);
    b.then("fc", Op::linear(4, false), n);
    let g = b.finish();
    let worst = check(&g, 6);
    assert!(worst < 1e-5, "worst relative error {worst}");
}

#[test]
fn max_pool_gradients_match_finite_differences() {
    // The ResNet stem's pool (3x3, stride 2, padding 1: overlapping, padded windows) after a
    // strided conv, and a non-overlapping 2x2 pool over an odd size (floor mode).
    let mut b = Net::new("pools", [2, 9, 9]);
    let c = b.then("conv", conv_bias(4, 3, 1), b.input());
    let n = b.then("bn", BN, c);
    let r = b.then("relu", Op::Relu, n);
    let p = b.then("pool", Op::max_pool(3, 2, 1), r);
    let p = b.then("pool2", Op::max_pool(2, 2, 0), p);
    let f = b.then("flat", Op::Flatten, p);
    b.then("fc", Op::linear(3, true), f);
    let g = b.finish();
    let worst = check(&g, 3);
    assert!(worst < 1e-5, "worst relative error {worst}");
}
