//! The prober thread: while some host is unreachable it tries a TCP connect (socket2,
//! explicit timeout) with backoff, and tells the scheduler when the host answers. While
//! everything is reachable it sleeps on its channel.
//!
//! "Offline" here means: a TCP connection to the upload's host and port could not be
//! made (refused, unreachable, timed out, or the name did not resolve). A host that
//! accepts the connection is online, even if it then answers 503.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// The wait between the two probes of a host after the network lost something.
const RECHECK: Duration = Duration::from_millis(300);

/// What the prober reports (it owns this type; the scheduler receives it).
#[derive(Debug)]
pub(crate) enum ProbeEvent {
    /// This `host:port` answered: uploads waiting for it can go.
    Online(String),
    /// This `host:port`, asked about with [`ProbeMsg::Check`], takes no connection.
    Unreachable(String),
}

/// What the prober is told.
#[derive(Debug)]
pub(crate) enum ProbeMsg {
    /// This `host:port` failed to connect: watch it.
    Offline(String),
    /// Probe every watched host now (the program saw the network change).
    Now,
    /// Probe these hosts (of running transfers) once, now: the network lost a link, an
    /// address or a route. Each that takes no connection is reported `Unreachable`.
    Check(Vec<String>),
    /// End the thread.
    Shutdown,
}

/// Probe settings.
pub(crate) struct Prober {
    pub rx: Receiver<ProbeMsg>,
    pub tx: Sender<ProbeEvent>,
    pub timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Probe these instead of the watched hosts: any answer means all are online.
    pub targets: Option<Vec<String>>,
    /// Set when the uploader stops: a probe in progress (a lookup, a connect) ends.
    pub stop: Arc<AtomicBool>,
}

struct Watch {
    next: Instant,
    backoff: Duration,
}

/// Whether `target` (`host:port`) resolves and accepts a TCP connection, each within
/// `timeout`; `stop` ends either wait at once.
pub(crate) fn reachable(target: &str, timeout: Duration, stop: &AtomicBool) -> bool {
    let Ok(addrs) = crate::http::lookup(target, timeout, Some(stop)) else {
        return false;
    };
    addrs.into_iter().any(|a| {
        !stop.load(Ordering::SeqCst)
            && crate::http::connect(a, timeout, timeout, Some(stop), None)
                .map(|s| drop(s.shutdown(std::net::Shutdown::Both)))
                .is_ok()
    })
}

impl Prober {
    /// The thread's body.
    pub fn run(self) {
        let mut watched: BTreeMap<String, Watch> = BTreeMap::new();
        loop {
            let now = Instant::now();
            let wait = watched
                .values()
                .map(|w| w.next.saturating_duration_since(now))
                .min();
            let msg = match wait {
                Some(w) => self.rx.recv_timeout(w),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(ProbeMsg::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(ProbeMsg::Offline(host)) => {
                    // Probe at once: the failure may have been a blip.
                    watched.entry(host).or_insert(Watch {
                        next: Instant::now(),
                        backoff: self.backoff_min,
                    });
                }
                Ok(ProbeMsg::Now) => {
                    for w in watched.values_mut() {
                        w.next = Instant::now();
                        w.backoff = self.backoff_min;
                    }
                }
                Ok(ProbeMsg::Check(hosts)) => {
                    if !self.check(hosts) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.probe_due(&mut watched);
        }
    }

    /// After the network lost a link, an address or a route: reports each of `hosts`
    /// (or, with probe targets, all of them) that takes no connection twice in a row,
    /// [`RECHECK`] apart, so that a lookup hiccup during a reconfiguration does not stop
    /// a transfer. `false` once the uploader stops or the scheduler is gone.
    fn check(&self, hosts: Vec<String>) -> bool {
        let down = |h: &String| match &self.targets {
            Some(t) => !t.iter().any(|t| reachable(t, self.timeout, &self.stop)),
            None => !reachable(h, self.timeout, &self.stop),
        };
        let first: Vec<String> = hosts.into_iter().filter(|h| down(h)).collect();
        if first.is_empty() {
            return true;
        }
        let until = Instant::now() + RECHECK;
        while Instant::now() < until {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for h in first.into_iter().filter(|h| down(h)) {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            log::info!("probe: {h} takes no connection after a network change");
            if self.tx.send(ProbeEvent::Unreachable(h)).is_err() {
                return false;
            }
        }
        true
    }

    fn probe_due(&self, watched: &mut BTreeMap<String, Watch>) {
        let now = Instant::now();
        let due: Vec<String> = watched
            .iter()
            .filter(|(_, w)| w.next <= now)
            .map(|(h, _)| h.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let up: Vec<String> = match &self.targets {
            Some(targets) => {
                if targets
                    .iter()
                    .any(|t| reachable(t, self.timeout, &self.stop))
                {
                    watched.keys().cloned().collect()
                } else {
                    Vec::new()
                }
            }
            None => due
                .iter()
                .filter(|_| !self.stop.load(Ordering::SeqCst))
                .filter(|h| reachable(h, self.timeout, &self.stop))
                .cloned()
                .collect(),
        };
        for h in &up {
            watched.remove(h);
            log::debug!("probe: {h} answers");
            if self.tx.send(ProbeEvent::Online(h.clone())).is_err() {
                return;
            }
        }
        for h in due {
            if let Some(w) = watched.get_mut(&h) {
                log::debug!(
                    "probe: {h} still unreachable; next probe in {:?}",
                    w.backoff
                );
                w.next = Instant::now() + w.backoff;
                w.backoff = (w.backoff * 2).min(self.backoff_max);
            }
        }
    }
}
