//! Dropout masks drawn on the GPU: the kernel of [`crate::dropout_device`] (Philox4x32-10,
//! the scheme of [`crate::philox`]), compiled once per process with NVRTC and loaded once per
//! device, so that a step's masks cost one kernel launch each instead of a host draw and an
//! upload.

use crate::dropout_device::{DropoutLaunch, KERNEL_NAME, KERNEL_SOURCE};
use candle_core::backend::BackendStorage;
use candle_core::cuda::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda::cudarc::nvrtc::compile_ptx;
use candle_core::cuda::WrapErr;
use candle_core::op::BackpropOp;
use candle_core::{CudaDevice, CudaStorage, Result, Storage, Tensor};
use std::sync::OnceLock;

/// The kernel's PTX (or NVRTC's error), compiled on first use.
fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        compile_ptx(KERNEL_SOURCE)
            .map(|p| p.to_src())
            .map_err(|e| format!("NVRTC could not compile the dropout kernel: {e:?}"))
    })
    .as_deref()
    .map_err(|e| candle_core::Error::Msg(e.clone()))
}

/// The f32 mask of `launch`, shaped `shape`, computed on `dev`.
pub fn dropout_mask(launch: &DropoutLaunch, shape: &[usize], dev: &CudaDevice) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    if n as u64 != launch.n {
        candle_core::bail!(
            "dropout mask: shape {shape:?} has {n} elements, not {}",
            launch.n
        );
    }
    let func = dev.get_or_load_custom_func(KERNEL_NAME, "wrnc_dropout_mask", ptx()?)?;
    // SAFETY: the kernel writes every one of the `n` elements.
    let mut out = unsafe { dev.alloc::<f32>(n.max(1))? };
    if n > 0 {
        let (grid, threads) = launch.grid();
        let cfg = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        };
        let [key0, key1] = launch.key;
        let [node, step_lo, step_hi] = launch.counter;
        let mut b = func.builder();
        b.arg(&mut out);
        b.arg(&launch.n);
        b.arg(&key0);
        b.arg(&key1);
        b.arg(&node);
        b.arg(&step_lo);
        b.arg(&step_hi);
        b.arg(&launch.threshold);
        b.arg(&launch.scale);
        // SAFETY: the arguments match the kernel's signature in `KERNEL_SOURCE`, and the
        // grid covers `ceil(n / 4)` threads, each writing at most four elements below `n`.
        unsafe { b.launch(cfg) }.w()?;
    }
    let storage = CudaStorage::wrap_cuda_slice(out, dev.clone());
    debug_assert_eq!(storage.dtype(), candle_core::DType::F32);
    let t = Tensor::from_storage(Storage::Cuda(storage), n.max(1), BackpropOp::none(), false);
    t.narrow(0, 0, n)?.reshape(shape)
}
