//! Mixed precision without a GPU: `train.precision: bf16` on the CPU runs wrnc's kernels with
//! bf16 products where the CPU has AVX-512 BF16, and is a clear error elsewhere.

use candle_core::{DType, Device};
use wrnc_recipe::Precision;
use wrnc_train::{compute_dtype, cpu_bf16_available, Kernels, Mode, Model};

#[test]
fn bf16_on_the_cpu_trains_where_the_cpu_can_and_is_a_clear_error_elsewhere() {
    assert_eq!(
        compute_dtype(Precision::F32, &Device::Cpu).unwrap(),
        DType::F32
    );
    // a small WRN: Winograd, strided and 1x1 convolutions
    let g = wrnc_testkit::wrn([3, 16, 16], 10, 2, 10, 0.0);
    let w = wrnc_train::init_weights(&g, 0);
    let mut f32_model =
        Model::with_precision(&g, &w, &Device::Cpu, DType::F32, DType::F32).unwrap();
    assert_eq!(f32_model.kernels(), Kernels::CpuFast);
    if !cpu_bf16_available() {
        let e = compute_dtype(Precision::Bf16, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("AVX-512 BF16"), "{e}");
        assert!(e.contains("train.precision=f32"), "{e}");
        let e = Model::with_precision(&g, &w, &Device::Cpu, DType::F32, DType::BF16)
            .unwrap_err()
            .to_string();
        assert!(e.contains("CPU with AVX-512 BF16"), "{e}");
        return;
    }
    assert_eq!(
        compute_dtype(Precision::Bf16, &Device::Cpu).unwrap(),
        DType::BF16
    );
    let mut bf16_model =
        Model::with_precision(&g, &w, &Device::Cpu, DType::F32, DType::BF16).unwrap();
    assert_eq!(bf16_model.kernels(), Kernels::CpuFastBf16);
    // every tensor stays f32: only the products round
    assert_eq!(
        (bf16_model.dtype(), bf16_model.compute_dtype()),
        (DType::F32, DType::F32)
    );
    let n = 8;
    let images = wrnc_testkit::seeded::input(&g, n, 1);
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    let mode = Mode::Train { seed: 1, step: 0 };
    let x = f32_model.input_tensor(&images, n).unwrap();
    let a = f32_model.loss_and_grads(&x, &labels, mode).unwrap();
    let b = bf16_model.loss_and_grads(&x, &labels, mode).unwrap();
    let (la, lb) = (a.loss, b.loss);
    assert!(la.is_finite() && lb.is_finite());
    assert!(
        (la - lb).abs() < 0.05 * la.abs(),
        "loss f32 {la} vs bf16 {lb}"
    );
    assert_ne!(la, lb, "bf16 products gave the f32 loss bit for bit");
    // switching to the reference ops leaves bf16: the reference is f32 throughout
    bf16_model.set_reference_ops(true);
    assert_eq!(bf16_model.kernels(), Kernels::Reference);
    bf16_model.set_reference_ops(false);
    assert_eq!(bf16_model.kernels(), Kernels::CpuFastBf16);
}
