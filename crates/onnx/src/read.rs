//! Reading ONNX files with size limits, and a structural check of inference models.

use crate::error::{OnnxError, Result};
use crate::proto::{data_type, AttributeType, ModelProto, TensorProto};
use prost::Message;
use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

/// Largest file accepted: 2 GiB, the protobuf message limit.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// Most graph nodes accepted by default. tract's optimiser (which `verify` and `predict` run)
/// names each rewritten node with a linear scan over all nodes, so planning takes time that
/// grows faster than the square of the node count: 500 nodes take under a second, 1,000
/// about 6 s and 2,000 over 20 s on a 2-core machine. The WRNs of specs/ have under 150
/// nodes; a WRN deeper than about 580 layers is over the limit.
pub const MAX_NODES: usize = 1024;

/// Limits applied while reading a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest file in bytes (at most [`MAX_FILE_BYTES`]).
    pub max_file_bytes: u64,
    /// Most elements one initializer may declare.
    pub max_tensor_elements: u64,
    /// Most nodes the graph may have (see [`MAX_NODES`]).
    pub max_nodes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_file_bytes: MAX_FILE_BYTES,
            max_tensor_elements: 1 << 30,
            max_nodes: MAX_NODES,
        }
    }
}

/// Decodes a model with the default [`ReadLimits`].
pub fn read_model(bytes: &[u8]) -> Result<ModelProto> {
    read_model_with(bytes, &ReadLimits::default())
}

/// Decodes a model, refusing files over the size limit, graphs with more nodes than the limit
/// and initializers that declare more elements than the limit or than the data they hold.
pub fn read_model_with(bytes: &[u8], limits: &ReadLimits) -> Result<ModelProto> {
    let max = limits.max_file_bytes.min(MAX_FILE_BYTES);
    if bytes.len() as u64 > max {
        return Err(OnnxError::TooLarge(format!(
            "the file is {} bytes, more than the limit of {max}",
            bytes.len()
        )));
    }
    let model = ModelProto::decode(bytes)?;
    if let Some(g) = &model.graph {
        if g.node.len() > limits.max_nodes {
            return Err(OnnxError::TooLarge(format!(
                "the graph has {} nodes, more than the limit of {} (tract, which runs the \
                 model, plans long graphs in time that grows faster than the square of the \
                 node count)",
                g.node.len(),
                limits.max_nodes
            )));
        }
        for (i, t) in g.initializer.iter().enumerate() {
            let name = t
                .name
                .clone()
                .unwrap_or_else(|| format!("initializer #{i}"));
            let declared = declared_elements(t)
                .map_err(|m| OnnxError::Invalid(vec![format!("initializer `{name}`: {m}")]))?;
            if declared > limits.max_tensor_elements {
                return Err(OnnxError::TooLarge(format!(
                    "initializer `{name}` declares {declared} elements, more than the limit of {}",
                    limits.max_tensor_elements
                )));
            }
            if let Some(present) = present_elements(t) {
                if declared > present {
                    return Err(OnnxError::Invalid(vec![format!(
                        "initializer `{name}` declares {declared} elements (dims {:?}) but \
                         holds data for {present}",
                        t.dims
                    )]));
                }
            }
        }
    }
    Ok(model)
}

