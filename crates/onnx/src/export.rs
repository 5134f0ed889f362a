//! Lowering an IR graph and its weights to an inference-form ONNX model.

use crate::error::{OnnxError, Result};
use crate::metadata::{ExportMetadata, MetaKey, Normalization, ResizeInfo};
use crate::proto::{
    AttributeProto, Dim, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, ValueInfoProto,
};
use prost::Message;
use std::collections::HashSet;
use std::path::Path;
use wrnc_ir::{passes, Graph, Op, ValueId, Weights};
use wrnc_recipe::ExportConfig;

/// Lowest opset wrnc exports.
pub const MIN_OPSET: i64 = 13;
/// Highest opset wrnc exports.
pub const MAX_OPSET: i64 = 17;
/// Default opset.
pub const DEFAULT_OPSET: i64 = 17;
/// Name of the graph input.
pub const INPUT_NAME: &str = "input";
/// Name of the logits output.
pub const LOGITS_NAME: &str = "logits";
/// Name of the probabilities output.
pub const PROBABILITIES_NAME: &str = "probabilities";
/// Name of the symbolic batch dimension.
pub const BATCH_DIM: &str = "N";
/// The version of this crate, written as `producer_version`.
pub const PRODUCER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Export settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// Default-domain opset, [`MIN_OPSET`]..=[`MAX_OPSET`].
    pub opset: i64,
    /// Fold BatchNorms into the convolutions they follow (see
    /// [`wrnc_ir::passes::fold_batch_norm`]).
    pub fold_bn: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            opset: DEFAULT_OPSET,
            fold_bn: true,
        }
    }
}

impl From<&ExportConfig> for ExportOptions {
    fn from(c: &ExportConfig) -> Self {
        ExportOptions {
            opset: c.opset,
            fold_bn: c.fold_bn,
        }
    }
}

/// The lowest IR version a file importing `opset` must declare (ONNX release table:
/// opsets 13 and 14 shipped with IR 7, opsets 15 to 17 with IR 8).
pub fn ir_version_for_opset(opset: i64) -> Result<i64> {
    match opset {
        13 | 14 => Ok(7),
        15..=17 => Ok(8),
        _ => Err(OnnxError::UnsupportedOpset {
            opset,
            min: MIN_OPSET,
            max: MAX_OPSET,
            default: DEFAULT_OPSET,
        }),
    }
}

fn check_tensors(graph: &Graph, weights: &Weights) -> Result<()> {
    weights.check_against(graph, "the weights")?;
    for p in &graph.params {
        let Some(t) = weights.get(&p.name) else {
            continue;
        };
        if t.data.len() != p.numel() {
            return Err(OnnxError::BadTensor {
                name: p.name.clone(),
                message: format!(
                    "shape {:?} needs {} values but the tensor holds {}",
                    t.shape,
                    p.numel(),
                    t.data.len()
                ),
            });
        }
        if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(OnnxError::BadTensor {
                name: p.name.clone(),
                message: format!("element {i} is {} (not a finite number)", t.data[i]),
            });
        }
    }
    Ok(())
}

fn graph_err(graph: &Graph, message: String) -> OnnxError {
    OnnxError::Graph {
        model: graph.name.clone(),
        message,
    }
}

