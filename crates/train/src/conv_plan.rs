//! The host-side logic of the cuDNN convolutions, compiled in every build so that it is
//! unit-tested without a GPU: the [`Geometry`] of a convolution, the [`PlanKey`] its cached
//! plan is found by, the math type a precision asks for, and the choice of an algorithm from
//! cuDNN's heuristic list ([`usable`], [`first_that_works`]) with its log ([`PlanChoice`]).
//!
//! # Algorithm choice (PyTorch's `getValidAlgorithms` rule)
//! cuDNN's heuristics return a list of algorithms, best first, each with a status, whether it
//! is deterministic, the math type it runs with and its workspace. An entry is usable when its
//! status is success, when it is deterministic or [`deterministic`] is off
//! (`train.deterministic: false`), and when its math type respects the precision asked for
//! (strict f32 never takes a tensor-op math type, which would compute in TF32). The plan
//! takes the first usable entry that works (its workspace can be sized and allocated, its
//! launch succeeds) and falls back down the list otherwise.

use candle_core::{bail, DType, Result};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static DETERMINISTIC: AtomicBool = AtomicBool::new(true);

/// Restricts the cuDNN convolutions to deterministic algorithms (`train.deterministic`, on by
/// default): two runs of the same spec then compute bit-identical results. Off allows the
/// fastest algorithm, some of which accumulate with atomics in a varying order.
pub fn set_deterministic(enabled: bool) {
    DETERMINISTIC.store(enabled, Ordering::SeqCst);
}

/// Whether only deterministic algorithms are used (see [`set_deterministic`]).
pub fn deterministic() -> bool {
    DETERMINISTIC.load(Ordering::SeqCst)
}

/// Which cuDNN call a plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pass {
    /// (x, w) -> y
    Forward,
    /// (dy, w) -> dx
    BackwardData,
    /// (x, dy) -> dw
    BackwardFilter,
}

impl Pass {
    /// Short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Forward => "forward",
            Pass::BackwardData => "backward-data",
            Pass::BackwardFilter => "backward-filter",
        }
    }

    /// cuDNN's name of algorithm number `algo` of this pass (`cudnnConvolution*Algo_t`).
    pub fn algo_name(self, algo: u32) -> &'static str {
        const FWD: [&str; 8] = [
            "IMPLICIT_GEMM",
            "IMPLICIT_PRECOMP_GEMM",
            "GEMM",
            "DIRECT",
            "FFT",
            "FFT_TILING",
            "WINOGRAD",
            "WINOGRAD_NONFUSED",
        ];
        const DATA: [&str; 6] = [
            "ALGO_0",
            "ALGO_1",
            "FFT",
            "FFT_TILING",
            "WINOGRAD",
            "WINOGRAD_NONFUSED",
        ];
        const FILTER: [&str; 7] = [
            "ALGO_0",
            "ALGO_1",
            "FFT",
            "ALGO_3",
            "WINOGRAD",
            "WINOGRAD_NONFUSED",
            "FFT_TILING",
        ];
        let names: &[&str] = match self {
            Pass::Forward => &FWD,
            Pass::BackwardData => &DATA,
            Pass::BackwardFilter => &FILTER,
        };
        names.get(algo as usize).copied().unwrap_or("UNKNOWN")
    }
}

/// Shapes of one convolution: x `[n, c, h, w]`, w `[k, c, r, s]`, y `[n, k, oh, ow]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Input shape.
    pub x: [usize; 4],
    /// Kernel shape.
    pub w: [usize; 4],
    /// Output shape.
    pub y: [usize; 4],
    /// Zero padding on each side, both axes.
    pub padding: usize,
    /// Stride, both axes.
    pub stride: usize,
}

