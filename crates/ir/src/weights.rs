//! Model weights: named f32 tensors keyed by the IR's parameter names, stored as safetensors.

use crate::atomic::write_atomic;
use crate::graph::Graph;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// One tensor: shape and row-major f32 data.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// A set of named tensors plus string metadata (training result, spec name, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weights {
    /// Tensors by parameter name.
    pub tensors: BTreeMap<String, Tensor>,
    /// Free-form metadata stored in the safetensors header.
    pub metadata: BTreeMap<String, String>,
}

/// Errors reading, writing or matching weights.
#[derive(Debug, Error)]
pub enum WeightsError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file.
    #[error("{path}: not a valid safetensors weights file: {message}")]
    Format {
        /// File involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Names or shapes do not match the model.
    #[error("{source_name} does not match the model `{model}`:\n{}", .problems.join("\n"))]
    Mismatch {
        /// Where the weights came from.
        source_name: String,
        /// Model name.
        model: String,
        /// One line per problem, the first mismatching tensor first.
        problems: Vec<String>,
    },
}

/// Whether `bytes` start like an ONNX model: protobuf field 1 (`ir_version`, a one-byte varint)
/// then field 2 (`producer_name`) or 8 (`opset_import`), as ONNX writers emit them. A
/// safetensors file never matches: its JSON header starts at byte 8 with `{`.
fn looks_like_onnx(bytes: &[u8]) -> bool {
    matches!(bytes, [0x08, v, 0x12 | 0x42, ..] if *v < 0x80) && bytes.get(8) != Some(&b'{')
}

impl Weights {
    /// Reads a safetensors file. Every tensor must be F32.
    pub fn load(path: &Path) -> Result<Weights, WeightsError> {
        let bytes = std::fs::read(path).map_err(|source| WeightsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|message| WeightsError::Format {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses safetensors bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Weights, String> {
        if looks_like_onnx(bytes) {
            return Err(
                "this is an ONNX file, not safetensors weights; use it with \
                        `wrnc verify` or `wrnc predict`"
                    .into(),
            );
        }
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
        let metadata = meta
            .metadata()
            .clone()
            .map(|m| m.into_iter().collect())
            .unwrap_or_default();
        let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(format!(
                    "tensor `{name}` has dtype {:?}; wrnc weights are F32",
                    view.dtype()
                ));
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.insert(
                name,
                Tensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(Weights { tensors, metadata })
    }

    /// Serialises to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let raw: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .tensors
            .iter()
            .map(|(n, t)| {
                let mut b = Vec::with_capacity(t.data.len() * 4);
                for v in &t.data {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                (n.clone(), b, t.shape.clone())
            })
            .collect();
        let mut views = Vec::with_capacity(raw.len());
        for (n, b, s) in &raw {
            let v = TensorView::new(Dtype::F32, s.clone(), b).map_err(|e| e.to_string())?;
            views.push((n.clone(), v));
        }
        let meta: std::collections::HashMap<String, String> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // safetensors 0.6 writes invalid JSON for no tensors with an empty metadata map.
        let meta = (!meta.is_empty()).then_some(meta);
        safetensors::serialize(views, meta).map_err(|e| e.to_string())
    }

    /// Writes the file atomically (temporary file + rename).
    pub fn save(&self, path: &Path) -> Result<(), WeightsError> {
        let bytes = self.to_bytes().map_err(|message| WeightsError::Format {
            path: path.to_path_buf(),
            message,
        })?;
        write_atomic(path, &bytes).map_err(|source| WeightsError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// A tensor by name.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// Checks that the weights hold exactly the graph's parameters with the graph's shapes.
    /// The error lists every problem, in the graph's parameter order.
    pub fn check_against(&self, graph: &Graph, source_name: &str) -> Result<(), WeightsError> {
        let mut problems = Vec::new();
        for p in &graph.params {
            match self.tensors.get(&p.name) {
                None => problems.push(format!("  missing tensor `{}` {:?}", p.name, p.shape)),
                Some(t) if t.shape != p.shape => problems.push(format!(
                    "  tensor `{}` has shape {:?}, the model needs {:?}",
                    p.name, t.shape, p.shape
                )),
                Some(_) => {}
            }
        }
        for (name, t) in &self.tensors {
            if graph.param_by_name(name).is_none() {
                problems.push(format!(
                    "  unexpected tensor `{name}` {:?} (not a parameter of this model)",
                    t.shape
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(WeightsError::Mismatch {
                source_name: source_name.to_string(),
                model: graph.name.clone(),
                problems,
            })
        }
    }
}