/// Lowers `graph` with `weights` to an inference-form ONNX model.
///
/// The weights must match the graph exactly (names and shapes, finite values). Dropout nodes
/// are removed, BatchNorms are folded into convolutions when `opts.fold_bn` is set, and the
/// rest maps one IR node to one ONNX node named after the layer. The model has one input,
/// `input` `[N, C, H, W]` (N symbolic), and two outputs, `logits` and `probabilities`
/// (a Softmax is added when the graph does not end in one). Initializers carry the IR
/// parameter names. See `docs/onnx.md`.
pub fn export(
    graph: &Graph,
    weights: &Weights,
    opts: &ExportOptions,
    meta: &ExportMetadata,
) -> Result<ModelProto> {
    let ir_version = ir_version_for_opset(opts.opset)?;
    if !passes::is_well_formed(graph) {
        return Err(graph_err(
            graph,
            "the graph is malformed (a node reads an undefined value or an unknown parameter)"
                .into(),
        ));
    }
    if graph.nodes.is_empty() {
        return Err(graph_err(graph, "the model has no layers".into()));
    }
    check_tensors(graph, weights)?;
    let input_shape: [usize; 3] = graph.input_shape().try_into().map_err(|_| {
        graph_err(
            graph,
            format!("input shape {:?} is not [C, H, W]", graph.input_shape()),
        )
    })?;
    let classes = graph.classes();
    if graph.shape(graph.logits()).len() != 1 {
        return Err(graph_err(
            graph,
            format!(
                "the logits have shape {:?}; a flat [classes] output is needed",
                graph.shape(graph.logits())
            ),
        ));
    }
    if !meta.class_labels.is_empty() && meta.class_labels.len() != classes {
        return Err(OnnxError::Metadata(format!(
            "{} class labels given for a model with {classes} classes",
            meta.class_labels.len()
        )));
    }
    if let Some(n) = &meta.normalization {
        n.validate(input_shape)?;
    }
    for k in meta.extra.keys() {
        if MetaKey::parse(k).is_some() {
            return Err(OnnxError::Metadata(format!(
                "extra metadata key `{k}` is reserved for wrnc"
            )));
        }
    }

    let (g, w) = passes::inference_form(graph, weights, opts.fold_bn);
    let graph_proto = lower(&g, &w)?;
    let doc = meta.doc_string.clone().unwrap_or_else(|| {
        let what = meta
            .description
            .clone()
            .unwrap_or_else(|| describe_layers(graph));
        format!(
            "{}: {what} exported by wrnc {PRODUCER_VERSION} (inference form{}). \
             Input `input` [N, {}, {}, {}] float32 NCHW, normalised as described by the \
             `normalization` metadata; outputs `logits` and `probabilities` [N, {classes}].",
            graph.name,
            if opts.fold_bn {
                ", BatchNorm folded"
            } else {
                ""
            },
            input_shape[0],
            input_shape[1],
            input_shape[2],
        )
    });
    let graph_proto = GraphProto {
        doc_string: Some(doc.clone()),
        ..graph_proto
    };

    let labels: Vec<String> = if meta.class_labels.is_empty() {
        (0..classes).map(|i| i.to_string()).collect()
    } else {
        meta.class_labels.clone()
    };
    let norm = meta
        .normalization
        .clone()
        .unwrap_or_else(|| Normalization::none(input_shape[0]));
    let outputs = json(&vec![
        LOGITS_NAME.to_string(),
        PROBABILITIES_NAME.to_string(),
    ]);
    let mut props: Vec<(MetaKey, String)> = vec![
        (MetaKey::WrncVersion, PRODUCER_VERSION.into()),
        (MetaKey::ModelName, graph.name.clone()),
        (MetaKey::ClassLabels, json(&labels)),
        (MetaKey::NumClasses, classes.to_string()),
        (MetaKey::InputName, INPUT_NAME.into()),
        (MetaKey::InputLayout, "NCHW".into()),
        (MetaKey::InputShape, json(&input_shape.to_vec())),
        (MetaKey::Outputs, outputs),
        (MetaKey::Normalization, json(&norm)),
        (MetaKey::BnFolded, opts.fold_bn.to_string()),
    ];
    if let Some(s) = &meta.spec_yaml {
        props.push((MetaKey::Spec, s.clone()));
    }
    if let Some(t) = &meta.training {
        props.push((MetaKey::Training, json(t)));
    }
    if let Some(f) = &meta.weights_file {
        props.push((MetaKey::WeightsFile, f.clone()));
    }
    if let Some(r) = &meta.resize {
        let info = ResizeInfo {
            mode: r.mode,
            filter: r.filter,
            size: [input_shape[1], input_shape[2]],
        };
        props.push((MetaKey::Resize, json(&info)));
    }
    let mut props: Vec<(String, String)> = props
        .into_iter()
        .map(|(k, v)| (k.as_str().to_string(), v))
        .collect();
    props.extend(meta.extra.iter().map(|(k, v)| (k.clone(), v.clone())));

    Ok(ModelProto {
        ir_version: Some(ir_version),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opts.opset),
        }],
        producer_name: Some("wrnc".into()),
        producer_version: Some(PRODUCER_VERSION.into()),
        domain: None,
        model_version: Some(1),
        doc_string: Some(doc),
        graph: Some(graph_proto),
        metadata_props: props
            .into_iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k),
                value: Some(v),
            })
            .collect(),
    })
}