impl Geometry {
    /// The geometry of `x` convolved with `w`, or an error when the channels differ or the
    /// kernel does not fit the padded input.
    pub fn new(x: [usize; 4], w: [usize; 4], padding: usize, stride: usize) -> Result<Geometry> {
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

    /// The shape `pass` produces: y, dx or dw.
    pub fn output(&self, pass: Pass) -> [usize; 4] {
        match pass {
            Pass::Forward => self.y,
            Pass::BackwardData => self.x,
            Pass::BackwardFilter => self.w,
        }
    }

    /// The shapes as cuDNN's `int`s: x, w, y (an error when a dimension does not fit).
    pub fn dims_i32(&self) -> Result<[[i32; 4]; 3]> {
        Ok([i32x4(self.x)?, i32x4(self.w)?, i32x4(self.y)?])
    }
}

fn i32x4(d: [usize; 4]) -> Result<[i32; 4]> {
    let mut out = [0i32; 4];
    for (o, v) in out.iter_mut().zip(d) {
        *o = i32::try_from(v)
            .map_err(|_| candle_core::Error::Msg(format!("cuDNN conv2d: dimension {v} too big")))?;
    }
    Ok(out)
}

/// cuDNN's math types (`cudnnMathType_t`, same numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MathType {
    /// `CUDNN_DEFAULT_MATH`: tensor cores allowed (TF32 for f32 data).
    Default,
    /// `CUDNN_TENSOR_OP_MATH`.
    TensorOp,
    /// `CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION`.
    TensorOpAllowConversion,
    /// `CUDNN_FMA_MATH`: FMA instructions only (IEEE f32 products, no TF32).
    Fma,
}

impl MathType {
    /// From cuDNN's number (unknown numbers read as the default).
    pub fn from_cudnn(v: u32) -> MathType {
        match v {
            1 => MathType::TensorOp,
            2 => MathType::TensorOpAllowConversion,
            3 => MathType::Fma,
            _ => MathType::Default,
        }
    }

    /// cuDNN's number.
    pub fn to_cudnn(self) -> u32 {
        match self {
            MathType::Default => 0,
            MathType::TensorOp => 1,
            MathType::TensorOpAllowConversion => 2,
            MathType::Fma => 3,
        }
    }

    /// Short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            MathType::Default => "default",
            MathType::TensorOp => "tensor-op",
            MathType::TensorOpAllowConversion => "tensor-op-allow-conversion",
            MathType::Fma => "fma",
        }
    }

    /// The math type asked of cuDNN for tensors of `dtype`: bf16/f16 on tensor cores; f32
    /// strictly with FMAs unless TF32 is allowed; f64 the default.
    pub fn requested(dtype: DType, tf32: bool) -> MathType {
        match dtype {
            DType::BF16 | DType::F16 => MathType::TensorOp,
            DType::F32 if tf32 => MathType::Default,
            DType::F32 => MathType::Fma,
            _ => MathType::Default,
        }
    }

    /// The math type a plan runs with when the heuristic reported `reported` for a
    /// convolution that asked for `self`; `None` when the entry would break the precision
    /// asked for (a tensor-op entry for strict f32). For strict f32 a default-math entry runs
    /// with FMA math, since the default would allow TF32.
    pub fn effective(self, reported: MathType) -> Option<MathType> {
        match (self, reported) {
            (MathType::Fma, MathType::Fma | MathType::Default) => Some(MathType::Fma),
            (MathType::Fma, MathType::TensorOp | MathType::TensorOpAllowConversion) => None,
            (_, reported) => Some(reported),
        }
    }
}

/// The key of a cached plan: one per pass, dtype, geometry, math type asked for and
/// determinism setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlanKey {
    /// Which call.
    pub pass: Pass,
    /// Tensor dtype.
    pub dtype: DType,
    /// Shapes, padding, stride.
    pub geometry: Geometry,
    /// The math type asked for ([`MathType::requested`]).
    pub math: MathType,
    /// Whether only deterministic algorithms may be chosen.
    pub deterministic: bool,
}

impl PlanKey {
    /// The key of `pass` on `dtype` tensors of geometry `g` under the current TF32 and
    /// determinism settings.
    pub fn new(pass: Pass, dtype: DType, g: Geometry, tf32: bool, deterministic: bool) -> Self {
        PlanKey {
            pass,
            dtype,
            geometry: g,
            math: MathType::requested(dtype, tf32),
            deterministic,
        }
    }
}

