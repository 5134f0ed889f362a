//! 2-D convolution through cuDNN, forward and both backward passes: the CUDA side of the
//! custom ops of [`crate::conv_op`].
//!
//! [`conv2d`] is a differentiable `x.conv2d(w, padding, stride, 1, 1)` for CUDA tensors
//! (f32, bf16, f16, f64; NCHW): its forward is `cudnnConvolutionForward`, and its backward
//! returns `dx` from `cudnnConvolutionBackwardData` and `dw` from
//! `cudnnConvolutionBackwardFilter`, each itself a custom op (first-order gradients only).
//!
//! Per thread and device there is one cuDNN handle (bound to Candle's stream, so ordering
//! with Candle's own kernels is the stream's), one cache of *plans* keyed by
//! [`PlanKey`] (pass, dtype, shapes, padding, stride, math type, determinism) holding the
//! tensor/filter/convolution descriptors, the algorithm and its workspace size, and one
//! workspace buffer that grows to the largest size any plan needs and is reused by every
//! launch.
//!
//! The algorithm comes from cuDNN's heuristic list (`cudnnGetConvolution*Algorithm_v7`, which
//! cudarc's safe API does not expose in full, so through its `result` layer): the first
//! entry that succeeded, is deterministic unless `train.deterministic: false`, and respects
//! the precision; the plan sets the math type the entry reports, and falls back down the list
//! when sizing or allocating the workspace or a launch fails (rules and tests in
//! [`crate::conv_plan`]). Each plan's choice is recorded ([`crate::conv_plan::plan_log`]).
//!
//! Math: bf16/f16 tensors compute in f32 with tensor cores (cuDNN's PSEUDO_BFLOAT16/HALF
//! configurations); f32 uses FMA arithmetic unless TF32 is allowed ([`super::set_tf32`]);
//! f64 uses the default.

use super::tf32;
use crate::conv::ConvParams;
use crate::conv_plan::{
    self, first_that_works, usable, Candidate, Geometry, HeuristicEntry, MathType, Pass,
    PlanChoice, PlanKey,
};
use candle_core::cuda::cudarc::cudnn::{
    result, sys, ConvBackwardData, ConvBackwardFilter, ConvDescriptor, ConvForward, Cudnn,
    CudnnDataType, FilterDescriptor, TensorDescriptor,
};
use candle_core::cuda::cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};
use candle_core::cuda::{CudaDType, CudaStorageSlice, DeviceId};
use candle_core::{bail, CudaDevice, CudaStorage, DType, Layout, Result, Shape, Tensor, WithDType};
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

fn cudnn_err(e: impl std::fmt::Debug) -> candle_core::Error {
    candle_core::Error::Msg(format!("cuDNN: {e:?}"))
}

#[derive(Debug, Clone, Copy)]
enum Algo {
    Forward(sys::cudnnConvolutionFwdAlgo_t),
    BackwardData(sys::cudnnConvolutionBwdDataAlgo_t),
    BackwardFilter(sys::cudnnConvolutionBwdFilterAlgo_t),
}

impl Algo {
    fn number(self) -> u32 {
        match self {
            Algo::Forward(a) => a as u32,
            Algo::BackwardData(a) => a as u32,
            Algo::BackwardFilter(a) => a as u32,
        }
    }
}

/// A raw cuDNN handle for the heuristic queries (cudarc's [`Cudnn`] keeps its own private).
struct QueryHandle(sys::cudnnHandle_t);

impl Drop for QueryHandle {
    fn drop(&mut self) {
        // SAFETY: created by `result::create_handle` and destroyed once, here.
        let _ = unsafe { result::destroy_handle(self.0) };
    }
}

/// Raw descriptors of one geometry, for the heuristic query only.
struct RawDescriptors {
    x: sys::cudnnTensorDescriptor_t,
    w: sys::cudnnFilterDescriptor_t,
    y: sys::cudnnTensorDescriptor_t,
    conv: sys::cudnnConvolutionDescriptor_t,
}

