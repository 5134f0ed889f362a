//! Activation ranges from calibration data: per-tensor statistics gathered batch by batch,
//! then a range chosen by a [`CalibrationMethod`].
//!
//! Statistics are gathered in two passes over the same images: the first records each
//! tensor's minimum and maximum ([`RangeStats::observe`]); for `percentile` and `entropy` a
//! second pass fills a histogram of |x| over `[0, max |x|]` ([`RangeStats::observe_hist`]).

use std::collections::BTreeMap;
use wrnc_recipe::CalibrationMethod;

/// Bins of the |x| histogram the percentile and entropy methods read.
pub const HISTOGRAM_BINS: usize = 2048;
/// The percentile of |x| the `percentile` method keeps.
pub const PERCENTILE: f64 = 99.99;
/// Quantized levels the `entropy` method compares against (half of uint8's range, as
/// onnxruntime's and TensorRT's entropy calibrators do).
pub const ENTROPY_LEVELS: usize = 128;

/// The statistics of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorStats {
    /// Smallest value seen.
    pub min: f32,
    /// Largest value seen.
    pub max: f32,
    /// Counts of |x| in [`HISTOGRAM_BINS`] equal bins over `[0, max(|min|, |max|)]`; empty
    /// until the second pass.
    pub hist: Vec<u64>,
}

impl TensorStats {
    fn abs_max(&self) -> f32 {
        self.min.abs().max(self.max.abs())
    }
}

/// Statistics of every calibrated tensor, by tensor name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeStats {
    /// Per tensor.
    pub tensors: BTreeMap<String, TensorStats>,
}

impl RangeStats {
    /// First pass: widens `name`'s min/max to cover `values` (non-finite values are skipped).
    pub fn observe(&mut self, name: &str, values: &[f32]) {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &v in values.iter().filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let s = self.tensors.entry(name.to_string()).or_insert(TensorStats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            hist: Vec::new(),
        });
        s.min = s.min.min(lo);
        s.max = s.max.max(hi);
    }

    /// Second pass: adds `values` to `name`'s |x| histogram over the range of the first
    /// pass (values beyond it, which a first pass over the same images never sees, go into
    /// the last bin).
    pub fn observe_hist(&mut self, name: &str, values: &[f32]) {
        let Some(s) = self.tensors.get_mut(name) else {
            return;
        };
        if s.hist.is_empty() {
            s.hist = vec![0; HISTOGRAM_BINS];
        }
        let top = s.abs_max();
        if top.is_nan() || top <= 0.0 {
            s.hist[0] += values.len() as u64;
            return;
        }
        let per_bin = HISTOGRAM_BINS as f32 / top;
        for &v in values.iter().filter(|v| v.is_finite()) {
            let b = ((v.abs() * per_bin) as usize).min(HISTOGRAM_BINS - 1);
            s.hist[b] += 1;
        }
    }

    /// The `[lo, hi]` range of every tensor by `method`; always contains 0 (so that zero,
    /// the padding value, is exact).
    pub fn ranges(&self, method: CalibrationMethod) -> BTreeMap<String, (f32, f32)> {
        self.tensors
            .iter()
            .map(|(k, s)| (k.clone(), range_of(s, method)))
            .collect()
    }
}

/// The range of one tensor by `method`.
pub fn range_of(s: &TensorStats, method: CalibrationMethod) -> (f32, f32) {
    let (min, max) = if s.min <= s.max {
        (s.min, s.max)
    } else {
        (0.0, 0.0)
    };
    let threshold = match method {
        CalibrationMethod::Minmax => None,
        CalibrationMethod::Percentile => percentile_threshold(&s.hist, s.abs_max(), PERCENTILE),
        CalibrationMethod::Entropy => entropy_threshold(&s.hist, s.abs_max()),
    };
    let (lo, hi) = match threshold {
        Some(t) => (min.max(-t), max.min(t)),
        None => (min, max),
    };
    (lo.min(0.0), hi.max(0.0))
}

/// The |x| value below which `pct` percent of the histogram's mass lies (upper bin edge);
/// None for an empty histogram.
pub fn percentile_threshold(hist: &[u64], top: f32, pct: f64) -> Option<f32> {
    let total: u64 = hist.iter().sum();
    if total == 0 || hist.is_empty() {
        return None;
    }
    let want = (total as f64 * pct / 100.0).ceil() as u64;
    let mut seen = 0;
    for (i, &c) in hist.iter().enumerate() {
        seen += c;
        if seen >= want {
            return Some(top * (i + 1) as f32 / hist.len() as f32);
        }
    }
    Some(top)
}

