//! The float16 form of an exported float graph.
//!
//! Every float32 initializer becomes float16 and every intermediate value is typed float16;
//! the model's input and outputs stay float32, with a `Cast` at each edge (`input` ->
//! `input_fp16`, `logits_fp16` -> `logits`, `probabilities_fp16` -> `probabilities`), so a
//! caller feeds and reads float32 exactly as with `model.onnx`. The classifier's `Gemm`
//! becomes `MatMul` (with the weight stored transposed, `[in, out]`) and `Add` of the bias,
//! which compute the same and which tract runs in float16 (its float16 `Gemm` does not load).

use crate::error::{OnnxError, Result};
use crate::proto::{
    data_type, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto,
    ValueInfoProto,
};
use std::collections::HashMap;

/// `FLOAT16` in `TensorProto.DataType`.
pub const FLOAT16: i32 = 10;

/// Suffix of the float16 twin of an input or output name.
const SUFFIX: &str = "_fp16";

fn cast(name: String, input: String, output: String, to: i32) -> NodeProto {
    NodeProto {
        input: vec![input],
        output: vec![output],
        name: Some(name),
        op_type: Some("Cast".into()),
        domain: None,
        attribute: vec![AttributeProto::int("to", to as i64)],
        doc_string: None,
    }
}

fn set_elem_type(v: &mut ValueInfoProto, dt: i32) {
    if let Some(type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.elem_type = Some(dt);
    }
}

/// Converts a float32 tensor to float16 (round to nearest even). Values beyond float16's
/// range (±65504) are refused, naming the tensor.
pub fn tensor_to_f16(t: &TensorProto) -> Result<TensorProto> {
    let name = t.name.clone().unwrap_or_default();
    let values = t
        .floats()
        .ok_or_else(|| OnnxError::Quantize(format!("tensor `{name}` is not float32")))?;
    let mut raw = Vec::with_capacity(values.len() * 2);
    for v in &values {
        let h = half::f16::from_f32(*v);
        if v.is_finite() && !h.is_finite() {
            return Err(OnnxError::Quantize(format!(
                "tensor `{name}` holds {v}, beyond float16's range (±65504)"
            )));
        }
        raw.extend_from_slice(&h.to_le_bytes());
    }
    Ok(TensorProto {
        dims: t.dims.clone(),
        data_type: Some(FLOAT16),
        name: t.name.clone(),
        raw_data: Some(raw),
        ..Default::default()
    })
}