impl RawDescriptors {
    fn new(
        g: &Geometry,
        data: sys::cudnnDataType_t,
        compute: sys::cudnnDataType_t,
        math: MathType,
    ) -> Result<Self> {
        use sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW as NCHW;
        let [xd, wd, yd] = g.dims_i32()?;
        let d = RawDescriptors {
            x: result::create_tensor_descriptor().map_err(cudnn_err)?,
            w: result::create_filter_descriptor().map_err(cudnn_err)?,
            y: result::create_tensor_descriptor().map_err(cudnn_err)?,
            conv: result::create_convolution_descriptor().map_err(cudnn_err)?,
        };
        let (p, s) = (g.padding as i32, g.stride as i32);
        // SAFETY: the descriptors were just created and are destroyed only by `drop`.
        unsafe {
            result::set_tensor4d_descriptor(d.x, NCHW, data, xd).map_err(cudnn_err)?;
            result::set_filter4d_descriptor(d.w, data, NCHW, wd).map_err(cudnn_err)?;
            result::set_tensor4d_descriptor(d.y, NCHW, data, yd).map_err(cudnn_err)?;
            result::set_convolution2d_descriptor(
                d.conv,
                p,
                p,
                s,
                s,
                1,
                1,
                sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                compute,
            )
            .map_err(cudnn_err)?;
            result::set_convolution_math_type(d.conv, math_enum(math)).map_err(cudnn_err)?;
        }
        Ok(d)
    }
}

impl Drop for RawDescriptors {
    fn drop(&mut self) {
        // SAFETY: each descriptor was created in `new` and is destroyed once, here.
        unsafe {
            let _ = result::destroy_tensor_descriptor(self.x);
            let _ = result::destroy_filter_descriptor(self.w);
            let _ = result::destroy_tensor_descriptor(self.y);
            let _ = result::destroy_convolution_descriptor(self.conv);
        }
    }
}

fn math_enum(m: MathType) -> sys::cudnnMathType_t {
    use sys::cudnnMathType_t as M;
    match m {
        MathType::Default => M::CUDNN_DEFAULT_MATH,
        MathType::TensorOp => M::CUDNN_TENSOR_OP_MATH,
        MathType::TensorOpAllowConversion => M::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION,
        MathType::Fma => M::CUDNN_FMA_MATH,
    }
}

/// One heuristic entry in the host-side form and the raw algorithm.
fn entry<A>(
    algo: A,
    status: sys::cudnnStatus_t,
    determinism: sys::cudnnDeterminism_t,
    math: sys::cudnnMathType_t,
    memory: usize,
    number: u32,
) -> (HeuristicEntry, A) {
    (
        HeuristicEntry {
            algo: number,
            success: status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS,
            deterministic: determinism == sys::cudnnDeterminism_t::CUDNN_DETERMINISTIC,
            math: MathType::from_cudnn(math as u32),
            memory,
        },
        algo,
    )
}

/// cuDNN's heuristic list for `pass` (best first).
fn heuristics(
    handle: &QueryHandle,
    pass: Pass,
    d: &RawDescriptors,
) -> Result<Vec<(HeuristicEntry, Algo)>> {
    let mut count = 0i32;
    // SAFETY: the handle and descriptors are alive; the result arrays have room for
    // `requested` entries and cuDNN writes `count <= requested` of them.
    unsafe {
        match pass {
            Pass::Forward => {
                const N: usize =
                    sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_COUNT as usize;
                let mut perf = [std::mem::zeroed::<sys::cudnnConvolutionFwdAlgoPerf_t>(); N];
                result::get_convolution_forward_algorithm(
                    handle.0,
                    d.x,
                    d.w,
                    d.conv,
                    d.y,
                    N as i32,
                    &mut count,
                    perf.as_mut_ptr(),
                )
                .map_err(cudnn_err)?;
                Ok(perf[..(count.max(0) as usize).min(N)]
                    .iter()
                    .map(|p| {
                        let (e, a) = entry(
                            p.algo,
                            p.status,
                            p.determinism,
                            p.mathType,
                            p.memory,
                            p.algo as u32,
                        );
                        (e, Algo::Forward(a))
                    })
                    .collect())
            }
            Pass::BackwardData => {
                const N: usize =
                    sys::cudnnConvolutionBwdDataAlgo_t::CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT
                        as usize;
                let mut perf = [std::mem::zeroed::<sys::cudnnConvolutionBwdDataAlgoPerf_t>(); N];
                result::get_convolution_backward_data_algorithm(
                    handle.0,
                    d.w,
                    d.y,
                    d.conv,
                    d.x,
                    N as i32,
                    &mut count,
                    perf.as_mut_ptr(),
                )
                .map_err(cudnn_err)?;
                Ok(perf[..(count.max(0) as usize).min(N)]
                    .iter()
                    .map(|p| {
                        let (e, a) = entry(
                            p.algo,
                            p.status,
                            p.determinism,
                            p.mathType,
                            p.memory,
                            p.algo as u32,
                        );
                        (e, Algo::BackwardData(a))
                    })
                    .collect())
            }
            Pass::BackwardFilter => {
                const N: usize =
                    sys::cudnnConvolutionBwdFilterAlgo_t::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT
                        as usize;
                let mut perf = [std::mem::zeroed::<sys::cudnnConvolutionBwdFilterAlgoPerf_t>(); N];
                result::get_convolution_backward_filter_algorithm(
                    handle.0,
                    d.x,
                    d.y,
                    d.conv,
                    d.w,
                    N as i32,
                    &mut count,
                    perf.as_mut_ptr(),
                )
                .map_err(cudnn_err)?;
                Ok(perf[..(count.max(0) as usize).min(N)]
                    .iter()
                    .map(|p| {
                        let (e, a) = entry(
                            p.algo,
                            p.status,
                            p.determinism,
                            p.mathType,
                            p.memory,
                            p.algo as u32,
                        );
                        (e, Algo::BackwardFilter(a))
                    })
                    .collect())
            }
        }
    }
}

