//! The lower phase: the generic layer list to the graph IR, checking names, `from:` and shapes.

use crate::model::{LayerSpec, OpKind, SpecFile};
use crate::suggest::{did_you_mean, one_of};
use crate::validate::{Problem, Range};
use std::collections::HashMap;
use wrnc_ir::{Graph, GraphBuilder, IrError, Op, ValueId};

/// A problem in one layer: its index in `model.layers`, the key at fault and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerError {
    /// Index in the list (None: about the whole model).
    pub index: Option<usize>,
    /// Key at fault, e.g. `from`.
    pub key: Option<&'static str>,
    /// Message.
    pub message: String,
}

fn err(index: usize, key: Option<&'static str>, message: String) -> LayerError {
    LayerError {
        index: Some(index),
        key,
        message,
    }
}

/// The default name of the layer at `index`.
pub fn default_name(l: &LayerSpec, index: usize) -> String {
    l.name
        .clone()
        .unwrap_or_else(|| format!("{}{index}", l.op.name()))
}

/// The one mapping of a spec layer onto the IR: its op kind and keys (defaults filled in,
/// ranges checked) as the IR's [`Op`], its parameters not yet created (the builder creates
/// them). It matches every [`OpKind`], so a new op fails to compile until it is mapped here.
fn kind_of(l: &LayerSpec, i: usize, classes: usize) -> Result<Op, LayerError> {
    let need = |v: Option<usize>, key: &'static str| {
        v.ok_or_else(|| err(i, Some(key), format!("{} needs `{key}`", l.op.name())))
    };
    let pos = |v: usize, key: &'static str| {
        if v == 0 {
            Err(err(i, Some(key), format!("`{key}` must be at least 1")))
        } else {
            Ok(v)
        }
    };
    let number = |key: &'static str, v: f64, range: Range, note: &str| match range.refuse(v, note) {
        Some(m) => Err(err(i, Some(key), format!("{key} {m}"))),
        None => Ok(v),
    };
    Ok(match l.op {
        OpKind::Conv => {
            let kernel = pos(l.kernel.unwrap_or(3), "kernel")?;
            Op::conv(
                pos(need(l.out, "out")?, "out")?,
                kernel,
                pos(l.stride.unwrap_or(1), "stride")?,
                l.padding.unwrap_or(kernel / 2),
                l.bias.unwrap_or(false),
            )
        }
        OpKind::BatchNorm => {
            let eps = number("eps", l.eps.unwrap_or(1e-5), Range::Positive, "")?;
            let momentum = l.momentum.unwrap_or(0.1);
            let momentum = number("momentum", momentum, Range::Unit, " (PyTorch meaning)")?;
            Op::batch_norm(eps, momentum)
        }
        OpKind::Relu => Op::Relu,
        OpKind::Dropout => {
            let p =
                l.p.ok_or_else(|| err(i, Some("p"), "dropout needs `p`".into()))?;
            Op::dropout(number("p", p, Range::UnitOpen, "")?)
        }
        OpKind::Add => Op::Add,
        OpKind::AvgPool => {
            let kernel = pos(l.kernel.unwrap_or(2), "kernel")?;
            Op::avg_pool(
                kernel,
                pos(l.stride.unwrap_or(kernel), "stride")?,
                l.padding.unwrap_or(0),
            )
        }
        OpKind::MaxPool => {
            let kernel = pos(l.kernel.unwrap_or(2), "kernel")?;
            Op::max_pool(
                kernel,
                pos(l.stride.unwrap_or(kernel), "stride")?,
                l.padding.unwrap_or(0),
            )
        }
        OpKind::GlobalAvgPool => Op::GlobalAvgPool,
        OpKind::Flatten => Op::Flatten,
        OpKind::Linear => Op::linear(
            pos(l.out.unwrap_or(classes), "out")?,
            l.bias.unwrap_or(true),
        ),
        OpKind::Softmax => Op::Softmax,
    })
}

