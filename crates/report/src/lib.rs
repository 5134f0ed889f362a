//! # wrnc-report: what a run shows
//!
//! - [`render`]: a [`RunReport`] (the numbers of a run directory and an evaluation, gathered by
//!   the CLI) as one self-contained HTML file: charts drawn with plotters' SVG back end, inline
//!   PNG thumbnails, no script, no network.
//! - [`tensorboard`]: TensorBoard event files (TFRecord framing around `Event` messages
//!   written with prost), and a reader that checks the framing.
//!
//! No Candle here: the crate takes plain data.

pub mod charts;
mod data;
mod error;
mod html;
pub mod tensorboard;
mod thumbnail;

pub use data::{ClassResults, ClassRow, EpochRow, Mistake, RunReport, StepRow, Thumbnail};
pub use error::{ReportError, Result};
pub use html::{escape, render, DATA_ELEMENT_ID, MAX_STEP_POINTS, STEP_SMOOTHING};
pub use thumbnail::png_data_url;
