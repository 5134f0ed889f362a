//! IR -> IR passes (inference rewrites such as BN folding live here).
//!
//! Passes take a graph (and, when they change parameters, its weights) and return new ones;
//! the inputs are never modified. Parameter names stay stable: a parameter that survives a
//! pass keeps its name, and a bias created by BN folding is named `<conv>.bias`.
//!
//! The passes never panic on malformed input: a graph whose value or parameter ids are out of
//! range is returned unchanged (back ends report such graphs themselves), and a BatchNorm
//! whose tensors are missing or misshapen in the weights is simply not folded.

use crate::graph::{Graph, Value, ValueId};
use crate::op::Op;
use crate::param::{Param, ParamId, ParamRole};
use crate::weights::{Tensor, Weights};
use std::collections::{BTreeMap, HashMap};

/// A BatchNorm that can be folded into the convolution whose output it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoldCandidate {
    /// Index of the convolution node in [`Graph::nodes`].
    pub conv: usize,
    /// Index of the BatchNorm node in [`Graph::nodes`].
    pub batch_norm: usize,
}

/// Whether every id the graph uses (values, parameters) is in range and every node reads
/// values defined before it. Passes leave graphs failing this check untouched.
pub fn is_well_formed(graph: &Graph) -> bool {
    if graph.values.is_empty() {
        return false;
    }
    let mut defined = vec![false; graph.values.len()];
    defined[0] = true;
    for n in &graph.nodes {
        if n.inputs
            .iter()
            .any(|v| v.0 >= defined.len() || !defined[v.0])
        {
            return false;
        }
        if n.inputs.len() != n.op.arity() {
            return false;
        }
        if n.op.params().iter().any(|p| p.0 >= graph.params.len()) {
            return false;
        }
        match defined.get_mut(n.output.0) {
            Some(d) if !*d => *d = true,
            _ => return false,
        }
    }
    true
}

/// The BatchNorms that directly follow a convolution whose output nothing else reads.
///
/// In a pre-activation WRN block (`bn0 -> relu0 -> conv0 -> bn1 -> relu1 -> conv1 -> add`)
/// this is `bn1` of every block; a stem convolution followed only by the first block's `bn0`
/// also qualifies. Only structure is inspected, not the weights.
pub fn fold_candidates(graph: &Graph) -> Vec<FoldCandidate> {
    if !is_well_formed(graph) {
        return Vec::new();
    }
    let mut producer: HashMap<ValueId, usize> = HashMap::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        producer.insert(n.output, i);
    }
    let mut out = Vec::new();
    for (j, n) in graph.nodes.iter().enumerate() {
        let Op::BatchNorm { .. } = n.op else { continue };
        let Some(&i) = producer.get(&n.inputs[0]) else {
            continue;
        };
        let Op::Conv { out_channels, .. } = graph.nodes[i].op else {
            continue;
        };
        if graph.consumers(n.inputs[0]) != vec![j] {
            continue;
        }
        // The BN must normalise exactly the conv's channels.
        if graph.shape(n.inputs[0]).first() != Some(&out_channels) {
            continue;
        }
        out.push(FoldCandidate {
            conv: i,
            batch_norm: j,
        });
    }
    out
}

fn tensor_with_shape<'a>(w: &'a Weights, p: &Param) -> Option<&'a Tensor> {
    let t = w.get(&p.name)?;
    (t.shape == p.shape && t.data.len() == p.numel()).then_some(t)
}

