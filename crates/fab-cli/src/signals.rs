//! SIGINT and SIGTERM during training: the first asks the loop to stop after the current iteration, the second exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

/// Exit status of a run stopped by a signal (128 + SIGINT, as shells report it).
pub const INTERRUPTED_EXIT: u8 = 130;

/// Installs the handler (once per process). The handler runs on its own thread, so it may print and exit.
pub fn install() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("second interrupt: exiting at once (the last checkpoint is kept)");
            std::process::exit(i32::from(INTERRUPTED_EXIT));
        }
        eprintln!(
            "interrupt: finishing the current iteration, then writing a checkpoint (interrupt again to exit at once)"
        );
    })
    .map_err(|e| anyhow::anyhow!("cannot install the SIGINT/SIGTERM handler: {e}"))
}

/// Whether a stop was requested.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The error `fab train` returns when a signal stopped it after writing a checkpoint; `main` exits with
/// [`INTERRUPTED_EXIT`].
#[derive(Debug, thiserror::Error)]
#[error("interrupted at iteration {iteration}: checkpoint written; resume with `fab train --resume {dir}`")]
pub struct Interrupted {
    /// Iterations completed.
    pub iteration: u64,
    /// The run directory.
    pub dir: String,
}
