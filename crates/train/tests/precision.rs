//! Mixed precision without a GPU: bf16 is CUDA only and says so clearly on the CPU.

use candle_core::{DType, Device};
use wrnc_ir::builder::LayerKind;
use wrnc_ir::recipe::Precision;
use wrnc_ir::GraphBuilder;
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

    let mut b = GraphBuilder::new("t", [1, 2, 2]).unwrap();
    let x = b.input();
    let p = b.layer("pool", &LayerKind::GlobalAvgPool, &[x]).unwrap();
    let f = b.layer("flat", &LayerKind::Flatten, &[p]).unwrap();
    b.layer("fc", &LayerKind::Linear { out: 2, bias: true }, &[f])
        .unwrap();
    let g = b.finish().unwrap();
    let w = wrnc_train::init_weights(&g, 0);
    let e = Model::with_precision(&g, &w, &Device::Cpu, DType::F32, DType::BF16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs a CUDA device"), "{e}");
    let m = Model::with_precision(&g, &w, &Device::Cpu, DType::F32, DType::F32).unwrap();
    assert_eq!((m.dtype(), m.compute_dtype()), (DType::F32, DType::F32));
}
