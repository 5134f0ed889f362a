//! 3x3, stride-1, pad-1 convolution by Winograd's minimal filtering F(4x4, 3x3)
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! A 4x4 block of outputs is `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`, with `d` the 6x6 input tile around
//! it and `g` the 3x3 kernel: 36 multiplications per channel pair instead of 144. Summed over
//! input channels, the 36 element-wise products become 36 independent matrix products
//! `M_p[O, T] = U_p[O, C] · V_p[C, T]` over the tiles `T`, which run through the gemm kernel.
//!
//! - forward: transform the input tiles (`V`) and the weights (`U`), 36 products, inverse
//!   transform (`Aᵀ M A`);
//! - input gradient: the same with the kernel rotated by 180 degrees and its in/out channels
//!   swapped (a stride-1 pad-1 3x3 convolution's adjoint is one again);
//! - weight gradient: the exact adjoint of the forward algorithm,
//!   `dU_p = Σ_T (A dY Aᵀ)_p · V_pᵀ` then `dg = Gᵀ dU G`.
//!
//! The batch is cut into chunks of whole images small enough that a chunk's transformed
//! tiles stay in cache; chunks are spread over the rayon pool and every worker keeps its
//! buffers across calls. The tile transforms work on 16 tiles at once (one per SIMD lane) and
//! are compiled for AVX-512, AVX2+FMA and plain x86-64, picked at run time; with AVX-512 or
//! AVX2 the tiles' rows move between the planes and the lanes four values at a time
//! ([`tile_rows`]).

use super::add::add_assign_serial;
use super::bn::BnReluInput;
use super::gemm::Mat;
use super::gemm_bf16::{self, Lhs, PackedA};
use super::narrow_gemm;
use super::simd::multiversion;
use super::tile_rows;
use super::{assume_written, per_plane, written_vec, PlaneFn};
use rayon::prelude::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Side of an output tile.
const M: usize = 4;
/// Side of an input tile (`M + 3 - 1`).
const T: usize = 6;
/// Points of a transformed tile: one matrix product each.
const P: usize = T * T;
/// Tiles transformed together, one per SIMD lane.
const L: usize = 16;
/// Bytes of transformed tiles (input and output side together) a chunk stays under. Wide
/// layers need the room: at 640 channels 3 MiB left 16 tiles per chunk, and the products'
/// operand packing and the weight gradient's accumulation into `dU` then outweighed the
/// arithmetic (WRN-28-10 at batch 32: about 9% faster at 12 MiB, narrower networks unchanged).
const CHUNK_BYTES: usize = 12 << 20;
/// Output channels up to which the forward and input-gradient products run through
/// [`narrow_gemm`] (16-64: 1.1-1.5x the gemm crate's speed on these shapes).
const NARROW_ROWS: usize = 64;
/// Tiles a chunk aims for: enough columns for an efficient gemm, few enough that thin layers
/// keep their transformed tiles in cache.
const CHUNK_TILES: usize = 128;

type Lanes = [f32; L];

/// The sizes of one convolution this module can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geom {
    /// Batch.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Output channels.
    pub o: usize,
    /// Height (of input and output alike).
    pub h: usize,
    /// Width (of input and output alike).
    pub w: usize,
}

impl Geom {
    /// Whether Winograd F(4x4, 3x3) is worth it for these sizes: maps of at least 4x4 (smaller
    /// ones would waste most of a tile) and at least 8 channels on both sides (below that the
    /// tile transforms cost more than they save).
    pub fn worthwhile(&self) -> bool {
        self.h >= M && self.w >= M && self.c >= 8 && self.o >= 8
    }

    fn tiles_h(&self) -> usize {
        self.h.div_ceil(M)
    }

    fn tiles_w(&self) -> usize {
        self.w.div_ceil(M)
    }

    fn tiles_per_image(&self) -> usize {
        self.tiles_h() * self.tiles_w()
    }

    /// Images per chunk: enough for about `CHUNK_TILES` tiles, within `CHUNK_BYTES`, and few
    /// enough that every worker gets a chunk (small maps at a small batch would otherwise
    /// make one chunk of the whole batch).
    fn images_per_chunk(&self) -> usize {
        let per_image = P * self.tiles_per_image() * (self.c + self.o) * 4;
        let wanted = CHUNK_TILES.div_ceil(self.tiles_per_image());
        let share = self.n.div_ceil(rayon::current_num_threads().max(1));
        wanted
            .min(CHUNK_BYTES / per_image.max(1))
            .min(share)
            .clamp(1, self.n.max(1))
    }

    /// The same convolution seen from its output: channels swapped (the input gradient).
    fn swapped(&self) -> Geom {
        Geom {
            c: self.o,
            o: self.c,
            ..*self
        }
    }
}

/// The precision of the 36 matrix products of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Math {
    /// f32 products and sums.
    #[default]
    F32,
    /// Transformed tiles and weights rounded to bf16, products summed in f32
    /// ([`gemm_bf16`]; `train.precision: bf16` on a CPU with AVX-512 BF16).
    Bf16,
}

// ---------------------------------------------------------------------------------------
// The transforms, lane-wise on 16 tiles.

/// `Bᵀ d` for six points.
#[inline(always)]
fn bt(d: [f32; T]) -> [f32; T] {
    let [d0, d1, d2, d3, d4, d5] = d;
    [
        4.0 * d0 - 5.0 * d2 + d4,
        -4.0 * (d1 + d2) + d3 + d4,
        4.0 * (d1 - d2) - d3 + d4,
        2.0 * (d3 - d1) - d2 + d4,
        2.0 * (d1 - d3) - d2 + d4,
        4.0 * d1 - 5.0 * d3 + d5,
    ]
}

