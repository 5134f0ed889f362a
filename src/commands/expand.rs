//! `wrnc expand SPEC`: the spec with the model as a generic `layers:` list.

use super::common::{write_output, SpecArgs};
use anyhow::Result;
use std::process::ExitCode;

/// Arguments of `wrnc expand`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    spec: SpecArgs,
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    let spec = a.spec.load()?;
    write_output(None, &spec.expanded_yaml())?;
    Ok(ExitCode::SUCCESS)
}
