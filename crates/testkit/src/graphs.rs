//! Small graphs for tests: layer shorthands, a builder that panics on mistakes (a test's
//! graph is a fixture, not input), the pre-activation block, and whole WRNs laid out and named
//! as the spec front end does (`conv0`, `group{g}.block{b}.*`, `bn`, `relu`, `pool`,
//! `flatten`, `fc`, `softmax`).

use wrnc_ir::{Graph, GraphBuilder, Op, ValueId};

/// Batch norm with PyTorch's defaults.
pub const BN: Op = Op::batch_norm(1e-5, 0.1);

/// A bias-free convolution with "same" padding (`kernel / 2`).
pub fn conv(out: usize, kernel: usize, stride: usize) -> Op {
    same_padded_conv(out, kernel, stride, false)
}

/// A convolution with a bias and "same" padding (`kernel / 2`).
pub fn conv_bias(out: usize, kernel: usize, stride: usize) -> Op {
    same_padded_conv(out, kernel, stride, true)
}

fn same_padded_conv(out: usize, kernel: usize, stride: usize, bias: bool) -> Op {
    Op::conv(out, kernel, stride, kernel / 2, bias)
}

/// A [`GraphBuilder`] whose layers panic instead of returning errors.
#[derive(Debug)]
pub struct Net(GraphBuilder);

impl Net {
    /// An empty graph `name` over `[C, H, W]` images.
    pub fn new(name: &str, input: [usize; 3]) -> Self {
        Net(GraphBuilder::new(name, input).expect("a valid input shape"))
    }

    /// The graph's input value.
    pub fn input(&self) -> ValueId {
        self.0.input()
    }

    /// The last value added.
    pub fn last(&self) -> ValueId {
        self.0.graph().output()
    }

    /// Adds layer `name` applying `op` to `inputs` (see [`GraphBuilder::layer`]).
    pub fn layer(&mut self, name: &str, op: &Op, inputs: &[ValueId]) -> ValueId {
        self.0
            .layer(name, op, inputs)
            .unwrap_or_else(|e| panic!("layer `{name}`: {e}"))
    }

    /// Adds layer `name` applying `op` to `x` alone.
    pub fn then(&mut self, name: &str, op: Op, x: ValueId) -> ValueId {
        self.layer(name, &op, &[x])
    }

    /// A pre-activation residual block `prefix.{bn0, relu0, conv0, bn1, relu1, [dropout],
    /// conv1, add}` from `cin` to `cout` channels; when they differ the shortcut is the 1x1
    /// convolution `prefix.{shortcut}` of the activated input, else the identity.
    #[allow(clippy::too_many_arguments)]
    pub fn preact_block(
        &mut self,
        prefix: &str,
        x: ValueId,
        cin: usize,
        cout: usize,
        stride: usize,
        dropout: f64,
        shortcut: &str,
    ) -> ValueId {
        let o = self.bn_relu(&format!("{prefix}.bn0"), &format!("{prefix}.relu0"), x);
        let y = self.then(&format!("{prefix}.conv0"), conv(cout, 3, stride), o);
        let mut y = self.bn_relu(&format!("{prefix}.bn1"), &format!("{prefix}.relu1"), y);
        if dropout > 0.0 {
            let drop = Op::dropout(dropout);
            y = self.then(&format!("{prefix}.dropout"), drop, y);
        }
        let y = self.then(&format!("{prefix}.conv1"), conv(cout, 3, 1), y);
        let short = if cin != cout {
            self.then(&format!("{prefix}.{shortcut}"), conv(cout, 1, stride), o)
        } else {
            x
        };
        self.layer(&format!("{prefix}.add"), &Op::Add, &[y, short])
    }

    /// Batch norm `bn` then ReLU `relu`.
    pub fn bn_relu(&mut self, bn: &str, relu: &str, x: ValueId) -> ValueId {
        let x = self.then(bn, BN, x);
        self.then(relu, Op::Relu, x)
    }

    /// `gap` (global average pool), `flatten` and the linear layer `fc` to `classes` (with a
    /// bias when `bias`).
    pub fn classifier(&mut self, x: ValueId, classes: usize, bias: bool) -> ValueId {
        let x = self.then("gap", Op::GlobalAvgPool, x);
        let x = self.then("flatten", Op::Flatten, x);
        self.then("fc", Op::linear(classes, bias), x)
    }

    /// The builder itself, for what the shorthands do not cover.
    pub fn builder(&mut self) -> &mut GraphBuilder {
        &mut self.0
    }

    /// The finished graph.
    pub fn finish(self) -> Graph {
        self.0.finish().expect("a well-formed graph")
    }
}

/// The smallest network with every parameter role: `conv` (of kind `conv`), batch norm `bn`,
/// then [`Net::classifier`] to `classes` (`fc` with a bias when `fc_bias`), graph name `t`.
pub fn conv_bn_classifier(input: [usize; 3], conv: Op, classes: usize, fc_bias: bool) -> Graph {
    let mut b = Net::new("t", input);
    let c = b.then("conv", conv, b.input());
    let n = b.then("bn", BN, c);
    b.classifier(n, classes, fc_bias);
    b.finish()
}

/// WRN-`depth`-`width` for `input` images and `classes` classes (`dropout` 0 for none), with
/// the spec front end's layer names and a final softmax.
pub fn wrn(input: [usize; 3], depth: usize, width: usize, classes: usize, dropout: f64) -> Graph {
    assert_eq!((depth - 4) % 6, 0, "WRN depth is 6N+4");
    let n = (depth - 4) / 6;
    let mut b = Net::new(&format!("wrn-{depth}-{width}"), input);
    let mut x = b.then("conv0", conv(16, 3, 1), b.input());
    let mut channels = 16;
    for (g, (w, stride)) in [16 * width, 32 * width, 64 * width]
        .into_iter()
        .zip([1, 2, 2])
        .enumerate()
    {
        for blk in 0..n {
            let s = if blk == 0 { stride } else { 1 };
            let p = format!("group{g}.block{blk}");
            x = b.preact_block(&p, x, channels, w, s, dropout, "convdim");
            channels = w;
        }
    }
    let x = b.bn_relu("bn", "relu", x);
    let x = b.then("pool", Op::GlobalAvgPool, x);
    let x = b.then("flatten", Op::Flatten, x);
    let x = b.then("fc", Op::linear(classes, true), x);
    b.then("softmax", Op::Softmax, x);
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrn_has_the_front_ends_names_and_shapes() {
        let g = wrn([3, 32, 32], 16, 2, 10, 0.3);
        let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names[0], "conv0");
        assert!(names.contains(&"group1.block0.convdim"));
        assert!(!names.contains(&"group0.block1.convdim"));
        assert!(names.contains(&"group2.block1.dropout"));
        assert_eq!(names.last(), Some(&"softmax"));
        assert_eq!(g.classes(), 10);
        assert_eq!(names.iter().filter(|n| n.ends_with(".add")).count(), 6);
    }
}
