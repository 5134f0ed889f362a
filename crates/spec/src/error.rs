//! Spec errors: every one names the file, the field and (where known) the YAML line.

use std::fmt;
use thiserror::Error;

/// Where in the spec a problem is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The spec file (or `--set` when an override is at fault).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        Ok(())
    }
}

/// What went wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("{file}: cannot read spec: {message}")]
    Read {
        /// File.
        file: String,
        /// Cause.
        message: String,
    },
    /// YAML syntax error.
    #[error("{at}: YAML syntax error: {message}")]
    Syntax {
        /// Where.
        at: Location,
        /// The parser's message.
        message: String,
    },
    /// A field is unknown, has the wrong type, or an invalid value.
    #[error("{at}: {field}: {message}")]
    Field {
        /// Where.
        at: Location,
        /// Dotted path of the field, e.g. `model.wrn.depth`.
        field: String,
        /// What is wrong and what would be valid.
        message: String,
    },
    /// A `--set` override is malformed.
    #[error("--set {arg}: {message}")]
    Override {
        /// The argument as given.
        arg: String,
        /// What is wrong.
        message: String,
    },
}

impl SpecError {
    /// The dotted field path, when the error is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            SpecError::Field { field, .. } => Some(field),
            _ => None,
        }
    }
}
