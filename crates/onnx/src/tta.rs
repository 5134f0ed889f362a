//! Test-time augmentation inside the exported graph (`export.tta`).
//!
//! [`apply`] rewrites a model made by [`crate::export`] so that the file itself averages the
//! softmax of each image and of its horizontal mirror:
//!
//! ```text
//! input [N,C,H,W] --Slice(axis 3, step -1)--> tta_mirrored
//! Concat(input, tta_mirrored; axis 0) --> tta_batch [2N,C,H,W] --network--> tta_logits
//! Softmax --> tta_probabilities [2N,K] --Reshape [2,N,K]--> ReduceMean(axis 0) --> probabilities
//! ```
//!
//! The network runs once on the doubled batch. The file then has one output,
//! `probabilities` `[N, K]` (no logits), and records `tta: flip` and `outputs:
//! ["probabilities"]` in its metadata ([`MetaKey::Tta`], [`MetaKey::Outputs`]).

use crate::error::{OnnxError, Result};
use crate::export::{BATCH_DIM, INPUT_NAME, LOGITS_NAME, PROBABILITIES_NAME};
use crate::metadata::MetaKey;
use crate::proto::{
    data_type, AttributeProto, Dim, GraphProto, ModelProto, NodeProto, StringStringEntryProto,
    TensorProto, ValueInfoProto,
};
use wrnc_recipe::ExportTta;

/// The mirrored input.
const MIRRORED: &str = "tta_mirrored";
/// The input and its mirror, one batch of 2N images.
const BATCH: &str = "tta_batch";
/// The network's logits of the 2N images.
const LOGITS: &str = "tta_logits";
/// Their softmax.
const PROBS: &str = "tta_probabilities";
/// The softmax as `[2, N, K]`.
const PAIRS: &str = "tta_pairs";
/// Slice's constant inputs and Reshape's shape.
const SLICE_STARTS: &str = "tta_slice_starts";
const SLICE_ENDS: &str = "tta_slice_ends";
const SLICE_AXES: &str = "tta_slice_axes";
const SLICE_STEPS: &str = "tta_slice_steps";
const PAIRS_SHAPE: &str = "tta_pairs_shape";

/// Applies `tta` to a model made by [`crate::export`]: [`ExportTta::None`] returns it
/// unchanged, [`ExportTta::Flip`] as described in the module documentation.
pub fn apply(model: ModelProto, tta: ExportTta) -> Result<ModelProto> {
    match tta {
        ExportTta::None => Ok(model),
        ExportTta::Flip => flip(model),
    }
}

fn invalid(message: String) -> OnnxError {
    OnnxError::Invalid(vec![format!("test-time augmentation: {message}")])
}

fn int64s(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: Some(data_type::INT64),
        name: Some(name.into()),
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

fn node(
    name: &str,
    op: &str,
    inputs: &[&str],
    output: &str,
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: Some(name.into()),
        op_type: Some(op.into()),
        domain: None,
        attribute: attrs,
        doc_string: None,
    }
}

/// Renames value `from` to `to` wherever a node reads or writes it.
fn rename(g: &mut GraphProto, from: &str, to: &str) {
    for n in &mut g.node {
        for v in n.input.iter_mut().chain(n.output.iter_mut()) {
            if v == from {
                *v = to.into();
            }
        }
    }
}

