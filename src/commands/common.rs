//! Arguments and helpers shared by the commands that read a spec.

use crate::exit::UsageError;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The spec argument plus `--set` overrides.
#[derive(clap::Args, Debug, Clone)]
pub struct SpecArgs {
    /// The spec file (YAML), or a `wrnc train` run directory (its `spec.resolved.yaml`).
    pub spec: PathBuf,
    /// Override a spec value: `--set key.path=value` (value parsed as YAML; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl SpecArgs {
    /// Loads and validates the spec: the file named, or the `spec.resolved.yaml` of the
    /// `wrnc train` run directory named (a folder without one is a usage error).
    pub fn load(&self) -> Result<wrnc_spec::Spec> {
        let path = match self.run_dir() {
            Some(dir) => dir.join(wrnc_train::rundir::SPEC_FILE),
            None if self.spec.is_dir() => {
                return Err(UsageError(format!(
                    "{} is a folder without {}: pass a spec file (YAML) or a `wrnc train` run \
                     directory",
                    wrnc_verify::printable_path(&self.spec),
                    wrnc_train::rundir::SPEC_FILE
                ))
                .into())
            }
            None => self.spec.clone(),
        };
        Ok(wrnc_spec::load(&path, &self.set)?)
    }

    /// The `wrnc train` run directory SPEC names, when it names a folder holding a run's
    /// `spec.resolved.yaml`.
    pub fn run_dir(&self) -> Option<&Path> {
        let dir = self.spec.as_path();
        (dir.is_dir() && dir.join(wrnc_train::rundir::SPEC_FILE).is_file()).then_some(dir)
    }

    /// The weights to use: `given`, else, for a run directory, the weights file its training
    /// exported ([`exported_weights`]), said on standard error; else a usage error naming
    /// `--weights`.
    pub fn weights_or_run_default(&self, given: Option<&Path>) -> Result<PathBuf> {
        if let Some(w) = given {
            return Ok(w.to_path_buf());
        }
        let Some(dir) = self.run_dir() else {
            return Err(UsageError(format!(
                "--weights is needed: {} is a spec file; pass the trained weights (a `wrnc \
                 train` run directory given instead of the spec supplies its exported weights)",
                wrnc_verify::printable_path(&self.spec)
            ))
            .into());
        };
        let spec = wrnc_spec::load(&dir.join(wrnc_train::rundir::SPEC_FILE), &[])?;
        let file = dir.join(exported_weights(dir, &spec.recipe()));
        if !file.is_file() {
            return Err(UsageError(format!(
                "--weights is needed: the run directory {} has no {} (the weights its training \
                 exports) yet; pass the weights to use",
                wrnc_verify::printable_path(dir),
                file.file_name().unwrap_or_default().to_string_lossy()
            ))
            .into());
        }
        eprintln!(
            "weights: {} (the run's exported weights)",
            wrnc_verify::printable_path(&file)
        );
        Ok(file)
    }
}

/// The ONNX file a folder given as a model stands for: the file a `wrnc train` run
/// directory's spec exports (`export.file`), else `model.onnx`; a folder without it is a
/// usage error saying to pass the ONNX file to `action` (e.g. "verify").
pub fn exported_model(dir: &Path, action: &str) -> Result<PathBuf> {
    let spec = dir.join(wrnc_train::rundir::SPEC_FILE);
    let name = if spec.is_file() {
        wrnc_spec::load(&spec, &[])?.recipe().export.file
    } else {
        "model.onnx".to_string()
    };
    let file = dir.join(&name);
    if !file.is_file() {
        return Err(UsageError(format!(
            "{} is a folder without a {name}; pass the ONNX file to {action}",
            wrnc_verify::printable_path(dir)
        ))
        .into());
    }
    Ok(file)
}

/// A run directory's `run.json` (null when it is missing or unreadable).
pub fn read_run_json(dir: &Path) -> serde_json::Value {
    std::fs::read(dir.join(wrnc_train::rundir::RUN_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The split a `wrnc train` run evaluated after each epoch: the one its `run.json` records,
/// else the spec's (the validation split when `data.val_size` > 0).
pub fn epoch_eval_split(
    run_json: &serde_json::Value,
    recipe: &wrnc_recipe::Recipe,
) -> wrnc_train::Split {
    use wrnc_train::Split;
    match run_json["epoch_eval_split"].as_str() {
        Some("test") => Split::Test,
        Some("val") => Split::Val,
        _ if recipe.data.val_size > 0 => Split::Val,
        _ => Split::Test,
    }
}

/// The weights file `wrnc train` exports from a run directory: `best.safetensors` when the
/// run evaluated a validation split each epoch, else the last weights (the EMA's with
/// `train.ema`).
pub fn exported_weights(dir: &Path, recipe: &wrnc_recipe::Recipe) -> &'static str {
    wrnc_train::export_weights_file(recipe, epoch_eval_split(&read_run_json(dir), recipe))
}

/// Writes text to a file atomically (creating its folder, see [`output_folder`]), or to
/// stdout (through [`print_out`]) when `path` is None.
pub fn write_output(path: Option<&Path>, text: &str) -> Result<()> {
    match path {
        Some(p) => {
            output_folder(p)?;
            wrnc_ir::atomic::write_atomic(p, text.as_bytes()).map_err(|e| cannot_write(p, &e))
        }
        None => print_out(text),
    }
}

/// Creates the missing folders above an output file (`-o runs/new/model.onnx`); a failure is
/// [`cannot_write`] naming the folder.
pub fn output_folder(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if dir.exists() && !dir.is_dir() => Err(cannot_write(
            path,
            &format!("{} is a file, not a folder", dir.display()),
        )),
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => std::fs::create_dir_all(dir)
            .map_err(|e| {
                cannot_write(
                    path,
                    &format!("cannot create the folder {}: {e}", dir.display()),
                )
            }),
        _ => Ok(()),
    }
}

/// The error for an output file that cannot be written: `cannot write output FILE: cause`.
pub fn cannot_write(path: &Path, cause: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot write output {}: {cause}", path.display())
}

/// The one way commands print results on standard output. A closed pipe (`| head`, `| true`)
/// ends the process quietly with exit code 0, like other Unix tools (Rust ignores SIGPIPE, so
/// the write returns `EPIPE`); any other write error (a full disk: `ENOSPC`) is an error
/// (exit 1) naming standard output, so output is never silently truncated.
pub fn print_out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(anyhow::anyhow!("cannot write to standard output: {e}")),
    }
}

/// [`print_out`] of one line (a newline is added).
pub fn print_line(line: &str) -> Result<()> {
    print_out(&format!("{line}\n"))
}

/// Formats an integer with thousands separators.
pub fn thousands(n: u64) -> String {
    wrnc_ir::builder::fmt_count(n as u128)
}