/// JSON text of plain data (strings, numbers, vectors), whose serialisation cannot fail.
/// What a network is, from its layers alone: `network of 7 layers (2 convolutions, 1 linear)`.
fn describe_layers(g: &Graph) -> String {
    let count = |k: wrnc_ir::OpKind| g.nodes.iter().filter(|n| n.op.op_kind() == k).count();
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "network of {} ({}, {} linear)",
        plural(g.nodes.len(), "layer", "layers"),
        plural(count(wrnc_ir::OpKind::Conv), "convolution", "convolutions"),
        count(wrnc_ir::OpKind::Linear),
    )
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Assigns ONNX tensor names to IR values: `input`, `logits`, `probabilities`, else the
/// producing layer's name, made unique.
fn value_names(g: &Graph, has_softmax: bool) -> Vec<String> {
    let logits = g.logits();
    let probs = has_softmax.then(|| g.output());
    let mut used: HashSet<String> = [INPUT_NAME, LOGITS_NAME, PROBABILITIES_NAME]
        .iter()
        .map(|s| s.to_string())
        .collect();
    used.extend(g.params.iter().map(|p| p.name.clone()));
    let mut names = Vec::with_capacity(g.values.len());
    for (i, v) in g.values.iter().enumerate() {
        let id = ValueId(i);
        let name = if i == 0 {
            INPUT_NAME.to_string()
        } else if id == logits {
            LOGITS_NAME.to_string()
        } else if Some(id) == probs {
            PROBABILITIES_NAME.to_string()
        } else {
            let mut n = v.name.clone();
            let mut k = 1;
            while used.contains(&n) {
                n = format!("{}_{k}", v.name);
                k += 1;
            }
            used.insert(n.clone());
            n
        };
        names.push(name);
    }
    names
}

