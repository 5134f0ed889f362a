//! `wrnc check SPEC`: validate and print the resolved spec.

use super::common::write_output;
use anyhow::Result;
use std::process::ExitCode;

/// Arguments of `wrnc check`: the spec and its overrides.
pub use super::common::SpecArgs as Args;

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    let spec = a.load()?;
    write_output(None, &spec.resolved_yaml())?;
    Ok(ExitCode::SUCCESS)
}
