//! The global average pool's backward: each `(n, c)` gradient value, scaled by `1 / (H·W)`,
//! spread over its `H x W` plane, in one multithreaded pass (Candle's broadcast and strided
//! copy took about 1% of a WRN-10-2 step on 7x7 maps).

use super::{tensor, with_f32, written_vec};
use candle_core::{bail, Result, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Values per parallel task (whole planes): enough to amortise scheduling.
const TASK: usize = 1 << 14;

/// `dx[n, c, h, w] = dy[n, c] · scale` for `dy` of `N·C` values (`[N, C]` or `[N, C, 1, 1]`) and
/// `dims = [N, C, H, W]`; f32 on the CPU.
pub fn spread_planes(dy: &Tensor, dims: &[usize], scale: f32) -> Result<Tensor> {
    let &[n, c, h, w] = dims else {
        bail!("spread: expected [N, C, H, W], got {dims:?}")
    };
    let hw = (h * w).max(1);
    if dy.elem_count() != n * c {
        bail!("spread: {:?} gradient for a {dims:?} input", dy.dims())
    }
    let dy = dy.contiguous()?;
    let data = with_f32(&dy, |g| {
        let fill = |dx: &mut [MaybeUninit<f32>]| {
            dx.par_chunks_mut(hw)
                .zip(g.par_iter())
                .with_min_len((TASK / hw).max(1))
                .for_each(|(plane, &v)| {
                    let v = v * scale;
                    plane.iter_mut().for_each(|o| {
                        o.write(v);
                    });
                });
        };
        // SAFETY: the `N·C` planes of `hw` values cover `dx`, and each is written whole.
        unsafe { written_vec(n * c * h * w, fill) }
    })?;
    tensor(data, dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::rand;

    #[test]
    fn spreads_like_candle_broadcast_and_refuses_other_shapes() {
        for dims in [[3usize, 5, 7, 7], [2, 700, 8, 8], [1, 2, 1, 1]] {
            let dy = rand(&dims[..2], 1)
                .reshape((dims[0], dims[1], 1, 1))
                .unwrap();
            let hw = (dims[2] * dims[3]) as f64;
            let ours = spread_planes(&dy, &dims, (1.0 / hw) as f32).unwrap();
            let theirs = dy
                .affine(1.0 / hw, 0.0)
                .unwrap()
                .broadcast_as(dims.as_slice())
                .unwrap()
                .contiguous()
                .unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(ours.dims(), dims.as_slice());
            assert_eq!(flat(&ours), flat(&theirs), "{dims:?}");
        }
        assert!(spread_planes(&rand(&[3, 4], 2), &[3, 5, 2, 2], 1.0).is_err());
        assert!(spread_planes(&rand(&[3, 4], 2), &[3, 4, 2], 1.0).is_err());
    }
}
