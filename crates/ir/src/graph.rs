//! The graph: values, nodes and parameters.

use crate::op::Op;
use crate::param::{Param, ParamId};
use serde::Serialize;

/// Index of a value in [`Graph::values`]. Value 0 is always the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ValueId(pub usize);

/// Index of a node in [`Graph::nodes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NodeId(pub usize);

/// A tensor flowing between nodes. The shape excludes the batch dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Value {
    /// Name: `input` for the input, else the producing node's name.
    pub name: String,
    /// Shape without batch: `[C, H, W]` or `[F]`.
    pub shape: Vec<usize>,
}

/// One operation applied to values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// Unique layer name, e.g. `group0.block0.conv0`.
    pub name: String,
    /// The operation.
    pub op: Op,
    /// Values read (one, or two for `add`).
    pub inputs: Vec<ValueId>,
    /// The value written.
    pub output: ValueId,
}

/// A whole network in topological order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    /// Model name (the spec's name).
    pub name: String,
    /// All values; `values[0]` is the input.
    pub values: Vec<Value>,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// All parameters and buffers, in creation order.
    pub params: Vec<Param>,
}

impl Graph {
    /// The input value.
    pub fn input(&self) -> ValueId {
        ValueId(0)
    }

    /// Input shape `[C, H, W]`.
    pub fn input_shape(&self) -> &[usize] {
        &self.values[0].shape
    }

    /// The final output value (the last node's output).
    pub fn output(&self) -> ValueId {
        self.nodes.last().map(|n| n.output).unwrap_or(ValueId(0))
    }

    /// The logits: the input of a final softmax, or the output when there is none.
    pub fn logits(&self) -> ValueId {
        match self.nodes.last() {
            Some(n) if matches!(n.op, Op::Softmax) => n.inputs[0],
            Some(n) => n.output,
            None => ValueId(0),
        }
    }

    /// Number of output classes (size of the logits).
    pub fn classes(&self) -> usize {
        self.shape(self.logits()).iter().product()
    }

    /// Shape of a value.
    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.values[v.0].shape
    }

    /// A parameter by id.
    pub fn param(&self, p: ParamId) -> &Param {
        &self.params[p.0]
    }

    /// Finds a parameter by name.
    pub fn param_by_name(&self, name: &str) -> Option<(ParamId, &Param)> {
        self.params
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == name)
            .map(|(i, p)| (ParamId(i), p))
    }

    /// Nodes that read value `v`.
    pub fn consumers(&self, v: ValueId) -> Vec<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.inputs.contains(&v))
            .map(|(i, _)| i)
            .collect()
    }

    /// For every value, the index of the last node that reads it (None when never read).
    /// Executors use it to free activations early.
    pub fn last_uses(&self) -> Vec<Option<usize>> {
        let mut last = vec![None; self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for v in &n.inputs {
                last[v.0] = Some(i);
            }
        }
        last
    }
}
