//! Holds a transfer's first connection between its TCP connect and its first byte until
//! the scheduler has made the transfer's start (its `Running` record) durable. The
//! thread, the source checks and the connect then overlap the journal's fsync instead of
//! waiting for it, and still no byte goes on the wire before the journal says it may
//! have.

use std::io;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The longest a connection waits: far beyond one fsync. A scheduler that has not
/// answered by then is treated as one whose journal failed.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Closed until [`StartGate::open`]; then open for good, or refused for good.
#[derive(Debug, Default)]
pub(crate) struct StartGate {
    state: Mutex<Option<bool>>,
    opened: Condvar,
}

impl StartGate {
    /// Lets connections through (`go`) or refuses them: the start could not be recorded.
    pub fn open(&self, go: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.get_or_insert(go);
        self.opened.notify_all();
    }

    /// Returns once the gate is open.
    ///
    /// # Errors
    /// The gate was refused, or stayed closed for [`MAX_WAIT`].
    pub fn wait(&self) -> io::Result<()> {
        let deadline = Instant::now() + MAX_WAIT;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match *state {
                Some(true) => return Ok(()),
                Some(false) => break,
                None => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = match self.opened.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
        Err(io::Error::other(
            "the upload's start could not be recorded in the journal; nothing was sent",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_connection_waits_for_the_gate_and_a_refusal_is_for_good() {
        let gate = Arc::new(StartGate::default());
        let g = gate.clone();
        let waiter = std::thread::spawn(move || g.wait());
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "it went through a closed gate");
        gate.open(true);
        assert!(waiter.join().unwrap().is_ok());
        assert!(gate.wait().is_ok(), "an open gate stays open");

        let refused = StartGate::default();
        refused.open(false);
        refused.open(true);
        assert!(refused.wait().is_err(), "a refusal is for good");
    }
}
