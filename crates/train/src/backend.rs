//! The kernel choice of a model: which implementation runs its layers on its device, decided
//! once when the model is built ([`Kernels::select`]).

use candle_core::{DType, Device};

/// Which implementation runs the layers of a [`crate::Model`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// wrnc's fast CPU kernels (`kernels`: convolutions, fused BN+ReLU, in-place
    /// SGD) and the taped backward pass (`tape`); f32 on the CPU.
    CpuFast,
    /// [`Kernels::CpuFast`] with the convolutions' products in bf16 (f32 sums;
    /// `train.precision: bf16` on a CPU with AVX-512 BF16, `kernels::gemm_bf16`); tensors,
    /// batch norm, the other layers and the optimiser stay f32.
    CpuFastBf16,
    /// Candle's ops on a CUDA device with convolutions through cuDNN
    /// (`cuda::conv`, a build with the `cudnn` feature).
    Cudnn,
    /// Candle's plain ops and autograd: the reference the others are tested against.
    Reference,
}

impl Kernels {
    /// The kernels for layers computing in `compute` on `device` (bf16 on the CPU: the fast
    /// kernels with bf16 products where the CPU has AVX-512 BF16). `reference` (e.g.
    /// [`wrnc_ir::knobs::reference_ops`]) turns the fast CPU kernels off; it does not affect
    /// CUDA, whose convolutions use cuDNN whenever the build has it.
    pub fn select(device: &Device, compute: DType, reference: bool) -> Kernels {
        if device.is_cuda() {
            if cfg!(feature = "cudnn") {
                Kernels::Cudnn
            } else {
                Kernels::Reference
            }
        } else if !reference && crate::kernels::supported(device, compute) {
            Kernels::CpuFast
        } else if !reference
            && device.is_cpu()
            && compute == DType::BF16
            && crate::kernels::gemm_bf16::available()
        {
            Kernels::CpuFastBf16
        } else {
            Kernels::Reference
        }
    }

    /// The kernels a model gets by default: [`Kernels::select`] with the
    /// `WRNC_REFERENCE_OPS` switch.
    pub fn default_for(device: &Device, compute: DType) -> Kernels {
        Kernels::select(device, compute, wrnc_ir::knobs::reference_ops())
    }

    /// Whether these are the fast CPU kernels.
    pub fn is_cpu_fast(self) -> bool {
        matches!(self, Kernels::CpuFast | Kernels::CpuFastBf16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_f32_is_fast_unless_reference_is_asked() {
        assert_eq!(
            Kernels::select(&Device::Cpu, DType::F32, false),
            Kernels::CpuFast
        );
        assert_eq!(
            Kernels::select(&Device::Cpu, DType::F32, true),
            Kernels::Reference
        );
        assert_eq!(
            Kernels::select(&Device::Cpu, DType::F64, false),
            Kernels::Reference
        );
    }
}
