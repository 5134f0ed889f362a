//! The int8 QDQ rewrite of an exported float graph.
//!
//! Every `Conv` and `Gemm` reads its input through a `QuantizeLinear` -> `DequantizeLinear`
//! pair (uint8, per tensor), its weight through a `DequantizeLinear` of an int8 initializer
//! (symmetric, per output channel) and its bias through a `DequantizeLinear` of an int32
//! initializer (scale = input scale x weight scale, zero point 0). Every `Conv` output is
//! followed by a Q/DQ pair; when the conv's only reader is a `Relu`, the `Relu` is dropped and
//! the pair takes the Relu's range (uint8 with zero point 0 saturates negatives to 0, which is
//! the Relu). That is the node group onnxruntime fuses into `QLinearConv` / `QGemm`. The
//! `Gemm` output (the logits) stays float. Everything else (BatchNormalization, Add, pooling,
//! Flatten, Softmax) runs in float on dequantized values.

use crate::error::{OnnxError, Result};
use crate::proto::{
    data_type, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto,
    ValueInfoProto,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Lowest opset with per-axis `QuantizeLinear` / `DequantizeLinear`.
pub const MIN_QUANTIZE_OPSET: i64 = 13;

/// `UINT8` in `TensorProto.DataType`.
const UINT8: i32 = 2;
/// `INT8` in `TensorProto.DataType`.
const INT8: i32 = 3;

/// Which tensors the rewrite quantizes, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QdqPlan {
    /// Names of the activation tensors whose range is needed, in graph order: the inputs of
    /// every `Conv` and `Gemm`, and every `Conv`'s output (its `Relu`'s output when the Relu
    /// is folded into the quantization).
    pub activations: Vec<String>,
    /// Conv node index -> index of the `Relu` folded into its output quantization.
    folded_relu: BTreeMap<usize, usize>,
}

fn is_quantized_op(op: &str) -> bool {
    matches!(op, "Conv" | "Gemm")
}

fn graph_of(model: &ModelProto) -> Result<&GraphProto> {
    model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::Quantize("the model has no graph".into()))
}

/// Plans the rewrite of `model`: which activation tensors must be calibrated.
pub fn plan(model: &ModelProto) -> Result<QdqPlan> {
    let g = graph_of(model)?;
    let outputs: HashSet<&str> = g.output.iter().filter_map(|o| o.name.as_deref()).collect();
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for t in &n.input {
            readers.entry(t.as_str()).or_default().push(i);
        }
    }
    let mut folded_relu = BTreeMap::new();
    let mut activations: Vec<String> = Vec::new();
    let add = |t: &str, acts: &mut Vec<String>| {
        if !acts.iter().any(|a| a == t) {
            acts.push(t.to_string());
        }
    };
    for (i, n) in g.node.iter().enumerate() {
        if !is_quantized_op(n.op()) {
            continue;
        }
        let x = n
            .input
            .first()
            .ok_or_else(|| OnnxError::Quantize(format!("node `{}` has no input", node_label(n))))?;
        add(x, &mut activations);
        if n.op() != "Conv" {
            continue;
        }
        let out = n.output.first().map(String::as_str).unwrap_or("");
        if outputs.contains(out) {
            continue;
        }
        let r = readers.get(out).map(Vec::as_slice).unwrap_or(&[]);
        match r {
            [j] if g.node[*j].op() == "Relu"
                && !g.node[*j]
                    .output
                    .first()
                    .is_some_and(|o| outputs.contains(o.as_str())) =>
            {
                folded_relu.insert(i, *j);
                add(&g.node[*j].output[0], &mut activations);
            }
            _ => add(out, &mut activations),
        }
    }
    Ok(QdqPlan {
        activations,
        folded_relu,
    })
}

fn node_label(n: &NodeProto) -> String {
    n.name.clone().unwrap_or_else(|| n.op().to_string())
}

/// uint8 asymmetric parameters of a range that contains 0: `(scale, zero_point)`.
pub fn uint8_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = (hi - lo) / 255.0;
    if scale.is_nan() || scale <= 0.0 || !scale.is_finite() {
        return (1.0, 0);
    }
    let zp = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

