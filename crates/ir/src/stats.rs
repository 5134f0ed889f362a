//! Parameter and FLOP counts of a graph, per layer and in total (what `wrnc summary` shows).

use crate::graph::Graph;
use serde::Serialize;

/// One row of a summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerStats {
    /// Layer name.
    pub name: String,
    /// Op name (`conv`, `batch_norm`, ...).
    pub op: String,
    /// Output shape without the batch dimension.
    pub output_shape: Vec<usize>,
    /// Number of parameter elements the layer owns, buffers included.
    pub params: u64,
    /// Forward FLOPs per image (2 per multiply-add of conv and linear layers).
    #[serde(skip)]
    pub flops: u64,
}

/// Totals of a graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphStats {
    /// Every parameter element, BN running statistics included.
    pub total: u64,
    /// Elements the optimiser updates.
    pub trainable: u64,
    /// BN running statistics.
    pub non_trainable: u64,
    /// Forward FLOPs per image (conv and linear multiply-adds x 2).
    pub forward_flops: u64,
    /// One row per layer.
    pub layers: Vec<LayerStats>,
}

impl Graph {
    /// Computes parameter and FLOP counts.
    pub fn stats(&self) -> GraphStats {
        let mut layers = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            let params =
                n.op.params()
                    .iter()
                    .map(|p| self.param(*p).numel() as u64)
                    .sum();
            let out = self.shape(n.output);
            let input = n.inputs.first().map_or(&[][..], |v| self.shape(*v));
            let flops = n.op.flops(input, out);
            layers.push(LayerStats {
                name: n.name.clone(),
                op: n.op.kind().to_string(),
                output_shape: out.to_vec(),
                params,
                flops,
            });
        }
        let total = self.params.iter().map(|p| p.numel() as u64).sum();
        let trainable = self
            .params
            .iter()
            .filter(|p| p.trainable)
            .map(|p| p.numel() as u64)
            .sum();
        GraphStats {
            total,
            trainable,
            non_trainable: total - trainable,
            forward_flops: layers.iter().map(|l| l.flops).sum(),
            layers,
        }
    }
}
