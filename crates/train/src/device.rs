//! Choosing the Candle device. CUDA exists only when the crate is built with the `cuda` (or
//! `cudnn`) feature; asking for it otherwise is a clear error.

use crate::error::{Result, TrainError};
use candle_core::Device;
use wrnc_recipe::DeviceKind;

/// Whether this build can use CUDA.
pub fn cuda_built_in() -> bool {
    cfg!(feature = "cuda")
}

/// Opens the device asked for. `Auto` picks CUDA GPU 0 when built in and present, else CPU.
pub fn select_device(kind: DeviceKind) -> Result<Device> {
    match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        DeviceKind::Cuda => open_cuda(),
        DeviceKind::Auto => Ok(open_cuda().unwrap_or(Device::Cpu)),
    }
}

/// A short human name of a device, for logs and `run.json`.
pub fn device_name(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda:0",
        Device::Metal(_) => "metal:0",
    }
}

/// Applies `train.tf32` (TF32 tensor-core arithmetic for f32 matmuls and convolutions) when
/// `device` is CUDA; nothing to do on the CPU, which has no TF32.
pub fn set_tf32(device: &Device, enabled: bool) {
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        crate::cuda::set_tf32(enabled);
    }
    #[cfg(not(feature = "cuda"))]
    let _ = (device, enabled);
}

/// Applies `train.deterministic` (only deterministic cuDNN convolution algorithms) when
/// `device` is CUDA; the CPU kernels are deterministic anyway.
pub fn set_deterministic(device: &Device, enabled: bool) {
    if device.is_cuda() {
        crate::conv_plan::set_deterministic(enabled);
    }
}

/// Opens GPU 0 and keeps its freed memory in the allocator's pool
/// ([`crate::cuda::keep_freed_memory`]).
#[cfg(feature = "cuda")]
fn open_cuda() -> Result<Device> {
    let device = Device::new_cuda(0).map_err(|e| {
        TrainError::Device(format!(
            "CUDA was requested but GPU 0 cannot be opened: {e}"
        ))
    })?;
    if let Device::Cuda(d) = &device {
        crate::cuda::keep_freed_memory(d).map_err(|e| {
            TrainError::Device(format!("GPU 0: cannot configure its memory pool: {e}"))
        })?;
    }
    Ok(device)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda() -> Result<Device> {
    Err(TrainError::Device(
        "CUDA was requested but this wrnc was built without CUDA support; rebuild with \
         `cargo build --release --features cuda` (or `cudnn`), or use `--device cpu`"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_always_works_and_cuda_without_feature_is_an_error() {
        assert!(matches!(select_device(DeviceKind::Cpu), Ok(Device::Cpu)));
        if !cuda_built_in() {
            let e = select_device(DeviceKind::Cuda).unwrap_err().to_string();
            assert!(e.contains("without CUDA support"), "{e}");
            assert!(matches!(select_device(DeviceKind::Auto), Ok(Device::Cpu)));
        }
    }
}
