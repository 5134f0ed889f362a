//! One module per command.

pub mod check;
pub mod common;
pub mod data;
pub mod expand;
pub mod graph;
pub mod summary;