/// Symmetric int8 quantization of `w` per slice along `axis` (`dims` its shape): the int8
/// values and one scale per slice (`max |w| / 127`, 1 for an all-zero slice).
pub fn int8_per_channel(w: &[f32], dims: &[usize], axis: usize) -> (Vec<i8>, Vec<f32>) {
    let channels = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let mut amax = vec![0.0f32; channels];
    for (i, v) in w.iter().enumerate() {
        let c = (i / inner) % channels;
        amax[c] = amax[c].max(v.abs());
    }
    let scales: Vec<f32> = amax
        .iter()
        .map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let c = (i / inner) % channels;
            (v / scales[c]).round_ties_even().clamp(-127.0, 127.0) as i8
        })
        .collect();
    (q, scales)
}

fn raw_tensor(name: &str, dims: &[i64], dt: i32, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: Some(dt),
        name: Some(name.into()),
        raw_data: Some(raw),
        ..Default::default()
    }
}

fn node(
    name: String,
    op: &str,
    inputs: Vec<String>,
    output: String,
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs,
        output: vec![output],
        name: Some(name),
        op_type: Some(op.into()),
        domain: None,
        attribute: attrs,
        doc_string: None,
    }
}

/// A value info like `v` with element type `dt` and name `name`.
fn retyped(v: &ValueInfoProto, name: &str, dt: i32) -> ValueInfoProto {
    let mut v = v.clone();
    v.name = Some(name.into());
    if let Some(type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.elem_type = Some(dt);
    }
    v
}

/// What the rewrite did, for the report and the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QdqSummary {
    /// Nodes that read int8 weights (Conv and Gemm), by op.
    pub quantized: BTreeMap<String, usize>,
    /// Ops left in float, sorted.
    pub float_ops: BTreeSet<String>,
    /// Relus folded into a conv's output quantization.
    pub folded_relus: usize,
}

