//! Worker threads kept for the next transfer. Starting a thread (its stack mapped, the
//! clone, its first scheduling) costs tens of µs, and it sat between a create and the
//! fsync that makes the create durable; a thread that has finished a transfer waits up
//! to [`KEEP_IDLE`] for the next one instead. Still one thread per running transfer:
//! an idle thread runs nothing, and it is named after the transfer it runs.
//!
//! Dropping the pool ends its idle threads and joins every thread whose transfer is
//! over; one still running a transfer (a shutdown that gave up waiting for it) is left
//! to end on its own, as a spawned thread was.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::shared::lock;

/// How long a thread that has finished a transfer waits for another before it ends.
pub(crate) const KEEP_IDLE: Duration = Duration::from_secs(10);

type Task = Box<dyn FnOnce() + Send>;

/// A transfer for a thread: its name, the work, and where to say the work is over.
type Assignment = (String, Task, Sender<()>);

/// A thread waiting for a transfer.
struct Idle {
    no: u64,
    tx: Sender<Assignment>,
}

#[derive(Default)]
struct Threads {
    /// Set when the pool is dropped: a thread that finishes then ends.
    closed: bool,
    idle: Vec<Idle>,
    handles: HashMap<u64, JoinHandle<()>>,
    /// Threads running a transfer.
    busy: HashSet<u64>,
    next_no: u64,
}

/// The scheduler's worker threads.
pub(crate) struct Pool {
    stack_size: usize,
    threads: Arc<Mutex<Threads>>,
}

/// Says when a transfer's work is over (its worker function returned).
pub(crate) struct Finished(Receiver<()>);

impl Finished {
    /// Waits until the work is over. `Err` if it panicked instead (the thread is gone).
    pub(crate) fn join(self) -> Result<(), ()> {
        self.0.recv().map_err(|_| ())
    }
}

impl Pool {
    /// A pool whose threads have `stack_size`-byte stacks.
    pub(crate) fn new(stack_size: usize) -> Pool {
        Pool {
            stack_size,
            threads: Arc::default(),
        }
    }

