//! Turning errors into messages and exit codes.

use std::process::ExitCode;

/// A usage or input error: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Whether an error is the user's input (exit 2) rather than a runtime failure (exit 1).
fn is_usage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<UsageError>().is_some()
            || c.downcast_ref::<wrnc_spec::SpecError>().is_some()
    })
}

/// Prints `error: ...` with its causes and returns the exit code.
pub fn report(e: anyhow::Error) -> ExitCode {
    let code = if is_usage(&e) { 2 } else { 1 };
    let mut msg = format!("error: {e}");
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(&format!("\n  caused by: {c}"));
        }
    }
    eprintln!("{msg}");
    ExitCode::from(code)
}

/// A last line of defence: a bug that panics prints one clear line, not a backtrace.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error in wrnc{at}: {msg} (this is a bug; please report it)");
    }));
}
