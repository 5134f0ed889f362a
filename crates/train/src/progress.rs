//! Terminal progress: an indicatif bar per epoch (stderr, only on a terminal and when not
//! quiet) and a one-line summary per epoch on stderr.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Progress display of one epoch.
#[derive(Debug)]
pub struct EpochProgress {
    bar: ProgressBar,
}

impl EpochProgress {
    /// A bar of `steps` steps for epoch `epoch` (from 1) of `epochs`, starting at `done`.
    pub fn new(epoch: usize, epochs: usize, steps: usize, done: usize, quiet: bool) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(steps as u64),
            if quiet || !std::io::stderr().is_terminal() {
                ProgressDrawTarget::hidden()
            } else {
                ProgressDrawTarget::stderr()
            },
        );
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{bar:25.cyan/blue}] {pos}/{len} {msg} ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(format!("epoch {epoch}/{epochs}"));
        bar.set_position(done as u64);
        EpochProgress { bar }
    }

    /// Updates the bar after a step.
    pub fn update(&self, pos: usize, loss: f64, acc: f64, lr: f64, images_per_sec: f64) {
        self.bar.set_position(pos as u64);
        self.bar.set_message(format!(
            "loss {loss:.4} acc {:.2}% lr {lr:.5} {images_per_sec:.0} img/s",
            acc * 100.0
        ));
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