/// `Aᵀ m` for six points (four results).
#[inline(always)]
fn at(m: [f32; T]) -> [f32; M] {
    let [m0, m1, m2, m3, m4, m5] = m;
    let (s12, d12, s34, d34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
    [
        m0 + s12 + s34,
        d12 + 2.0 * d34,
        s12 + 4.0 * s34,
        d12 + 8.0 * d34 + m5,
    ]
}

/// `A y` for four points (six results): the adjoint of [`at`].
#[inline(always)]
fn a(y: [f32; M]) -> [f32; T] {
    let [y0, y1, y2, y3] = y;
    let (e, o) = (y0 + y2, y1 + y3);
    let (e4, o2) = (y0 + 4.0 * y2, 2.0 * y1 + 8.0 * y3);
    [y0, e + o, e - o, e4 + o2, e4 - o2, y3]
}

/// `dst = f(src)` along the first axis (columns) of 16 tiles: `src` is `[I][J]`, `dst`
/// `[O][J]`, `f` a 1-D transform from `I` points to `O`.
#[inline(always)]
fn columns<const I: usize, const O: usize, const J: usize>(
    src: &[[Lanes; J]; I],
    dst: &mut [[Lanes; J]; O],
    f: impl Fn([f32; I]) -> [f32; O],
) {
    for j in 0..J {
        for l in 0..L {
            let mut x = [0f32; I];
            for (i, xi) in x.iter_mut().enumerate() {
                *xi = src[i][j][l];
            }
            let y = f(x);
            for (o, yo) in y.iter().enumerate() {
                dst[o][j][l] = *yo;
            }
        }
    }
}

/// `dst = f(src)` along the second axis (rows) of 16 tiles: `src` is `[R][I]`, `dst`
/// `[R][O]`.
#[inline(always)]
fn rows<const R: usize, const I: usize, const O: usize>(
    src: &[[Lanes; I]; R],
    dst: &mut [[Lanes; O]; R],
    f: impl Fn([f32; I]) -> [f32; O],
) {
    for r in 0..R {
        for l in 0..L {
            let mut x = [0f32; I];
            for (i, xi) in x.iter_mut().enumerate() {
                *xi = src[r][i][l];
            }
            let y = f(x);
            for (o, yo) in y.iter().enumerate() {
                dst[r][o][l] = *yo;
            }
        }
    }
}

/// `tc` rounded up to whole groups of 16 lanes: the row stride of the transformed tiles, so
/// that every group loads and stores 16 lanes (the padding lanes hold values nobody reads).
fn lane_padded(tc: usize) -> usize {
    tc.next_multiple_of(L)
}

/// Where the tiles of a chunk of images lie (the same for every chunk of the call).
#[derive(Debug, Default)]
struct TileMap {
    /// Per tile: offset of its 6x6 input window in the chunk's padded copy (channel 0).
    window: Vec<usize>,
    /// Per tile: (image in the chunk, first output row, first output column, whole 4x4 block
    /// inside the map).
    block: Vec<(usize, usize, usize, bool)>,
    /// Per group of 16 tiles: their output blocks in channel 0 of the `[images, O, H, W]`
    /// chunk, cut where they leave the map (for [`tile_rows`], when it is available).
    groups: Vec<tile_rows::Blocks>,
}

impl TileMap {
    /// The tiles of `images` images, in order image, tile row, tile column.
    fn new(g: &Geom, images: usize) -> TileMap {
        let (th, tw) = (g.tiles_h(), g.tiles_w());
        let (ph, pw) = g.padded();
        let mut map = TileMap::default();
        for img in 0..images {
            for ty in 0..th {
                for tx in 0..tw {
                    let (y0, x0) = (ty * M, tx * M);
                    map.window.push(img * g.c * ph * pw + y0 * pw + x0);
                    map.block
                        .push((img, y0, x0, y0 + M <= g.h && x0 + M <= g.w));
                }
            }
        }
        if tile_rows::available() {
            map.groups = map
                .block
                .chunks_exact(L)
                .map(|b| {
                    let b: &[_; L] = b.try_into().expect("16 tiles");
                    let at = b.map(|(img, y0, x0, _)| img * g.o * g.h * g.w + y0 * g.w + x0);
                    let rows = b.map(|(_, y0, _, _)| g.h - y0);
                    let cols = b.map(|(_, _, x0, _)| g.w - x0);
                    tile_rows::Blocks::new(at, rows, cols, g.w)
                })
                .collect();
        }
        map
    }

    /// The first `count` tiles (a chunk with fewer images: tiles run image by image).
    fn first(&self, count: usize) -> Tiles<'_> {
        Tiles {
            window: &self.window[..count],
            block: &self.block[..count],
            groups: &self.groups[..(count / L).min(self.groups.len())],
        }
    }
}

/// The tiles of one chunk, borrowed from a [`TileMap`] built once per call.
#[derive(Debug, Clone, Copy)]
struct Tiles<'a> {
    window: &'a [usize],
    block: &'a [(usize, usize, usize, bool)],
    groups: &'a [tile_rows::Blocks],
}

impl Tiles<'_> {
    /// The output blocks of tiles `t0..t0 + 16` in channel `oi` (`plane = H·W` values apart),
    /// when [`tile_rows`] serves them.
    #[inline(always)]
    fn group(&self, t0: usize, oi: usize, plane: usize) -> Option<tile_rows::Blocks> {
        self.groups.get(t0 / L).map(|b| b.shifted(oi * plane))
    }
}

impl Geom {
    /// Height and width of the zero-padded copy of a plane: one row/column of padding
    /// before, enough after to complete the last tiles.
    fn padded(&self) -> (usize, usize) {
        (self.tiles_h() * M + 2, self.tiles_w() * M + 2)
    }
}

/// `dst = src` in fixed-size pieces (inline vector moves rather than a `memcpy` call per
/// short row).
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    let (dc, sc) = (dst.chunks_exact_mut(L), src.chunks_exact(L));
    for (d, s) in dc.zip(sc) {
        let d: &mut Lanes = d.try_into().expect("16 lanes");
        *d = s.try_into().expect("16 lanes");
    }
    let done = dst.len() / L * L;
    for (d, s) in dst[done..].iter_mut().zip(&src[done..]) {
        *d = *s;
    }
}

