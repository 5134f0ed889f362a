//! The expand phase: the `model.wrn` macro as the generic layer list (the form `wrnc expand`
//! prints).
//!
//! The CIFAR form (`block: basic`, `stem: cifar`) follows the official PyTorch code's layout
//! and names: `conv0`, then three groups of N pre-activation blocks `group{g}.block{b}` (bn0,
//! relu0, conv0, bn1, relu1, \[dropout\], conv1, \[convdim\], add), then `bn`, `relu`,
//! `pool`, `flatten`, `fc`, `softmax`. The ImageNet form (`block: bottleneck`, `stem:
//! imagenet`) follows torchvision's `wide_resnet50_2` and its module names: `conv1`, `bn1`,
//! `relu`, `maxpool`, four stages of post-activation bottlenecks `layer{s}.{b}` (conv1, bn1,
//! relu1, conv2, bn2, relu2, conv3, bn3, \[downsample.0, downsample.1\], add, relu3), then
//! `avgpool`, `flatten`, `fc`, `softmax`.

use crate::model::{Block, LayerInputs, LayerSpec, ModelSection, OpKind, Shortcut, WrnSpec};

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

/// Blocks per stage of the bottleneck networks (torchvision's ResNet-50, -101 and -152
/// layouts), by depth; None for another depth.
pub fn bottleneck_stages(depth: usize) -> Option<[usize; 4]> {
    match depth {
        50 => Some([3, 4, 6, 3]),
        101 => Some([3, 4, 23, 3]),
        152 => Some([3, 8, 36, 3]),
        _ => None,
    }
}

/// The depths a bottleneck network may have.
pub const BOTTLENECK_DEPTHS: [usize; 3] = [50, 101, 152];

/// Channels of the ImageNet stem's conv.
const IMAGENET_STEM: usize = 64;

/// Output channels of a bottleneck: 4 x the stage's base width.
const EXPANSION: usize = 4;

/// A bottleneck stage's widths `(inner, output)`: the base width 64 x 2^stage, widened by
/// `width` inside the block and by the expansion 4 at its output.
pub fn bottleneck_widths(stage: usize, width: usize) -> (usize, usize) {
    let base = IMAGENET_STEM << stage;
    (base * width, base * EXPANSION)
}

