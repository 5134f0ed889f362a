//! Arguments and helpers shared by the commands that read a spec.

use anyhow::Result;
use std::path::{Path, PathBuf};

/// The spec argument plus `--set` overrides.
#[derive(clap::Args, Debug, Clone)]
pub struct SpecArgs {
    /// The spec file (YAML).
    pub spec: PathBuf,
    /// Override a spec value: `--set key.path=value` (value parsed as YAML; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl SpecArgs {
    /// Loads and validates the spec.
    pub fn load(&self) -> Result<wrnc_spec::Spec> {
        Ok(wrnc_spec::load(&self.spec, &self.set)?)
    }
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
