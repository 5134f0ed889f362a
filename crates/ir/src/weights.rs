//! Model weights: named f32 tensors keyed by the IR's parameter names, stored as safetensors.

use crate::atomic::write_atomic;
use crate::graph::Graph;
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Largest weights file read, in bytes (2 GiB: WRN-28-10, 36.5M parameters, is 146 MB).
pub const MAX_WEIGHTS_BYTES: u64 = 2 << 30;

/// Room allowed for the JSON header (tensor names, shapes and metadata such as a per-pixel
/// normalisation) on top of the tensor data in [`Weights::load_for`]: 16 MiB.
pub const MAX_HEADER_BYTES: u64 = 16 << 20;

/// `v` as JSON text (strings escaped as JSON requires; maps in key order).
fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| e.to_string())
}

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
    /// The file is larger than a weights file may be (see [`MAX_WEIGHTS_BYTES`] and
    /// [`Weights::load_for`]); nothing past the limit was read.
    #[error("{path}: the file is larger than {limit} bytes, the most {what}")]
    TooLarge {
        /// File involved.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
        /// What the limit is, e.g. "a weights file may be".
        what: String,
    },
    /// Names or shapes do not match the model.
    #[error("{source_name} does not match the model `{model}`:\n{}", problem_lines(.problems))]
    Mismatch {
        /// Where the weights came from.
        source_name: String,
        /// Model name.
        model: String,
        /// One line per problem, the first mismatching tensor first.
        problems: Vec<String>,
    },
}

/// Problem lines shown in a mismatch message before the rest is counted: a network of another
/// width or depth mismatches nearly every tensor, and hundreds of lines would hide the point.
pub const SHOWN_PROBLEMS: usize = 12;

/// `problems` one per line, the first [`SHOWN_PROBLEMS`] of them, then how many more there
/// are (for the mismatch messages of weights against a model).
pub fn problem_lines(problems: &[String]) -> String {
    let mut text = problems
        .iter()
        .take(SHOWN_PROBLEMS)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    if problems.len() > SHOWN_PROBLEMS {
        text += &format!(
            "\n  ... and {} more ({} tensors do not fit)",
            problems.len() - SHOWN_PROBLEMS,
            problems.len()
        );
    }
    text
}

/// Whether `bytes` start like an ONNX model: protobuf field 1 (`ir_version`, a one-byte varint)
/// then field 2 (`producer_name`) or 8 (`opset_import`), as ONNX writers emit them. A
/// safetensors file never matches: its JSON header starts at byte 8 with `{`.
fn looks_like_onnx(bytes: &[u8]) -> bool {
    matches!(bytes, [0x08, v, 0x12 | 0x42, ..] if *v < 0x80) && bytes.get(8) != Some(&b'{')
}

impl Weights {
    /// Reads a safetensors file of at most [`MAX_WEIGHTS_BYTES`]. Every tensor must be F32.
    pub fn load(path: &Path) -> Result<Weights, WeightsError> {
        Self::load_capped(path, MAX_WEIGHTS_BYTES, "a weights file may be")
    }

    /// Reads the weights of `graph`: a file larger than the graph's tensors plus
    /// [`MAX_HEADER_BYTES`] of header is refused before it is read.
    pub fn load_for(path: &Path, graph: &Graph) -> Result<Weights, WeightsError> {
        let data: u64 = graph.params.iter().map(|p| p.numel() as u64 * 4).sum();
        let limit = (8 + MAX_HEADER_BYTES + data).min(MAX_WEIGHTS_BYTES);
        let what = format!("the weights of `{}` can be", graph.name);
        Self::load_capped(path, limit, &what)
    }

