//! A bound on a whole test: a hang is a failure, and must not block CI forever.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Ends the whole test process (abort) if the test that holds it runs past `limit`.
/// Dropping it, when the test ends (passed or failed), disarms it: the binary's other
/// tests may go on running longer.
#[must_use = "the watchdog is disarmed when dropped: keep it for the test's duration"]
pub struct Watchdog {
    done: Arc<(Mutex<bool>, Condvar)>,
}

/// Arms a [`Watchdog`] for `test`.
pub fn watchdog(test: &'static str, limit: Duration) -> Watchdog {
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let flag = done.clone();
    std::thread::spawn(move || {
        let (lock, cvar) = &*flag;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = cvar
            .wait_timeout_while(guard, limit, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        if !*guard {
            eprintln!("{test} did not finish within {limit:?}: aborting");
            std::process::abort();
        }
    });
    Watchdog { done }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.done;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
    }
}
