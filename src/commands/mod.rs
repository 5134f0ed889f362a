//! One module per command.

pub mod bench;
pub mod check;
pub mod common;
pub mod data;
pub mod deploy;
pub mod eval;
pub mod expand;
pub mod export;
pub mod graph;
pub mod init;
pub mod predict;
pub mod quantize;
pub mod report;
pub mod summary;
pub mod tensorboard;
pub mod train;
pub mod verify;
