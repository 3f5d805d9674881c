//! Ctrl-C / SIGTERM: set a flag that every wait loop checks, so that the test
//! stops at the next poll and the Drop guards shut VMs down and delete namespaces.
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Install the handlers once per process. Failing to install them is not fatal:
/// the test still runs, it just cannot clean up after a signal.
pub fn install() {
    let flag = FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(flag)) {
            eprintln!("warning: cannot watch signal {sig}: {e}");
        }
    }
}

pub fn requested() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// An error to return from a wait loop when a signal arrived.
pub fn check() -> Result<(), String> {
    if requested() {
        Err("interrupted (SIGINT/SIGTERM); cleaning up".into())
    } else {
        Ok(())
    }
}