/// Reads and decodes a model file with the given limits, checking the size before reading.
pub fn read_model_file(path: &Path, limits: &ReadLimits) -> Result<ModelProto> {
    let io = |source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let max = limits.max_file_bytes.min(MAX_FILE_BYTES);
    if len > max {
        return Err(OnnxError::TooLarge(format!(
            "{} is {len} bytes, more than the limit of {max}",
            path.display()
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
    read_model_with(&bytes, limits)
}

/// Product of the dims, refusing negative dims and overflow.
fn declared_elements(t: &TensorProto) -> std::result::Result<u64, String> {
    t.dims.iter().try_fold(1u64, |acc, &d| {
        if d < 0 {
            return Err(format!("negative dimension in {:?}", t.dims));
        }
        acc.checked_mul(d as u64)
            .ok_or_else(|| format!("dims {:?} overflow", t.dims))
    })
}

/// Elements the tensor holds, when its type is known (None for unknown types). External
/// data counts as zero elements present.
fn present_elements(t: &TensorProto) -> Option<u64> {
    if t.data_location == Some(1) {
        return Some(0);
    }
    let dt = t.data_type.unwrap_or(0);
    if let Some(raw) = t.raw_data.as_ref().filter(|r| !r.is_empty()) {
        return data_type::element_size(dt).map(|s| (raw.len() / s) as u64);
    }
    let n = match dt {
        data_type::FLOAT => t.float_data.len(),
        data_type::INT64 => t.int64_data.len(),
        data_type::DOUBLE => t.double_data.len(),
        // bool, (u)int8, (u)int16, int32, float16 and bfloat16 live in int32_data.
        2..=6 | 9 | 10 | 16 => t.int32_data.len(),
        _ => return None,
    };
    Some(n as u64)
}

/// Checks that `model` is a well-formed inference graph.
///
/// Problems (returned together as [`OnnxError::Invalid`]): no graph, no IR version, no
/// default-domain opset, unnamed or duplicate initializers, initializers whose dims do not
/// match their data, external data, node inputs not defined by a graph input, initializer
/// or earlier node output, duplicate or missing outputs, graph outputs never produced, and
/// training-mode nodes (Dropout, BatchNormalization with `training_mode=1` or more than one
/// output). On success returns notes that do not make the model invalid (unnamed nodes,
/// non-default domains).
pub fn check_structure(model: &ModelProto) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    if model.ir_version.unwrap_or(0) <= 0 {
        problems.push("no IR version".to_string());
    }
    match model.default_opset() {
        Some(v) if v > 0 => {}
        _ => problems.push("no opset import for the default ONNX domain".to_string()),
    }
    let Some(g) = &model.graph else {
        problems.push("the model has no graph".into());
        return Err(OnnxError::Invalid(problems));
    };

    let mut defined: HashSet<&str> = HashSet::new();
    for (i, t) in g.initializer.iter().enumerate() {
        let name = match t.name.as_deref() {
            Some(n) if !n.is_empty() => n,
            _ => {
                problems.push(format!("initializer #{i} has no name"));
                continue;
            }
        };
        if !defined.insert(name) {
            problems.push(format!("initializer `{name}` is defined twice"));
        }
        if t.data_location == Some(1) {
            problems.push(format!(
                "initializer `{name}` keeps its data in an external file; wrnc models are \
                 self-contained"
            ));
            continue;
        }
        match (declared_elements(t), present_elements(t)) {
            (Err(m), _) => problems.push(format!("initializer `{name}`: {m}")),
            (Ok(d), Some(p)) if d != p => problems.push(format!(
                "initializer `{name}` has dims {:?} = {d} elements but holds {p}",
                t.dims
            )),
            (Ok(_), None) => notes.push(format!(
                "initializer `{name}` has data type {:?}, whose size is not checked",
                t.data_type
            )),
            _ => {}
        }
        if let Some(raw) = t.raw_data.as_ref().filter(|r| !r.is_empty()) {
            if let Some(s) = data_type::element_size(t.data_type.unwrap_or(0)) {
                if !raw.len().is_multiple_of(s) {
                    problems.push(format!(
                        "initializer `{name}` has {} raw bytes, not a multiple of its element \
                         size {s}",
                        raw.len()
                    ));
                }
            }
        }
    }
    if g.input.is_empty() {
        problems.push("the graph has no input".into());
    }
    for (i, v) in g.input.iter().enumerate() {
        match v.name.as_deref() {
            Some(n) if !n.is_empty() => {
                defined.insert(n);
            }
            _ => problems.push(format!("graph input #{i} has no name")),
        }
    }
    for (i, n) in g.node.iter().enumerate() {
        let label = match n.name.as_deref() {
            Some(s) if !s.is_empty() => format!("node `{s}` ({})", n.op()),
            _ => {
                notes.push(format!("node #{i} ({}) has no name", n.op()));
                format!("node #{i} ({})", n.op())
            }
        };
        if n.op().is_empty() {
            problems.push(format!("{label} has no op_type"));
        }
        if let Some(d) = n
            .domain
            .as_deref()
            .filter(|d| !d.is_empty() && *d != "ai.onnx")
        {
            notes.push(format!("{label} uses domain `{d}`"));
        }
        for inp in n.input.iter().filter(|s| !s.is_empty()) {
            if !defined.contains(inp.as_str()) {
                problems.push(format!(
                    "{label} reads `{inp}`, which no graph input, initializer or earlier node \
                     defines"
                ));
            }
        }
        match n.op() {
            "Dropout" => problems.push(format!(
                "{label} is a training-only Dropout; inference graphs must not contain it"
            )),
            "BatchNormalization" => {
                let outs = n.output.iter().filter(|o| !o.is_empty()).count();
                if outs > 1 {
                    problems.push(format!(
                        "{label} has {outs} outputs; the inference form has one"
                    ));
                }
                if let Some(a) = n.attr("training_mode") {
                    let is_int = a.r#type.is_none_or(|t| t == AttributeType::Int as i32);
                    if is_int && a.i.unwrap_or(0) != 0 {
                        problems.push(format!("{label} has training_mode=1"));
                    }
                }
                if n.input.len() != 5 {
                    problems.push(format!(
                        "{label} has {} inputs; BatchNormalization takes 5",
                        n.input.len()
                    ));
                }
            }
            _ => {}
        }
        if n.output.iter().all(|o| o.is_empty()) {
            problems.push(format!("{label} has no output"));
        }
        for out in n.output.iter().filter(|s| !s.is_empty()) {
            if !defined.insert(out.as_str()) {
                problems.push(format!("{label} redefines `{out}`"));
            }
        }
    }
    if g.output.is_empty() {
        problems.push("the graph has no output".into());
    }
    for (i, o) in g.output.iter().enumerate() {
        match o.name.as_deref() {
            Some(n) if defined.contains(n) => {}
            Some(n) if !n.is_empty() => {
                problems.push(format!("graph output `{n}` is never produced"))
            }
            _ => problems.push(format!("graph output #{i} has no name")),
        }
    }
    if problems.is_empty() {
        Ok(notes)
    } else {
        Err(OnnxError::Invalid(problems))
    }
}