/// Builds the graph. `classes` is the default of a linear layer's `out`.
pub fn lower(
    name: &str,
    input: [usize; 3],
    classes: usize,
    layers: &[LayerSpec],
) -> Result<Graph, LayerError> {
    let whole = |message: String| LayerError {
        index: None,
        key: None,
        message,
    };
    let mut b = GraphBuilder::new(name, input).map_err(|e| whole(e.to_string()))?;
    let all_names: Vec<String> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| default_name(l, i))
        .collect();
    let mut defined: HashMap<String, ValueId> = HashMap::new();
    defined.insert("input".into(), b.input());
    let mut prev = b.input();
    for (i, l) in layers.iter().enumerate() {
        let allowed = l.op.hyper_parameters();
        for k in l.set_keys() {
            if !allowed.contains(&k) {
                let valid: Vec<&str> = ["op", "name", "from"]
                    .iter()
                    .chain(allowed.iter())
                    .copied()
                    .collect();
                return Err(err(
                    i,
                    None,
                    format!(
                        "key `{k}` does not apply to op `{}`; it takes {}",
                        l.op.name(),
                        one_of(&valid)
                    ),
                ));
            }
        }
        let name = &all_names[i];
        if name == "input" {
            return Err(err(
                i,
                Some("name"),
                "`input` is reserved for the network input".into(),
            ));
        }
        if defined.contains_key(name) {
            return Err(err(
                i,
                Some("name"),
                format!("the name `{name}` is already used by an earlier layer"),
            ));
        }
        let froms = l.from.as_ref().map(|f| f.names());
        let want = l.op.arity();
        let inputs: Vec<ValueId> = match froms {
            None if want == 2 => {
                return Err(err(
                    i,
                    Some("from"),
                    "add needs `from:` with two layer names, e.g. from: [conv1, shortcut]".into(),
                ))
            }
            None => vec![prev],
            Some(names) => {
                if names.len() != want {
                    return Err(err(
                        i,
                        Some("from"),
                        format!(
                            "{} takes {want} input(s), `from` names {}",
                            l.op.name(),
                            names.len()
                        ),
                    ));
                }
                let mut v = Vec::new();
                for n in &names {
                    match defined.get(n) {
                        Some(id) => v.push(*id),
                        None => {
                            let msg = if let Some(j) = all_names.iter().position(|x| x == n) {
                                format!(
                                    "`{n}` is defined later (layers[{j}]); `from` may only name \
                                     earlier layers or `input`"
                                )
                            } else {
                                let known: Vec<&str> = defined.keys().map(|s| s.as_str()).collect();
                                match did_you_mean(n, &known) {
                                    Some(s) => format!(
                                        "no layer named `{n}` before this one; did you mean `{s}`?"
                                    ),
                                    None => format!(
                                        "no layer named `{n}` before this one (`input` names the \
                                         network input)"
                                    ),
                                }
                            };
                            return Err(err(i, Some("from"), msg));
                        }
                    }
                }
                v
            }
        };
        let op = kind_of(l, i, classes)?;
        let out = b.layer(name, &op, &inputs).map_err(|e| match e {
            IrError::Shape { message, .. } => err(i, None, message),
            other => err(i, None, other.to_string()),
        })?;
        defined.insert(name.clone(), out);
        prev = out;
    }
    b.finish().map_err(|e| whole(e.to_string()))
}

/// The lower phase. In: the resolved, validated spec and its layer list (from
/// [`crate::expand::model_layers`]). Out: the graph, or the problem with the field it is about
/// (`model.wrn` for an expanded macro, `model.layers[i].key` for a listed layer).
pub fn graph(spec: &SpecFile, layers: &[LayerSpec]) -> Result<Graph, Problem> {
    let input = spec.model.input.clone().unwrap_or_default();
    let input = [input[0], input[1], input[2]];
    let classes = spec.model.classes.unwrap_or(2);
    let name = spec.name.clone().unwrap_or_default();
    let graph = lower(&name, input, classes, layers).map_err(|e| {
        let field = match (&spec.model.wrn, e.index, e.key) {
            (Some(_), _, _) => "model.wrn".into(),
            (None, Some(i), Some(k)) => format!("model.layers[{i}].{k}"),
            (None, Some(i), None) => format!("model.layers[{i}]"),
            (None, None, _) => "model.layers".into(),
        };
        (field, e.message)
    })?;
    if graph.classes() != classes {
        return Err((
            "model.layers".into(),
            format!(
                "the network outputs {} values but model.classes is {classes}",
                graph.classes()
            ),
        ));
    }
    Ok(graph)
}
