//! Run-time choice of the widest vector instruction set for the element-wise kernels.
//!
//! The kernels' inner loops are written over fixed-size lane arrays; [`multiversion`]
//! compiles one body three times (AVX-512, AVX2+FMA, baseline x86-64) and calls the best one
//! the CPU supports, so one binary runs everywhere and uses AVX-512 where it exists.

/// Runs `$body` compiled for AVX-512, for AVX2+FMA or for baseline x86-64 (whichever the CPU
/// has), so that the lane loops become the widest vector code available.
macro_rules! multiversion_impl {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                fn v4($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn v3($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
                match $crate::kernels::simd::simd_level() {
                    // SAFETY: simd_level() saw the CPU report these features.
                    $crate::kernels::simd::SimdLevel::Avx512 => unsafe { v4($($arg),*) },
                    $crate::kernels::simd::SimdLevel::Avx2 => unsafe { v3($($arg),*) },
                    $crate::kernels::simd::SimdLevel::Baseline => imp($($arg),*),
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            imp($($arg),*)
        }
    };
}

/// The instruction sets [`multiversion`] compiles for, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SimdLevel {
    Baseline,
    Avx2,
    Avx512,
}

/// A vector instruction set the kernels with hand-written intrinsics (`tile_rows`,
/// `narrow_gemm`) have code for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
}

impl Isa {
    /// Whether the CPU has it (and `WRNC_SIMD` allows it).
    pub(crate) fn present(self) -> bool {
        match self {
            Isa::Avx512 => simd_level() == SimdLevel::Avx512,
            Isa::Avx2 => simd_level() >= SimdLevel::Avx2,
        }
    }

    /// The widest one present; AVX2 when neither is (callers check [`Isa::present`] or
    /// their module's `available()` first).
    pub(crate) fn widest() -> Isa {
        if Isa::Avx512.present() {
            Isa::Avx512
        } else {
            Isa::Avx2
        }
    }

    /// Those present, widest first: the instruction sets a test checks (it says so on
    /// standard error when there are none).
    #[cfg(test)]
    pub(crate) fn all_present() -> Vec<Isa> {
        let isas: Vec<Isa> = [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .filter(|i| i.present())
            .collect();
        if isas.is_empty() {
            eprintln!("skipped: neither AVX-512 nor AVX2 (or WRNC_SIMD caps them)");
        }
        isas
    }
}

/// The widest instruction set this CPU offers (detected once), capped by `WRNC_SIMD`
/// ([`wrnc_ir::knobs::SIMD`]), to run and test the narrower code paths on a wider CPU.
pub(crate) fn simd_level() -> SimdLevel {
    use std::sync::OnceLock;
    use wrnc_ir::knobs::SimdCap;
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match wrnc_ir::knobs::simd_cap() {
            SimdCap::Baseline => SimdLevel::Baseline,
            SimdCap::Avx2 => SimdLevel::Avx2,
            SimdCap::Widest => SimdLevel::Avx512,
        };
        detected().min(cap)
    })
}

/// The widest instruction set the CPU reports.
fn detected() -> SimdLevel {
    {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
            {
                return SimdLevel::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Baseline
    }
}

pub(crate) use multiversion_impl as multiversion;
