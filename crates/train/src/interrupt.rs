//! Ctrl-C handling: the first Ctrl-C sets a flag that the training loop checks after every
//! step (it then saves a resumable checkpoint); a second one exits at once with status 130
//! (the last committed checkpoint stays valid).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The process-wide interrupt flag (without installing a handler).
pub fn interrupt_flag() -> Arc<AtomicBool> {
    Arc::clone(FLAG.get_or_init(|| Arc::new(AtomicBool::new(false))))
}

/// Installs the Ctrl-C handler once per process. Returns false when another handler is
/// already installed (then only [`interrupt_flag`] setters can stop training).
pub fn install_ctrl_c_handler() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let flag = interrupt_flag();
        ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond interrupt: exiting now; the last checkpoint is kept");
                std::process::exit(130);
            }
            eprintln!(
                "\ninterrupt: finishing the current step and saving a resumable checkpoint \
                 (press Ctrl-C again to exit at once)"
            );
        })
        .is_ok()
    })
}