multiversion! {
    /// Copies the `images` planes of `x` (`[images, C, H, W]`) into `out` with a zero border
    /// (`[images, C, ph, pw]`, see [`Geom::padded`]); with `input`, the batch norm + ReLU it
    /// stands for applied to each value on the way (`x` is then that batch norm's input).
    fn pad_chunk(g: &Geom, x: &[f32], out: &mut [f32], input: Option<&BnReluInput>) {
        let (ph, pw) = g.padded();
        let (h, w) = (g.h, g.w);
        let planes = x.chunks_exact(h * w).zip(out.chunks_exact_mut(ph * pw));
        for (plane, (src, dst)) in planes.enumerate() {
            dst[..pw].fill(0.0);
            for (srow, drow) in src.chunks_exact(w).zip(dst[pw..].chunks_exact_mut(pw)) {
                // the right padding (1-4 values) as one fixed-size store of zeros over the
                // row's end, overwritten below where it covers values: a `fill` of a few
                // values per row is a `memset` call each (1% of a WRN-16-1 step)
                match pw {
                    16.. => drow[pw - 16..].copy_from_slice(&[0.0; 16]),
                    8.. => drow[pw - 8..].copy_from_slice(&[0.0; 8]),
                    _ => drow[w + 1..].fill(0.0),
                }
                drow[0] = 0.0;
                match input {
                    // a chunk starts at an image: plane `i` is channel `i % C`
                    Some(bn) => bn.row(plane % g.c, srow, &mut drow[1..=w]),
                    None => copy_row(&mut drow[1..=w], srow),
                }
            }
            dst[(h + 1) * pw..].fill(0.0);
        }
    }
}

multiversion! {
    /// `V[p][c][t] = (Bᵀ d B)_p` for every tile `t` of a chunk and channel `c`, `d` the
    /// tile's 6x6 window of the padded chunk `padded`; `v` holds `P · C` rows of tiles laid
    /// out as `layout` says.
    fn input_transform(g: &Geom, padded: &[f32], tiles: Tiles<'_>, layout: Layout, v: &mut [f32]) {
        let (c, tc) = (g.c, tiles.window.len());
        let (ph, pw) = g.padded();
        let rows4 = tile_rows::available();
        // lanes past `len` hold stale values: they are computed but never stored
        let mut d = [[[0f32; L]; T]; T];
        let mut half = [[[0f32; L]; T]; T];
        for ci in 0..c {
            let base = ci * ph * pw;
            for t0 in (0..tc).step_by(L) {
                let len = L.min(tc - t0);
                if rows4 && len == L {
                    let at = tiles.window[t0..t0 + L].try_into().expect("16 tiles");
                    tile_rows::load_windows(&padded[base..], at, pw, &mut d);
                } else {
                for (l, &at) in tiles.window[t0..t0 + len].iter().enumerate() {
                    let win = &padded[base + at..];
                    for (r, drow) in d.iter_mut().enumerate() {
                        let row = &win[r * pw..r * pw + T];
                        for (s, ds) in drow.iter_mut().enumerate() {
                            ds[l] = row[s];
                        }
                    }
                }
                }
                // columns, then rows: Bᵀ d B
                columns(&d, &mut half, bt);
                rows(&half, &mut d, bt);
                for (p, vals) in d.iter().flatten().enumerate() {
                    v[layout.row(p, ci) + t0..][..L].copy_from_slice(vals);
                }
            }
        }
    }
}

multiversion! {
    /// `y = Aᵀ M_t A` for every tile `t` of the chunk, written into `y` (`[images, O, H, W]`)
    /// where it lies inside the map; `m` holds `P · O` rows of tiles laid out as `layout`
    /// says. Every element of `y` is written.
    fn output_transform(
        g: &Geom,
        m: &[f32],
        layout: Layout,
        tiles: Tiles<'_>,
        y: &mut [MaybeUninit<f32>],
    ) {
        let (o, h, w, tc) = (g.o, g.h, g.w, tiles.block.len());
        // lanes past `len` hold stale values: they are computed but never written out
        let mut tile = [[[0f32; L]; T]; T];
        let mut half = [[[0f32; L]; T]; M];
        let mut out = [[[0f32; L]; M]; M];
        for oi in 0..o {
            for t0 in (0..tc).step_by(L) {
                let len = L.min(tc - t0);
                for (p, lanes) in tile.iter_mut().flatten().enumerate() {
                    lanes.copy_from_slice(&m[layout.row(p, oi) + t0..][..L]);
                }
                columns(&tile, &mut half, at);
                rows(&half, &mut out, at);
                if let Some(b) = tiles.group(t0, oi, h * w) {
                    tile_rows::store_blocks(&out, &b, y);
                    continue;
                }
                for (l, &(img, y0, x0, whole)) in tiles.block[t0..t0 + len].iter().enumerate() {
                    let at = (img * o + oi) * h * w + y0 * w + x0;
                    let (rows, cols) = if whole { (M, M) } else { (h - y0, w - x0) };
                    for (i, orow) in out.iter().enumerate().take(rows) {
                        let row = &mut y[at + i * w..][..cols.min(M)];
                        for (j, dst) in row.iter_mut().enumerate() {
                            dst.write(orow[j][l]);
                        }
                    }
                }
            }
        }
    }
}

multiversion! {
    /// `D[p][o][t] = (A dy Aᵀ)_p` for every tile `t` of the chunk `dy` (`[images, O, H, W]`),
    /// outputs outside the map counting as zero; `dm` holds `P · O` rows of tiles laid out
    /// as `layout` says.
    fn gradient_transform(g: &Geom, dy: &[f32], tiles: Tiles<'_>, layout: Layout, dm: &mut [f32]) {
        let (o, h, w, tc) = (g.o, g.h, g.w, tiles.block.len());
        // partial tiles need zeros outside the map; other stale lanes are never stored
        let ragged = h % M != 0 || w % M != 0;
        let mut d = [[[0f32; L]; M]; M];
        let mut half = [[[0f32; L]; M]; T];
        let mut out = [[[0f32; L]; T]; T];
        for oi in 0..o {
            for t0 in (0..tc).step_by(L) {
                let len = L.min(tc - t0);
                if let Some(b) = tiles.group(t0, oi, h * w) {
                    tile_rows::load_blocks(dy, &b, &mut d);
                } else {
                    if ragged {
                        d = [[[0f32; L]; M]; M];
                    }
                    for (l, &(img, y0, x0, whole)) in tiles.block[t0..t0 + len].iter().enumerate() {
                        let at = (img * o + oi) * h * w + y0 * w + x0;
                        let (rows, cols) = if whole { (M, M) } else { (h - y0, w - x0) };
                        for (i, drow) in d.iter_mut().enumerate().take(rows) {
                            let row = &dy[at + i * w..][..cols.min(M)];
                            for (j, &val) in row.iter().enumerate() {
                                drow[j][l] = val;
                            }
                        }
                    }
                }
                columns(&d, &mut half, a);
                rows(&half, &mut out, a);
                for (p, vals) in out.iter().flatten().enumerate() {
                    dm[layout.row(p, oi) + t0..][..L].copy_from_slice(vals);
                }
            }
        }
    }
}

