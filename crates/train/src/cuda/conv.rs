//! 2-D convolution through cuDNN, forward and both backward passes, as Candle custom ops.
//!
//! [`conv2d`] is a differentiable `x.conv2d(w, padding, stride, 1, 1)` for CUDA tensors
//! (f32, bf16, f16, f64; NCHW): its forward is `cudnnConvolutionForward`, and its backward
//! returns `dx` from `cudnnConvolutionBackwardData` and `dw` from
//! `cudnnConvolutionBackwardFilter`, each itself a custom op (first-order gradients only).
//!
//! Per thread and device there is one cuDNN handle (bound to Candle's stream, so ordering
//! with Candle's own kernels is the stream's), one cache of *plans* keyed by (pass, dtype,
//! shapes, padding, stride, math type) holding the tensor/filter/convolution descriptors, the
//! algorithm picked by cuDNN's heuristics and its workspace size, and one workspace buffer
//! that grows to the largest size any plan needs and is reused by every launch.
//!
//! Math: bf16/f16 tensors compute in f32 with tensor cores (cuDNN's PSEUDO_BFLOAT16/HALF
//! configurations); f32 uses FMA arithmetic unless TF32 is allowed ([`super::set_tf32`]);
//! f64 uses the default.

use super::tf32;
use crate::conv::ConvParams;
use candle_core::cuda::cudarc::cudnn::{
    sys, ConvBackwardData, ConvBackwardFilter, ConvDescriptor, ConvForward, Cudnn, CudnnDataType,
    FilterDescriptor, TensorDescriptor,
};
use candle_core::cuda::cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};
use candle_core::cuda::{CudaDType, CudaStorageSlice, DeviceId};
use candle_core::{
    bail, CpuStorage, CudaDevice, CudaStorage, CustomOp2, DType, Layout, Result, Shape, Tensor,
    WithDType,
};
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// Which cuDNN call a plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Pass {
    /// (x, w) -> y
    Forward,
    /// (dy, w) -> dx
    BackwardData,
    /// (x, dy) -> dw
    BackwardFilter,
}

/// Shapes of one convolution: x `[n, c, h, w]`, w `[k, c, r, s]`, y `[n, k, oh, ow]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Geometry {
    x: [usize; 4],
    w: [usize; 4],
    y: [usize; 4],
    padding: usize,
    stride: usize,
}

impl Geometry {
    fn new(x: [usize; 4], w: [usize; 4], padding: usize, stride: usize) -> Result<Geometry> {
        let [n, c, h, wd] = x;
        let [k, wc, r, s] = w;
        if c != wc {
            bail!("cuDNN conv2d: input has {c} channels but the kernel {w:?} expects {wc}");
        }
        if stride == 0 || h + 2 * padding < r || wd + 2 * padding < s {
            bail!(
                "cuDNN conv2d: kernel {w:?} with padding {padding}, stride {stride} does not fit \
                 input {x:?}"
            );
        }
        let oh = (h + 2 * padding - r) / stride + 1;
        let ow = (wd + 2 * padding - s) / stride + 1;
        Ok(Geometry {
            x,
            w,
            y: [n, k, oh, ow],
            padding,
            stride,
        })
    }

    fn output(&self, pass: Pass) -> [usize; 4] {
        match pass {
            Pass::Forward => self.y,
            Pass::BackwardData => self.x,
            Pass::BackwardFilter => self.w,
        }
    }
}

fn dims4(l: &Layout, what: &str) -> Result<[usize; 4]> {
    match *l.dims() {
        [a, b, c, d] => Ok([a, b, c, d]),
        ref other => bail!("cuDNN conv2d: {what} must be 4-D, got {other:?}"),
    }
}

fn i32x4(d: [usize; 4]) -> Result<[i32; 4]> {
    let mut out = [0i32; 4];
    for (o, v) in out.iter_mut().zip(d) {
        *o = i32::try_from(v).map_err(|_| candle_core::Error::Msg(format!("dim {v} too big")))?;
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy)]
enum Algo {
    Forward(sys::cudnnConvolutionFwdAlgo_t),
    BackwardData(sys::cudnnConvolutionBwdDataAlgo_t),
    BackwardFilter(sys::cudnnConvolutionBwdFilterAlgo_t),
}

