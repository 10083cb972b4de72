//! One token bucket shared by every transfer: `Config::max_bandwidth`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest a caller sleeps in one [`Bandwidth::take`], so that it can check its control
/// channel (pause, cancel) often.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// A token bucket: `rate` bytes per second, bursts of at most a quarter second.
#[derive(Debug)]
pub(crate) struct Bandwidth {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bandwidth {
    pub fn new(bytes_per_sec: u64) -> Bandwidth {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = (rate / 4.0).clamp(1024.0, 1024.0 * 1024.0);
        Bandwidth {
            rate,
            burst,
            state: Mutex::new((0.0, Instant::now())),
        }
    }

    /// Takes up to `want` bytes of budget. Returns at once with what is there, or sleeps
    /// a little and returns 0 when the bucket is empty (call again).
    pub fn take(&self, want: usize) -> usize {
        let wait = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let (tokens, last) = *s;
            let tokens =
                (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
            let goal = (want as f64).min(self.burst).clamp(1.0, 16.0 * 1024.0);
            if tokens >= goal {
                let n = (want as f64).min(tokens).floor();
                *s = (tokens - n, now);
                return n as usize;
            }
            *s = (tokens, now);
            Duration::from_secs_f64((goal - tokens) / self.rate)
        };
        std::thread::sleep(wait.min(MAX_SLEEP));
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_at_most_the_rate() {
        let b = Bandwidth::new(200_000);
        let start = Instant::now();
        let mut got = 0usize;
        while got < 100_000 {
            got += b.take(65_536);
        }
        // 100 kB at 200 kB/s, starting empty: at least ~0.4 s (a count, not a race).
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "{:?}",
            start.elapsed()
        );
    }
}
