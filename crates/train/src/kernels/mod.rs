//! Fast CPU kernels for training, as Candle custom ops behind the IR executor.
//!
//! Candle's CPU back end computes a convolution's input gradient with a direct transposed
//! convolution loop and runs batch norm, ReLU and the optimiser through many single-threaded
//! element-wise kernels. These modules replace the hot spots for f32 tensors on the CPU:
//!
//! - [`conv`]: convolution forward and both gradients by im2col/col2im + gemm (a 1x1 stride-1
//!   convolution is a gemm on the input directly), the batch split over the rayon pool;
//! - [`bn`]: training-mode batch norm with an optional fused ReLU, forward and backward in two
//!   multithreaded passes each;
//! - [`dropout`]: dropout masks drawn in vector registers and applied in the same pass;
//! - [`sgd`]: the SGD update applied in place, one fused pass per tensor;
//! - [`spread`]: the global average pool's backward.
//!
//! Every kernel keeps PyTorch's semantics and is tested against Candle's own ops. Setting the
//! environment variable `WRNC_REFERENCE_OPS=1` (or [`crate::Model::set_reference_ops`]) selects
//! Candle's plain ops instead, and `WRNC_WINOGRAD=0` keeps 3x3 convolutions on im2col + gemm
//! (both declared in [`wrnc_ir::knobs`]).

pub mod add;
pub mod bn;
pub mod conv;
pub mod dropout;
pub mod gemm;
pub mod gemm_bf16;
mod narrow_gemm;
pub mod sgd;
pub mod simd;
pub mod spread;
mod stride2;
mod tile_rows;
pub mod winograd;

use candle_core::{bail, CpuStorage, DType, Device, Layout, Result, Storage, Tensor};

/// The number of worker threads the kernels use (rayon's pool; `RAYON_NUM_THREADS` sets it).
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Whether the fast kernels can serve tensors of `dtype` on `device` (f32 on the CPU).
pub fn supported(device: &Device, dtype: DType) -> bool {
    device.is_cpu() && dtype == DType::F32
}

/// The contiguous f32 data a layout describes, or an error for strided layouts.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("wrnc kernel: expected a contiguous tensor"),
    }
}

/// Calls `f` with the data of a contiguous f32 CPU tensor.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => Ok(f(f32_slice(s, layout)?)),
        _ => bail!("wrnc kernel: expected a CPU tensor"),
    }
}

/// A `len`-element vector every element of which `fill` writes, without zeroing it first (a
/// zeroing pass over a large activation costs about as much as computing it).
///
/// # Safety
/// `fill` must initialise every element of the slice it receives.
pub(crate) unsafe fn written_vec(
    len: usize,
    fill: impl FnOnce(&mut [std::mem::MaybeUninit<f32>]),
) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the caller guarantees that `fill` initialised the first `len` elements.
    unsafe { v.set_len(len) };
    v
}

/// Fills `y` with zeros and returns it as initialised values (a task's share of a fresh
/// buffer, zeroed where it is about to be written instead of in one pass before).
pub(crate) fn init_zeros(y: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    y.iter_mut().for_each(|v| {
        v.write(0.0);
    });
    // SAFETY: every element was written just above.
    unsafe { assume_written(y) }
}

/// Copies `src` into `y` (same length) and returns it as initialised values.
pub(crate) fn init_from<'a>(y: &'a mut [std::mem::MaybeUninit<f32>], src: &[f32]) -> &'a mut [f32] {
    assert_eq!(y.len(), src.len());
    y.iter_mut().zip(src).for_each(|(v, &s)| {
        v.write(s);
    });
    // SAFETY: every element was written just above (the lengths are equal).
    unsafe { assume_written(y) }
}

/// `y` as initialised values.
///
/// # Safety
/// Every element of `y` must have been written.
pub(crate) unsafe fn assume_written(y: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: MaybeUninit<f32> has f32's layout; the caller guarantees initialisation.
    unsafe { &mut *(y as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) }
}

/// A function of one plane of a kernel's output (`[N, C, H, W]` planes numbered `n · C + c`)
/// and its values, which the kernel calls for each plane right after writing it (in cache):
/// a batch norm's backward sums over its output gradient.
pub(crate) type PlaneFn<'a, T> = dyn Fn(usize, &[f32]) -> T + Sync + 'a;

/// `f` of each plane of `hw` values of `part`, whose first plane is plane `first` (nothing
/// without `f`).
pub(crate) fn per_plane<T>(
    part: &[f32],
    first: usize,
    hw: usize,
    f: Option<&PlaneFn<'_, T>>,
) -> Vec<T> {
    match f {
        Some(f) => part
            .chunks_exact(hw)
            .enumerate()
            .map(|(j, p)| f(first + j, p))
            .collect(),
        None => Vec::new(),
    }
}

/// A CPU tensor of `shape` owning `data`.
pub(crate) fn tensor(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &Device::Cpu)
}

#[cfg(test)]
#[path = "../../tests/common/tensors.rs"]
pub(crate) mod testutil;
