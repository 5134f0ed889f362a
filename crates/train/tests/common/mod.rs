//! Shared test helpers: a WRN graph built with the IR builder exactly as the spec front end
//! lays it out (names `conv0`, `group{g}.block{b}.*`, `bn`, `relu`, `pool`, `flatten`, `fc`,
//! `softmax`).
#![allow(dead_code)]

use wrnc_ir::builder::LayerKind;
use wrnc_ir::{Graph, GraphBuilder, ValueId};

fn conv(out: usize, kernel: usize, stride: usize) -> LayerKind {
    LayerKind::Conv {
        out,
        kernel,
        stride,
        padding: kernel / 2,
        bias: false,
    }
}

const BN: LayerKind = LayerKind::BatchNorm {
    eps: 1e-5,
    momentum: 0.1,
};

/// WRN-`depth`-`width` for `input` images and `classes` classes; `dropout` 0 for none.
pub fn wrn(input: [usize; 3], depth: usize, width: usize, classes: usize, dropout: f64) -> Graph {
    assert_eq!((depth - 4) % 6, 0);
    let n = (depth - 4) / 6;
    let mut b = GraphBuilder::new(&format!("wrn-{depth}-{width}"), input).unwrap();
    let mut x = b.layer("conv0", &conv(16, 3, 1), &[b.input()]).unwrap();
    let mut channels = 16;
    for (g, (&w, &stride)) in [16 * width, 32 * width, 64 * width]
        .iter()
        .zip(&[1usize, 2, 2])
        .enumerate()
    {
        for blk in 0..n {
            let s = if blk == 0 { stride } else { 1 };
            x = block(
                &mut b,
                &format!("group{g}.block{blk}"),
                x,
                channels,
                w,
                s,
                dropout,
            );
            channels = w;
        }
    }
    let x = b.layer("bn", &BN, &[x]).unwrap();
    let x = b.layer("relu", &LayerKind::Relu, &[x]).unwrap();
    let x = b.layer("pool", &LayerKind::GlobalAvgPool, &[x]).unwrap();
    let x = b.layer("flatten", &LayerKind::Flatten, &[x]).unwrap();
    let x = b
        .layer(
            "fc",
            &LayerKind::Linear {
                out: classes,
                bias: true,
            },
            &[x],
        )
        .unwrap();
    b.layer("softmax", &LayerKind::Softmax, &[x]).unwrap();
    b.finish().unwrap()
}

fn block(
    b: &mut GraphBuilder,
    p: &str,
    x: ValueId,
    cin: usize,
    cout: usize,
    stride: usize,
    dropout: f64,
) -> ValueId {
    let o = b.layer(&format!("{p}.bn0"), &BN, &[x]).unwrap();
    let o = b
        .layer(&format!("{p}.relu0"), &LayerKind::Relu, &[o])
        .unwrap();
    let y = b
        .layer(&format!("{p}.conv0"), &conv(cout, 3, stride), &[o])
        .unwrap();
    let y = b.layer(&format!("{p}.bn1"), &BN, &[y]).unwrap();
    let mut y = b
        .layer(&format!("{p}.relu1"), &LayerKind::Relu, &[y])
        .unwrap();
    if dropout > 0.0 {
        y = b
            .layer(
                &format!("{p}.dropout"),
                &LayerKind::Dropout { p: dropout },
                &[y],
            )
            .unwrap();
    }
    let y = b
        .layer(&format!("{p}.conv1"), &conv(cout, 3, 1), &[y])
        .unwrap();
    let short = if cin != cout {
        b.layer(&format!("{p}.convdim"), &conv(cout, 1, stride), &[o])
            .unwrap()
    } else {
        x
    };
    b.layer(&format!("{p}.add"), &LayerKind::Add, &[y, short])
        .unwrap()
}
