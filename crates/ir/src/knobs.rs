//! Runtime switches ("knobs"): every environment variable that changes how wrnc computes,
//! declared once here with its name, meaning and default, and parsed once per process.
//!
//! Code that needs a switch calls its accessor (e.g. [`reference_ops`]) and never reads the
//! environment itself; [`ALL`] lists them for documentation (`docs/knobs.md` shows the same
//! table, and a test keeps the two in step).

use std::sync::OnceLock;

/// One runtime switch: an environment variable read once per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knob {
    /// The environment variable.
    pub name: &'static str,
    /// What it changes.
    pub meaning: &'static str,
    /// Behaviour when it is unset.
    pub default: &'static str,
}

impl Knob {
    /// The variable's value, read now (the accessors read it once and keep the parsed value).
    pub fn raw(&self) -> Option<String> {
        std::env::var(self.name).ok()
    }
}

/// The widest instruction set the CPU kernels may use ([`SIMD`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdCap {
    /// Baseline x86-64 only.
    Baseline,
    /// Up to AVX2 + FMA.
    Avx2,
    /// No cap: whatever the CPU offers (AVX-512 included).
    Widest,
}

/// The value in `cell`, parsed from `knob`'s variable on first use.
fn read_once<T: Clone>(cell: &OnceLock<T>, knob: &Knob, parse: fn(Option<&str>) -> T) -> T {
    cell.get_or_init(|| parse(knob.raw().as_deref())).clone()
}

/// Declares each knob once: its [`Knob`] constant, its accessor (parsed once per process),
/// and its entry in [`ALL`].
macro_rules! declare_knobs {
    ($(
        $(#[$doc:meta])*
        $knob:ident, $accessor:ident() -> $ty:ty {
            name: $name:literal,
            meaning: $meaning:literal,
            default: $default:literal,
            parse: $parse:expr $(,)?
        }
    )*) => {
        $(
            $(#[$doc])*
            pub const $knob: Knob = Knob {
                name: $name,
                meaning: $meaning,
                default: $default,
            };

            #[doc = concat!("The parsed value of [`", stringify!($knob), "`] (`", $name,
                            "`), read from the environment once per process.")]
            pub fn $accessor() -> $ty {
                static VALUE: OnceLock<$ty> = OnceLock::new();
                let parse: fn(Option<&str>) -> $ty = $parse;
                read_once(&VALUE, &$knob, parse)
            }
        )*

        /// Every runtime switch, in documentation order.
        pub const ALL: &[Knob] = &[$($knob),*];
    };
}

declare_knobs! {
    /// Candle's plain ops and autograd instead of wrnc's fast CPU kernels.
    REFERENCE_OPS, reference_ops() -> bool {
        name: "WRNC_REFERENCE_OPS",
        meaning: "any value but empty or `0`: Candle's plain ops and autograd everywhere (the \
                  reference the fast CPU kernels are tested against)",
        default: "fast CPU kernels and the taped backward pass (f32 on the CPU)",
        parse: |v| v.is_some_and(|v| !v.is_empty() && v != "0"),
    }

    /// Winograd convolution for 3x3 stride-1 layers.
    WINOGRAD, winograd() -> bool {
        name: "WRNC_WINOGRAD",
        meaning: "`0`: 3x3 stride-1 convolutions go through im2col + gemm like the others",
        default: "Winograd F(4x4, 3x3) where it pays",
        parse: |v| v != Some("0"),
    }

    /// A cap on the instruction set of the element-wise CPU kernels.
    SIMD, simd_cap() -> SimdCap {
        name: "WRNC_SIMD",
        meaning: "`avx2` or `baseline`: caps the kernels' instruction set (runs the narrower \
                  code paths on a wider CPU); other values are ignored",
        default: "the widest the CPU offers (AVX-512, AVX2+FMA or baseline x86-64)",
        parse: |v| match v {
            Some("baseline") => SimdCap::Baseline,
            Some("avx2") => SimdCap::Avx2,
            _ => SimdCap::Widest,
        },
    }

    /// Test-only fault injection into atomic writes (see [`crate::atomic::FAULT_ENV`]).
    FAULT, fault() -> Option<String> {
        name: "WRNC_FAULT",
        meaning: "tests only: `fail:FILE:N` makes the N-th atomic write of FILE fail with ENOSPC; \
                  `kill:FILE:N[:torn|written|renamed]` SIGKILLs the process at that write",
        default: "no fault",
        parse: |v| v.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prefixed() {
        let mut names: Vec<&str> = ALL.iter().map(|k| k.name).collect();
        assert!(names.iter().all(|n| n.starts_with("WRNC_")), "{names:?}");
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn the_docs_table_lists_every_knob() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/knobs.md");
        let doc = std::fs::read_to_string(path).expect("docs/knobs.md");
        for k in ALL {
            assert!(
                doc.contains(&format!("| `{}` |", k.name)),
                "docs/knobs.md has no row for {}",
                k.name
            );
        }
    }
}