/// `G g` for one column of three kernel taps (six results), in f32 for the lane-wise
/// transforms.
#[inline(always)]
fn g_col32(g: [f32; 3]) -> [f32; T] {
    let [g0, g1, g2] = g;
    [
        g0 / 4.0,
        -(g0 + g1 + g2) / 6.0,
        -(g0 - g1 + g2) / 6.0,
        g0 / 24.0 + g1 / 12.0 + g2 / 6.0,
        g0 / 24.0 - g1 / 12.0 + g2 / 6.0,
        g2,
    ]
}

/// `Gᵀ u` for one column of six points (three results), in f32: the adjoint of [`g_col32`].
#[inline(always)]
fn gt_col32(u: [f32; T]) -> [f32; 3] {
    let [u0, u1, u2, u3, u4, u5] = u;
    [
        u0 / 4.0 - (u1 + u2) / 6.0 + (u3 + u4) / 24.0,
        (u2 - u1) / 6.0 + (u3 - u4) / 12.0,
        (u3 + u4 - u1 - u2) / 6.0 + u5,
    ]
}

/// The transformed weights of a call: `U_p[o][c] = (G g Gᵀ)_p`, stored output channel by
/// output channel (`[O][P][C]`), so that each worker writes one contiguous block.
struct Transformed {
    data: Vec<f32>,
    outs: usize,
    ins: usize,
}

impl Transformed {
    /// `U_p` as an `outs x ins` matrix (rows `P · ins` apart).
    fn point(&self, p: usize) -> Mat<'_> {
        let rs = P * self.ins;
        Mat {
            data: &self.data[p * self.ins..][..(self.outs - 1) * rs + self.ins],
            rs,
            cs: 1,
        }
    }
}

multiversion! {
    /// One output channel's transformed kernels, 16 input channels at a time (one per lane):
    /// `row[p · ins + c] = (G g Gᵀ)_p` with `g = kernel(c)`; every element of `row` is
    /// written.
    fn transform_row(
        ins: usize,
        kernel: &dyn Fn(usize) -> [[f32; 3]; 3],
        row: &mut [MaybeUninit<f32>],
    ) {
        let mut k = [[[0f32; L]; 3]; 3];
        let mut gg = [[[0f32; L]; 3]; T];
        let mut u = [[[0f32; L]; T]; T];
        for c0 in (0..ins).step_by(L) {
            let len = L.min(ins - c0);
            for l in 0..len {
                let g = kernel(c0 + l);
                for (r, kr) in k.iter_mut().enumerate() {
                    for (s, ks) in kr.iter_mut().enumerate() {
                        ks[l] = g[r][s];
                    }
                }
            }
            // G g: 6x3 column by column, then (G g) Gᵀ row by row
            columns(&k, &mut gg, g_col32);
            rows(&gg, &mut u, g_col32);
            for (p, lanes) in u.iter().flatten().enumerate() {
                for (dst, &val) in row[p * ins + c0..][..len].iter_mut().zip(lanes) {
                    dst.write(val);
                }
            }
        }
    }
}

/// `U_p[o][c] = (G g Gᵀ)_p` with `g = kernel(o, c)`, for `outs` x `ins` kernels.
fn weight_transform(
    outs: usize,
    ins: usize,
    kernel: impl Fn(usize, usize) -> [[f32; 3]; 3] + Sync,
) -> Transformed {
    let fill = |data: &mut [MaybeUninit<f32>]| {
        data.par_chunks_mut((P * ins).max(1))
            .enumerate()
            .for_each(|(o, row)| transform_row(ins, &|c| kernel(o, c), row));
    };
    // SAFETY: every row holds P blocks of `ins` values, and transform_row writes each.
    let data = unsafe { written_vec(P * outs * ins, fill) };
    Transformed { data, outs, ins }
}

multiversion! {
    /// The 3x3 weight gradients `Gᵀ dU G` of output channel `o`, 16 input channels at a
    /// time: `out` is `[C, 3, 3]`, `du[p][o][c]`.
    fn gradient_row(g: &Geom, o: usize, du: &[f32], out: &mut [f32]) {
        let c = g.c;
        let mut d = [[[0f32; L]; T]; T];
        let mut half = [[[0f32; L]; 3]; T];
        let mut k = [[[0f32; L]; 3]; 3];
        for c0 in (0..c).step_by(L) {
            let len = L.min(c - c0);
            for (p, lanes) in d.iter_mut().flatten().enumerate() {
                lanes[..len].copy_from_slice(&du[(p * g.o + o) * c + c0..][..len]);
            }
            // Gᵀ dU G: rows (6 -> 3) then columns (6 -> 3)
            rows(&d, &mut half, gt_col32);
            columns(&half, &mut k, gt_col32);
            for l in 0..len {
                let dst = &mut out[(c0 + l) * 9..][..9];
                for (r, kr) in k.iter().enumerate() {
                    for (s, ks) in kr.iter().enumerate() {
                        dst[r * 3 + s] = ks[l];
                    }
                }
            }
        }
    }
}

/// The 3x3 weight gradient `Gᵀ dU G` of every kernel, `[O, C, 3, 3]` from `du[p][o][c]`.
fn weight_gradient(g: &Geom, du: &[f32]) -> Vec<f32> {
    let mut dw = vec![0f32; g.o * g.c * 9];
    dw.par_chunks_mut((g.c * 9).max(1))
        .enumerate()
        .for_each(|(o, out)| gradient_row(g, o, du, out));
    dw
}