/// TensorRT's entropy calibration: for every candidate threshold bin `i` (from
/// [`ENTROPY_LEVELS`] to the last), the reference distribution `P` is the first `i` bins with
/// the tail's mass added to bin `i - 1`, `Q` is those bins merged into [`ENTROPY_LEVELS`]
/// levels and spread back over their non-empty bins; the threshold with the smallest
/// KL(P || Q) is chosen (its upper bin edge). None for an empty histogram.
pub fn entropy_threshold(hist: &[u64], top: f32) -> Option<f32> {
    let n = hist.len();
    let total: u64 = hist.iter().sum();
    if total == 0 || n < ENTROPY_LEVELS {
        return None;
    }
    let mut best = (f64::INFINITY, n);
    let mut tail: u64 = hist[ENTROPY_LEVELS..].iter().sum();
    for i in ENTROPY_LEVELS..=n {
        let mut p: Vec<f64> = hist[..i].iter().map(|&c| c as f64).collect();
        p[i - 1] += tail as f64;
        if i < n {
            tail -= hist[i];
        }
        // Merge the i bins into the levels, then spread each level evenly over the bins
        // of it that were non-empty.
        let mut q = vec![0.0f64; i];
        for level in 0..ENTROPY_LEVELS {
            let start = level * i / ENTROPY_LEVELS;
            let end = ((level + 1) * i / ENTROPY_LEVELS).max(start + 1).min(i);
            let mass: f64 = hist[start..end].iter().map(|&c| c as f64).sum();
            let nonzero = (start..end).filter(|&j| hist[j] > 0).count();
            if nonzero > 0 {
                for j in (start..end).filter(|&j| hist[j] > 0) {
                    q[j] = mass / nonzero as f64;
                }
            }
        }
        let (ps, qs): (f64, f64) = (p.iter().sum(), q.iter().sum());
        if ps == 0.0 || qs == 0.0 {
            continue;
        }
        let mut kl = 0.0;
        for (a, b) in p.iter().zip(&q) {
            if *a > 0.0 {
                let (a, b) = (a / ps, b / qs);
                // A bin P has but Q lacks (the tail's mass): a large but finite penalty.
                kl += a * (a / b.max(1e-12)).ln();
            }
        }
        if kl < best.0 {
            best = (kl, i);
        }
    }
    Some(top * best.1 as f32 / n as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(values: &[f32]) -> TensorStats {
        let mut r = RangeStats::default();
        r.observe("t", values);
        r.observe_hist("t", values);
        r.tensors["t"].clone()
    }

    #[test]
    fn minmax_is_the_seen_range_widened_to_zero() {
        let mut r = RangeStats::default();
        r.observe("t", &[1.0, 3.0]);
        r.observe("t", &[2.0, 5.0, f32::NAN]);
        assert_eq!(r.ranges(CalibrationMethod::Minmax)["t"], (0.0, 5.0));
        r.observe("u", &[-2.0, -1.0]);
        assert_eq!(r.ranges(CalibrationMethod::Minmax)["u"], (-2.0, 0.0));
    }

    #[test]
    fn percentile_cuts_a_rare_outlier() {
        let mut v: Vec<f32> = (0..100_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        v.push(100.0);
        let s = stats(&v);
        let (lo, hi) = range_of(&s, CalibrationMethod::Percentile);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.9 && hi < 1.2, "{hi}");
        assert_eq!(range_of(&s, CalibrationMethod::Minmax).1, 100.0);
    }

    #[test]
    fn entropy_cuts_a_long_thin_tail_and_keeps_a_dense_range() {
        // Dense mass on [0, 1), a thin tail out to 50.
        let mut v: Vec<f32> = (0..200_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        v.extend((0..20).map(|i| 1.0 + i as f32 * 2.5));
        let (_, hi) = range_of(&stats(&v), CalibrationMethod::Entropy);
        assert!(hi < 25.0 && hi > 0.9, "{hi}");
        // Uniform data: nothing to cut.
        let u: Vec<f32> = (0..100_000).map(|i| (i % 1000) as f32 / 100.0).collect();
        let (_, hi) = range_of(&stats(&u), CalibrationMethod::Entropy);
        assert!(hi > 9.0, "{hi}");
    }

    #[test]
    fn signed_tensors_are_clipped_on_both_sides() {
        let mut v: Vec<f32> = (0..100_000)
            .map(|i| (i % 2000) as f32 / 1000.0 - 1.0)
            .collect();
        v.push(-80.0);
        let (lo, hi) = range_of(&stats(&v), CalibrationMethod::Percentile);
        assert!(lo < -0.9 && lo > -1.2, "{lo}");
        assert!(hi > 0.9 && hi < 1.2, "{hi}");
    }
}
