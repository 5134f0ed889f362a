//! The one error of this crate: a name that is not a known word.

use thiserror::Error;

/// An unknown dataset, normalisation or pad-mode name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {what} '{name}' (expected one of: {expected})")]
pub struct UnknownName {
    /// What kind of name (`dataset`, `normalisation mode`, ...).
    pub what: &'static str,
    /// The name given.
    pub name: String,
    /// The accepted names, comma separated.
    pub expected: &'static str,
}