thread_local! {
    /// This worker's buffers (padded input, transformed input, transformed output), kept
    /// across calls.
    static BUFFERS: RefCell<[Vec<f32>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Runs `f` with this thread's three buffers grown to `lens` elements.
/// A worker that steals another chunk while it waits inside a chunk (the points run in
/// parallel when chunks are few) finds its buffers taken and uses fresh ones.
fn with_buffers<R>(lens: [usize; 3], f: impl FnOnce([&mut [f32]; 3]) -> R) -> R {
    BUFFERS.with(|cell| {
        let mut fresh;
        let mut held;
        let bufs: &mut [Vec<f32>; 3] = match cell.try_borrow_mut() {
            Ok(b) => {
                held = b;
                &mut held
            }
            Err(_) => {
                fresh = [Vec::new(), Vec::new(), Vec::new()];
                &mut fresh
            }
        };
        let [a, b, c] = bufs;
        for (buf, &len) in [&mut *a, &mut *b, &mut *c].into_iter().zip(&lens) {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
        }
        f([&mut a[..lens[0]], &mut b[..lens[1]], &mut c[..lens[2]]])
    })
}

/// Pads a chunk `x` of images (applying `input`'s batch norm + ReLU when given) and
/// transforms its `tiles` into `v`.
fn transform_chunk_input(
    g: &Geom,
    (x, input): (&[f32], Option<&BnReluInput>),
    tiles: Tiles<'_>,
    padded: &mut [f32],
    layout: Layout,
    v: &mut [f32],
) {
    pad_chunk(g, x, padded, input);
    input_transform(g, padded, tiles, layout, v);
}

/// Values of padding after each channel's rows in [`Layout::by_channel`] (one cache line):
/// without it, a chunk of 128 tiles puts consecutive channels 18 KiB apart, the rows a
/// product's operand packing reads together fall into the same few L1 sets, and a WRN-16-4
/// weight gradient took 1.4-1.9x as long.
const CHANNEL_SKEW: usize = 16;

/// Where the rows of a chunk's transformed tiles lie (`tcp` tile values each): one per point
/// and channel.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Distance between the rows of consecutive channels.
    channel: usize,
    /// Distance between the rows of consecutive points.
    point: usize,
}

impl Layout {
    /// `[C][P][tcp]` (plus [`CHANNEL_SKEW`] per channel): a channel's 36 rows in one run, so
    /// the tile transforms read and write memory in order; the products read and write rows
    /// `P · tcp + CHANNEL_SKEW` apart.
    fn by_channel(tcp: usize) -> Layout {
        Layout {
            channel: P * tcp + CHANNEL_SKEW,
            point: tcp,
        }
    }

    /// `[P][C][tcp]`: every point's rows in one block, which its product owns (the 36
    /// products of a chunk in parallel).
    fn by_point(channels: usize, tcp: usize) -> Layout {
        Layout {
            channel: tcp,
            point: channels * tcp,
        }
    }

    /// Where the row of point `p` and channel `c` starts.
    #[inline(always)]
    fn row(&self, p: usize, c: usize) -> usize {
        p * self.point + c * self.channel
    }

    /// The `rows x cols` matrix of point `p`'s rows (one per channel).
    fn matrix<'a>(&self, data: &'a [f32], p: usize, rows: usize, cols: usize) -> Mat<'a> {
        let first = self.row(p, 0);
        let len = (rows - 1) * self.channel + cols;
        Mat {
            data: &data[first..first + len],
            rs: self.channel,
            cs: 1,
        }
    }
}

/// Buffer sizes for a chunk of `images`: padded input, `V`, `M`.
fn chunk_buffers(g: &Geom, images: usize) -> [usize; 3] {
    let (ph, pw) = g.padded();
    let tcp = lane_padded(images * g.tiles_per_image());
    let rows = Layout::by_channel(tcp).channel;
    [images * g.c * ph * pw, g.c * rows, g.o * rows]
}

/// Runs `f(p, out_p)` for the 36 points' blocks of `out` (`per` values each), in parallel
/// when `parallel` (a call with fewer chunks of images than workers: the chunks alone would
/// leave workers idle).
fn for_each_point(
    parallel: bool,
    out: &mut [f32],
    per: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    let out = &mut out[..P * per];
    if parallel {
        out.par_chunks_mut(per.max(1))
            .enumerate()
            .for_each(|(p, o)| f(p, o));
    } else {
        out.chunks_mut(per.max(1))
            .enumerate()
            .for_each(|(p, o)| f(p, o));
    }
}

/// Whether a call with `chunks` chunks of images runs the 36 products of each chunk in
/// parallel (fewer chunks than workers).
fn points_in_parallel(chunks: usize) -> bool {
    chunks < rayon::current_num_threads()
}

