//! `wrnc expand SPEC`: the spec with the model as a generic `layers:` list.

use super::common::write_output;
use anyhow::Result;
use std::process::ExitCode;

/// Arguments of `wrnc expand`: the spec and its overrides.
pub use super::common::SpecArgs as Args;

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    let spec = a.load()?;
    write_output(None, &spec.expanded_yaml())?;
    Ok(ExitCode::SUCCESS)
}
