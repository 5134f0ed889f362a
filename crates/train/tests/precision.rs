//! Mixed precision without a GPU: bf16 is CUDA only and says so clearly on the CPU.

use candle_core::{DType, Device};
use wrnc_recipe::Precision;
use wrnc_testkit::Net;
use wrnc_train::{compute_dtype, Model};

#[test]
fn bf16_on_the_cpu_is_a_clear_error() {
    assert_eq!(
        compute_dtype(Precision::F32, &Device::Cpu).unwrap(),
        DType::F32
    );
    let e = compute_dtype(Precision::Bf16, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bf16 needs a CUDA device"), "{e}");
    assert!(e.contains("train.precision=f32"), "{e}");

    let mut b = Net::new("t", [1, 2, 2]);
    b.classifier(b.input(), 2, true);
    let g = b.finish();
    let w = wrnc_train::init_weights(&g, 0);
    let e = Model::with_precision(&g, &w, &Device::Cpu, DType::F32, DType::BF16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs a CUDA device"), "{e}");
    let m = Model::with_precision(&g, &w, &Device::Cpu, DType::F32, DType::F32).unwrap();
    assert_eq!((m.dtype(), m.compute_dtype()), (DType::F32, DType::F32));
}
