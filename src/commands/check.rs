//! `wrnc check SPEC`: validate and print the resolved spec.

use super::common::{write_output, SpecArgs};
use anyhow::Result;
use std::process::ExitCode;

/// Arguments of `wrnc check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    spec: SpecArgs,
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    let spec = a.spec.load()?;
    write_output(None, &spec.resolved_yaml())?;
    Ok(ExitCode::SUCCESS)
}
