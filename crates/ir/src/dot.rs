//! Graphviz DOT rendering of a graph (plain text; Graphviz is not needed to produce it).

use crate::graph::Graph;
use crate::op::Op;
use std::fmt::Write;

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn label(g: &Graph, i: usize) -> String {
    let n = &g.nodes[i];
    format!(
        "{}\\n{}\\n{:?}",
        escape(&n.name),
        n.op.describe(),
        g.shape(n.output)
    )
}

/// The fill colour of an op's box: parameterised ops blue, batch norm yellow, add green.
fn colour(op: &Op) -> &'static str {
    match op {
        Op::Conv { .. } | Op::Linear { .. } => "#cfe2ff",
        Op::BatchNorm { .. } => "#fff3cd",
        Op::Add => "#d1e7dd",
        Op::Relu
        | Op::Dropout { .. }
        | Op::AvgPool { .. }
        | Op::MaxPool { .. }
        | Op::GlobalAvgPool
        | Op::Flatten
        | Op::Softmax => "#f8f9fa",
    }
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
            let colour = colour(&n.op);
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
