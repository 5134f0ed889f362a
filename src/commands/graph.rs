//! `wrnc graph SPEC [-o FILE]`: Graphviz DOT of the network.

use super::common::{write_output, SpecArgs};
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `wrnc graph`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    spec: SpecArgs,
    /// Write the DOT text here instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    let spec = a.spec.load()?;
    write_output(a.output.as_deref(), &spec.graph.to_dot())?;
    Ok(ExitCode::SUCCESS)
}