/// The convolution `y = conv(x, U)` with weights already transformed (`u[p][o][c]`), plus
/// `onto` (`y`'s shape) when given, added to each chunk of outputs right after its output
/// transform wrote it (still in cache); `plane_fn` of each output plane taken there too.
/// With `input`, `x` is the input of the batch norm + ReLU whose output is convolved.
fn convolve<T: Send>(
    g: &Geom,
    (x, input): (&[f32], Option<&BnReluInput>),
    u: &Transformed,
    math: Math,
    onto: Option<&[f32]>,
    plane_fn: Option<&PlaneFn<'_, T>>,
) -> (Vec<f32>, Vec<T>) {
    let (in_img, out_img) = (g.c * g.h * g.w, g.o * g.h * g.w);
    let ipc = g.images_per_chunk();
    let map = TileMap::new(g, ipc);
    let parallel = points_in_parallel(g.n.div_ceil(ipc));
    // f32 products with few output channels: the narrow kernel (the gemm crate's want 64 rows)
    let narrow = math == Math::F32 && g.o <= NARROW_ROWS && narrow_gemm::available();
    // bf16: the weights packed once per call, shared by every chunk
    let packed_u: Vec<PackedA> = match math {
        Math::F32 => Vec::new(),
        Math::Bf16 => (0..P)
            .into_par_iter()
            .map(|p| PackedA::new(g.o, g.c, u.point(p)))
            .collect(),
    };
    let mut parts: Vec<Vec<T>> = Vec::new();
    let fill = |y: &mut [MaybeUninit<f32>]| {
        parts = y
            .par_chunks_mut(ipc * out_img)
            .zip(x.par_chunks(ipc * in_img))
            .enumerate()
            .map(|(ci, (yc, xc))| {
                let images = xc.len() / in_img;
                let tc = images * g.tiles_per_image();
                let tcp = lane_padded(tc);
                // products in parallel each own a block of `m`; one after another, the
                // transforms read and write a channel's rows in one run
                let (lv, lm) = if parallel {
                    (Layout::by_point(g.c, tcp), Layout::by_point(g.o, tcp))
                } else {
                    (Layout::by_channel(tcp), Layout::by_channel(tcp))
                };
                with_buffers(chunk_buffers(g, images), |[padded, v, m]| {
                    let tiles = map.first(tc);
                    transform_chunk_input(g, (xc, input), tiles, padded, lv, v);
                    let v = &*v;
                    let product = |p: usize, mp: &mut [f32], rs: usize| {
                        if narrow {
                            // every lane of the last group too (`tcp` columns): the padding
                            // lanes' results are never read
                            let vp = lv.matrix(v, p, g.c, tcp);
                            return narrow_gemm::product(g.o, tcp, g.c, mp, rs, u.point(p), vp);
                        }
                        let vp = lv.matrix(v, p, g.c, tc);
                        let up = match math {
                            Math::F32 => Lhs::Plain(u.point(p)),
                            Math::Bf16 => Lhs::Packed(&packed_u[p]),
                        };
                        gemm_bf16::product_in(math, g.o, tc, g.c, mp, rs, false, up, vp)
                    };
                    if parallel {
                        for_each_point(true, m, g.o * tcp, |p, mp| product(p, mp, tcp));
                    } else {
                        for p in 0..P {
                            product(p, &mut m[lm.row(p, 0)..], lm.channel);
                        }
                    }
                    output_transform(g, m, lm, tiles, yc);
                    // SAFETY: output_transform wrote every element of the chunk.
                    let yc = unsafe { assume_written(yc) };
                    if let Some(r) = onto {
                        add_assign_serial(yc, &r[ci * ipc * out_img..][..yc.len()]);
                    }
                    per_plane(yc, ci * ipc * g.o, g.h * g.w, plane_fn)
                })
            })
            .collect();
    };
    // SAFETY: the chunks cover `y`, and output_transform writes every element of its chunk.
    let y = unsafe { written_vec(g.n * out_img, fill) };
    (y, parts.into_iter().flatten().collect())
}

/// Forward: `y[n, o] = Σ_c x[n, c] ⋆ w[o, c]` with zero padding 1; `x` is `[N, C, H, W]`,
/// `w` `[O, C, 3, 3]`, `y` `[N, O, H, W]`; plus `onto` (`y`'s shape, a residual) when given.
/// With `input`, the convolution reads `input`'s batch norm + ReLU of `x` instead of `x`.
pub fn forward(
    g: &Geom,
    (x, input): (&[f32], Option<&BnReluInput>),
    w: &[f32],
    math: Math,
    onto: Option<&[f32]>,
) -> Vec<f32> {
    let u = weight_transform(g.o, g.c, |oi, ci| kernel_at(w, g.c, oi, ci));
    convolve::<()>(g, (x, input), &u, math, onto, None).0
}

/// Input gradient: `dx` `[N, C, H, W]` from `dy` `[N, O, H, W]` — the convolution of `dy`
/// with the kernels rotated by 180 degrees, in and out channels swapped; plus `prior`
/// (`dx`'s shape, the gradient the input already has) when given; `plane_fn` of every plane
/// of `dx` (`[N, C]`; empty without), taken while each chunk is in cache.
pub fn input_grad<T: Send>(
    g: &Geom,
    dy: &[f32],
    w: &[f32],
    math: Math,
    prior: Option<&[f32]>,
    plane_fn: Option<&PlaneFn<'_, T>>,
) -> (Vec<f32>, Vec<T>) {
    let u = weight_transform(g.c, g.o, |ci, oi| {
        let k = kernel_at(w, g.c, oi, ci);
        std::array::from_fn(|r| std::array::from_fn(|s| k[2 - r][2 - s]))
    });
    convolve(&g.swapped(), (dy, None), &u, math, prior, plane_fn)
}

/// Weight gradient: `dw` `[O, C, 3, 3]` from `x` `[N, C, H, W]` and `dy` `[N, O, H, W]`;
/// with `input`, the convolution's input is `input`'s batch norm + ReLU of `x`.
pub fn weight_grad(
    g: &Geom,
    (x, input): (&[f32], Option<&BnReluInput>),
    dy: &[f32],
    math: Math,
) -> Vec<f32> {
    let (in_img, out_img) = (g.c * g.h * g.w, g.o * g.h * g.w);
    let ipc = g.images_per_chunk();
    let map = TileMap::new(g, ipc);
    let len = P * g.o * g.c;
    let chunks = g.n.div_ceil(ipc).max(1);
    // A fixed split of the chunks over the workers, summed in a fixed order: the result does
    // not depend on scheduling, so a resumed run repeats an uninterrupted one bit for bit.
    // With fewer chunks than workers, one pass over the chunks runs the 36 products of each
    // in parallel instead.
    let parallel = points_in_parallel(chunks);
    let workers = if parallel {
        1
    } else {
        rayon::current_num_threads().clamp(1, chunks)
    };
    let per = chunks.div_ceil(workers);
    let partial: Vec<Vec<f32>> = (0..workers)
        .into_par_iter()
        .map(|wk| {
            let mut du = vec![0f32; len];
            for ch in wk * per..((wk + 1) * per).min(chunks) {
                let (i0, i1) = (ch * ipc, ((ch + 1) * ipc).min(g.n));
                let xc = &x[i0 * in_img..i1 * in_img];
                let dyc = &dy[i0 * out_img..i1 * out_img];
                let images = i1 - i0;
                let tc = images * g.tiles_per_image();
                let tcp = lane_padded(tc);
                // the products write `du`, so the transforms keep their rows in order
                let layout = Layout::by_channel(tcp);
                with_buffers(chunk_buffers(g, images), |[padded, v, dm]| {
                    let tiles = map.first(tc);
                    transform_chunk_input(g, (xc, input), tiles, padded, layout, v);
                    gradient_transform(g, dyc, tiles, layout, dm);
                    let (v, dm) = (&*v, &*dm);
                    for_each_point(parallel, &mut du, g.o * g.c, |p, dup| {
                        let dmp = Lhs::Plain(layout.matrix(dm, p, g.o, tc));
                        let vpt = layout.matrix(v, p, g.c, tc).t();
                        let (m, n) = (g.o, g.c);
                        gemm_bf16::product_narrow_first(math, m, n, tc, dup, n, true, dmp, vpt)
                    });
                });
            }
            du
        })
        .collect();
    let mut parts = partial.into_iter();
    let mut du = parts.next().unwrap_or_else(|| vec![0f32; len]);
    for part in parts {
        du.iter_mut().zip(&part).for_each(|(p, q)| *p += q);
    }
    weight_gradient(g, &du)
}

