//! Building a graph layer by layer with shape inference and size limits.

use crate::error::IrError;
use crate::graph::{Graph, Node, Value, ValueId};
use crate::op::Op;
use crate::param::{Init, Param, ParamId, ParamRole};
use std::collections::HashSet;

/// Most parameters a graph may hold (4 GB of f32).
pub const MAX_PARAMS: u128 = 1_000_000_000;
/// Most elements one activation of one sample may hold.
pub const MAX_VALUE_ELEMS: u128 = 1 << 28;

/// A layer's hyper-parameters, without its parameters (the builder creates those).
#[derive(Debug, Clone, PartialEq)]
pub enum LayerKind {
    /// See [`Op::Conv`]; `bias` asks for a bias parameter.
    Conv {
        /// Output channels.
        out: usize,
        /// Kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        padding: usize,
        /// Whether the conv has a bias.
        bias: bool,
    },
    /// See [`Op::BatchNorm`].
    BatchNorm {
        /// Epsilon.
        eps: f64,
        /// PyTorch-meaning momentum.
        momentum: f64,
    },
    /// See [`Op::Relu`].
    Relu,
    /// See [`Op::Dropout`].
    Dropout {
        /// Drop probability.
        p: f64,
    },
    /// See [`Op::Add`].
    Add,
    /// See [`Op::AvgPool`].
    AvgPool {
        /// Window.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        padding: usize,
    },
    /// See [`Op::GlobalAvgPool`].
    GlobalAvgPool,
    /// See [`Op::Flatten`].
    Flatten,
    /// See [`Op::Linear`].
    Linear {
        /// Output features.
        out: usize,
        /// Whether the layer has a bias.
        bias: bool,
    },
    /// See [`Op::Softmax`].
    Softmax,
}

/// Builds a [`Graph`], inferring every value's shape and refusing absurd sizes before any
/// tensor is allocated (the builder itself allocates no tensors at all).
#[derive(Debug)]
pub struct GraphBuilder {
    graph: Graph,
    names: HashSet<String>,
    total_params: u128,
}

/// Formats a count with thousands separators: `36,479,194`.
pub fn fmt_count(n: u128) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Formats a parameter count with its size in f32 bytes, e.g. `36,479,194 (145.9 MB)`.
pub fn describe_size(params: u128) -> String {
    let bytes = params.saturating_mul(4) as f64;
    let (v, unit) = if bytes >= 1e12 {
        (bytes / 1e12, "TB")
    } else if bytes >= 1e9 {
        (bytes / 1e9, "GB")
    } else if bytes >= 1e6 {
        (bytes / 1e6, "MB")
    } else {
        (bytes / 1e3, "kB")
    };
    format!("{} parameters ({v:.1} {unit} as f32)", fmt_count(params))
}

/// Refuses a parameter count above [`MAX_PARAMS`] with a message saying what it would need.
pub fn check_param_budget(params: u128) -> Result<(), IrError> {
    if params > MAX_PARAMS {
        return Err(IrError::TooLarge(format!(
            "the model would need {}; wrnc refuses more than {}",
            describe_size(params),
            describe_size(MAX_PARAMS)
        )));
    }
    Ok(())
}

impl GraphBuilder {
    /// Starts a graph named `name` whose input has shape `[C, H, W]`.
    pub fn new(name: &str, input: [usize; 3]) -> Result<Self, IrError> {
        let elems = input.iter().map(|&d| d as u128).product::<u128>();
        if input.contains(&0) || elems > MAX_VALUE_ELEMS {
            return Err(IrError::TooLarge(format!(
                "input shape {input:?} is not usable: every dimension must be at least 1 and one \
                 image at most {} values",
                fmt_count(MAX_VALUE_ELEMS)
            )));
        }
        let mut names = HashSet::new();
        names.insert("input".to_string());
        Ok(GraphBuilder {
            graph: Graph {
                name: name.to_string(),
                values: vec![Value {
                    name: "input".into(),
                    shape: input.to_vec(),
                }],
                nodes: Vec::new(),
                params: Vec::new(),
            },
            names,
            total_params: 0,
        })
    }

    /// The input value.
    pub fn input(&self) -> ValueId {
        ValueId(0)
    }