fn flip(mut model: ModelProto) -> Result<ModelProto> {
    if model.metadata(MetaKey::Tta.as_str()).is_some() {
        return Err(invalid("the model already has it".into()));
    }
    let g = model
        .graph
        .as_mut()
        .ok_or_else(|| invalid("the model has no graph".into()))?;
    let width = match g
        .input
        .iter()
        .find(|i| i.name.as_deref() == Some(INPUT_NAME))
        .and_then(|i| i.dims())
        .as_deref()
    {
        Some([_, _, _, Dim::Fixed(w)]) => *w,
        other => {
            return Err(invalid(format!(
                "the input `{INPUT_NAME}` is declared {other:?}, not [N, C, H, W]"
            )))
        }
    };
    let classes = match g
        .output
        .iter()
        .find(|o| o.name.as_deref() == Some(PROBABILITIES_NAME))
        .and_then(|o| o.dims())
        .as_deref()
    {
        Some([_, Dim::Fixed(k)]) => *k,
        other => {
            return Err(invalid(format!(
                "the output `{PROBABILITIES_NAME}` is declared {other:?}, not [N, classes]"
            )))
        }
    };
    for name in [BATCH, MIRRORED, LOGITS, PROBS, PAIRS] {
        if g.node.iter().any(|n| n.output.iter().any(|o| o == name))
            || g.initializer
                .iter()
                .any(|t| t.name.as_deref() == Some(name))
        {
            return Err(invalid(format!("the graph already has a value `{name}`")));
        }
    }

    // The network now reads the doubled batch and its outputs are intermediate values.
    rename(g, INPUT_NAME, BATCH);
    rename(g, LOGITS_NAME, LOGITS);
    rename(g, PROBABILITIES_NAME, PROBS);
    // The declared shapes of the network's values have batch N; inside it is 2N, which a
    // dim_param cannot say, so the intermediate shapes are left to inference.
    g.value_info.clear();

    let mut nodes = vec![
        node(
            "tta_mirror",
            "Slice",
            &[
                INPUT_NAME,
                SLICE_STARTS,
                SLICE_ENDS,
                SLICE_AXES,
                SLICE_STEPS,
            ],
            MIRRORED,
            Vec::new(),
        ),
        node(
            "tta_concat",
            "Concat",
            &[INPUT_NAME, MIRRORED],
            BATCH,
            vec![AttributeProto::int("axis", 0)],
        ),
    ];
    nodes.append(&mut g.node);
    nodes.push(node(
        "tta_pair",
        "Reshape",
        &[PROBS, PAIRS_SHAPE],
        PAIRS,
        Vec::new(),
    ));
    nodes.push(node(
        "tta_mean",
        "ReduceMean",
        &[PAIRS],
        PROBABILITIES_NAME,
        vec![
            AttributeProto::ints("axes", &[0]),
            AttributeProto::int("keepdims", 0),
        ],
    ));
    g.node = nodes;
    g.initializer.extend([
        int64s(SLICE_STARTS, &[-1]),
        // Past the first column: -(W + 1) is clamped to "before index 0" for a negative step.
        int64s(SLICE_ENDS, &[-(width as i64) - 1]),
        int64s(SLICE_AXES, &[3]),
        int64s(SLICE_STEPS, &[-1]),
        int64s(PAIRS_SHAPE, &[2, -1, classes as i64]),
    ]);
    g.output = vec![ValueInfoProto::float_tensor(
        PROBABILITIES_NAME,
        &[Dim::Symbol(BATCH_DIM.into()), Dim::Fixed(classes)],
    )];
    let note = format!(
        " Test-time augmentation `flip`: the one output `{PROBABILITIES_NAME}` is the mean of \
         the softmax of each image and of its horizontal mirror (no logits)."
    );
    for doc in [&mut g.doc_string, &mut model.doc_string] {
        if let Some(d) = doc.as_mut() {
            d.push_str(&note);
        }
    }

    let outputs = serde_json::to_string(&[PROBABILITIES_NAME]).unwrap_or_default();
    let mut found = false;
    for e in &mut model.metadata_props {
        if e.key.as_deref() == Some(MetaKey::Outputs.as_str()) {
            e.value = Some(outputs.clone());
            found = true;
        }
    }
    if !found {
        model.metadata_props.push(StringStringEntryProto {
            key: Some(MetaKey::Outputs.as_str().into()),
            value: Some(outputs),
        });
    }
    model.metadata_props.push(StringStringEntryProto {
        key: Some(MetaKey::Tta.as_str().into()),
        value: Some(ExportTta::Flip.as_str().into()),
    });
    Ok(model)
}
