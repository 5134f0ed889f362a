//! # wrnc-ir: the graph IR, the one contract of wrnc
//!
//! The spec front end produces a [`Graph`]; the Candle trainer and the ONNX lowering consume
//! it. A graph is a list of [`Node`]s in topological order, each reading [`ValueId`]s and
//! writing one value whose shape (without the batch dimension) is inferred when the node is
//! added through a [`GraphBuilder`]. Learnable tensors and buffers are [`Param`]s with stable,
//! documented names (see `docs/weights.md`), an [`Init`] rule, a trainable flag and a
//! weight-decay flag.

pub mod atomic;
pub mod builder;
pub mod dot;
pub mod error;
pub mod graph;
pub mod knobs;
pub mod op;
pub mod param;
pub mod passes;
pub mod stats;
pub mod weights;

pub use builder::GraphBuilder;
pub use error::IrError;
pub use graph::{Graph, Node, NodeId, Value, ValueId};
pub use op::{Op, OpKind, ParamDecl};
pub use param::{Init, Param, ParamId, ParamRole};
pub use stats::{GraphStats, LayerStats};
pub use weights::{Weights, WeightsError};