/// Descriptors, algorithm and workspace size of one (pass, dtype, geometry, math type).
struct Plan<T: CudnnDataType, C: CudnnDataType> {
    conv: ConvDescriptor<C>,
    x: TensorDescriptor<T>,
    w: FilterDescriptor<T>,
    y: TensorDescriptor<T>,
    algo: Algo,
    workspace: usize,
}

impl<T: CudnnDataType, C: CudnnDataType> Plan<T, C> {
    fn new(
        cudnn: &Arc<Cudnn>,
        pass: Pass,
        g: &Geometry,
        math: sys::cudnnMathType_t,
    ) -> Result<Self> {
        use sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW as NCHW;
        let (p, s) = (g.padding as i32, g.stride as i32);
        let mut conv = cudnn.create_conv2d::<C>(
            [p, p],
            [s, s],
            [1, 1],
            sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
        )?;
        conv.set_math_type(math)?;
        let x = cudnn.create_4d_tensor::<T>(NCHW, i32x4(g.x)?)?;
        let w = cudnn.create_4d_filter::<T>(NCHW, i32x4(g.w)?)?;
        let y = cudnn.create_4d_tensor::<T>(NCHW, i32x4(g.y)?)?;
        let (algo, workspace) = match pass {
            Pass::Forward => {
                let op = ConvForward {
                    conv: &conv,
                    x: &x,
                    w: &w,
                    y: &y,
                };
                let a = op.pick_algorithm()?;
                (Algo::Forward(a), op.get_workspace_size(a)?)
            }
            Pass::BackwardData => {
                let op = ConvBackwardData {
                    conv: &conv,
                    dx: &x,
                    w: &w,
                    dy: &y,
                };
                let a = op.pick_algorithm()?;
                (Algo::BackwardData(a), op.get_workspace_size(a)?)
            }
            Pass::BackwardFilter => {
                let op = ConvBackwardFilter {
                    conv: &conv,
                    x: &x,
                    dw: &w,
                    dy: &y,
                };
                let a = op.pick_algorithm()?;
                (Algo::BackwardFilter(a), op.get_workspace_size(a)?)
            }
        };
        Ok(Plan {
            conv,
            x,
            w,
            y,
            algo,
            workspace,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PlanKey {
    pass: Pass,
    dtype: DType,
    geometry: Geometry,
    math: u32,
}

/// One device's cuDNN state on one thread (cuDNN handles are neither `Send` nor `Sync`).
struct DeviceState {
    cudnn: Arc<Cudnn>,
    plans: HashMap<PlanKey, Rc<dyn Any>>,
    workspace: Option<CudaSlice<u8>>,
}

thread_local! {
    static STATE: RefCell<HashMap<DeviceId, DeviceState>> = RefCell::new(HashMap::new());
}

/// Number of cached plans on this thread (all devices), for tests and diagnostics.
pub fn cached_plans() -> usize {
    STATE.with(|s| s.borrow().values().map(|d| d.plans.len()).sum())
}

/// Size in bytes of this thread's workspace buffers (all devices).
pub fn workspace_bytes() -> usize {
    STATE.with(|s| {
        s.borrow()
            .values()
            .map(|d| d.workspace.as_ref().map_or(0, |w| w.len()))
            .sum()
    })
}

fn math_type(dtype: DType) -> sys::cudnnMathType_t {
    use sys::cudnnMathType_t as M;
    match dtype {
        DType::BF16 | DType::F16 => M::CUDNN_TENSOR_OP_MATH,
        DType::F32 if tf32() => M::CUDNN_DEFAULT_MATH,
        DType::F32 => M::CUDNN_FMA_MATH,
        _ => M::CUDNN_DEFAULT_MATH,
    }
}

/// Runs `pass` on the two operands (see [`Pass`] for their roles) and returns the output.
#[allow(clippy::too_many_arguments)]
fn launch<T, C>(
    pass: Pass,
    dtype: DType,
    g: &Geometry,
    dev: &CudaDevice,
    a: &CudaSlice<T>,
    la: &Layout,
    b: &CudaSlice<T>,
    lb: &Layout,
) -> Result<CudaSlice<T>>
where
    T: CudnnDataType + DeviceRepr + ValidAsZeroBits + WithDType + 'static,
    C: CudnnDataType + 'static,
{
    let math = math_type(dtype);
    let key = PlanKey {
        pass,
        dtype,
        geometry: *g,
        math: math as u32,
    };
    let a = a.slice(la.start_offset()..);
    let b = b.slice(lb.start_offset()..);
    let out_len: usize = g.output(pass).iter().product();
    STATE.with(|state| {
        let mut state = state.borrow_mut();
        let ds = match state.entry(dev.id()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(DeviceState {
                cudnn: Cudnn::new(dev.cuda_stream())?,
                plans: HashMap::new(),
                workspace: None,
            }),
        };
        let plan = match ds.plans.get(&key) {
            Some(p) => Rc::clone(p),
            None => {
                let p: Rc<dyn Any> = Rc::new(Plan::<T, C>::new(&ds.cudnn, pass, g, math)?);
                ds.plans.insert(key, Rc::clone(&p));
                p
            }
        };
        let plan = plan
            .downcast_ref::<Plan<T, C>>()
            .ok_or_else(|| candle_core::Error::Msg("cuDNN conv2d: plan type mismatch".into()))?;
        if plan.workspace > 0
            && ds
                .workspace
                .as_ref()
                .is_none_or(|w| w.len() < plan.workspace)
        {
            // The old buffer is freed in stream order, after every launch that used it.
            ds.workspace = None;
            ds.workspace = Some(dev.alloc_zeros::<u8>(plan.workspace)?);
        }
        let ws = if plan.workspace > 0 {
            ds.workspace.as_mut()
        } else {
            None
        };
        // SAFETY: cuDNN overwrites every element of `out` (beta = 0).
        let mut out = unsafe { dev.alloc::<T>(out_len)? };
        let scale = (T::from_f64(1.0), T::from_f64(0.0));
        // SAFETY: the descriptors were made from `g` and `T`, the views hold contiguous NCHW
        // data of those shapes (checked by the caller), and `out` has the output's size.
        unsafe {
            match plan.algo {
                Algo::Forward(algo) => ConvForward {
                    conv: &plan.conv,
                    x: &plan.x,
                    w: &plan.w,
                    y: &plan.y,
                }
                .launch(algo, ws, scale, &a, &b, &mut out)?,
                Algo::BackwardData(algo) => ConvBackwardData {
                    conv: &plan.conv,
                    dx: &plan.x,
                    w: &plan.w,
                    dy: &plan.y,
                }
                .launch(algo, ws, scale, &mut out, &b, &a)?,
                Algo::BackwardFilter(algo) => ConvBackwardFilter {
                    conv: &plan.conv,
                    x: &plan.x,
                    dw: &plan.w,
                    dy: &plan.y,
                }
                .launch(algo, ws, scale, &a, &mut out, &b)?,
            }
        }
        Ok(out)
    })
}

fn wrap<T: CudaDType>(out: CudaSlice<T>, dev: &CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(out, dev.clone())
}

/// Dispatches `pass` on the storages' dtype and returns the output storage and shape.
fn run(
    pass: Pass,
    g: &Geometry,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> Result<(CudaStorage, Shape)> {
    if !l1.is_contiguous() || !l2.is_contiguous() {
        bail!("cuDNN conv2d: operands must be contiguous");
    }
    let dev = &s1.device;
    let shape = Shape::from(g.output(pass).to_vec());
    use CudaStorageSlice as S;
    let out = match (&s1.slice, &s2.slice) {
        (S::F32(a), S::F32(b)) => wrap(
            launch::<_, f32>(pass, DType::F32, g, dev, a, l1, b, l2)?,
            dev,
        ),
        (S::BF16(a), S::BF16(b)) => wrap(
            launch::<_, f32>(pass, DType::BF16, g, dev, a, l1, b, l2)?,
            dev,
        ),
        (S::F16(a), S::F16(b)) => wrap(
            launch::<_, f32>(pass, DType::F16, g, dev, a, l1, b, l2)?,
            dev,
        ),
        (S::F64(a), S::F64(b)) => wrap(
            launch::<_, f64>(pass, DType::F64, g, dev, a, l1, b, l2)?,
            dev,
        ),
        _ => bail!("cuDNN conv2d: operands must both be f32, bf16, f16 or f64"),
    };
    Ok((out, shape))
}

fn cpu_error<T>(name: &str) -> Result<T> {
    bail!("{name}: the cuDNN convolution runs only on CUDA tensors")
}

/// `y = conv2d(x, w)` (cross-correlation, no groups or dilation).
#[derive(Debug, Clone, Copy)]
struct CudnnConv2d {
    padding: usize,
    stride: usize,
}

impl CustomOp2 for CudnnConv2d {
    fn name(&self) -> &'static str {
        "cudnn-conv2d"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_error(self.name())
    }

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let g = Geometry::new(
            dims4(l1, "input")?,
            dims4(l2, "kernel")?,
            self.padding,
            self.stride,
        )?;
        run(Pass::Forward, &g, s1, l1, s2, l2)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dims = |t: &Tensor| -> Result<[usize; 4]> {
            let (a, b, c, d) = t.dims4()?;
            Ok([a, b, c, d])
        };
        let backward = |grad, dims| CudnnConv2dBackward {
            grad,
            padding: self.padding,
            stride: self.stride,
            dims,
        };
        let dx = dy.apply_op2_no_bwd(w, &backward(Grad::Data, dims(x)?))?;
        let dw = x.apply_op2_no_bwd(&dy, &backward(Grad::Filter, dims(w)?))?;
        Ok((Some(dx), Some(dw)))
    }
}

/// Which gradient a [`CudnnConv2dBackward`] computes.
#[derive(Debug, Clone, Copy)]
enum Grad {
    /// `dx = conv2d_backward_data(dy, w)` for an input of shape `dims`.
    Data,
    /// `dw = conv2d_backward_filter(x, dy)` for a kernel of shape `dims`.
    Filter,
}

/// One backward pass of [`CudnnConv2d`].
#[derive(Debug, Clone, Copy)]
struct CudnnConv2dBackward {
    grad: Grad,
    padding: usize,
    stride: usize,
    dims: [usize; 4],
}

impl CustomOp2 for CudnnConv2dBackward {
    fn name(&self) -> &'static str {
        match self.grad {
            Grad::Data => "cudnn-conv2d-backward-data",
            Grad::Filter => "cudnn-conv2d-backward-filter",
        }
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_error(self.name())
    }

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (pass, x, w, dy) = match self.grad {
            Grad::Data => (Pass::BackwardData, self.dims, dims4(l2, "kernel")?, l1),
            Grad::Filter => (Pass::BackwardFilter, dims4(l1, "input")?, self.dims, l2),
        };
        let g = Geometry::new(x, w, self.padding, self.stride)?;
        if dims4(dy, "output gradient")? != g.y {
            bail!(
                "cuDNN conv2d {}: output gradient {:?} does not match {:?}",
                &self.name()["cudnn-conv2d-".len()..],
                dy.dims(),
                g.y
            );
        }
        run(pass, &g, s1, l1, s2, l2)
    }
}

/// Differentiable 2-D convolution of CUDA tensors through cuDNN: the same result as
/// `x.conv2d(w, params.padding, params.stride, 1, 1)`, with both gradients computed by cuDNN.
pub fn conv2d(x: &Tensor, w: &Tensor, params: ConvParams) -> Result<Tensor> {
    let ConvParams { stride, padding } = params;
    if !x.device().is_cuda() || !w.device().is_cuda() {
        bail!("cuDNN conv2d needs CUDA tensors");
    }
    if x.dtype() != w.dtype() {
        bail!(
            "cuDNN conv2d: input is {:?} but the kernel is {:?}",
            x.dtype(),
            w.dtype()
        );
    }
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    x.apply_op2(&w, CudnnConv2d { padding, stride })
}
