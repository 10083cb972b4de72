//! An upload's event stream ([`Events`]): bounded whatever the reader does. Progress is
//! coalesced into the latest (a reader that falls behind sees the newest figures, not
//! a backlog); status changes are never dropped. The crate's own type, so that no
//! channel crate is part of the public API.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::progress::Event;

/// A callback run after each event is queued and when the stream ends.
type Waker = Box<dyn Fn() + Send + Sync>;

struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    events: VecDeque<Event>,
    /// No event will follow (the upload ended or was removed, or the uploader stopped).
    closed: bool,
    /// The [`Events`] was dropped: the upload stops sending to it.
    gone: bool,
    waker: Option<Waker>,
}

fn lock(q: &Queue) -> MutexGuard<'_, QueueState> {
    q.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The stream of one upload's events, from [`crate::Upload::events`].
///
/// Iterate it (`for ev in upload.events()` ends after the final `StatusChanged`), or
/// use [`Events::recv`], [`Events::recv_timeout`] and [`Events::try_recv`]. It holds at
/// most one pending `Progress` (coalesced into the latest) between status changes, so a
/// receiver that is never read costs a bounded amount of memory.
///
/// # Waiting on several streams (a `select`)
/// [`Events::on_ready`] registers a callback that runs whenever an event arrives or the
/// stream ends. Send from it on a channel of your choice and `select` on that channel,
/// then drain the ready stream with [`Events::try_iter`]:
///
/// ```no_run
/// # use background_transfer::{Upload, Events};
/// # fn demo(a: &Upload, b: &Upload) {
/// let (tx, rx) = std::sync::mpsc::channel();
/// let streams: Vec<Events> = [a, b].iter().map(|u| u.events()).collect();
/// for (i, s) in streams.iter().enumerate() {
///     let tx = tx.clone();
///     s.on_ready(move || {
///         let _ = tx.send(i);
///     });
/// }
/// while let Ok(i) = rx.recv() {
///     for event in streams[i].try_iter() {
///         println!("upload {i}: {:?}", event.progress().status);
///     }
///     # break;
/// }
/// # }
/// ```
pub struct Events {
    queue: Arc<Queue>,
}

/// The upload's side of an [`Events`].
pub(crate) struct EventSender {
    queue: Arc<Queue>,
}

/// Makes a connected pair.
pub(crate) fn stream() -> (EventSender, Events) {
    let queue = Arc::new(Queue {
        state: Mutex::new(QueueState::default()),
        ready: Condvar::new(),
    });
    (
        EventSender {
            queue: queue.clone(),
        },
        Events { queue },
    )
}

impl EventSender {
    /// Queues `event`; `false` once the receiver is gone.
    pub(crate) fn send(&self, event: Event) -> bool {
        let mut s = lock(&self.queue);
        if s.gone {
            return false;
        }
        // Coalesce: a progress event replaces a progress event still waiting at the
        // tail. Status changes are always kept.
        if matches!(event, Event::Progress(_))
            && matches!(s.events.back(), Some(Event::Progress(_)))
        {
            s.events.pop_back();
        }
        s.events.push_back(event);
        if let Some(w) = &s.waker {
            w();
        }
        drop(s);
        self.queue.ready.notify_all();
        true
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        let mut s = lock(&self.queue);
        s.closed = true;
        if let Some(w) = &s.waker {
            w();
        }
        drop(s);
        self.queue.ready.notify_all();
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        lock(&self.queue).gone = true;
    }
}

/// The stream has ended: no event is left, and none will come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

/// Why [`Events::recv_timeout`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// Nothing arrived within the timeout; the stream goes on.
    Timeout,
    /// The stream has ended.
    Disconnected,
}

/// Why [`Events::try_recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// No event is waiting; the stream goes on.
    Empty,
    /// The stream has ended.
    Disconnected,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the event stream has ended")
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvTimeoutError::Timeout => "no event within the timeout",
            RecvTimeoutError::Disconnected => "the event stream has ended",
        })
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryRecvError::Empty => "no event is waiting",
            TryRecvError::Disconnected => "the event stream has ended",
        })
    }
}

impl std::error::Error for RecvError {}
impl std::error::Error for RecvTimeoutError {}
impl std::error::Error for TryRecvError {}

