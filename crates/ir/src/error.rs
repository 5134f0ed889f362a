//! Errors raised while building or checking a graph.

use thiserror::Error;

/// An error found while building a graph: always names the layer (node) involved.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IrError {
    /// A node reads a value with a shape the op cannot take.
    #[error("layer `{layer}`: {message}")]
    Shape {
        /// Name of the offending layer.
        layer: String,
        /// What is wrong and what would be valid.
        message: String,
    },
    /// Two layers or parameters share one name.
    #[error("duplicate name `{0}`: layer and parameter names must be unique")]
    DuplicateName(String),
    /// The graph would be too large to allocate.
    #[error("{0}")]
    TooLarge(String),
    /// The graph has no nodes or no output.
    #[error("{0}")]
    Empty(String),
}
