//! Building a graph layer by layer with shape inference and size limits.

use crate::error::IrError;
use crate::graph::{Graph, Node, Value, ValueId};
use crate::op::{Op, ParamDecl};
use crate::param::{Param, ParamId};
use std::collections::HashSet;

/// Most parameters a graph may hold (4 GB of f32).
pub const MAX_PARAMS: u128 = 1_000_000_000;
/// Most elements one activation of one sample may hold.
pub const MAX_VALUE_ELEMS: u128 = 1 << 28;

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

    /// Creates the parameter `decl` of layer `layer`, refusing a total above [`MAX_PARAMS`].
    fn param(&mut self, layer: &str, decl: ParamDecl) -> Result<ParamId, IrError> {
        let n = decl.shape.iter().map(|&d| d as u128).product::<u128>();
        self.total_params += n;
        check_param_budget(self.total_params)?;
        let param = Param::new(layer, decl.role, decl.shape);
        if !self.names.insert(param.name.clone()) {
            return Err(IrError::DuplicateName(param.name));
        }
        self.graph.params.push(param);
        Ok(ParamId(self.graph.params.len() - 1))
    }

    /// Adds layer `name` applying `op` to `inputs`, returning its output value.
    ///
    /// `op` gives the layer's hyper-parameters; its parameter ids are ignored (make it with
    /// [`Op::conv`], [`Op::batch_norm`], [`Op::linear`], ..., whose ids are
    /// [`ParamId::UNSET`], or use a unit variant such as [`Op::Relu`] directly). The builder
    /// creates the layer's parameters from [`Op::param_table`], named `<name>.<suffix>`, and
    /// sets their ids in the node's op; an optional bias is created when it is `Some`.
    pub fn layer(&mut self, name: &str, op: &Op, inputs: &[ValueId]) -> Result<ValueId, IrError> {
        if !self.names.insert(name.to_string()) {
            return Err(IrError::DuplicateName(name.to_string()));
        }
        let mut op = op.clone();
        op.check_arity(name, inputs.len())?;
        if let Some(last) = self.graph.nodes.last() {
            if matches!(last.op, Op::Softmax) {
                return Err(IrError::Shape {
                    layer: name.to_string(),
                    message: "softmax must be the last layer; nothing may follow it".into(),
                });
            }
        }
        let values: Vec<&Value> = inputs.iter().map(|v| &self.graph.values[v.0]).collect();
        let shape = op.infer_shape(name, &values)?;
        let input = values[0].shape.clone();
        for (id, decl) in op.param_table(&input) {
            *id = self.param(name, decl)?;
        }
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
pub(crate) mod tests {
    use super::*;
    use crate::param::Init;

    /// A bias-free convolution layer (shared with the passes' tests).
    pub(crate) fn conv(out: usize, kernel: usize, stride: usize, padding: usize) -> Op {
        Op::conv(out, kernel, stride, padding, false)
    }

    #[test]
    fn infers_shapes_and_creates_named_params() {
        let mut b = GraphBuilder::new("t", [3, 32, 32]).unwrap();
        let x = b.input();
        let c = b.layer("c", &conv(16, 3, 2, 1), &[x]).unwrap();
        assert_eq!(b.shape(c), &[16, 16, 16]);
        let n = b.layer("bn", &Op::batch_norm(1e-5, 0.1), &[c]).unwrap();
        let p = b.layer("p", &Op::avg_pool(3, 2, 1), &[n]).unwrap();
        assert_eq!(b.shape(p), &[16, 8, 8]);
        let g = b.layer("g", &Op::GlobalAvgPool, &[p]).unwrap();
        let f = b.layer("f", &Op::Flatten, &[g]).unwrap();
        assert_eq!(b.shape(f), &[16]);
        b.layer("fc", &Op::linear(5, true), &[f]).unwrap();
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
    fn ignores_the_parameter_ids_it_is_given() {
        // An op taken from a built graph carries real ids; the builder creates new parameters.
        let mut b = GraphBuilder::new("t", [3, 4, 4]).unwrap();
        let x = b.input();
        let c = b.layer("c", &Op::conv(2, 3, 1, 1, true), &[x]).unwrap();
        let built = b.graph().nodes[0].op.clone();
        assert_eq!(built.params(), [ParamId(0), ParamId(1)]);
        b.layer("d", &built, &[c]).unwrap();
        let d = &b.graph().nodes[1].op;
        assert_eq!(d.params(), [ParamId(2), ParamId(3)]);
        let names: Vec<&str> = b.graph().params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["c.weight", "c.bias", "d.weight", "d.bias"]);
        assert_eq!(b.graph().params[2].shape, [2, 2, 3, 3]);
        // Constructors leave every id unset until then.
        let fresh = Op::batch_norm(1e-5, 0.1);
        assert!(fresh.params().iter().all(|&id| id == ParamId::UNSET));
        assert_eq!(fresh.params().len(), 4);
        assert!(Op::linear(3, false).params() == [ParamId::UNSET]);
    }

    #[test]
    fn rejects_bad_graphs() {
        let mut b = GraphBuilder::new("t", [1, 4, 4]).unwrap();
        let x = b.input();
        let err = b.layer("c", &conv(4, 7, 1, 0), &[x]).unwrap_err();
        assert!(err.to_string().contains("smaller than the kernel"), "{err}");
        let c = b.layer("c2", &conv(4, 3, 1, 1), &[x]).unwrap();
        assert!(matches!(
            b.layer("c2", &Op::Relu, &[c]),
            Err(IrError::DuplicateName(_))
        ));
        let err = b.layer("a", &Op::Add, &[c, x]).unwrap_err();
        assert!(err.to_string().contains("same shape"), "{err}");
        let err = b.layer("l", &Op::linear(3, true), &[c]).unwrap_err();
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