impl Events {
    /// An already ended stream that delivers `event` and nothing else.
    pub(crate) fn ended_with(event: Event) -> Events {
        let (tx, rx) = stream();
        tx.send(event);
        drop(tx);
        rx
    }

    /// Blocks until the next event.
    ///
    /// # Errors
    /// [`RecvError`] once the stream has ended and every event was received.
    pub fn recv(&self) -> Result<Event, RecvError> {
        let mut s = lock(&self.queue);
        loop {
            if let Some(e) = s.events.pop_front() {
                return Ok(e);
            }
            if s.closed {
                return Err(RecvError);
            }
            s = self.queue.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits at most `timeout` for the next event.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] if none came; [`RecvTimeoutError::Disconnected`]
    /// once the stream has ended and every event was received.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut s = lock(&self.queue);
        loop {
            if let Some(e) = s.events.pop_front() {
                return Ok(e);
            }
            if s.closed {
                return Err(RecvTimeoutError::Disconnected);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Err(RecvTimeoutError::Timeout);
            }
            s = self
                .queue
                .ready
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The next event if one is waiting.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] if none is waiting; [`TryRecvError::Disconnected`] once
    /// the stream has ended and every event was received.
    pub fn try_recv(&self) -> Result<Event, TryRecvError> {
        let mut s = lock(&self.queue);
        match s.events.pop_front() {
            Some(e) => Ok(e),
            None if s.closed => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// A blocking iterator: it ends with the stream.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        std::iter::from_fn(|| self.recv().ok())
    }

    /// The events waiting now, without blocking.
    pub fn try_iter(&self) -> impl Iterator<Item = Event> + '_ {
        std::iter::from_fn(|| self.try_recv().ok())
    }

    /// Runs `waker` whenever an event arrives and when the stream ends (see the type's
    /// docs for waiting on several streams). It runs on the uploader's thread with the
    /// stream's lock held: keep it short (a channel send), and never call this stream's
    /// methods from it. Replaces an earlier waker; if events are already waiting, it
    /// runs once at once.
    pub fn on_ready(&self, waker: impl Fn() + Send + Sync + 'static) {
        let mut s = lock(&self.queue);
        if !s.events.is_empty() || s.closed {
            waker();
        }
        s.waker = Some(Box::new(waker));
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.queue);
        f.debug_struct("Events")
            .field("waiting", &s.events.len())
            .field("ended", &s.closed)
            .finish()
    }
}

impl Iterator for Events {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.recv().ok()
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = Event;
    type IntoIter = Box<dyn Iterator<Item = Event> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::{Progress, Status};

    fn progress(bytes: u64, status: Status) -> Progress {
        Progress {
            status,
            bytes_sent: bytes,
            total_bytes_to_send: 100,
            bytes_acknowledged: 0,
            bytes_received: 0,
            total_bytes_to_receive: None,
            has_restarted: false,
            has_response_changed: false,
            attempts: 0,
        }
    }

    #[test]
    fn progress_coalesces_and_status_changes_stay() {
        let (tx, rx) = stream();
        for i in 0..10_000 {
            assert!(tx.send(Event::Progress(progress(i, Status::Running))));
        }
        tx.send(Event::StatusChanged(progress(
            10_000,
            Status::PausedByApplication,
        )));
        tx.send(Event::Progress(progress(1, Status::Queued)));
        tx.send(Event::StatusChanged(progress(2, Status::Running)));
        drop(tx);
        let got: Vec<Event> = rx.iter().collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0].progress().bytes_sent, 9_999, "the latest progress");
        assert!(matches!(got[1], Event::StatusChanged(_)));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(
            rx.recv_timeout(Duration::ZERO),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn a_dropped_receiver_stops_the_sender_and_the_waker_runs() {
        let (tx, rx) = stream();
        let (wtx, wrx) = std::sync::mpsc::channel();
        rx.on_ready(move || {
            let _ = wtx.send(());
        });
        tx.send(Event::Progress(progress(1, Status::Running)));
        assert!(wrx.try_recv().is_ok());
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)).map(|_| ()),
            Ok(())
        );
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(RecvTimeoutError::Timeout)
        );
        drop(rx);
        assert!(!tx.send(Event::Progress(progress(2, Status::Running))));
    }
}
