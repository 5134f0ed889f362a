//! Candle tensor helpers for the train crate's tests, in one place: the integration tests
//! reach them as `common::tensors`, the kernels' unit tests as `crate::kernels::testutil`.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` values uniform in [-1, 1) from a `ChaCha8Rng` seeded with `seed` (the stream the
/// kernels' tests were tuned with; IR-level fixtures use `wrnc_testkit::values`).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}

/// A CPU f32 tensor of `shape` holding [`rand_vec`] values.
pub fn rand(shape: &[usize], seed: u64) -> Tensor {
    let v = rand_vec(shape.iter().product(), seed);
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// The values of `t` (any dtype, any device) as f64, flattened.
pub fn host(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// max |a - b| / max |b|.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (host(a), host(b));
    let scale = b.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Asserts `a` and `b` (f32) agree within `tol` relative to the largest magnitude in `b` (at
/// least 1e-3).
pub fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= tol * scale,
            "{what}: element {i}: {x} vs {y} (scale {scale})"
        );
    }
}