/// The float16 form of `model` (see the module documentation).
pub fn to_fp16(model: &ModelProto) -> Result<ModelProto> {
    let g = model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::Quantize("the model has no graph".into()))?;
    let mut rename: HashMap<String, String> = HashMap::new();
    for v in g.input.iter().chain(&g.output) {
        if let Some(n) = &v.name {
            rename.insert(n.clone(), format!("{n}{SUFFIX}"));
        }
    }
    let initializer = g
        .initializer
        .iter()
        .map(|t| {
            if t.data_type == Some(data_type::FLOAT) {
                tensor_to_f16(t)
            } else {
                Ok(t.clone())
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let mut nodes = Vec::with_capacity(g.node.len() + g.input.len() + g.output.len());
    for v in &g.input {
        let n = v.name.clone().unwrap_or_default();
        nodes.push(cast(
            format!("{n}_cast_fp16"),
            n.clone(),
            rename[&n].clone(),
            FLOAT16,
        ));
    }
    let mut initializer = initializer;
    for n in &g.node {
        let mut n = n.clone();
        for t in n.input.iter_mut().chain(n.output.iter_mut()) {
            if let Some(r) = rename.get(t.as_str()) {
                *t = r.clone();
            }
        }
        if n.op() == "Gemm" {
            nodes.extend(gemm_as_matmul(&n, &mut initializer)?);
        } else {
            nodes.push(n);
        }
    }
    let mut value_info: Vec<ValueInfoProto> = g.value_info.clone();
    for v in &mut value_info {
        set_elem_type(v, FLOAT16);
    }
    for v in g.input.iter().chain(&g.output) {
        let n = v.name.clone().unwrap_or_default();
        let mut twin = v.clone();
        twin.name = Some(rename[&n].clone());
        set_elem_type(&mut twin, FLOAT16);
        value_info.push(twin);
    }
    for v in &g.output {
        let n = v.name.clone().unwrap_or_default();
        nodes.push(cast(
            format!("{n}_cast_fp32"),
            rename[&n].clone(),
            n.clone(),
            data_type::FLOAT,
        ));
    }
    Ok(ModelProto {
        graph: Some(GraphProto {
            node: nodes,
            initializer,
            value_info,
            ..g.clone()
        }),
        ..model.clone()
    })
}

/// `Gemm(x, W, b)` (alpha = beta = 1, no transposed `x`) as `MatMul(x, W')` then `Add(b)`,
/// with `W'` the weight as `[in, out]` (transposed in place when `transB = 1`).
fn gemm_as_matmul(n: &NodeProto, initializer: &mut [TensorProto]) -> Result<Vec<NodeProto>> {
    let label = n.name.clone().unwrap_or_else(|| "Gemm".into());
    let attr = |k: &str| n.attr(k);
    let int = |k: &str, d: i64| attr(k).and_then(|a| a.i).unwrap_or(d);
    let float = |k: &str| attr(k).and_then(|a| a.f).unwrap_or(1.0);
    if int("transA", 0) != 0 || float("alpha") != 1.0 || float("beta") != 1.0 {
        return Err(OnnxError::Quantize(format!(
            "node `{label}`: only a Gemm with alpha = beta = 1 and transA = 0 converts to float16"
        )));
    }
    let w_name = n.input.get(1).cloned().unwrap_or_default();
    if int("transB", 0) == 1 {
        let w = initializer
            .iter_mut()
            .find(|t| t.name.as_deref() == Some(w_name.as_str()))
            .ok_or_else(|| {
                OnnxError::Quantize(format!(
                    "node `{label}`: its weight `{w_name}` is not an initializer"
                ))
            })?;
        let (rows, cols) = match w.dims[..] {
            [r, c] => (r.max(0) as usize, c.max(0) as usize),
            _ => {
                return Err(OnnxError::Quantize(format!(
                    "weight `{w_name}` has shape {:?}",
                    w.dims
                )))
            }
        };
        let raw = w.raw_data.clone().unwrap_or_default();
        if raw.len() != rows * cols * 2 {
            return Err(OnnxError::Quantize(format!(
                "weight `{w_name}` holds {} bytes",
                raw.len()
            )));
        }
        let mut t = vec![0u8; raw.len()];
        for r in 0..rows {
            for c in 0..cols {
                let (from, to) = (2 * (r * cols + c), 2 * (c * rows + r));
                t[to..to + 2].copy_from_slice(&raw[from..from + 2]);
            }
        }
        w.raw_data = Some(t);
        w.dims = vec![cols as i64, rows as i64];
    }
    let out = n.output.first().cloned().unwrap_or_default();
    let x = n.input.first().cloned().unwrap_or_default();
    let bias = n.input.get(2).filter(|b| !b.is_empty()).cloned();
    let mm_out = if bias.is_some() {
        format!("{out}_matmul")
    } else {
        out.clone()
    };
    let mut nodes = vec![NodeProto {
        input: vec![x, w_name],
        output: vec![mm_out.clone()],
        name: Some(format!("{label}_matmul")),
        op_type: Some("MatMul".into()),
        domain: None,
        attribute: Vec::new(),
        doc_string: None,
    }];
    if let Some(b) = bias {
        nodes.push(NodeProto {
            input: vec![mm_out, b],
            output: vec![out],
            name: Some(label),
            op_type: Some("Add".into()),
            domain: None,
            attribute: Vec::new(),
            doc_string: None,
        });
    }
    Ok(nodes)
}