/// Trainable parameter count of a WRN computed in closed form (u128, no allocation), used to
/// refuse absurd sizes before expanding. Buffers (BN running stats) are added separately.
pub fn wrn_param_counts(w: &WrnSpec, in_channels: usize, classes: usize) -> (u128, u128) {
    if w.block == Block::Bottleneck {
        return bottleneck_param_counts(w, in_channels, classes);
    }
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

/// [`wrn_param_counts`] of the bottleneck form: `(trainable, buffers)`.
fn bottleneck_param_counts(w: &WrnSpec, in_channels: usize, classes: usize) -> (u128, u128) {
    let stages = bottleneck_stages(w.depth).unwrap_or_default();
    let stem = IMAGENET_STEM as u128;
    let mut trainable: u128 = in_channels as u128 * stem * 49;
    let mut bn_channels: u128 = stem;
    let mut c_in = stem;
    for (s, &n) in stages.iter().enumerate() {
        let (inner, out) = bottleneck_widths(s, w.width);
        let (inner, out) = (inner as u128, out as u128);
        for b in 0..n {
            trainable += c_in * inner + inner * inner * 9 + inner * out;
            bn_channels += 2 * inner + out;
            if b == 0 {
                trainable += c_in * out;
                bn_channels += out;
            }
            c_in = out;
        }
    }
    trainable += 2 * bn_channels + c_in * classes as u128 + classes as u128;
    (trainable, 2 * bn_channels)
}

/// Expands a WRN into layers for a `classes`-way classifier.
pub fn expand_wrn(w: &WrnSpec, classes: usize) -> Vec<LayerSpec> {
    if w.block == Block::Bottleneck {
        return expand_bottleneck(w, classes);
    }
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
    layers.extend(classifier(classes));
    layers
}

/// The ImageNet form: torchvision's `wide_resnet50_2` layout (and its module names, so the
/// parameters are named as in its `state_dict`), post-activation, the stride in the 3x3 conv
/// (ResNet v1.5), a projection shortcut (1x1 conv with the stride, BN) in the first block of
/// every stage, convs without bias, a linear classifier with bias.
fn expand_bottleneck(w: &WrnSpec, classes: usize) -> Vec<LayerSpec> {
    let stages = bottleneck_stages(w.depth).unwrap_or_default();
    let mut layers = vec![
        conv("conv1", IMAGENET_STEM, 7, 2, 3),
        bn("bn1", w),
        LayerSpec::new(OpKind::Relu, "relu"),
        pool(OpKind::MaxPool, "maxpool", 3, 2, 1),
    ];
    let mut x = "maxpool".to_string();
    for (s, &n) in stages.iter().enumerate() {
        let (inner, out) = bottleneck_widths(s, w.width);
        for b in 0..n {
            let p = format!("layer{}.{b}", s + 1);
            let name = |l: &str| format!("{p}.{l}");
            let stride = if b == 0 && s > 0 { 2 } else { 1 };
            layers.push(from(conv(&name("conv1"), inner, 1, 1, 0), &[&x]));
            layers.push(bn(&name("bn1"), w));
            layers.push(LayerSpec::new(OpKind::Relu, &name("relu1")));
            layers.push(conv(&name("conv2"), inner, 3, stride, 1));
            layers.push(bn(&name("bn2"), w));
            layers.push(LayerSpec::new(OpKind::Relu, &name("relu2")));
            layers.push(conv(&name("conv3"), out, 1, 1, 0));
            layers.push(bn(&name("bn3"), w));
            let shortcut = if b == 0 {
                layers.push(from(conv(&name("downsample.0"), out, 1, stride, 0), &[&x]));
                layers.push(bn(&name("downsample.1"), w));
                name("downsample.1")
            } else {
                x.clone()
            };
            layers.push(from(
                LayerSpec::new(OpKind::Add, &name("add")),
                &[&name("bn3"), &shortcut],
            ));
            layers.push(LayerSpec::new(OpKind::Relu, &name("relu3")));
            x = name("relu3");
        }
    }
    layers.push(LayerSpec::new(OpKind::GlobalAvgPool, "avgpool"));
    layers.extend(classifier(classes));
    layers
}

/// `flatten`, `fc` (with a bias) to `classes` and `softmax`.
fn classifier(classes: usize) -> [LayerSpec; 3] {
    let mut fc = LayerSpec::new(OpKind::Linear, "fc");
    fc.out = Some(classes);
    fc.bias = Some(true);
    [
        LayerSpec::new(OpKind::Flatten, "flatten"),
        fc,
        LayerSpec::new(OpKind::Softmax, "softmax"),
    ]
}

/// A pooling layer (`op` avg_pool or max_pool).
fn pool(op: OpKind, name: &str, kernel: usize, stride: usize, padding: usize) -> LayerSpec {
    let mut l = LayerSpec::new(op, name);
    l.kernel = Some(kernel);
    l.stride = Some(stride);
    l.padding = Some(padding);
    l
}

/// The expand phase: the network of a (validated) model section as one layer list, the WRN
/// macro expanded (for `model.classes` classes) or the generic `layers:` list as written.
pub fn model_layers(model: &ModelSection) -> Vec<LayerSpec> {
    match &model.wrn {
        Some(w) => expand_wrn(w, model.classes.unwrap_or(2)),
        None => model.layers.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Stem;

    /// The closed-form counts (the size check before expanding) against the expanded graph.
    #[test]
    fn closed_form_counts_match_the_graph() {
        let forms = [
            (Block::Basic, Stem::Cifar, 16, 4),
            (Block::Basic, Stem::Cifar, 10, 1),
            (Block::Bottleneck, Stem::Imagenet, 50, 2),
            (Block::Bottleneck, Stem::Imagenet, 50, 1),
            (Block::Bottleneck, Stem::Imagenet, 101, 3),
        ];
        for (block, stem, depth, width) in forms {
            let w = WrnSpec {
                depth,
                width,
                block,
                stem,
                ..WrnSpec::default()
            };
            let g = crate::lower::lower("t", [3, 32, 32], 10, &expand_wrn(&w, 10)).unwrap();
            let st = g.stats();
            let (trainable, buffers) = wrn_param_counts(&w, 3, 10);
            assert_eq!(trainable, st.trainable as u128, "{block:?} {depth}-{width}");
            assert_eq!(
                buffers, st.non_trainable as u128,
                "{block:?} {depth}-{width}"
            );
        }
    }

    #[test]
    fn bottleneck_blocks_are_post_activation_with_projection_shortcuts() {
        let w = WrnSpec {
            depth: 50,
            width: 2,
            block: Block::Bottleneck,
            stem: Stem::Imagenet,
            ..WrnSpec::default()
        };
        let layers = expand_wrn(&w, 1000);
        let names: Vec<String> = layers.iter().map(|l| l.name.clone().unwrap()).collect();
        assert_eq!(names[..4], ["conv1", "bn1", "relu", "maxpool"]);
        let block: Vec<&str> = names[4..18].iter().map(|s| s.as_str()).collect();
        assert_eq!(
            block,
            [
                "layer1.0.conv1",
                "layer1.0.bn1",
                "layer1.0.relu1",
                "layer1.0.conv2",
                "layer1.0.bn2",
                "layer1.0.relu2",
                "layer1.0.conv3",
                "layer1.0.bn3",
                "layer1.0.downsample.0",
                "layer1.0.downsample.1",
                "layer1.0.add",
                "layer1.0.relu3",
                "layer1.1.conv1",
                "layer1.1.bn1",
            ]
        );
        let find = |n: &str| &layers[names.iter().position(|x| x == n).unwrap()];
        // v1.5: the stride sits in the 3x3 conv; the shortcut reads the block input
        assert_eq!(find("layer2.0.conv1").stride, Some(1));
        assert_eq!(find("layer2.0.conv2").stride, Some(2));
        let down = find("layer2.0.downsample.0");
        assert_eq!((down.kernel, down.stride), (Some(1), Some(2)));
        assert_eq!(down.from, Some(LayerInputs::One("layer1.2.relu3".into())));
        assert_eq!(
            find("layer3.1.add").from,
            Some(LayerInputs::Many(vec![
                "layer3.1.bn3".into(),
                "layer3.0.relu3".into()
            ]))
        );
        assert!(!names.iter().any(|n| n == "layer3.1.downsample.0"));
        assert_eq!(names.iter().filter(|n| n.ends_with(".add")).count(), 16);
        assert_eq!(find("layer4.0.conv2").out, Some(1024));
        assert_eq!(find("layer4.0.conv3").out, Some(2048));
        assert_eq!(
            names[names.len() - 4..],
            ["avgpool", "flatten", "fc", "softmax"]
        );
    }
}