/// The 3x3 kernel `w[o, c]` of a `[O, C, 3, 3]` weight.
fn kernel_at(w: &[f32], c: usize, oi: usize, ci: usize) -> [[f32; 3]; 3] {
    let k = &w[(oi * c + ci) * 9..][..9];
    std::array::from_fn(|r| std::array::from_fn(|s| k[r * 3 + s]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`forward`] alone.
    fn fwd(g: &Geom, x: &[f32], w: &[f32], math: Math) -> Vec<f32> {
        forward(g, (x, None), w, math, None)
    }

    /// [`input_grad`] alone.
    fn bwd(g: &Geom, dy: &[f32], w: &[f32], math: Math) -> Vec<f32> {
        input_grad::<()>(g, dy, w, math, None, None).0
    }
    use crate::kernels::testutil::rand_vec as rand;

    /// Direct 3x3 pad-1 convolution in f64.
    fn direct(g: &Geom, x: &[f32], w: &[f32]) -> Vec<f64> {
        let (h, wd) = (g.h as isize, g.w as isize);
        let mut y = vec![0f64; g.n * g.o * g.h * g.w];
        for n in 0..g.n {
            for o in 0..g.o {
                for oy in 0..h {
                    for ox in 0..wd {
                        let mut acc = 0f64;
                        for c in 0..g.c {
                            for ky in 0..3isize {
                                for kx in 0..3isize {
                                    let (iy, ix) = (oy + ky - 1, ox + kx - 1);
                                    if iy >= 0 && iy < h && ix >= 0 && ix < wd {
                                        let xv = x[((n * g.c + c) as isize * h + iy) as usize
                                            * g.w
                                            + ix as usize];
                                        let wv = w[(o * g.c + c) * 9 + (ky * 3 + kx) as usize];
                                        acc += f64::from(xv) * f64::from(wv);
                                    }
                                }
                            }
                        }
                        y[((n * g.o + o) * g.h + oy as usize) * g.w + ox as usize] = acc;
                    }
                }
            }
        }
        y
    }

    /// Random input, weight and output gradient for `g` (seeds `seed`, `seed + 1`, `seed + 2`).
    fn random_case(g: &Geom, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        (
            rand(g.n * g.c * g.h * g.w, seed),
            rand(g.o * g.c * 9, seed + 1),
            rand(g.n * g.o * g.h * g.w, seed + 2),
        )
    }

    fn max_rel(a: &[f32], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - y).abs() / scale)
            .fold(0.0, f64::max)
    }

    /// A batch norm + ReLU applied in the padded copy gives the forward and the weight
    /// gradient of its written output bit for bit, over chunks that start at any image and
    /// maps whose edge tiles are cut.
    #[test]
    fn a_batch_norm_applied_on_the_way_in_equals_its_written_output() {
        for (g, seed) in [
            (
                Geom {
                    n: 5,
                    c: 8,
                    o: 16,
                    h: 7,
                    w: 9,
                },
                1,
            ),
            (
                Geom {
                    n: 9,
                    c: 12,
                    o: 8,
                    h: 8,
                    w: 8,
                },
                4,
            ),
            (
                Geom {
                    n: 3,
                    c: 16,
                    o: 80,
                    h: 6,
                    w: 5,
                },
                7,
            ),
        ] {
            let (x, w, dy) = random_case(&g, seed);
            let coef = (0..g.c)
                .map(|i| (0.4 + 0.1 * i as f32, 0.05 * i as f32 - 0.3))
                .collect();
            let bn = BnReluInput::new(coef);
            let y = bn.apply(&x, g.h * g.w);
            assert!(
                y.iter().filter(|&&v| v == 0.0).count() > y.len() / 5,
                "the ReLU cuts"
            );
            for math in [Math::F32, Math::Bf16] {
                if math == Math::Bf16 && !gemm_bf16::available() {
                    continue;
                }
                let read = forward(&g, (&x, Some(&bn)), &w, math, None);
                assert!(read == fwd(&g, &y, &w, math), "{g:?} {math:?}: forward");
                let read = weight_grad(&g, (&x, Some(&bn)), &dy, math);
                assert!(
                    read == weight_grad(&g, (&y, None), &dy, math),
                    "{g:?} {math:?}: dw"
                );
            }
        }
    }

    #[test]
    fn transforms_are_adjoint_pairs() {
        // <at(m), y> == <m, a(y)> and <g_col32(k), u> == <k, gt_col32(u)>
        let m: [f32; T] = std::array::from_fn(|r| r as f32 * 0.7 - 1.3);
        let y: [f32; M] = std::array::from_fn(|i| i as f32 * 1.1 + 0.4);
        let lhs: f32 = at(m).iter().zip(&y).map(|(p, q)| p * q).sum();
        let rhs: f32 = m.iter().zip(&a(y)).map(|(p, q)| p * q).sum();
        assert!((lhs - rhs).abs() < 1e-4, "{lhs} vs {rhs}");
        let k = [0.3, -1.2, 0.8];
        let u = [0.5, -0.25, 1.5, 2.0, -0.75, 0.1];
        let lhs: f32 = g_col32(k).iter().zip(&u).map(|(p, q)| p * q).sum();
        let rhs: f32 = k.iter().zip(&gt_col32(u)).map(|(p, q)| p * q).sum();
        assert!((lhs - rhs).abs() < 1e-6, "{lhs} vs {rhs}");
    }

    #[test]
    fn forward_matches_direct_convolution_on_ragged_maps() {
        // 13x10 leaves partial tiles at the right and bottom edges; several chunks of images
        // 16x16 and 17x16: groups of 16 whole tiles (the 4-wide row moves), alone and next
        // to partial ones
        for (n, c, o, h, w) in [
            (3, 8, 9, 13, 10),
            (2, 16, 8, 8, 8),
            (1, 9, 12, 4, 7),
            (2, 8, 9, 16, 16),
            (3, 8, 9, 17, 16),
        ] {
            let g = Geom { n, c, o, h, w };
            let x = rand(n * c * h * w, 1);
            let wt = rand(o * c * 9, 2);
            let err = max_rel(&fwd(&g, &x, &wt, Math::F32), &direct(&g, &x, &wt));
            assert!(err < 1e-5, "{g:?}: forward error {err}");
        }
    }

    #[test]
    fn bf16_products_stay_within_bf16_rounding_of_the_f32_results() {
        if !gemm_bf16::available() {
            eprintln!("skipped: no AVX-512 BF16 on this CPU");
            return;
        }
        // ragged maps, an odd channel count (a zero partner in the last pair)
        let g = Geom {
            n: 3,
            c: 9,
            o: 12,
            h: 13,
            w: 10,
        };
        let (x, w, dy) = random_case(&g, 7);
        // bf16 keeps 8 significant bits (relative rounding 2^-9 per operand); the transforms
        // amplify it (F(4x4, 3x3)'s output transform has coefficients up to 8 per axis)
        let close = |a: &[f32], b: &[f32], what: &str| {
            let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            let err = a
                .iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max)
                / scale;
            // measured: about 5-9% of the largest value at worst, 2-3% RMS
            assert!(err < 0.2, "{what}: bf16 error {err}");
            assert!(
                err > 1e-6,
                "{what}: bf16 result identical to f32 (products not rounded?)"
            );
        };
        close(
            &fwd(&g, &x, &w, Math::Bf16),
            &fwd(&g, &x, &w, Math::F32),
            "forward",
        );
        close(
            &bwd(&g, &dy, &w, Math::Bf16),
            &bwd(&g, &dy, &w, Math::F32),
            "input gradient",
        );
        close(
            &weight_grad(&g, (&x, None), &dy, Math::Bf16),
            &weight_grad(&g, (&x, None), &dy, Math::F32),
            "weight gradient",
        );
    }

    #[test]
    fn gradients_match_the_direct_adjoints() {
        // one image: a single chunk, its 36 products in parallel; five: several chunks; 17x16:
        // groups of 16 whole tiles (the 4-wide row moves) next to partial ones
        for (n, h, w) in [(1, 9, 6), (5, 9, 6), (2, 17, 16)] {
            let g = Geom {
                n,
                c: 8,
                o: 10,
                h,
                w,
            };
            gradients_match_the_direct_adjoints_for(g);
        }
    }

    fn gradients_match_the_direct_adjoints_for(g: Geom) {
        // dx = conv(dy, rot180(w)ᵀ); <dw, w'> = <dy, conv(x, w')> for every w'
        let (x, w, dy) = random_case(&g, 3);
        let dx = bwd(&g, &dy, &w, Math::F32);
        // reference input gradient: dx[n,c,iy,ix] = Σ dy[n,o,oy,ox] w[o,c,iy-oy+1,ix-ox+1]
        let mut want = vec![0f64; dx.len()];
        for n in 0..g.n {
            for o in 0..g.o {
                for oy in 0..g.h {
                    for ox in 0..g.w {
                        let d = f64::from(dy[((n * g.o + o) * g.h + oy) * g.w + ox]);
                        for c in 0..g.c {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (iy, ix) = (oy + ky, ox + kx);
                                    if iy >= 1 && iy <= g.h && ix >= 1 && ix <= g.w {
                                        want[((n * g.c + c) * g.h + iy - 1) * g.w + ix - 1] +=
                                            d * f64::from(w[(o * g.c + c) * 9 + ky * 3 + kx]);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let err = max_rel(&dx, &want);
        assert!(err < 1e-5, "{g:?}: input gradient error {err}");
        let dw = weight_grad(&g, (&x, None), &dy, Math::F32);
        let mut want = vec![0f64; dw.len()];
        for (i, wv) in want.iter_mut().enumerate() {
            // d/dw_i <dy, conv(x, w)> = <dy, conv(x, e_i)>
            let mut e = vec![0f32; dw.len()];
            e[i] = 1.0;
            let y = direct(&g, &x, &e);
            *wv = y.iter().zip(&dy).map(|(p, q)| p * f64::from(*q)).sum();
        }
        let err = max_rel(&dw, &want);
        assert!(err < 1e-5, "{g:?}: weight gradient error {err}");
    }

    #[test]
    fn random_shapes_match_the_direct_convolution() {
        // channel counts on both sides of the narrow product kernel's limit and not multiples
        // of its 8-row blocks, maps with and without partial tiles, one to several chunks
        let mut seed = 11u64;
        for case in 0..60 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pick =
                |k: u64, lo: usize, hi: usize| lo + ((seed >> (k * 8)) as usize) % (hi - lo + 1);
            let g = Geom {
                n: pick(0, 1, 6),
                c: pick(1, 8, 70),
                o: pick(2, 8, 70),
                h: pick(3, 4, 21),
                w: pick(4, 4, 21),
            };
            let (x, w, dy) = random_case(&g, seed);
            let err = max_rel(&fwd(&g, &x, &w, Math::F32), &direct(&g, &x, &w));
            assert!(err < 1e-5, "case {case}, {g:?}: forward error {err}");
            // the input gradient is the swapped convolution with the kernels rotated by 180°
            let rotated: Vec<f32> = (0..g.c * g.o * 9)
                .map(|i| {
                    let (ci, oi, k) = (i / (g.o * 9), i / 9 % g.o, i % 9);
                    w[(oi * g.c + ci) * 9 + 8 - k]
                })
                .collect();
            let want = direct(&g.swapped(), &dy, &rotated);
            let err = max_rel(&bwd(&g, &dy, &w, Math::F32), &want);
            assert!(err < 1e-5, "case {case}, {g:?}: input gradient error {err}");
        }
    }
}
