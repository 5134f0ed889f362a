//! # wrnc-testkit: the fixtures every crate's tests share (dev-only, never published)
//!
//! * [`graphs`]: layer shorthands, a panicking graph builder ([`graphs::Net`]), the
//!   pre-activation block and whole WRNs, laid out and named as the spec front end does.
//! * [`seeded`]: reproducible pseudo-random values and weights, without a dependency.
//! * [`reference`](mod@reference): a slow, independent f64 executor of IR graphs, the yardstick for tract and
//!   the trainer.
//! * [`tempdir`]: a fresh temporary directory.
//!
//! Crates use it through `[dev-dependencies]` only. Helpers that need Candle (random tensors,
//! closeness of tensors) live in the train crate's test support, not here: this crate depends
//! on the IR alone.

pub mod graphs;
pub mod reference;
pub mod seeded;

pub use graphs::{wrn, Net};
pub use seeded::{values, weights, Lcg};

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}