/// Folds every BatchNorm found by [`fold_candidates`] into its convolution.
///
/// With `s = gamma / sqrt(running_var + eps)` per output channel the convolution becomes
/// `w' = w * s` and `b' = (b - running_mean) * s + beta` (with `b = 0` when the convolution had
/// no bias). A convolution without a bias gains the parameter `<conv>.bias` (role
/// [`ParamRole::Bias`]). The BatchNorm node, its four parameters and its output value are
/// removed, and its readers read the convolution's output instead. Arithmetic is done in f64.
///
/// The returned weights hold exactly the returned graph's parameters (tensors of the input
/// weights that the graph does not use are dropped). A BatchNorm whose tensors are missing or
/// misshapen is left in place.
pub fn fold_batch_norm(graph: &Graph, weights: &Weights) -> (Graph, Weights) {
    let mut g = graph.clone();
    let mut new_tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut remove = vec![false; g.nodes.len()];
    let mut alias: HashMap<ValueId, ValueId> = HashMap::new();

    for c in fold_candidates(graph) {
        let conv = &graph.nodes[c.conv];
        let bn = &graph.nodes[c.batch_norm];
        let Op::Conv {
            out_channels,
            weight: cw,
            bias: cb,
            ..
        } = conv.op
        else {
            continue;
        };
        let Op::BatchNorm {
            eps,
            weight: gamma,
            bias: beta,
            running_mean,
            running_var,
            ..
        } = bn.op
        else {
            continue;
        };
        let get = |p: ParamId| tensor_with_shape(weights, graph.param(p));
        let (Some(w), Some(gm), Some(bt), Some(mu), Some(var)) = (
            get(cw),
            get(gamma),
            get(beta),
            get(running_mean),
            get(running_var),
        ) else {
            continue;
        };
        let old_bias = match cb {
            Some(b) => match get(b) {
                Some(t) => Some(t),
                None => continue,
            },
            None => None,
        };
        let all_c = [gm, bt, mu, var]
            .iter()
            .all(|t| t.data.len() == out_channels);
        if !all_c || out_channels == 0 || !w.data.len().is_multiple_of(out_channels) {
            continue;
        }
        let per_out = w.data.len() / out_channels;
        let scale: Vec<f64> = (0..out_channels)
            .map(|o| gm.data[o] as f64 / (var.data[o] as f64 + eps).sqrt())
            .collect();
        let new_w: Vec<f32> = w
            .data
            .iter()
            .enumerate()
            .map(|(i, &x)| (x as f64 * scale[i / per_out]) as f32)
            .collect();
        let new_b: Vec<f32> = (0..out_channels)
            .map(|o| {
                let b = old_bias.map_or(0.0, |t| t.data[o] as f64);
                ((b - mu.data[o] as f64) * scale[o] + bt.data[o] as f64) as f32
            })
            .collect();

        let weight_name = graph.param(cw).name.clone();
        let bias_id = match cb {
            Some(b) => b,
            None => {
                g.params
                    .push(Param::new(&conv.name, ParamRole::Bias, vec![out_channels]));
                let id = ParamId(g.params.len() - 1);
                if let Op::Conv { bias, .. } = &mut g.nodes[c.conv].op {
                    *bias = Some(id);
                }
                id
            }
        };
        new_tensors.insert(
            weight_name,
            Tensor {
                shape: w.shape.clone(),
                data: new_w,
            },
        );
        new_tensors.insert(
            g.params[bias_id.0].name.clone(),
            Tensor {
                shape: vec![out_channels],
                data: new_b,
            },
        );
        remove[c.batch_norm] = true;
        alias.insert(bn.output, conv.output);
    }

    let g = compact(g, &remove, &alias);
    let mut tensors = BTreeMap::new();
    for p in &g.params {
        if let Some(t) = new_tensors.get(&p.name).or_else(|| weights.get(&p.name)) {
            tensors.insert(p.name.clone(), t.clone());
        }
    }
    (
        g,
        Weights {
            tensors,
            metadata: weights.metadata.clone(),
        },
    )
}

/// Removes every Dropout node (dropout is the identity at inference); readers of a dropout's
/// output read its input instead. Parameters are unaffected.
pub fn strip_dropout(graph: &Graph) -> Graph {
    if !is_well_formed(graph) {
        return graph.clone();
    }
    let mut remove = vec![false; graph.nodes.len()];
    let mut alias = HashMap::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        if matches!(n.op, Op::Dropout { .. }) {
            remove[i] = true;
            alias.insert(n.output, n.inputs[0]);
        }
    }
    compact(graph.clone(), &remove, &alias)
}

