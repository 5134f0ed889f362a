//! Graphviz DOT rendering of a graph (plain text; Graphviz is not needed to produce it).

use crate::graph::Graph;
use crate::op::Op;
use std::fmt::Write;

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn label(g: &Graph, i: usize) -> String {
    let n = &g.nodes[i];
    let detail = match &n.op {
        Op::Conv {
            out_channels,
            kernel,
            stride,
            padding,
            ..
        } => format!("conv {kernel}x{kernel}/{stride} p{padding} -> {out_channels}"),
        Op::BatchNorm { .. } => "batch_norm".into(),
        Op::Dropout { p } => format!("dropout p={p}"),
        Op::AvgPool {
            kernel,
            stride,
            padding,
        } => format!("avg_pool {kernel}x{kernel}/{stride} p{padding}"),
        Op::Linear { out_features, .. } => format!("linear -> {out_features}"),
        other => other.kind().to_string(),
    };
    format!("{}\\n{}\\n{:?}", escape(&n.name), detail, g.shape(n.output))
}

impl Graph {
    /// Renders the graph as Graphviz DOT, one box per layer, edges labelled by nothing.
    pub fn to_dot(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "digraph \"{}\" {{", escape(&self.name));
        let _ = writeln!(s, "  rankdir=TB;");
        let _ = writeln!(
            s,
            "  node [shape=box, fontname=\"Helvetica\", fontsize=10];"
        );
        let _ = writeln!(
            s,
            "  v0 [label=\"input\\n{:?}\", shape=ellipse];",
            self.input_shape()
        );
        // Value i is produced by node i - 1; node boxes are named after their output value.
        for (i, n) in self.nodes.iter().enumerate() {
            let colour = match n.op {
                Op::Conv { .. } | Op::Linear { .. } => "#cfe2ff",
                Op::BatchNorm { .. } => "#fff3cd",
                Op::Add => "#d1e7dd",
                _ => "#f8f9fa",
            };
            let _ = writeln!(
                s,
                "  v{} [label=\"{}\", style=filled, fillcolor=\"{colour}\"];",
                n.output.0,
                label(self, i)
            );
            for v in &n.inputs {
                let _ = writeln!(s, "  v{} -> v{};", v.0, n.output.0);
            }
        }
        s.push_str("}\n");
        s
    }
}
