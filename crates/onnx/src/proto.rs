//! The subset of the ONNX protobuf schema wrnc writes and reads, as hand-written `prost`
//! messages (no `protoc` needed at build time).
//!
//! Field numbers follow the ONNX IR specification (`onnx.proto`, proto2 syntax). Scalar and
//! string fields are `optional`, so an explicit zero (e.g. a pad of 0) is written on the wire
//! and can be told apart from an absent field. Repeated integer fields that the schema does
//! not declare packed are written unpacked; `float_data` is packed as in the schema. Fields
//! wrnc never uses (sparse tensors, functions, training info, ...) are left out; prost skips
//! them when decoding.

/// A whole model file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// IR version of the file format.
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    /// Operator sets the graph uses.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Tool that wrote the model.
    #[prost(string, optional, tag = "2")]
    pub producer_name: Option<String>,
    /// Version of that tool.
    #[prost(string, optional, tag = "3")]
    pub producer_version: Option<String>,
    /// Reverse-DNS namespace of the model.
    #[prost(string, optional, tag = "4")]
    pub domain: Option<String>,
    /// Version of the model itself.
    #[prost(int64, optional, tag = "5")]
    pub model_version: Option<i64>,
    /// Human-readable description.
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// The computation.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Free-form key/value metadata.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// An operator set a model imports: a domain (empty for the default `ai.onnx`) and version.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// Domain; empty or absent means the default ONNX domain.
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    /// Operator set version.
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// One metadata entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// Key.
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// Value.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// A graph: nodes in topological order, initializers, inputs and outputs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// Nodes, topologically sorted.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Graph name.
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    /// Constant tensors (weights).
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Description.
    #[prost(string, optional, tag = "10")]
    pub doc_string: Option<String>,
    /// Graph inputs.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Types and shapes of intermediate values.
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

/// One operator application.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// Input value names; an empty name is an omitted optional input.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output value names; an empty name is an omitted optional output.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name.
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    /// Operator, e.g. `Conv`.
    #[prost(string, optional, tag = "4")]
    pub op_type: Option<String>,
    /// Operator domain; empty or absent for the default ONNX domain.
    #[prost(string, optional, tag = "7")]
    pub domain: Option<String>,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Description.
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
}

/// The type tag of an [`AttributeProto`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AttributeType {
    /// Not set.
    Undefined = 0,
    /// `f`.
    Float = 1,
    /// `i`.
    Int = 2,
    /// `s`.
    String = 3,
    /// `t`.
    Tensor = 4,
    /// `g`.
    Graph = 5,
    /// `floats`.
    Floats = 6,
    /// `ints`.
    Ints = 7,
    /// `strings`.
    Strings = 8,
    /// `tensors`.
    Tensors = 9,
    /// `graphs`.
    Graphs = 10,
    /// A sparse tensor.
    SparseTensor = 11,
    /// Sparse tensors.
    SparseTensors = 12,
    /// A type.
    TypeProto = 13,
    /// Types.
    TypeProtos = 14,
}

/// A named attribute of a node. Exactly the field matching `r#type` is meaningful.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// Attribute name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Description.
    #[prost(string, optional, tag = "13")]
    pub doc_string: Option<String>,
    /// Which value field is set, an [`AttributeType`].
    #[prost(enumeration = "AttributeType", optional, tag = "20")]
    pub r#type: Option<i32>,
    /// Float value.
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    /// Integer value.
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// Bytes value.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    /// Tensor value.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// Float list.
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    /// Integer list.
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    /// Bytes list.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
}

/// `TensorProto.DataType` values wrnc knows.
pub mod data_type {
    /// 32-bit IEEE float.
    pub const FLOAT: i32 = 1;
    /// Signed 32-bit integer.
    pub const INT32: i32 = 6;
    /// Signed 64-bit integer.
    pub const INT64: i32 = 7;
    /// 64-bit IEEE float.
    pub const DOUBLE: i32 = 11;

    /// Bytes per element of a fixed-size type, when known.
    pub fn element_size(dt: i32) -> Option<usize> {
        match dt {
            FLOAT | INT32 => Some(4),
            INT64 | DOUBLE => Some(8),
            // uint8, int8, bool: 1 byte; uint16, int16, float16, bfloat16: 2; uint32: 4;
            // uint64: 8.
            2 | 3 | 9 => Some(1),
            4 | 5 | 10 | 16 => Some(2),
            12 => Some(4),
            13 => Some(8),
            _ => None,
        }
    }
}

/// A constant tensor. wrnc writes float tensors as little-endian `raw_data`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// Shape.
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// Element type, see [`data_type`].
    #[prost(int32, optional, tag = "2")]
    pub data_type: Option<i32>,
    /// Float elements (when not in `raw_data`).
    #[prost(float, repeated, packed = "true", tag = "4")]
    pub float_data: Vec<f32>,
    /// int32 (and smaller integer) elements.
    #[prost(int32, repeated, packed = "true", tag = "5")]
    pub int32_data: Vec<i32>,
    /// int64 elements.
    #[prost(int64, repeated, packed = "true", tag = "7")]
    pub int64_data: Vec<i64>,
    /// Tensor name (the initializer's value name).
    #[prost(string, optional, tag = "8")]
    pub name: Option<String>,
    /// Description.
    #[prost(string, optional, tag = "12")]
    pub doc_string: Option<String>,
    /// Elements as little-endian bytes.
    #[prost(bytes = "vec", optional, tag = "9")]
    pub raw_data: Option<Vec<u8>>,
    /// double elements.
    #[prost(double, repeated, packed = "true", tag = "10")]
    pub double_data: Vec<f64>,
    /// Where external data lives (when `data_location` is external).
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// 0: data in this message; 1: external file.
    #[prost(int32, optional, tag = "14")]
    pub data_location: Option<i32>,
}