/// The inference form used by exporters: [`strip_dropout`], then [`fold_batch_norm`] when
/// `fold_bn` is set.
pub fn inference_form(graph: &Graph, weights: &Weights, fold_bn: bool) -> (Graph, Weights) {
    let g = strip_dropout(graph);
    if fold_bn {
        fold_batch_norm(&g, weights)
    } else {
        (g, weights.clone())
    }
}

/// Drops the nodes flagged in `remove`, redirects reads through `alias` (followed
/// transitively), renumbers values, and keeps only the parameters that surviving nodes use,
/// ordered by first use.
fn compact(mut g: Graph, remove: &[bool], alias: &HashMap<ValueId, ValueId>) -> Graph {
    if !remove.iter().any(|&r| r) {
        return g;
    }
    let resolve = |mut v: ValueId| {
        let mut steps = 0;
        while let Some(&to) = alias.get(&v) {
            v = to;
            steps += 1;
            if steps > alias.len() {
                break;
            }
        }
        v
    };
    let old_nodes = std::mem::take(&mut g.nodes);
    let old_values = std::mem::take(&mut g.values);
    let old_params = std::mem::take(&mut g.params);

    let mut value_map: HashMap<ValueId, ValueId> = HashMap::new();
    let mut values: Vec<Value> = vec![old_values[0].clone()];
    value_map.insert(ValueId(0), ValueId(0));
    let mut param_map: HashMap<ParamId, ParamId> = HashMap::new();
    let mut params: Vec<Param> = Vec::new();
    let mut nodes = Vec::new();

    for (i, mut n) in old_nodes.into_iter().enumerate() {
        if remove.get(i).copied().unwrap_or(false) {
            continue;
        }
        for v in &mut n.inputs {
            let r = resolve(*v);
            *v = value_map.get(&r).copied().unwrap_or(r);
        }
        values.push(old_values[n.output.0].clone());
        let new_out = ValueId(values.len() - 1);
        value_map.insert(n.output, new_out);
        n.output = new_out;
        let mut remap = |p: &mut ParamId| {
            let next = ParamId(params.len());
            let id = *param_map.entry(*p).or_insert_with(|| {
                params.push(old_params[p.0].clone());
                next
            });
            *p = id;
        };
        for p in n.op.params_mut() {
            remap(p);
        }
        nodes.push(n);
    }
    g.nodes = nodes;
    g.values = values;
    g.params = params;
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::tests::conv;
    use crate::builder::GraphBuilder;

    const BN: Op = Op::batch_norm(1e-5, 0.1);

    /// Stem conv + `blocks` pre-activation blocks (the first with a 1x1 shortcut) + head.
    fn preact(blocks: usize, dropout: bool) -> Graph {
        let mut b = GraphBuilder::new("t", [3, 8, 8]).unwrap();
        let mut x = b.layer("conv", &conv(4, 3, 1, 1), &[b.input()]).unwrap();
        for i in 0..blocks {
            let p = format!("block{i}");
            let width = 8;
            let o = b.layer(&format!("{p}.bn0"), &BN, &[x]).unwrap();
            let o = b.layer(&format!("{p}.relu0"), &Op::Relu, &[o]).unwrap();
            let y = b
                .layer(&format!("{p}.conv0"), &conv(width, 3, 1, 1), &[o])
                .unwrap();
            let y = b.layer(&format!("{p}.bn1"), &BN, &[y]).unwrap();
            let mut y = b.layer(&format!("{p}.relu1"), &Op::Relu, &[y]).unwrap();
            if dropout {
                y = b
                    .layer(&format!("{p}.dropout"), &Op::dropout(0.3), &[y])
                    .unwrap();
            }
            let y = b
                .layer(&format!("{p}.conv1"), &conv(width, 3, 1, 1), &[y])
                .unwrap();
            let short = if i == 0 {
                b.layer(&format!("{p}.shortcut"), &conv(width, 1, 1, 0), &[o])
                    .unwrap()
            } else {
                x
            };
            x = b.layer(&format!("{p}.add"), &Op::Add, &[y, short]).unwrap();
        }
        let o = b.layer("bn", &BN, &[x]).unwrap();
        let o = b.layer("relu", &Op::Relu, &[o]).unwrap();
        let o = b.layer("pool", &Op::GlobalAvgPool, &[o]).unwrap();
        let o = b.layer("flatten", &Op::Flatten, &[o]).unwrap();
        let o = b.layer("fc", &Op::linear(3, true), &[o]).unwrap();
        b.layer("softmax", &Op::Softmax, &[o]).unwrap();
        b.finish().unwrap()
    }

    fn weights(g: &Graph) -> Weights {
        let mut w = Weights::default();
        let mut s: u64 = 7;
        for p in &g.params {
            let data = (0..p.numel())
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let u = (s >> 40) as f32 / (1u64 << 24) as f32;
                    match p.role {
                        ParamRole::RunningVar => 0.5 + u,
                        _ => u - 0.5,
                    }
                })
                .collect();
            w.tensors.insert(
                p.name.clone(),
                Tensor {
                    shape: p.shape.clone(),
                    data,
                },
            );
        }
        w
    }

    fn count(g: &Graph, kind: &str) -> usize {
        g.nodes.iter().filter(|n| n.op.kind() == kind).count()
    }

    #[test]
    fn folds_one_bn_per_preact_block_plus_stem() {
        for blocks in 1..=3 {
            let g = preact(blocks, false);
            let w = weights(&g);
            let (f, fw) = fold_batch_norm(&g, &w);
            // bn1 of every block; the stem conv's only reader is block0.bn0 (the shortcut
            // reads relu0), so it folds too. The final BN follows an add and stays.
            assert_eq!(
                count(&g, "batch_norm") - count(&f, "batch_norm"),
                blocks + 1
            );
            assert!(f.param_by_name("block0.conv0.bias").is_some());
            assert!(f.param_by_name("block0.bn1.weight").is_none());
            assert!(f.param_by_name("bn.running_var").is_some());
            fw.check_against(&f, "folded").unwrap();
            assert!(crate::passes::is_well_formed(&f));
            // Value names follow the producing nodes.
            for n in &f.nodes {
                assert_eq!(f.values[n.output.0].name, n.name);
            }
        }
    }

    #[test]
    fn identity_shortcut_keeps_stem_bn() {
        // When the stem output also feeds the add, its BN cannot fold.
        let mut b = GraphBuilder::new("t", [3, 4, 4]).unwrap();
        let x = b.layer("conv", &conv(4, 3, 1, 1), &[b.input()]).unwrap();
        let o = b.layer("bn0", &BN, &[x]).unwrap();
        let y = b.layer("conv0", &conv(4, 3, 1, 1), &[o]).unwrap();
        let y = b.layer("bn1", &BN, &[y]).unwrap();
        let y = b.layer("add", &Op::Add, &[y, x]).unwrap();
        let y = b.layer("pool", &Op::GlobalAvgPool, &[y]).unwrap();
        let y = b.layer("flat", &Op::Flatten, &[y]).unwrap();
        b.layer("fc", &Op::linear(2, false), &[y]).unwrap();
        let g = b.finish().unwrap();
        let c = fold_candidates(&g);
        assert_eq!(c.len(), 1);
        assert_eq!(g.nodes[c[0].batch_norm].name, "bn1");
    }

    #[test]
    fn folded_values_match_formula() {
        // 1x1 conv on a single pixel: y = w x, then BN.
        let mut b = GraphBuilder::new("t", [2, 1, 1]).unwrap();
        let x = b.layer("c", &conv(2, 1, 1, 0), &[b.input()]).unwrap();
        let x = b.layer("bn", &BN, &[x]).unwrap();
        let x = b.layer("f", &Op::Flatten, &[x]).unwrap();
        b.layer("fc", &Op::linear(2, false), &[x]).unwrap();
        let g = b.finish().unwrap();
        let w = weights(&g);
        let (f, fw) = fold_batch_norm(&g, &w);
        assert_eq!(count(&f, "batch_norm"), 0);
        let input = [0.7f64, -1.3];
        let t = |n: &str| {
            w.get(n)
                .unwrap()
                .data
                .iter()
                .map(|&v| v as f64)
                .collect::<Vec<_>>()
        };
        let (cw, gm, bt, mu, var) = (
            t("c.weight"),
            t("bn.weight"),
            t("bn.bias"),
            t("bn.running_mean"),
            t("bn.running_var"),
        );
        let fwt = fw.get("c.weight").unwrap();
        let fb = fw.get("c.bias").unwrap();
        for o in 0..2 {
            let y = cw[o * 2] * input[0] + cw[o * 2 + 1] * input[1];
            let want = (y - mu[o]) / (var[o] + 1e-5).sqrt() * gm[o] + bt[o];
            let got = fwt.data[o * 2] as f64 * input[0]
                + fwt.data[o * 2 + 1] as f64 * input[1]
                + fb.data[o] as f64;
            assert!((want - got).abs() < 1e-5, "{want} vs {got}");
        }
    }

    #[test]
    fn existing_conv_bias_is_reused() {
        let mut b = GraphBuilder::new("t", [1, 2, 2]).unwrap();
        let x = b
            .layer("c", &Op::conv(2, 1, 1, 0, true), &[b.input()])
            .unwrap();
        let x = b.layer("bn", &BN, &[x]).unwrap();
        let x = b.layer("p", &Op::GlobalAvgPool, &[x]).unwrap();
        let x = b.layer("f", &Op::Flatten, &[x]).unwrap();
        b.layer("fc", &Op::linear(2, true), &[x]).unwrap();
        let g = b.finish().unwrap();
        let (f, fw) = fold_batch_norm(&g, &weights(&g));
        let names: Vec<_> = f.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["c.weight", "c.bias", "fc.weight", "fc.bias"]);
        fw.check_against(&f, "folded").unwrap();
    }

    #[test]
    fn missing_weights_leave_bn_in_place() {
        let g = preact(1, false);
        let mut w = weights(&g);
        w.tensors.remove("block0.bn1.running_var");
        let (f, _) = fold_batch_norm(&g, &w);
        assert!(f.nodes.iter().any(|n| n.name == "block0.bn1"));
        assert!(!f.nodes.iter().any(|n| n.name == "block0.bn0"));
    }

    #[test]
    fn strips_dropout_and_rewires() {
        let g = preact(2, true);
        assert_eq!(count(&g, "dropout"), 2);
        let s = strip_dropout(&g);
        assert_eq!(count(&s, "dropout"), 0);
        assert_eq!(s.nodes.len(), g.nodes.len() - 2);
        assert_eq!(s.params, g.params);
        assert!(is_well_formed(&s));
        let conv1 = s.nodes.iter().find(|n| n.name == "block1.conv1").unwrap();
        assert_eq!(s.values[conv1.inputs[0].0].name, "block1.relu1");
        assert_eq!(s.classes(), 3);
        let (i, _) = inference_form(&g, &weights(&g), true);
        assert_eq!(count(&i, "dropout"), 0);
        assert_eq!(count(&i, "batch_norm"), 2);
    }

    #[test]
    fn malformed_graph_is_left_alone() {
        let mut g = preact(1, true);
        g.nodes[3].inputs[0] = ValueId(999);
        assert!(!is_well_formed(&g));
        assert_eq!(strip_dropout(&g), g);
        let (f, _) = fold_batch_norm(&g, &weights(&preact(1, true)));
        assert_eq!(f, g);
    }
}
