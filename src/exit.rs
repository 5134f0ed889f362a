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

/// Whether an error is the user's input (exit 2) rather than a runtime failure (exit 1): a
/// [`UsageError`], a spec error, or a training error that says it is the user's
/// ([`wrnc_train::TrainError::is_user_error`]).
fn is_usage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<UsageError>().is_some()
            || c.downcast_ref::<wrnc_spec::SpecError>().is_some()
            || c.downcast_ref::<wrnc_train::TrainError>()
                .is_some_and(wrnc_train::TrainError::is_user_error)
    })
}

/// The exit code of an error: 2 for the user's input, 1 for a runtime failure.
fn exit_code(e: &anyhow::Error) -> u8 {
    if is_usage(e) {
        2
    } else {
        1
    }
}

/// Prints `error: ...` with its causes and returns the exit code.
pub fn report(e: anyhow::Error) -> ExitCode {
    let code = exit_code(&e);
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
        if crate::alloc::is_thread_spawn_failure(&msg) {
            // Not a bug: no memory (address space) is left for a thread's stack.
            eprintln!(
                "error: out of memory: a worker thread could not be started ({msg}). Lower \
                 the memory the command needs (for training: a smaller `--set \
                 train.batch_size=N`, a smaller model) or raise the limit (ulimit -v, the \
                 container's memory limit)"
            );
            std::process::exit(1);
        }
        eprintln!("error: internal error in wrnc{at}: {msg} (this is a bug; please report it)");
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use wrnc_train::TrainError;

    #[test]
    fn training_errors_exit_by_whose_fault_they_are() {
        let layer = TrainError::Layer {
            layer: "conv1".into(),
            source: candle_core::Error::Msg("out of memory".into()),
        };
        assert_eq!(exit_code(&layer.into()), 1);
        let internal = TrainError::Internal("value #3 is not produced".into());
        assert_eq!(exit_code(&internal.into()), 1);
        let user = TrainError::Invalid("train.batch_size must be at least 1".into());
        assert_eq!(exit_code(&user.into()), 2);
        let device = TrainError::Device("CUDA was requested".into());
        let wrapped = Err::<(), _>(device).context("training").unwrap_err();
        assert_eq!(exit_code(&wrapped), 2);
        let io = TrainError::io("x", std::io::Error::other("disk full"));
        assert_eq!(exit_code(&io.into()), 1);
        assert_eq!(exit_code(&UsageError("bad flag".into()).into()), 2);
    }
}