/// Rewrites a float model (as [`crate::export`] writes it) into QDQ form with the activation
/// ranges `ranges` (one per [`QdqPlan::activations`] entry, `[lo, hi]`).
pub fn rewrite(
    model: &ModelProto,
    ranges: &BTreeMap<String, (f32, f32)>,
) -> Result<(ModelProto, QdqSummary)> {
    let opset = model.default_opset().unwrap_or(0);
    if opset < MIN_QUANTIZE_OPSET {
        return Err(OnnxError::Quantize(format!(
            "int8 QDQ needs opset {MIN_QUANTIZE_OPSET} or later (per-channel \
             DequantizeLinear); the model has opset {opset}. Export with --opset 13 or later"
        )));
    }
    let plan = plan(model)?;
    let g = graph_of(model)?;
    for a in &plan.activations {
        if !ranges.contains_key(a) {
            return Err(OnnxError::Quantize(format!(
                "no calibrated range for activation `{a}`"
            )));
        }
    }
    let mut init: HashMap<String, TensorProto> = g
        .initializer
        .iter()
        .filter_map(|t| Some((t.name.clone()?, t.clone())))
        .collect();
    let value_info: HashMap<String, ValueInfoProto> = g
        .value_info
        .iter()
        .chain(&g.input)
        .chain(&g.output)
        .filter_map(|v| Some((v.name.clone()?, v.clone())))
        .collect();
    let mut used_names: HashSet<String> = g.node.iter().filter_map(|n| n.name.clone()).collect();
    let mut fresh = |base: String| {
        let mut n = base.clone();
        let mut k = 1;
        while !used_names.insert(n.clone()) {
            n = format!("{base}_{k}");
            k += 1;
        }
        n
    };

    // Activation quantization parameters, and the tensor each pair reads (a folded Relu's
    // pair reads the conv output).
    let params: HashMap<&str, (f32, u8)> = plan
        .activations
        .iter()
        .map(|a| {
            let (lo, hi) = ranges[a];
            (a.as_str(), uint8_params(lo, hi))
        })
        .collect();
    let mut source_of: HashMap<String, String> = plan
        .activations
        .iter()
        .map(|a| (a.clone(), a.clone()))
        .collect();
    let folded: HashSet<usize> = plan.folded_relu.values().copied().collect();
    for (&conv, &relu) in &plan.folded_relu {
        source_of.insert(
            g.node[relu].output[0].clone(),
            g.node[conv].output[0].clone(),
        );
    }
    // Tensor that is read -> the pair quantizing it (keyed by activation name).
    let pair_after: HashMap<String, String> = source_of
        .iter()
        .map(|(a, s)| (s.clone(), a.clone()))
        .collect();

    let mut new_init: Vec<TensorProto> = Vec::new();
    let mut new_vi: Vec<ValueInfoProto> = Vec::new();
    let mut nodes: Vec<NodeProto> = Vec::new();
    let mut summary = QdqSummary::default();
    let deq = |a: &str| format!("{a}_dequantized");

    let emit_pair = |a: &str,
                     nodes: &mut Vec<NodeProto>,
                     new_init: &mut Vec<TensorProto>,
                     new_vi: &mut Vec<ValueInfoProto>,
                     fresh: &mut dyn FnMut(String) -> String,
                     value_info: &HashMap<String, ValueInfoProto>| {
        let (scale, zp) = params[a];
        let (s_name, z_name) = (format!("{a}_scale"), format!("{a}_zero_point"));
        new_init.push(TensorProto::float_raw(&s_name, &[], &[scale]));
        new_init.push(raw_tensor(&z_name, &[], UINT8, vec![zp]));
        let q = format!("{a}_quantized");
        nodes.push(node(
            fresh(format!("{a}_QuantizeLinear")),
            "QuantizeLinear",
            vec![source_of[a].clone(), s_name.clone(), z_name.clone()],
            q.clone(),
            Vec::new(),
        ));
        nodes.push(node(
            fresh(format!("{a}_DequantizeLinear")),
            "DequantizeLinear",
            vec![q.clone(), s_name, z_name],
            deq(a),
            Vec::new(),
        ));
        if let Some(v) = value_info.get(a) {
            new_vi.push(retyped(v, &q, UINT8));
            new_vi.push(retyped(v, &deq(a), data_type::FLOAT));
        }
    };

    for input in &g.input {
        let name = input.name.clone().unwrap_or_default();
        if let Some(a) = pair_after.get(&name) {
            emit_pair(
                a,
                &mut nodes,
                &mut new_init,
                &mut new_vi,
                &mut fresh,
                &value_info,
            );
        }
    }
    let mut dropped_init: HashSet<String> = HashSet::new();
    for (i, n) in g.node.iter().enumerate() {
        if folded.contains(&i) {
            summary.folded_relus += 1;
            continue;
        }
        let mut n = n.clone();
        for t in n.input.iter_mut() {
            if params.contains_key(t.as_str()) {
                *t = deq(t);
            }
        }
        if is_quantized_op(n.op()) {
            let label = node_label(&n);
            let x = plan_input(&g.node[i]);
            let (s_x, _) = params[x.as_str()];
            let w_name = n.input.get(1).cloned().unwrap_or_default();
            let w = init.get(&w_name).ok_or_else(|| {
                OnnxError::Quantize(format!(
                    "node `{label}`: its weight `{w_name}` is not an initializer"
                ))
            })?;
            let dims: Vec<usize> = w.dims.iter().map(|&d| d.max(0) as usize).collect();
            let values = w
                .floats()
                .ok_or_else(|| OnnxError::Quantize(format!("weight `{w_name}` is not float32")))?;
            let axis = if n.op() == "Gemm" && n.attr("transB").and_then(|a| a.i) != Some(1) {
                1
            } else {
                0
            };
            if dims.len() < 2 || values.len() != dims.iter().product::<usize>() {
                return Err(OnnxError::Quantize(format!(
                    "weight `{w_name}` has shape {dims:?}"
                )));
            }
            let (q, w_scales) = int8_per_channel(&values, &dims, axis);
            let wq = format!("{w_name}_quantized");
            let (ws, wz) = (format!("{w_name}_scale"), format!("{w_name}_zero_point"));
            new_init.push(raw_tensor(
                &wq,
                &w.dims,
                INT8,
                q.iter().map(|&v| v as u8).collect(),
            ));
            let ch = w_scales.len() as i64;
            new_init.push(TensorProto::float_raw(&ws, &[ch as usize], &w_scales));
            new_init.push(raw_tensor(&wz, &[ch], INT8, vec![0; ch as usize]));
            let axis_attr = vec![AttributeProto::int("axis", axis as i64)];
            nodes.push(node(
                fresh(format!("{w_name}_DequantizeLinear")),
                "DequantizeLinear",
                vec![wq, ws, wz],
                deq(&w_name),
                axis_attr.clone(),
            ));
            dropped_init.insert(w_name.clone());
            n.input[1] = deq(&w_name);
            if let Some(b_name) = n.input.get(2).cloned().filter(|b| !b.is_empty()) {
                let b = init.get(&b_name).ok_or_else(|| {
                    OnnxError::Quantize(format!(
                        "node `{label}`: its bias `{b_name}` is not an initializer"
                    ))
                })?;
                let bv = b.floats().ok_or_else(|| {
                    OnnxError::Quantize(format!("bias `{b_name}` is not float32"))
                })?;
                if bv.len() != w_scales.len() {
                    return Err(OnnxError::Quantize(format!(
                        "bias `{b_name}` has {} values for {} output channels",
                        bv.len(),
                        w_scales.len()
                    )));
                }
                let b_scales: Vec<f32> = w_scales.iter().map(|s| s * s_x).collect();
                let bq: Vec<u8> = bv
                    .iter()
                    .zip(&b_scales)
                    .flat_map(|(v, s)| {
                        let q = (f64::from(*v) / f64::from(*s))
                            .round_ties_even()
                            .clamp(f64::from(i32::MIN), f64::from(i32::MAX))
                            as i32;
                        q.to_le_bytes()
                    })
                    .collect();
                let (bq_name, bs) = (format!("{b_name}_quantized"), format!("{b_name}_scale"));
                new_init.push(raw_tensor(&bq_name, &b.dims, data_type::INT32, bq));
                new_init.push(TensorProto::float_raw(&bs, &[b_scales.len()], &b_scales));
                nodes.push(node(
                    fresh(format!("{b_name}_DequantizeLinear")),
                    "DequantizeLinear",
                    vec![bq_name, bs],
                    deq(&b_name),
                    vec![AttributeProto::int("axis", 0)],
                ));
                dropped_init.insert(b_name.clone());
                n.input[2] = deq(&b_name);
            }
            *summary.quantized.entry(n.op().to_string()).or_default() += 1;
        } else {
            summary.float_ops.insert(n.op().to_string());
        }
        let out = n.output.first().cloned().unwrap_or_default();
        nodes.push(n);
        if let Some(a) = pair_after.get(&out) {
            emit_pair(
                a,
                &mut nodes,
                &mut new_init,
                &mut new_vi,
                &mut fresh,
                &value_info,
            );
        }
    }
    init.retain(|k, _| !dropped_init.contains(k));
    let mut initializer: Vec<TensorProto> = g
        .initializer
        .iter()
        .filter(|t| t.name.as_ref().is_some_and(|n| init.contains_key(n)))
        .cloned()
        .collect();
    initializer.extend(new_init);
    let removed: HashSet<&String> = folded.iter().map(|&r| &g.node[r].output[0]).collect();
    let mut vi: Vec<ValueInfoProto> = g
        .value_info
        .iter()
        .filter(|v| v.name.as_ref().is_some_and(|n| !removed.contains(n)))
        .cloned()
        .collect();
    vi.extend(new_vi);
    let graph = GraphProto {
        node: nodes,
        initializer,
        value_info: vi,
        ..g.clone()
    };
    Ok((
        ModelProto {
            graph: Some(graph),
            ..model.clone()
        },
        summary,
    ))
}

/// The activation a quantized node reads (its first input).
fn plan_input(n: &NodeProto) -> String {
    n.input.first().cloned().unwrap_or_default()
}