/// One entry of cuDNN's heuristic list (`cudnnConvolution*AlgoPerf_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeuristicEntry {
    /// The algorithm's number.
    pub algo: u32,
    /// Whether its status is `CUDNN_STATUS_SUCCESS`.
    pub success: bool,
    /// Whether it is `CUDNN_DETERMINISTIC`.
    pub deterministic: bool,
    /// The math type it runs with.
    pub math: MathType,
    /// Its workspace estimate in bytes.
    pub memory: usize,
}

/// A usable entry: its index in the heuristic list and the math type to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Index in the heuristic list.
    pub index: usize,
    /// The math type the plan runs with ([`MathType::effective`]).
    pub math: MathType,
}

/// The usable entries of `list`, in the list's order (best first): success, deterministic
/// when `deterministic` is asked, and a math type compatible with `requested`. An error when
/// none is left.
pub fn usable(
    list: &[HeuristicEntry],
    requested: MathType,
    deterministic: bool,
) -> Result<Vec<Candidate>> {
    let out: Vec<Candidate> = list
        .iter()
        .enumerate()
        .filter(|(_, e)| e.success && (e.deterministic || !deterministic))
        .filter_map(|(index, e)| {
            requested
                .effective(e.math)
                .map(|math| Candidate { index, math })
        })
        .collect();
    if out.is_empty() {
        bail!(
            "cuDNN offers no usable convolution algorithm ({} heuristic entries; deterministic \
             {deterministic}, math {}); `train.deterministic: false` allows non-deterministic \
             ones",
            list.len(),
            requested.name()
        );
    }
    Ok(out)
}

/// Tries the candidates from position `start` in order and returns the first success with
/// its position; the error lists every failure when none works.
pub fn first_that_works<T>(
    candidates: &[Candidate],
    start: usize,
    mut try_one: impl FnMut(&Candidate) -> Result<T>,
) -> Result<(usize, T)> {
    let mut failures = Vec::new();
    for (pos, c) in candidates.iter().enumerate().skip(start) {
        match try_one(c) {
            Ok(v) => return Ok((pos, v)),
            Err(e) => failures.push(format!("entry {}: {e}", c.index)),
        }
    }
    bail!(
        "cuDNN conv2d: no algorithm worked ({})",
        if failures.is_empty() {
            "none left to try".to_string()
        } else {
            failures.join("; ")
        }
    )
}

/// What a plan chose: logged once per plan ([`record`], [`plan_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanChoice {
    /// The plan's key.
    pub key: PlanKey,
    /// The algorithm's number and name.
    pub algo: u32,
    /// The math type it runs with.
    pub math: MathType,
    /// Workspace in bytes.
    pub workspace: usize,
    /// Whether the algorithm is deterministic.
    pub deterministic: bool,
    /// Its index in the heuristic list (0: cuDNN's first choice).
    pub rank: usize,
}

impl fmt::Display for PlanChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.key.geometry;
        write!(
            f,
            "cudnn {} {:?} x{:?} w{:?} pad {} stride {}: {} (heuristic #{}), math {}, \
             workspace {} B, {}",
            self.key.pass.name(),
            self.key.dtype,
            g.x,
            g.w,
            g.padding,
            g.stride,
            self.key.pass.algo_name(self.algo),
            self.rank,
            self.math.name(),
            self.workspace,
            if self.deterministic {
                "deterministic"
            } else {
                "non-deterministic"
            }
        )
    }
}

static LOG: Mutex<Vec<PlanChoice>> = Mutex::new(Vec::new());

/// Records the choice of a new plan (the cuDNN back end calls it once per plan).
pub fn record(choice: PlanChoice) {
    if let Ok(mut log) = LOG.lock() {
        log.push(choice);
    }
}

