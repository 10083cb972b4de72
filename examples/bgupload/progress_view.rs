//! Showing progress: live bars redrawn in place on a terminal, plain lines otherwise
//! (one per status change, and at most one a second per upload while bytes move).

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use background_transfer::Status;

use crate::held::Shown;

/// Redraws of the bars at most this often.
const REDRAW: Duration = Duration::from_millis(100);
/// Plain progress lines for one upload at most this often.
const PLAIN_EVERY: Duration = Duration::from_secs(1);
/// Width of a bar, in characters.
const BAR: usize = 12;

/// One upload as the view shows it.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: u64,
    pub name: String,
    pub status: Status,
    pub sent: u64,
    pub total: u64,
    /// The error text for a failed upload (or the last attempt's, while it waits).
    pub error: Option<String>,
}

impl Row {
    pub fn of(up: &(impl Shown + ?Sized)) -> Row {
        let p = up.progress();
        let name = up
            .request()
            .files
            .first()
            .and_then(|f| f.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "(body)".into());
        let sent = if p.status == Status::Completed {
            p.total_bytes_to_send
        } else {
            p.bytes_sent
        };
        Row {
            id: up.id(),
            name,
            status: p.status,
            sent,
            total: p.total_bytes_to_send,
            error: up.error_message(),
        }
    }
}

/// Per-upload memory: what was shown last, and a smoothed rate for the bars.
struct Seen {
    status: Status,
    sent: u64,
    printed_at: Instant,
    sample: (Instant, u64),
    rate: f64,
}

pub struct ProgressView {
    tty: bool,
    /// Lines of bars currently on screen (tty only).
    drawn: usize,
    last_draw: Option<Instant>,
    seen: HashMap<u64, Seen>,
}

impl ProgressView {
    pub fn new(tty: bool) -> ProgressView {
        ProgressView {
            tty,
            drawn: 0,
            last_draw: None,
            seen: HashMap::new(),
        }
    }

    /// Shows the current rows: redraws the bars (at most every 100 ms) or prints the
    /// plain lines that are due.
    pub fn update(&mut self, rows: &[Row]) {
        self.update_inner(rows, false);
    }

    /// Like `update`, without the redraw rate limit (for the last picture).
    pub fn flush(&mut self, rows: &[Row]) {
        self.update_inner(rows, true);
    }

    fn update_inner(&mut self, rows: &[Row], force: bool) {
        let now = Instant::now();
        for r in rows {
            let s = self.seen.entry(r.id).or_insert(Seen {
                status: r.status,
                sent: u64::MAX,
                printed_at: now - PLAIN_EVERY,
                sample: (now, r.sent),
                rate: 0.0,
            });
            let dt = now.duration_since(s.sample.0).as_secs_f64();
            if dt >= 0.5 {
                let inst = r.sent.saturating_sub(s.sample.1) as f64 / dt;
                s.rate = if r.sent < s.sample.1 {
                    0.0
                } else {
                    0.5 * s.rate + 0.5 * inst
                };
                s.sample = (now, r.sent);
            }
        }
        if self.tty {
            if force
                || self
                    .last_draw
                    .is_none_or(|t| now.duration_since(t) >= REDRAW)
            {
                self.draw(rows);
                self.last_draw = Some(now);
            }
            return;
        }
        let mut out = io::stdout().lock();
        for r in rows {
            let Some(s) = self.seen.get_mut(&r.id) else {
                continue;
            };
            let changed = s.status != r.status || s.sent == u64::MAX;
            let moving = r.sent != s.sent && now.duration_since(s.printed_at) >= PLAIN_EVERY;
            if changed || moving {
                let _ = writeln!(out, "{}", plain_line(r));
                s.status = r.status;
                s.sent = r.sent;
                s.printed_at = now;
            }
        }
        let _ = out.flush();
    }

    /// Prints a line of text above the bars (or between the plain lines).
    pub fn note(&mut self, text: &str) {
        let mut out = io::stdout().lock();
        if self.tty {
            self.clear(&mut out);
        }
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
        self.last_draw = None;
    }

    /// Leaves the last picture on the screen and starts afresh below it.
    pub fn finish(&mut self) {
        self.drawn = 0;
        self.last_draw = None;
    }

    fn clear(&mut self, out: &mut impl Write) {
        if self.drawn > 0 {
            // Up to the first line of the bars, then clear to the end of the screen.
            let _ = write!(out, "\x1b[{}A\r\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }

    fn draw(&mut self, rows: &[Row]) {
        let mut out = io::stdout().lock();
        let mut text = String::new();
        for r in rows {
            let rate = self.seen.get(&r.id).map_or(0.0, |s| s.rate);
            text.push_str(&bar_line(r, rate));
            text.push('\n');
        }
        self.clear(&mut out);
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        self.drawn = rows.len();
    }
}

fn percent(sent: u64, total: u64) -> u64 {
    if total == 0 {
        100
    } else {
        (sent.min(total) as u128 * 100 / total as u128) as u64
    }
}

/// `upload 3 a.bin: running 1.5 MiB / 4.0 MiB (37%)`
pub fn plain_line(r: &Row) -> String {
    let mut line = format!(
        "upload {} {}: {} {} / {} ({}%)",
        r.id,
        r.name,
        r.status.as_str(),
        bytes(r.sent),
        bytes(r.total),
        percent(r.sent, r.total)
    );
    if let (
        Status::Error
        | Status::WaitingToRetry
        | Status::PausedNoNetwork
        | Status::PausedNoCredentials,
        Some(e),
    ) = (r.status, &r.error)
    {
        line.push_str(&format!(" ({e})"));
    }
    line
}

/// `  5 backup-48M.bin [####........]   8%   4.0 MiB/ 48.0 MiB  running 1.7 MiB/s`
///
/// At most 79 columns: a line that wraps would break the redraw, which moves the
/// cursor up by one line per upload.
fn bar_line(r: &Row, rate: f64) -> String {
    let pct = percent(r.sent, r.total);
    let filled = (pct as usize * BAR) / 100;
    let bar: String = "#".repeat(filled) + &".".repeat(BAR - filled);
    let name: String = if r.name.chars().count() > 13 {
        r.name.chars().take(12).chain(['~']).collect()
    } else {
        r.name.clone()
    };
    let mut state = r.status.as_str().to_string();
    if r.status == Status::Running && rate > 0.0 {
        state.push_str(&format!(" {}/s", bytes(rate as u64)));
    }
    let line = format!(
        "{:>3} {:<13} [{bar}] {:>3}% {:>9}/{:>9}  {state}",
        r.id,
        name,
        pct,
        bytes(r.sent),
        bytes(r.total),
    );
    let line: String = line.chars().take(79).collect();
    format!("\x1b[2K{line}")
}

/// Bytes in binary units with one decimal: `512 B`, `1.5 KiB`, `48.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}
