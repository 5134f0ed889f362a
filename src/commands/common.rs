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

/// Writes text to a file atomically, or to stdout when `path` is None.
pub fn write_output(path: Option<&Path>, text: &str) -> Result<()> {
    match path {
        Some(p) => wrnc_ir::atomic::write_atomic(p, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display())),
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            // A closed pipe (e.g. `| head`) is not an error worth reporting.
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            Ok(())
        }
    }
}

/// Formats an integer with thousands separators.
pub fn thousands(n: u64) -> String {
    wrnc_ir::builder::fmt_count(n as u128)
}