/// Every plan choice recorded in this process, in order (empty without cuDNN).
pub fn plan_log() -> Vec<PlanChoice> {
    LOG.lock().map(|l| l.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(algo: u32, success: bool, deterministic: bool, math: MathType) -> HeuristicEntry {
        HeuristicEntry {
            algo,
            success,
            deterministic,
            math,
            memory: 0,
        }
    }

    #[test]
    fn geometry_of_strided_and_padded_convolutions() {
        let g = Geometry::new([8, 16, 32, 32], [32, 16, 3, 3], 1, 2).unwrap();
        assert_eq!(g.y, [8, 32, 16, 16]);
        assert_eq!(g.output(Pass::Forward), g.y);
        assert_eq!(g.output(Pass::BackwardData), [8, 16, 32, 32]);
        assert_eq!(g.output(Pass::BackwardFilter), [32, 16, 3, 3]);
        let g = Geometry::new([2, 3, 7, 5], [4, 3, 3, 1], 0, 1).unwrap();
        assert_eq!(g.y, [2, 4, 5, 5]);
        // 1x1 shortcut with stride 2 on an odd size.
        assert_eq!(
            Geometry::new([1, 4, 9, 9], [8, 4, 1, 1], 0, 2).unwrap().y,
            [1, 8, 5, 5]
        );
    }

    #[test]
    fn geometry_errors_name_the_problem() {
        let e = Geometry::new([1, 3, 8, 8], [4, 2, 3, 3], 1, 1).unwrap_err();
        assert!(e.to_string().contains("3 channels"), "{e}");
        let e = Geometry::new([1, 3, 2, 2], [4, 3, 5, 5], 1, 1).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        assert!(Geometry::new([1, 3, 8, 8], [4, 3, 3, 3], 1, 0).is_err());
        let big = Geometry::new([1, 1, 1 << 31, 1], [1, 1, 1, 1], 0, 1).unwrap();
        assert!(big.dims_i32().is_err());
    }

    #[test]
    fn plan_keys_separate_everything_that_changes_the_plan() {
        let g = Geometry::new([8, 16, 32, 32], [32, 16, 3, 3], 1, 1).unwrap();
        let base = PlanKey::new(Pass::Forward, DType::F32, g, false, true);
        assert_eq!(
            base,
            PlanKey::new(Pass::Forward, DType::F32, g, false, true)
        );
        assert_eq!(base.math, MathType::Fma);
        let others = [
            PlanKey::new(Pass::BackwardData, DType::F32, g, false, true),
            PlanKey::new(Pass::Forward, DType::BF16, g, false, true),
            PlanKey::new(Pass::Forward, DType::F32, g, true, true),
            PlanKey::new(Pass::Forward, DType::F32, g, false, false),
            PlanKey::new(
                Pass::Forward,
                DType::F32,
                Geometry::new([8, 16, 32, 32], [32, 16, 3, 3], 1, 2).unwrap(),
                false,
                true,
            ),
        ];
        let mut set = std::collections::HashSet::new();
        set.insert(base);
        for k in others {
            assert!(set.insert(k), "{k:?} collides");
        }
        // bf16 ignores TF32: same math type either way.
        assert_eq!(
            PlanKey::new(Pass::Forward, DType::BF16, g, false, true),
            PlanKey::new(Pass::Forward, DType::BF16, g, true, true)
        );
    }

    #[test]
    fn math_types_round_trip_and_follow_the_precision() {
        for m in [
            MathType::Default,
            MathType::TensorOp,
            MathType::TensorOpAllowConversion,
            MathType::Fma,
        ] {
            assert_eq!(MathType::from_cudnn(m.to_cudnn()), m);
        }
        assert_eq!(MathType::requested(DType::F32, false), MathType::Fma);
        assert_eq!(MathType::requested(DType::F32, true), MathType::Default);
        assert_eq!(MathType::requested(DType::BF16, false), MathType::TensorOp);
        assert_eq!(MathType::requested(DType::F64, false), MathType::Default);
    }

    /// A list shaped like cuDNN's backward-filter heuristics on an Ampere GPU: the fastest
    /// entries are the atomics-based ALGO_0 and ALGO_3, one entry failed.
    fn filter_list() -> Vec<HeuristicEntry> {
        vec![
            entry(3, true, false, MathType::Fma),     // ALGO_3, atomics
            entry(0, true, false, MathType::Fma),     // ALGO_0, atomics
            entry(5, false, true, MathType::Fma),     // not supported here
            entry(1, true, true, MathType::TensorOp), // tensor cores: not for strict f32
            entry(1, true, true, MathType::Fma),      // ALGO_1, deterministic
            entry(6, true, true, MathType::Default),
        ]
    }

    #[test]
    fn deterministic_choice_skips_atomics_failures_and_tf32() {
        let c = usable(&filter_list(), MathType::Fma, true).unwrap();
        assert_eq!(
            c,
            vec![
                Candidate {
                    index: 4,
                    math: MathType::Fma
                },
                Candidate {
                    index: 5,
                    math: MathType::Fma
                },
            ]
        );
        assert_eq!(
            Pass::BackwardFilter.algo_name(filter_list()[4].algo),
            "ALGO_1"
        );
    }

    #[test]
    fn non_deterministic_choice_takes_the_fastest_success() {
        let c = usable(&filter_list(), MathType::Fma, false).unwrap();
        assert_eq!(
            c.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![0, 1, 4, 5]
        );
        // With TF32 allowed the tensor-op entry is usable, with the math type reported.
        let c = usable(&filter_list(), MathType::Default, true).unwrap();
        assert_eq!(
            c[0],
            Candidate {
                index: 3,
                math: MathType::TensorOp
            }
        );
    }

    #[test]
    fn a_list_whose_first_entry_failed_still_yields_a_choice() {
        let list = vec![
            entry(0, false, true, MathType::TensorOp),
            entry(1, true, true, MathType::TensorOp),
        ];
        let c = usable(&list, MathType::TensorOp, true).unwrap();
        assert_eq!(c[0].index, 1);
    }

    #[test]
    fn no_usable_entry_is_an_error_that_suggests_the_switch() {
        let list = vec![entry(0, true, false, MathType::Fma)];
        let e = usable(&list, MathType::Fma, true).unwrap_err().to_string();
        assert!(e.contains("train.deterministic: false"), "{e}");
        assert!(usable(&[], MathType::Fma, false).is_err());
    }

    #[test]
    fn failures_fall_back_down_the_list() {
        let c = usable(&filter_list(), MathType::Fma, false).unwrap();
        let mut tried = Vec::new();
        let (pos, algo) = first_that_works(&c, 0, |cand| {
            tried.push(cand.index);
            if cand.index < 4 {
                bail!("out of memory")
            }
            Ok(filter_list()[cand.index].algo)
        })
        .unwrap();
        assert_eq!((pos, algo), (2, 1));
        assert_eq!(tried, vec![0, 1, 4]);
        // Starting after a failed launch skips the entries before.
        let (pos, _) = first_that_works(&c, 3, |_| Ok(())).unwrap();
        assert_eq!(pos, 3);
        let e = first_that_works(&c, 0, |_| -> Result<()> { bail!("boom") })
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("entry 0: boom") && e.contains("entry 5: boom"),
            "{e}"
        );
        assert!(first_that_works(&c, 4, |_| Ok(())).is_err());
    }

    #[test]
    fn the_log_line_names_pass_algorithm_math_and_workspace() {
        let g = Geometry::new([8, 16, 32, 32], [32, 16, 3, 3], 1, 1).unwrap();
        let choice = PlanChoice {
            key: PlanKey::new(Pass::BackwardFilter, DType::F32, g, false, true),
            algo: 1,
            math: MathType::Fma,
            workspace: 4096,
            deterministic: true,
            rank: 4,
        };
        let line = choice.to_string();
        for want in [
            "backward-filter",
            "ALGO_1",
            "#4",
            "math fma",
            "workspace 4096 B",
            "deterministic",
        ] {
            assert!(line.contains(want), "{line} lacks {want}");
        }
        record(choice.clone());
        assert!(plan_log().contains(&choice));
    }
}