    /// Runs `work` on an idle thread, renamed `name`, or on a new thread of that name.
    ///
    /// # Errors
    /// The system refused a new thread.
    pub(crate) fn run(
        &self,
        name: String,
        work: impl FnOnce() + Send + 'static,
    ) -> io::Result<Finished> {
        let (done_tx, done_rx) = bounded(1);
        let mut assignment: Assignment = (name, Box::new(work), done_tx);
        loop {
            let idle = {
                let mut t = lock(&self.threads);
                let idle = t.idle.pop();
                if let Some(i) = &idle {
                    t.busy.insert(i.no);
                }
                idle
            };
            let Some(idle) = idle else { break };
            // Taken off the idle list under the lock, the thread waits for this send
            // (see `wait_for_work`); it cannot have ended.
            match idle.tx.send(assignment) {
                Ok(()) => return Ok(Finished(done_rx)),
                Err(e) => {
                    lock(&self.threads).busy.remove(&idle.no);
                    assignment = e.into_inner();
                }
            }
        }
        let no = {
            let mut t = lock(&self.threads);
            t.next_no += 1;
            let no = t.next_no;
            t.busy.insert(no);
            no
        };
        let threads = self.threads.clone();
        let spawned = std::thread::Builder::new()
            .name(assignment.0.clone())
            .stack_size(self.stack_size)
            .spawn(move || thread_main(no, assignment, &threads));
        let mut t = lock(&self.threads);
        match spawned {
            Ok(handle) => {
                t.handles.insert(no, handle);
                Ok(Finished(done_rx))
            }
            Err(e) => {
                t.busy.remove(&no);
                Err(e)
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let (idle, handles) = {
            let mut t = lock(&self.threads);
            t.closed = true;
            let idle = std::mem::take(&mut t.idle);
            let done: Vec<u64> = (t.handles.keys())
                .filter(|no| !t.busy.contains(no))
                .copied()
                .collect();
            let handles: Vec<_> = (done.iter())
                .filter_map(|no| t.handles.remove(no))
                .collect();
            (idle, handles)
        };
        // Their channels closed, idle threads end at once; the others see `closed`.
        drop(idle);
        for h in handles {
            let _ = h.join();
        }
    }
}

fn thread_main(no: u64, first: Assignment, threads: &Mutex<Threads>) {
    let mut next = Some(first);
    let mut first_name = true;
    while let Some((name, work, done)) = next.take() {
        if !std::mem::take(&mut first_name) {
            rename(&name);
        }
        work();
        // Not busy before it says so: a pool dropped after the wait for this transfer
        // joins this thread.
        lock(threads).busy.remove(&no);
        let _ = done.send(());
        next = wait_for_work(no, threads);
    }
}

/// Waits up to [`KEEP_IDLE`] on the idle list; `None`: end the thread.
fn wait_for_work(no: u64, threads: &Mutex<Threads>) -> Option<Assignment> {
    let rx = {
        let mut t = lock(threads);
        if t.closed {
            return None;
        }
        let (tx, rx) = bounded(1);
        t.idle.push(Idle { no, tx });
        rx
    };
    loop {
        match rx.recv_timeout(KEEP_IDLE) {
            Ok(a) => return Some(a),
            Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => {
                let mut t = lock(threads);
                if let Some(i) = t.idle.iter().position(|i| i.no == no) {
                    t.idle.swap_remove(i);
                    // Ending on its own: nobody joins it.
                    t.handles.remove(&no);
                    return None;
                }
                // `run` took it off the list: its transfer is on the way.
            }
        }
    }
}

/// Names the calling thread after the transfer it now runs (the kernel keeps 15 bytes).
fn rename(name: &str) {
    #[cfg(target_os = "linux")]
    if let Ok(c) = std::ffi::CString::new(name) {
        let _ = nix::sys::prctl::set_name(&c);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = name;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn thread_name() -> String {
        std::fs::read_to_string("/proc/thread-self/comm")
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    #[test]
    fn a_finished_thread_runs_the_next_transfer_under_its_name() {
        let pool = Pool::new(256 * 1024);
        let (tx, rx) = crossbeam_channel::unbounded();
        for id in 0..3 {
            let tx = tx.clone();
            let f = pool
                .run(format!("bgxfer-upload-{id}"), move || {
                    tx.send((std::thread::current().id(), thread_name()))
                        .unwrap();
                })
                .unwrap();
            f.join().unwrap();
        }
        let seen: Vec<_> = rx.try_iter().collect();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|(t, _)| *t == seen[0].0), "one thread");
        let names: Vec<_> = seen.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(
            names,
            ["bgxfer-upload-0", "bgxfer-upload-1", "bgxfer-upload-2"]
        );
    }

    #[test]
    fn busy_threads_are_not_reused_and_drop_joins_the_finished_ones() {
        let pool = Pool::new(256 * 1024);
        let ran = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = bounded::<()>(0);
        let held = {
            let release_rx = release_rx.clone();
            let ran = ran.clone();
            pool.run("held".into(), move || {
                let _ = release_rx.recv();
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
        };
        // The first thread is busy: this one needs its own.
        let quick = {
            let ran = ran.clone();
            pool.run("quick".into(), move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
        };
        quick.join().unwrap();
        assert_eq!(lock(&pool.threads).handles.len(), 2);
        release_tx.send(()).unwrap();
        held.join().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        let threads = pool.threads.clone();
        drop(pool);
        assert!(lock(&threads).handles.is_empty(), "every thread joined");
    }

    #[test]
    fn a_panic_reads_as_a_failed_join() {
        let pool = Pool::new(256 * 1024);
        let f = pool.run("boom".into(), || panic!("boom")).unwrap();
        assert!(f.join().is_err());
        // The pool still runs work (on a new thread).
        assert!(pool.run("after".into(), || {}).unwrap().join().is_ok());
    }
}