/// Descriptors, algorithm and workspace size of one [`PlanKey`].
struct Plan<T: CudnnDataType, C: CudnnDataType> {
    conv: ConvDescriptor<C>,
    x: TensorDescriptor<T>,
    w: FilterDescriptor<T>,
    y: TensorDescriptor<T>,
    algo: Algo,
    workspace: usize,
    /// Position of the chosen entry among the usable ones (a failed launch retries after it).
    position: usize,
}

/// The workspace buffer of one device, grown to `bytes` if smaller.
fn ensure_workspace(dev: &CudaDevice, ws: &mut Option<CudaSlice<u8>>, bytes: usize) -> Result<()> {
    if bytes > 0 && ws.as_ref().is_none_or(|w| w.len() < bytes) {
        // The old buffer is freed in stream order, after every launch that used it.
        *ws = None;
        *ws = Some(dev.alloc_zeros::<u8>(bytes)?);
    }
    Ok(())
}

impl<T: CudnnDataType, C: CudnnDataType> Plan<T, C> {
    /// The plan of `key`: the first usable heuristic entry from position `start` whose
    /// workspace can be sized and allocated.
    fn new(ds: &mut DeviceState, dev: &CudaDevice, key: &PlanKey, start: usize) -> Result<Self> {
        use sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW as NCHW;
        let g = &key.geometry;
        let [xd, wd, yd] = g.dims_i32()?;
        let (p, s) = (g.padding as i32, g.stride as i32);
        let mut conv = ds.cudnn.create_conv2d::<C>(
            [p, p],
            [s, s],
            [1, 1],
            sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
        )?;
        let x = ds.cudnn.create_4d_tensor::<T>(NCHW, xd)?;
        let w = ds.cudnn.create_4d_filter::<T>(NCHW, wd)?;
        let y = ds.cudnn.create_4d_tensor::<T>(NCHW, yd)?;
        let raw = RawDescriptors::new(g, T::DATA_TYPE, C::DATA_TYPE, key.math)?;
        let list = heuristics(&ds.query, key.pass, &raw)?;
        let entries: Vec<HeuristicEntry> = list.iter().map(|(e, _)| *e).collect();
        let candidates = usable(&entries, key.math, key.deterministic)?;
        let workspace_buf = &mut ds.workspace;
        let (position, (algo, workspace, cand)) =
            first_that_works(&candidates, start, |c: &Candidate| {
                conv.set_math_type(math_enum(c.math))?;
                let algo = list[c.index].1;
                let bytes = match algo {
                    Algo::Forward(a) => ConvForward {
                        conv: &conv,
                        x: &x,
                        w: &w,
                        y: &y,
                    }
                    .get_workspace_size(a)?,
                    Algo::BackwardData(a) => ConvBackwardData {
                        conv: &conv,
                        dx: &x,
                        w: &w,
                        dy: &y,
                    }
                    .get_workspace_size(a)?,
                    Algo::BackwardFilter(a) => ConvBackwardFilter {
                        conv: &conv,
                        x: &x,
                        dw: &w,
                        dy: &y,
                    }
                    .get_workspace_size(a)?,
                };
                ensure_workspace(dev, workspace_buf, bytes)?;
                Ok((algo, bytes, *c))
            })?;
        let chosen = &entries[cand.index];
        conv_plan::record(PlanChoice {
            key: *key,
            algo: algo.number(),
            math: cand.math,
            workspace,
            deterministic: chosen.deterministic,
            rank: cand.index,
        });
        Ok(Plan {
            conv,
            x,
            w,
            y,
            algo,
            workspace,
            position,
        })
    }
}

