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

/// Writes text to a file atomically, or to stdout (through [`print_out`]) when `path` is None.
pub fn write_output(path: Option<&Path>, text: &str) -> Result<()> {
    match path {
        Some(p) => wrnc_ir::atomic::write_atomic(p, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display())),
        None => print_out(text),
    }
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