/// A named, typed value (graph input, output or intermediate).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// Value name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Type and shape.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    /// Description.
    #[prost(string, optional, tag = "3")]
    pub doc_string: Option<String>,
}

/// A type; wrnc only uses dense tensor types.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// The type.
    #[prost(oneof = "type_proto::Value", tags = "1")]
    pub value: Option<type_proto::Value>,
    /// Optional denotation.
    #[prost(string, optional, tag = "6")]
    pub denotation: Option<String>,
}

/// Nested types of [`TypeProto`].
pub mod type_proto {
    /// A dense tensor type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        /// Element type, see [`super::data_type`].
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        /// Shape, when known.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<super::TensorShapeProto>,
    }

    /// The kinds of type (only tensors here).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// A dense tensor.
        #[prost(message, tag = "1")]
        TensorType(Tensor),
    }
}

/// A tensor shape: one entry per axis.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// Axes.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

/// Nested types of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// One axis: a fixed size or a symbolic name.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        /// Size or symbol.
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
        /// Optional denotation, e.g. `DATA_BATCH`.
        #[prost(string, optional, tag = "3")]
        pub denotation: Option<String>,
    }

    /// Nested types of [`Dimension`].
    pub mod dimension {
        /// A fixed size or a symbolic name.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            /// Fixed size.
            #[prost(int64, tag = "1")]
            DimValue(i64),
            /// Symbolic name, e.g. `N`.
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

impl AttributeProto {
    /// An integer attribute.
    pub fn int(name: &str, v: i64) -> Self {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Int as i32),
            i: Some(v),
            ..Default::default()
        }
    }

    /// A float attribute.
    pub fn float(name: &str, v: f32) -> Self {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Float as i32),
            f: Some(v),
            ..Default::default()
        }
    }

    /// An integer-list attribute.
    pub fn ints(name: &str, v: &[i64]) -> Self {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Ints as i32),
            ints: v.to_vec(),
            ..Default::default()
        }
    }
}

impl TensorProto {
    /// A float tensor stored as little-endian `raw_data`.
    pub fn float_raw(name: &str, dims: &[usize], data: &[f32]) -> Self {
        let mut raw = Vec::with_capacity(data.len() * 4);
        for v in data {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(data_type::FLOAT),
            name: Some(name.into()),
            raw_data: Some(raw),
            ..Default::default()
        }
    }

    /// The float elements, from `raw_data` or `float_data`; None for other types or when
    /// the raw bytes are not a whole number of floats.
    pub fn floats(&self) -> Option<Vec<f32>> {
        if self.data_type != Some(data_type::FLOAT) {
            return None;
        }
        match &self.raw_data {
            Some(raw) if !raw.is_empty() || self.float_data.is_empty() => {
                if !raw.len().is_multiple_of(4) {
                    return None;
                }
                Some(
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                )
            }
            _ => Some(self.float_data.clone()),
        }
    }
}

impl ValueInfoProto {
    /// A float tensor value; `None` dims are symbolic, named by the paired string.
    pub fn float_tensor(name: &str, dims: &[Dim]) -> Self {
        use tensor_shape_proto::{dimension, Dimension};
        let dim = dims
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Dim::Fixed(v) => dimension::Value::DimValue(*v as i64),
                    Dim::Symbol(s) => dimension::Value::DimParam(s.clone()),
                }),
                denotation: None,
            })
            .collect();
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(data_type::FLOAT),
                    shape: Some(TensorShapeProto { dim }),
                })),
                denotation: None,
            }),
            doc_string: None,
        }
    }

    /// The declared dims of a tensor value (None when it has no tensor type or shape).
    pub fn dims(&self) -> Option<Vec<Dim>> {
        use tensor_shape_proto::dimension::Value as V;
        let Some(type_proto::Value::TensorType(t)) = self.r#type.as_ref()?.value.as_ref() else {
            return None;
        };
        Some(
            t.shape
                .as_ref()?
                .dim
                .iter()
                .map(|d| match &d.value {
                    Some(V::DimValue(v)) => Dim::Fixed((*v).max(0) as usize),
                    Some(V::DimParam(s)) => Dim::Symbol(s.clone()),
                    None => Dim::Symbol(String::new()),
                })
                .collect(),
        )
    }
}

/// One axis of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A symbolic size (`dim_param`); empty when the axis is unknown.
    Symbol(String),
}

impl std::fmt::Display for Dim {
    /// A fixed size as its number, a symbol as its name, an unknown axis as `?`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbol(s) if s.is_empty() => f.write_str("?"),
            Dim::Symbol(s) => f.write_str(s),
        }
    }
}

impl NodeProto {
    /// The attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    }

    /// The operator type, or `""`.
    pub fn op(&self) -> &str {
        self.op_type.as_deref().unwrap_or("")
    }
}

impl ModelProto {
    /// The version of the default (`ai.onnx`) operator set, if imported.
    pub fn default_opset(&self) -> Option<i64> {
        self.opset_import
            .iter()
            .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
            .and_then(|o| o.version)
    }

    /// A metadata value by key.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata_props
            .iter()
            .find(|e| e.key.as_deref() == Some(key))
            .and_then(|e| e.value.as_deref())
    }
}
