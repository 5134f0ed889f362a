//! `wrnc data fetch cifar10|cifar100 [--dir DIR] [--archive FILE]`: get a dataset.

use crate::exit::UsageError;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use wrnc_data::fetch;
use wrnc_recipe::DatasetKind;

/// Arguments of `wrnc data`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(clap::Subcommand, Debug)]
enum DataCommand {
    /// Download the official archive, check its MD5 and unpack it atomically.
    Fetch(FetchArgs),
}

#[derive(clap::Args, Debug)]
struct FetchArgs {
    /// `cifar10` or `cifar100`.
    dataset: String,
    /// Folder to unpack into (the dataset lands in DIR/cifar-10-batches-bin or
    /// DIR/cifar-100-binary, where the specs look by default).
    #[arg(long, default_value = wrnc_recipe::DATA_DIR)]
    dir: PathBuf,
    /// Install from an already downloaded archive instead of the network (MD5 still checked).
    #[arg(long, value_name = "FILE")]
    archive: Option<PathBuf>,
    /// Fetch again even when the dataset is already there.
    #[arg(long)]
    force: bool,
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    match a.command {
        DataCommand::Fetch(f) => fetch_cmd(f),
    }
}

fn fetch_cmd(a: FetchArgs) -> Result<ExitCode> {
    let kind: DatasetKind = a.dataset.parse().map_err(|_| {
        UsageError(format!(
            "unknown dataset `{}`: `wrnc data fetch` knows `cifar10` and `cifar100` \
             (`digits` is embedded and needs no download)",
            a.dataset
        ))
    })?;
    let spec = fetch::archive_spec(kind).ok_or_else(|| {
        UsageError(if kind.is_folder() {
            "`folder` is your own images: nothing to download (see docs/data.md)".to_string()
        } else {
            format!("`{kind}` is embedded in wrnc and needs no download")
        })
    })?;
    if !a.force && a.archive.is_none() && fetch::is_installed(kind, &a.dir) {
        eprintln!(
            "{kind} is already in {} (use --force to fetch it again)",
            a.dir.join(spec.dir_name).display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let dir = match &a.archive {
        Some(archive) => {
            if !archive.is_file() {
                return Err(
                    UsageError(format!("{}: no such archive file", archive.display())).into(),
                );
            }
            std::fs::create_dir_all(&a.dir)
                .with_context(|| format!("cannot create {}", a.dir.display()))?;
            fetch::install_archive(archive, spec.md5, &a.dir)?;
            a.dir.join(spec.dir_name)
        }
        None => {
            eprintln!("downloading {} ...", spec.url);
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let mut progress = |done: u64, total: Option<u64>| {
                if let Some(t) = total {
                    bar.set_length(t);
                }
                bar.set_position(done);
            };
            let r = fetch::fetch(kind, &a.dir, &mut progress);
            bar.finish_and_clear();
            r?
        }
    };
    super::common::print_line(&format!("{kind} is ready in {}", dir.display()))?;
    Ok(ExitCode::SUCCESS)
}