/// One device's cuDNN state on one thread (cuDNN handles are neither `Send` nor `Sync`).
struct DeviceState {
    cudnn: Arc<Cudnn>,
    query: QueryHandle,
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
    let key = PlanKey::new(pass, dtype, *g, tf32(), conv_plan::deterministic());
    let a = a.slice(la.start_offset()..);
    let b = b.slice(lb.start_offset()..);
    let out_len: usize = g.output(pass).iter().product();
    STATE.with(|state| {
        let mut state = state.borrow_mut();
        let ds = match state.entry(dev.id()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let cudnn = Cudnn::new(dev.cuda_stream())?;
                // `Cudnn::new` bound the device's context to this thread.
                let query = QueryHandle(result::create_handle().map_err(cudnn_err)?);
                v.insert(DeviceState {
                    cudnn,
                    query,
                    plans: HashMap::new(),
                    workspace: None,
                })
            }
        };
        let mut start = 0;
        let mut failed: Option<String> = None;
        loop {
            let plan = match ds.plans.get(&key) {
                Some(p) => Rc::clone(p),
                None => {
                    let p = Plan::<T, C>::new(ds, dev, &key, start).map_err(|e| match &failed {
                        Some(f) => candle_core::Error::Msg(format!("{f}; then {e}")),
                        None => e,
                    })?;
                    let p: Rc<dyn Any> = Rc::new(p);
                    ds.plans.insert(key, Rc::clone(&p));
                    p
                }
            };
            let plan = plan.downcast_ref::<Plan<T, C>>().ok_or_else(|| {
                candle_core::Error::Msg("cuDNN conv2d: plan type mismatch".into())
            })?;
            ensure_workspace(dev, &mut ds.workspace, plan.workspace)?;
            let ws = if plan.workspace > 0 {
                ds.workspace.as_mut()
            } else {
                None
            };
            // SAFETY: cuDNN overwrites every element of `out` (beta = 0).
            let mut out = unsafe { dev.alloc::<T>(out_len)? };
            let scale = (T::from_f64(1.0), T::from_f64(0.0));
            // SAFETY: the descriptors were made from `g` and `T`, the views hold contiguous
            // NCHW data of those shapes (checked by the caller), and `out` has the output's
            // size.
            let launched = unsafe {
                match plan.algo {
                    Algo::Forward(algo) => ConvForward {
                        conv: &plan.conv,
                        x: &plan.x,
                        w: &plan.w,
                        y: &plan.y,
                    }
                    .launch(algo, ws, scale, &a, &b, &mut out),
                    Algo::BackwardData(algo) => ConvBackwardData {
                        conv: &plan.conv,
                        dx: &plan.x,
                        w: &plan.w,
                        dy: &plan.y,
                    }
                    .launch(algo, ws, scale, &mut out, &b, &a),
                    Algo::BackwardFilter(algo) => ConvBackwardFilter {
                        conv: &plan.conv,
                        x: &plan.x,
                        dw: &plan.w,
                        dy: &plan.y,
                    }
                    .launch(algo, ws, scale, &a, &mut out, &b),
                }
            };
            match launched {
                Ok(()) => return Ok(out),
                Err(e) => {
                    // Fall back to the next usable entry; the plan is rebuilt from there
                    // (an error when none is left).
                    start = plan.position + 1;
                    failed = Some(format!(
                        "cuDNN conv2d {}: {} failed: {e}",
                        pass.name(),
                        pass.algo_name(plan.algo.number())
                    ));
                    ds.plans.remove(&key);
                }
            }
        }
    })
}

fn wrap<T: CudaDType>(out: CudaSlice<T>, dev: &CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(out, dev.clone())
}

/// Dispatches `pass` on the storages' dtype and returns the output storage and shape.
pub(crate) fn run(
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

/// Differentiable 2-D convolution of CUDA tensors through cuDNN: the same result as
/// `x.conv2d(w, params.padding, params.stride, 1, 1)`, with both gradients computed by cuDNN.
pub fn conv2d(x: &Tensor, w: &Tensor, params: ConvParams) -> Result<Tensor> {
    if !x.device().is_cuda() || !w.device().is_cuda() {
        bail!("cuDNN conv2d needs CUDA tensors");
    }
    crate::conv_op::conv2d(x, w, params, true)
}