fn lower(g: &Graph, w: &Weights) -> Result<GraphProto> {
    let ends_in_softmax = matches!(g.nodes.last().map(|n| &n.op), Some(Op::Softmax));
    let names = value_names(g, ends_in_softmax);
    let dims_of = |v: ValueId| -> Vec<Dim> {
        std::iter::once(Dim::Symbol(BATCH_DIM.into()))
            .chain(g.shape(v).iter().map(|&d| Dim::Fixed(d)))
            .collect()
    };
    let pname = |p: wrnc_ir::ParamId| g.param(p).name.clone();
    let mut nodes = Vec::with_capacity(g.nodes.len() + 1);
    let mut node_names: HashSet<String> = HashSet::new();
    for n in &g.nodes {
        let mut inputs: Vec<String> = n.inputs.iter().map(|v| names[v.0].clone()).collect();
        let (op_type, attrs): (&str, Vec<AttributeProto>) = match &n.op {
            Op::Conv {
                kernel,
                stride,
                padding,
                weight,
                bias,
                ..
            } => {
                inputs.push(pname(*weight));
                inputs.extend(bias.map(pname));
                let (k, s, p) = (*kernel as i64, *stride as i64, *padding as i64);
                (
                    "Conv",
                    vec![
                        AttributeProto::ints("kernel_shape", &[k, k]),
                        AttributeProto::ints("strides", &[s, s]),
                        AttributeProto::ints("pads", &[p, p, p, p]),
                        AttributeProto::ints("dilations", &[1, 1]),
                        AttributeProto::int("group", 1),
                    ],
                )
            }
            Op::BatchNorm {
                eps,
                weight,
                bias,
                running_mean,
                running_var,
                ..
            } => {
                inputs.extend([weight, bias, running_mean, running_var].map(|p| pname(*p)));
                (
                    "BatchNormalization",
                    vec![AttributeProto::float("epsilon", *eps as f32)],
                )
            }
            Op::Relu => ("Relu", Vec::new()),
            Op::Add => ("Add", Vec::new()),
            Op::Dropout { .. } => {
                // strip_dropout ran before lowering; a dropout here means a malformed graph.
                return Err(graph_err(
                    g,
                    format!("layer `{}`: dropout survived inference lowering", n.name),
                ));
            }
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => {
                let (k, s, p) = (*kernel as i64, *stride as i64, *padding as i64);
                (
                    "AveragePool",
                    vec![
                        AttributeProto::ints("kernel_shape", &[k, k]),
                        AttributeProto::ints("strides", &[s, s]),
                        AttributeProto::ints("pads", &[p, p, p, p]),
                        AttributeProto::int("count_include_pad", 0),
                        AttributeProto::int("ceil_mode", 0),
                    ],
                )
            }
            Op::MaxPool {
                kernel,
                stride,
                padding,
            } => {
                let (k, s, p) = (*kernel as i64, *stride as i64, *padding as i64);
                (
                    "MaxPool",
                    vec![
                        AttributeProto::ints("kernel_shape", &[k, k]),
                        AttributeProto::ints("strides", &[s, s]),
                        AttributeProto::ints("pads", &[p, p, p, p]),
                        AttributeProto::ints("dilations", &[1, 1]),
                        AttributeProto::int("ceil_mode", 0),
                    ],
                )
            }
            Op::GlobalAvgPool => ("GlobalAveragePool", Vec::new()),
            Op::Flatten => ("Flatten", vec![AttributeProto::int("axis", 1)]),
            Op::Linear { weight, bias, .. } => {
                inputs.push(pname(*weight));
                inputs.extend(bias.map(pname));
                (
                    "Gemm",
                    vec![
                        AttributeProto::float("alpha", 1.0),
                        AttributeProto::float("beta", 1.0),
                        AttributeProto::int("transA", 0),
                        AttributeProto::int("transB", 1),
                    ],
                )
            }
            Op::Softmax => ("Softmax", vec![AttributeProto::int("axis", 1)]),
        };
        node_names.insert(n.name.clone());
        nodes.push(NodeProto {
            input: inputs,
            output: vec![names[n.output.0].clone()],
            name: Some(n.name.clone()),
            op_type: Some(op_type.into()),
            domain: None,
            attribute: attrs,
            doc_string: None,
        });
    }
    if !ends_in_softmax {
        let mut name = "softmax".to_string();
        let mut k = 1;
        while node_names.contains(&name) {
            name = format!("softmax_{k}");
            k += 1;
        }
        nodes.push(NodeProto {
            input: vec![LOGITS_NAME.into()],
            output: vec![PROBABILITIES_NAME.into()],
            name: Some(name),
            op_type: Some("Softmax".into()),
            domain: None,
            attribute: vec![AttributeProto::int("axis", 1)],
            doc_string: None,
        });
    }

    let mut initializer = Vec::with_capacity(g.params.len());
    for p in &g.params {
        let t = w.get(&p.name).ok_or_else(|| {
            graph_err(
                g,
                format!("no tensor for parameter `{}` after lowering", p.name),
            )
        })?;
        initializer.push(TensorProto::float_raw(&p.name, &p.shape, &t.data));
    }

    let logits = g.logits();
    let output_ids: HashSet<ValueId> = [logits, g.output()].into_iter().collect();
    let value_info = (1..g.values.len())
        .map(ValueId)
        .filter(|v| !output_ids.contains(v))
        .map(|v| ValueInfoProto::float_tensor(&names[v.0], &dims_of(v)))
        .collect();
    Ok(GraphProto {
        node: nodes,
        name: Some(g.name.clone()),
        initializer,
        doc_string: None,
        input: vec![ValueInfoProto::float_tensor(
            INPUT_NAME,
            &dims_of(ValueId(0)),
        )],
        output: vec![
            ValueInfoProto::float_tensor(LOGITS_NAME, &dims_of(logits)),
            ValueInfoProto::float_tensor(PROBABILITIES_NAME, &dims_of(logits)),
        ],
        value_info,
    })
}

/// Serialises a model to protobuf bytes.
pub fn to_bytes(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Exports and writes the model to `path` atomically (temporary file + rename). Nothing is
/// written when the export fails. Returns the number of bytes written.
pub fn write(
    path: &Path,
    graph: &Graph,
    weights: &Weights,
    opts: &ExportOptions,
    meta: &ExportMetadata,
) -> Result<usize> {
    let model = export(graph, weights, opts, meta)?;
    write_model(path, &model)
}

/// Writes an already-built model to `path` atomically. Returns the number of bytes written.
pub fn write_model(path: &Path, model: &ModelProto) -> Result<usize> {
    let bytes = to_bytes(model);
    if bytes.len() as u64 > crate::read::MAX_FILE_BYTES {
        return Err(OnnxError::TooLarge(format!(
            "the model would be {} bytes; a protobuf ONNX file is limited to 2 GiB",
            bytes.len()
        )));
    }
    wrnc_ir::atomic::write_atomic(path, &bytes).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(bytes.len())
}