    /// Reads a safetensors file, refusing one larger than `limit` bytes; pipes and devices
    /// are read only up to one byte past the limit.
    fn load_capped(path: &Path, limit: u64, what: &str) -> Result<Weights, WeightsError> {
        use std::io::Read;
        let io = |source| WeightsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let too_large = || WeightsError::TooLarge {
            path: path.to_path_buf(),
            limit,
            what: what.to_string(),
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size > limit {
            return Err(too_large());
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 > limit {
            return Err(too_large());
        }
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
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| {
            format!(
                "{e}: the file does not start as safetensors weights do (an 8-byte header \
                 length, then a JSON header)"
            )
        })?;
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

    /// Serialises to safetensors bytes: an 8-byte little-endian header length, the JSON
    /// header, then the tensor data. The header is written here rather than by the
    /// safetensors crate (which takes the metadata as a `HashMap` and so writes its keys in a
    /// different order on every run): metadata keys and tensors are in name order, so the
    /// same weights always give the same bytes. The layout is the crate's own (tensors in name
    /// order, all F32, the header padded with spaces to a multiple of 8 bytes), so any
    /// safetensors reader reads the file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let mut header = String::from("{");
        let mut first = true;
        let mut sep = |h: &mut String| {
            if !first {
                h.push(',');
            }
            first = false;
        };
        if !self.metadata.is_empty() {
            sep(&mut header);
            header.push_str("\"__metadata__\":");
            header.push_str(&json(&self.metadata)?);
        }
        let mut offset = 0usize;
        for (name, t) in &self.tensors {
            let numel: usize = t.shape.iter().product();
            if numel != t.data.len() {
                return Err(format!(
                    "tensor `{name}` has shape {:?} ({numel} values) but {} values",
                    t.shape,
                    t.data.len()
                ));
            }
            let end = offset + 4 * numel;
            sep(&mut header);
            header.push_str(&json(name)?);
            header.push_str(":{\"dtype\":\"F32\",\"shape\":");
            header.push_str(&json(&t.shape)?);
            header.push_str(&format!(",\"data_offsets\":[{offset},{end}]}}"));
            offset = end;
        }
        header.push('}');
        let padded = header.len().next_multiple_of(8);
        let mut out = Vec::with_capacity(8 + padded + offset);
        out.extend_from_slice(&(padded as u64).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.resize(8 + padded, b' ');
        for t in self.tensors.values() {
            for v in &t.data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Ok(out)
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
    /// The error holds every problem, in the graph's parameter order (its message shows the
    /// first [`SHOWN_PROBLEMS`]).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Weights {
        let mut w = Weights::default();
        w.tensors.insert(
            "b.weight".into(),
            Tensor {
                shape: vec![2, 3],
                data: vec![1.0, -2.0, 3.5, 0.0, f32::MIN_POSITIVE, 7.25],
            },
        );
        w.tensors.insert(
            "a.bias".into(),
            Tensor {
                shape: vec![1],
                data: vec![0.5],
            },
        );
        for (k, v) in [
            ("zeta", "1"),
            ("alpha", "two"),
            ("epoch", "3"),
            ("model", "m"),
            ("quote\"d", "line\nbreak"),
            ("val_accuracy", "0.5"),
            ("init_seed", "42"),
            ("normalization", "{\"mode\":\"none\"}"),
        ] {
            w.metadata.insert(k.into(), v.into());
        }
        w
    }

    #[test]
    fn a_long_mismatch_shows_the_first_problems_and_counts_the_rest() {
        let lines: Vec<String> = (0..40)
            .map(|i| format!("  missing tensor `t{i}`"))
            .collect();
        let e = WeightsError::Mismatch {
            source_name: "w.safetensors".into(),
            model: "m".into(),
            problems: lines.clone(),
        }
        .to_string();
        let shown: Vec<&str> = e.lines().collect();
        assert_eq!(shown.len(), 1 + SHOWN_PROBLEMS + 1, "{e}");
        assert_eq!(shown[1], lines[0]);
        assert_eq!(shown[SHOWN_PROBLEMS], lines[SHOWN_PROBLEMS - 1]);
        assert!(!e.contains(&lines[SHOWN_PROBLEMS]), "{e}");
        assert!(
            e.ends_with("... and 28 more (40 tensors do not fit)"),
            "{e}"
        );
        // up to the limit, every line and no count
        let few = problem_lines(&lines[..SHOWN_PROBLEMS]);
        assert_eq!(few, lines[..SHOWN_PROBLEMS].join("\n"));
    }

    #[test]
    fn the_same_weights_give_the_same_bytes() {
        let w = sample();
        let first = w.to_bytes().unwrap();
        for _ in 0..20 {
            assert_eq!(w.clone().to_bytes().unwrap(), first);
        }
        let n = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let header = std::str::from_utf8(&first[8..8 + n]).unwrap();
        let keys: Vec<usize> = ["alpha", "epoch", "init_seed", "model", "normalization"]
            .iter()
            .map(|k| header.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(keys.windows(2).all(|p| p[0] < p[1]), "{header}");
    }

    #[test]
    fn files_round_trip_and_read_with_the_safetensors_crate() {
        let w = sample();
        let dir = tempfile_dir();
        let path = dir.join("w.safetensors");
        w.save(&path).unwrap();
        assert_eq!(Weights::load(&path).unwrap(), w);
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let view = st.tensor("b.weight").unwrap();
        assert_eq!(view.shape(), &[2, 3]);
        assert_eq!(&view.data()[8..12], &3.5f32.to_le_bytes());
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["quote\"d"], "line\nbreak");
        // No metadata and no tensors are valid files too.
        let empty = Weights::default();
        assert_eq!(
            Weights::from_bytes(&empty.to_bytes().unwrap()).unwrap(),
            empty
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_larger_than_the_cap_is_refused_before_reading() {
        let dir = tempfile_dir();
        let path = dir.join("big.safetensors");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(MAX_WEIGHTS_BYTES + 1).unwrap(); // sparse: nothing is written
        let e = Weights::load(&path).unwrap_err();
        assert!(matches!(e, WeightsError::TooLarge { .. }), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "wrnc-ir-weights-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