    /// Shape of a value built so far.
    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.graph.values[v.0].shape
    }

    /// The graph built so far.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    fn param(
        &mut self,
        layer: &str,
        suffix: &str,
        shape: Vec<usize>,
        init: Init,
        role: ParamRole,
    ) -> Result<ParamId, IrError> {
        let n = shape.iter().map(|&d| d as u128).product::<u128>();
        self.total_params += n;
        check_param_budget(self.total_params)?;
        let name = format!("{layer}.{suffix}");
        if !self.names.insert(name.clone()) {
            return Err(IrError::DuplicateName(name));
        }
        let trainable = !matches!(role, ParamRole::RunningMean | ParamRole::RunningVar);
        let decay = matches!(role, ParamRole::Weight);
        self.graph.params.push(Param {
            name,
            shape,
            init,
            trainable,
            decay,
            role,
        });
        Ok(ParamId(self.graph.params.len() - 1))
    }

    fn shape_err(layer: &str, message: String) -> IrError {
        IrError::Shape {
            layer: layer.to_string(),
            message,
        }
    }

    fn spatial(layer: &str, s: &[usize], what: &str) -> Result<(usize, usize, usize), IrError> {
        match s {
            [c, h, w] => Ok((*c, *h, *w)),
            _ => Err(Self::shape_err(
                layer,
                format!("{what} needs a [C, H, W] input, got {s:?}"),
            )),
        }
    }

    fn out_size(
        layer: &str,
        n: usize,
        k: usize,
        s: usize,
        p: usize,
        axis: &str,
    ) -> Result<usize, IrError> {
        if k == 0 || s == 0 {
            return Err(Self::shape_err(
                layer,
                "kernel and stride must be at least 1".into(),
            ));
        }
        if n + 2 * p < k {
            return Err(Self::shape_err(
                layer,
                format!(
                    "input {axis} {n} with padding {p} is smaller than the kernel {k}; \
                     the input is too small for this layer"
                ),
            ));
        }
        Ok((n + 2 * p - k) / s + 1)
    }

    /// Adds a layer reading `inputs`, returning its output value.
    pub fn layer(
        &mut self,
        name: &str,
        kind: &LayerKind,
        inputs: &[ValueId],
    ) -> Result<ValueId, IrError> {
        if !self.names.insert(name.to_string()) {
            return Err(IrError::DuplicateName(name.to_string()));
        }
        let want = if matches!(kind, LayerKind::Add) { 2 } else { 1 };
        if inputs.len() != want {
            return Err(Self::shape_err(
                name,
                format!("takes {want} input(s), got {}", inputs.len()),
            ));
        }
        if let Some(last) = self.graph.nodes.last() {
            if matches!(last.op, Op::Softmax) {
                return Err(Self::shape_err(
                    name,
                    "softmax must be the last layer; nothing may follow it".into(),
                ));
            }
        }
        let x = self.shape(inputs[0]).to_vec();
        let (op, shape) = match kind {
            LayerKind::Conv {
                out,
                kernel,
                stride,
                padding,
                bias,
            } => {
                let (c, h, w) = Self::spatial(name, &x, "conv")?;
                if *out == 0 {
                    return Err(Self::shape_err(name, "out must be at least 1".into()));
                }
                let oh = Self::out_size(name, h, *kernel, *stride, *padding, "height")?;
                let ow = Self::out_size(name, w, *kernel, *stride, *padding, "width")?;
                let fan_in = c * kernel * kernel;
                let weight = self.param(
                    name,
                    "weight",
                    vec![*out, c, *kernel, *kernel],
                    Init::HeNormal { fan_in },
                    ParamRole::Weight,
                )?;
                let bias = if *bias {
                    Some(self.param(name, "bias", vec![*out], Init::Zeros, ParamRole::Bias)?)
                } else {
                    None
                };
                (
                    Op::Conv {
                        out_channels: *out,
                        kernel: *kernel,
                        stride: *stride,
                        padding: *padding,
                        weight,
                        bias,
                    },
                    vec![*out, oh, ow],
                )
            }
            LayerKind::BatchNorm { eps, momentum } => {
                let c = x[0];
                let weight = self.param(
                    name,
                    "weight",
                    vec![c],
                    Init::Uniform01,
                    ParamRole::BnWeight,
                )?;
                let bias = self.param(name, "bias", vec![c], Init::Zeros, ParamRole::BnBias)?;
                let running_mean = self.param(
                    name,
                    "running_mean",
                    vec![c],
                    Init::Zeros,
                    ParamRole::RunningMean,
                )?;
                let running_var = self.param(
                    name,
                    "running_var",
                    vec![c],
                    Init::Ones,
                    ParamRole::RunningVar,
                )?;
                (
                    Op::BatchNorm {
                        eps: *eps,
                        momentum: *momentum,
                        weight,
                        bias,
                        running_mean,
                        running_var,
                    },
                    x.clone(),
                )
            }
            LayerKind::Relu => (Op::Relu, x.clone()),
            LayerKind::Dropout { p } => (Op::Dropout { p: *p }, x.clone()),
            LayerKind::Add => {
                let y = self.shape(inputs[1]).to_vec();
                if x != y {
                    return Err(Self::shape_err(
                        name,
                        format!(
                            "add needs two inputs of the same shape, got {x:?} from `{}` and \
                             {y:?} from `{}`",
                            self.graph.values[inputs[0].0].name,
                            self.graph.values[inputs[1].0].name
                        ),
                    ));
                }
                (Op::Add, x.clone())
            }
            LayerKind::AvgPool {
                kernel,
                stride,
                padding,
            } => {
                let (c, h, w) = Self::spatial(name, &x, "avg_pool")?;
                if 2 * padding > *kernel {
                    return Err(Self::shape_err(
                        name,
                        "padding may be at most half the kernel".into(),
                    ));
                }
                let oh = Self::out_size(name, h, *kernel, *stride, *padding, "height")?;
                let ow = Self::out_size(name, w, *kernel, *stride, *padding, "width")?;
                (
                    Op::AvgPool {
                        kernel: *kernel,
                        stride: *stride,
                        padding: *padding,
                    },
                    vec![c, oh, ow],
                )
            }
            LayerKind::GlobalAvgPool => {
                let (c, _, _) = Self::spatial(name, &x, "global_avg_pool")?;
                (Op::GlobalAvgPool, vec![c, 1, 1])
            }
            LayerKind::Flatten => (Op::Flatten, vec![x.iter().product()]),
            LayerKind::Linear { out, bias } => {
                if x.len() != 1 {
                    return Err(Self::shape_err(
                        name,
                        format!("linear needs a flat [F] input, got {x:?}; add a flatten layer"),
                    ));
                }
                if *out == 0 {
                    return Err(Self::shape_err(name, "out must be at least 1".into()));
                }
                let weight = self.param(
                    name,
                    "weight",
                    vec![*out, x[0]],
                    Init::HeNormal { fan_in: x[0] },
                    ParamRole::Weight,
                )?;
                let bias = if *bias {
                    Some(self.param(name, "bias", vec![*out], Init::Zeros, ParamRole::Bias)?)
                } else {
                    None
                };
                (
                    Op::Linear {
                        out_features: *out,
                        weight,
                        bias,
                    },
                    vec![*out],
                )
            }
            LayerKind::Softmax => {
                if x.len() != 1 {
                    return Err(Self::shape_err(
                        name,
                        format!("softmax needs a flat [F] input, got {x:?}"),
                    ));
                }
                (Op::Softmax, x.clone())
            }
        };
        let elems = shape.iter().map(|&d| d as u128).product::<u128>();
        if elems > MAX_VALUE_ELEMS {
            return Err(IrError::TooLarge(format!(
                "layer `{name}` would output {shape:?} = {} values per image; wrnc refuses more \
                 than {}",
                fmt_count(elems),
                fmt_count(MAX_VALUE_ELEMS)
            )));
        }
        self.graph.values.push(Value {
            name: name.to_string(),
            shape,
        });
        let output = ValueId(self.graph.values.len() - 1);
        self.graph.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: inputs.to_vec(),
            output,
        });
        Ok(output)
    }

    /// Finishes the graph. It must end in a flat `[classes]` output (optionally softmaxed).
    pub fn finish(self) -> Result<Graph, IrError> {
        let g = self.graph;
        if g.nodes.is_empty() {
            return Err(IrError::Empty("the model has no layers".into()));
        }
        let logits = g.shape(g.logits());
        if logits.len() != 1 || logits[0] < 2 {
            return Err(IrError::Empty(format!(
                "the model must end in a flat output of at least 2 classes (a linear layer), \
                 optionally followed by softmax; it ends in shape {logits:?}"
            )));
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(out: usize, kernel: usize, stride: usize, padding: usize) -> LayerKind {
        LayerKind::Conv {
            out,
            kernel,
            stride,
            padding,
            bias: false,
        }
    }

    #[test]
    fn infers_shapes_and_creates_named_params() {
        let mut b = GraphBuilder::new("t", [3, 32, 32]).unwrap();
        let x = b.input();
        let c = b.layer("c", &conv(16, 3, 2, 1), &[x]).unwrap();
        assert_eq!(b.shape(c), &[16, 16, 16]);
        let n = b
            .layer(
                "bn",
                &LayerKind::BatchNorm {
                    eps: 1e-5,
                    momentum: 0.1,
                },
                &[c],
            )
            .unwrap();
        let p = b
            .layer(
                "p",
                &LayerKind::AvgPool {
                    kernel: 3,
                    stride: 2,
                    padding: 1,
                },
                &[n],
            )
            .unwrap();
        assert_eq!(b.shape(p), &[16, 8, 8]);
        let g = b.layer("g", &LayerKind::GlobalAvgPool, &[p]).unwrap();
        let f = b.layer("f", &LayerKind::Flatten, &[g]).unwrap();
        assert_eq!(b.shape(f), &[16]);
        b.layer("fc", &LayerKind::Linear { out: 5, bias: true }, &[f])
            .unwrap();
        let graph = b.finish().unwrap();
        let names: Vec<&str> = graph.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "c.weight",
                "bn.weight",
                "bn.bias",
                "bn.running_mean",
                "bn.running_var",
                "fc.weight",
                "fc.bias"
            ]
        );
        let (_, w) = graph.param_by_name("c.weight").unwrap();
        assert_eq!(w.shape, vec![16, 3, 3, 3]);
        assert_eq!(w.init, Init::HeNormal { fan_in: 27 });
        assert!(w.trainable && w.decay);
        let (_, rv) = graph.param_by_name("bn.running_var").unwrap();
        assert!(!rv.trainable && !rv.decay);
        assert_eq!(rv.init, Init::Ones);
        let (_, gamma) = graph.param_by_name("bn.weight").unwrap();
        assert_eq!(gamma.init, Init::Uniform01);
        assert!(gamma.trainable && !gamma.decay);
        assert_eq!(graph.classes(), 5);
        let st = graph.stats();
        assert_eq!(st.trainable, 16 * 27 + 32 + 16 * 5 + 5);
        assert_eq!(st.non_trainable, 32);
        // conv: 2 * (16*16*16 outputs) * 27 MACs; fc: 2 * 80.
        assert_eq!(st.forward_flops, 2 * 16 * 16 * 16 * 27 + 2 * 80);
    }

    #[test]
    fn rejects_bad_graphs() {
        let mut b = GraphBuilder::new("t", [1, 4, 4]).unwrap();
        let x = b.input();
        let err = b.layer("c", &conv(4, 7, 1, 0), &[x]).unwrap_err();
        assert!(err.to_string().contains("smaller than the kernel"), "{err}");
        let c = b.layer("c2", &conv(4, 3, 1, 1), &[x]).unwrap();
        assert!(matches!(
            b.layer("c2", &LayerKind::Relu, &[c]),
            Err(IrError::DuplicateName(_))
        ));
        let err = b.layer("a", &LayerKind::Add, &[c, x]).unwrap_err();
        assert!(err.to_string().contains("same shape"), "{err}");
        let err = b
            .layer("l", &LayerKind::Linear { out: 3, bias: true }, &[c])
            .unwrap_err();
        assert!(err.to_string().contains("flatten"), "{err}");
        assert!(GraphBuilder::new("t", [0, 4, 4]).is_err());
        // Ends in a spatial value: not a classifier.
        assert!(b.finish().is_err());
    }

    #[test]
    fn refuses_absurd_parameter_counts_before_allocating() {
        let mut b = GraphBuilder::new("t", [3, 8, 8]).unwrap();
        let x = b.input();
        let err = b
            .layer("huge", &conv(200_000, 3, 1, 1), &[x])
            .and_then(|c| b.layer("huge2", &conv(200_000, 3, 1, 1), &[c]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("parameters") && msg.contains("GB"), "{msg}");
        assert_eq!(
            describe_size(36_479_194),
            "36,479,194 parameters (145.9 MB as f32)"
        );
    }
}
