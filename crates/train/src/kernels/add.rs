//! Element-wise sum of two f32 tensors over the rayon pool: the residual additions and the
//! gradient sums of the fan-outs on the fast path. Candle's CPU add runs on its own thread
//! pool, whose workers spin at a barrier next to rayon's on the same cores (about 7% of a
//! WRN-16-1 step went to that wait).

use super::simd::multiversion;
use super::{tensor, with_f32, written_vec};
use candle_core::{bail, Result, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements per task: large enough to amortise scheduling, small enough to split a
/// WRN activation over two workers.
const TASK: usize = 1 << 16;

multiversion! {
    /// `y = a + b` element by element.
    fn add_slices(a: &[f32], b: &[f32], y: &mut [MaybeUninit<f32>]) {
        for ((dst, &p), &q) in y.iter_mut().zip(a).zip(b) {
            dst.write(p + q);
        }
    }
}

multiversion! {
    /// `a += b` element by element.
    fn add_assign_slices(a: &mut [f32], b: &[f32]) {
        for (p, &q) in a.iter_mut().zip(b) {
            *p += q;
        }
    }
}

/// `a += b` for two f32 slices of the same length, on the calling thread (inside a task
/// that has just written `a`).
pub(crate) fn add_assign_serial(a: &mut [f32], b: &[f32]) {
    debug_assert_eq!(a.len(), b.len());
    add_assign_slices(a, b)
}

/// `a + b` for two contiguous f32 CPU tensors of the same shape (no gradient is recorded).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dims() != b.dims() {
        bail!("add: shapes {:?} and {:?} differ", a.dims(), b.dims())
    }
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    let data = with_f32(&a, |x| {
        with_f32(&b, |z| {
            let fill = |y: &mut [MaybeUninit<f32>]| {
                y.par_chunks_mut(TASK)
                    .zip(x.par_chunks(TASK).zip(z.par_chunks(TASK)))
                    .for_each(|(yc, (xc, zc))| add_slices(xc, zc, yc));
            };
            // SAFETY: the tasks cover `y` and add_slices writes each of its elements.
            unsafe { written_vec(x.len(), fill) }
        })
    })??;
    tensor(data, a.dims())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::rand;

    #[test]
    fn adds_like_candle_across_tasks_and_refuses_other_shapes() {
        // more than one task, a ragged last one
        let a = rand(&[3, 5, 97, 211], 1);
        let b = rand(&[3, 5, 97, 211], 2);
        let ours: Vec<f32> = add(&a, &b)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let theirs: Vec<f32> = (&a + &b).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(ours, theirs);
        assert!(add(&a, &rand(&[3, 5, 97, 210], 3)).is_err());
        // a strided (transposed) operand is made contiguous first
        let t = rand(&[4, 6], 4);
        let ours = add(&t.t().unwrap(), &t.t().unwrap()).unwrap();
        let theirs = (t.t().unwrap() * 2.0).unwrap();
        assert_eq!(
            ours.to_vec2::<f32>().unwrap(),
            theirs.to_vec2::<f32>().unwrap()
        );
    }
}
