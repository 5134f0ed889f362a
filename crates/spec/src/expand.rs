//! The expand phase: the `model.wrn` macro as the generic layer list (the form `wrnc expand`
//! prints).
//!
//! The layout and names follow the official PyTorch code: `conv0`, then three groups of
//! N pre-activation blocks `group{g}.block{b}` (bn0, relu0, conv0, bn1, relu1, \[dropout\],
//! conv1, \[convdim\], add), then `bn`, `relu`, `pool`, `flatten`, `fc`, `softmax`.

use crate::model::{LayerInputs, LayerSpec, ModelSection, OpKind, Shortcut, WrnSpec};

fn conv(name: &str, out: usize, kernel: usize, stride: usize, padding: usize) -> LayerSpec {
    let mut l = LayerSpec::new(OpKind::Conv, name);
    l.out = Some(out);
    l.kernel = Some(kernel);
    l.stride = Some(stride);
    l.padding = Some(padding);
    l
}

fn bn(name: &str, w: &WrnSpec) -> LayerSpec {
    let mut l = LayerSpec::new(OpKind::BatchNorm, name);
    l.eps = Some(w.bn_eps);
    l.momentum = Some(w.bn_momentum);
    l
}

fn from(mut l: LayerSpec, names: &[&str]) -> LayerSpec {
    l.from = Some(if names.len() == 1 {
        LayerInputs::One(names[0].to_string())
    } else {
        LayerInputs::Many(names.iter().map(|s| s.to_string()).collect())
    });
    l
}

/// Number of blocks per group, N = (depth - 4) / 6.
pub fn blocks_per_group(depth: usize) -> usize {
    depth.saturating_sub(4) / 6
}

/// Group widths 16k, 32k, 64k.
pub fn group_widths(width: usize) -> [usize; 3] {
    [16 * width, 32 * width, 64 * width]
}

/// Trainable parameter count of a WRN computed in closed form (u128, no allocation), used to
/// refuse absurd sizes before expanding. Buffers (BN running stats) are added separately.
pub fn wrn_param_counts(w: &WrnSpec, in_channels: usize, classes: usize) -> (u128, u128) {
    let n = blocks_per_group(w.depth) as u128;
    let widths = group_widths(w.width).map(|x| x as u128);
    let mut trainable: u128 = in_channels as u128 * 16 * 9;
    let mut bn_channels: u128 = 0;
    let mut c_in: u128 = 16;
    for &wd in &widths {
        for b in 0..n {
            let cin = if b == 0 { c_in } else { wd };
            bn_channels += cin + wd;
            trainable += cin * wd * 9 + wd * wd * 9;
            if cin != wd {
                trainable += cin * wd;
            }
        }
        c_in = wd;
    }
    bn_channels += widths[2];
    trainable += 2 * bn_channels + widths[2] * classes as u128 + classes as u128;
    (trainable, 2 * bn_channels)
}

/// Expands a WRN into layers for a `classes`-way classifier.
pub fn expand_wrn(w: &WrnSpec, classes: usize) -> Vec<LayerSpec> {
    let n = blocks_per_group(w.depth);
    let widths = group_widths(w.width);
    let mut layers = vec![conv("conv0", 16, 3, 1, 1)];
    let mut x = "conv0".to_string();
    let mut c_in = 16;
    for (g, &wd) in widths.iter().enumerate() {
        for b in 0..n {
            let p = format!("group{g}.block{b}");
            let stride = if b == 0 && g > 0 { 2 } else { 1 };
            let cin = if b == 0 { c_in } else { wd };
            let name = |s: &str| format!("{p}.{s}");
            layers.push(from(bn(&name("bn0"), w), &[&x]));
            layers.push(LayerSpec::new(OpKind::Relu, &name("relu0")));
            layers.push(conv(&name("conv0"), wd, 3, stride, 1));
            layers.push(bn(&name("bn1"), w));
            layers.push(LayerSpec::new(OpKind::Relu, &name("relu1")));
            if w.dropout > 0.0 {
                let mut d = LayerSpec::new(OpKind::Dropout, &name("dropout"));
                d.p = Some(w.dropout);
                layers.push(d);
            }
            layers.push(conv(&name("conv1"), wd, 3, 1, 1));
            let shortcut = if cin != wd {
                let src = match w.shortcut {
                    Shortcut::Preact => name("relu0"),
                    Shortcut::Input => x.clone(),
                };
                layers.push(from(conv(&name("convdim"), wd, 1, stride, 0), &[&src]));
                name("convdim")
            } else {
                x.clone()
            };
            layers.push(from(
                LayerSpec::new(OpKind::Add, &name("add")),
                &[&name("conv1"), &shortcut],
            ));
            x = name("add");
        }
        c_in = wd;
    }
    layers.push(from(bn("bn", w), &[&x]));
    layers.push(LayerSpec::new(OpKind::Relu, "relu"));
    layers.push(LayerSpec::new(OpKind::GlobalAvgPool, "pool"));
    layers.push(LayerSpec::new(OpKind::Flatten, "flatten"));
    let mut fc = LayerSpec::new(OpKind::Linear, "fc");
    fc.out = Some(classes);
    fc.bias = Some(true);
    layers.push(fc);
    layers.push(LayerSpec::new(OpKind::Softmax, "softmax"));
    layers
}

/// The expand phase: the network of a (validated) model section as one layer list, the WRN
/// macro expanded (for `model.classes` classes) or the generic `layers:` list as written.
pub fn model_layers(model: &ModelSection) -> Vec<LayerSpec> {
    match &model.wrn {
        Some(w) => expand_wrn(w, model.classes.unwrap_or(2)),
        None => model.layers.clone().unwrap_or_default(),
    }
}
