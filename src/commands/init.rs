//! `wrnc init SPEC -o WEIGHTS [--seed N]`: write freshly initialised weights.

use super::common::{cannot_write, output_folder, print_line, SpecArgs};
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;
use wrnc_train::CheckpointMeta;

/// Arguments of `wrnc init`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    spec: SpecArgs,
    /// Output weights file (safetensors).
    #[arg(short, long)]
    output: PathBuf,
    /// Seed (default: the spec's train.seed).
    #[arg(long)]
    seed: Option<u64>,
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    let spec = a.spec.load()?;
    let seed = a.seed.unwrap_or(spec.resolved.train.seed);
    let mut w = wrnc_train::init_weights(&spec.graph, seed);
    CheckpointMeta {
        model: Some(spec.graph.name.clone()),
        init_seed: Some(seed),
        ..CheckpointMeta::default()
    }
    .write_to(&mut w.metadata);
    output_folder(&a.output)?;
    w.save(&a.output).map_err(|e| match e {
        wrnc_ir::WeightsError::Io { source, .. } => cannot_write(&a.output, &source),
        other => other.into(),
    })?;
    print_line(&format!(
        "wrote {} ({} tensors, seed {seed})",
        a.output.display(),
        w.tensors.len()
    ))?;
    Ok(ExitCode::SUCCESS)
}
