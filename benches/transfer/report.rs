//! The report: the table of figures with their targets and verdicts, and its header.

use std::collections::BTreeMap;
use std::fs;

use crate::contest::Samples;
use crate::measure::{load_average, median};
use crate::{GIB, MIB};

#[derive(Default)]
pub struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    pub fn row(&mut self, figure: &str, value: String, target: &str, verdict: &str) {
        self.rows.push([
            figure.to_string(),
            value,
            target.to_string(),
            verdict.to_string(),
        ]);
    }
    /// A figure with an upper bound.
    pub fn max(&mut self, figure: &str, value: f64, shown: String, bound: f64, target: &str) {
        let verdict = if value.is_nan() {
            "n/a"
        } else if value <= bound {
            "pass"
        } else {
            "MISS"
        };
        self.row(figure, shown, target, verdict);
    }
    pub fn info(&mut self, figure: &str, value: String) {
        self.row(figure, value, "", "info");
    }
    pub fn print(&self) {
        println!("| figure | value | target | result |");
        println!("|---|---|---|---|");
        for r in &self.rows {
            println!("| {} | {} | {} | {} |", r[0], r[1], r[2], r[3]);
        }
    }
}

pub fn fmt_mib(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

/// Rows for one protocol: each contender, then the ratios against the targets.
pub fn contest_rows(
    table: &mut Table,
    label: &str,
    size: u64,
    s: &BTreeMap<&'static str, Samples>,
    crate_vs_curl_wall: (f64, &str),
) {
    let optional = [
        "sendfile(2)",
        "this crate, sendfile on",
        "bare ureq on a thread",
    ];
    for who in [
        "curl",
        "bare ureq",
        "this crate",
        optional[0],
        optional[1],
        optional[2],
    ] {
        if optional.contains(&who) && !s.contains_key(who) {
            continue;
        }
        let Some(x) = s.get(who) else {
            table.row(
                &format!("{label}: {who}"),
                "curl not installed".into(),
                "",
                "skipped",
            );
            continue;
        };
        let wall = median(&x.wall);
        let cpu = median(&x.cpu);
        table.info(
            &format!("{label}: {who}"),
            format!(
                "wall {:.3} s, CPU {:.2} s, {:.0} MiB/s (sink CPU {:.2} s)",
                wall,
                cpu,
                size as f64 / MIB as f64 / wall,
                median(&x.sink)
            ),
        );
    }
    // Paired: the median over rounds of the ratio within each round, so that load from
    // other work on the machine, which drifts over seconds, hits both sides alike.
    let paired = |a: &str, b: &str, f: fn(&Samples) -> &[f64]| match (s.get(a), s.get(b)) {
        (Some(a), Some(b)) => median(
            &f(a)
                .iter()
                .zip(f(b))
                .map(|(x, y)| x / y)
                .collect::<Vec<_>>(),
        ),
        _ => f64::NAN,
    };
    let wall = |a: &str, b: &str| paired(a, b, |x| &x.wall);
    // The in-process contenders' CPU is in nanoseconds: paired like the wall time.
    // curl's is in 10 ms ticks: against it, the ratio of the totals over all rounds is
    // finer.
    let cpu = |a: &str, b: &str| match (s.get(a), s.get(b)) {
        (Some(x), Some(y)) if a == "curl" || b == "curl" => {
            x.cpu.iter().sum::<f64>() / y.cpu.iter().sum::<f64>()
        }
        _ => paired(a, b, |x| &x.cpu),
    };
    let r = wall("this crate", "bare ureq");
    table.max(
        &format!("{label}: wall, crate/bare ureq"),
        r,
        format!("{r:.2}"),
        1.05,
        "≤ 1.05",
    );
    let r = wall("this crate", "curl");
    table.max(
        &format!("{label}: wall, crate/curl"),
        r,
        format!("{r:.2}"),
        crate_vs_curl_wall.0,
        crate_vs_curl_wall.1,
    );
    let r = cpu("this crate", "curl");
    table.max(
        &format!("{label}: CPU, crate/curl"),
        r,
        format!("{r:.2}"),
        1.00,
        "≤ 1.00",
    );
    let r = cpu("this crate", "bare ureq");
    table.max(
        &format!("{label}: CPU, crate/bare ureq"),
        r,
        format!("{r:.2}"),
        1.05,
        "≤ 1.05",
    );
    if s.contains_key("sendfile(2)") {
        let (w, c) = (
            wall("this crate", "sendfile(2)"),
            cpu("this crate", "sendfile(2)"),
        );
        table.info(
            &format!("{label}: crate/sendfile(2) (the plain path's limit), wall / CPU"),
            format!("{w:.2} / {c:.2}"),
        );
    }
    let zero_copy = "this crate, sendfile on";
    if s.contains_key(zero_copy) {
        table.info(
            &format!("{label}: crate with sendfile on / bare ureq, wall / CPU"),
            format!(
                "{:.2} / {:.2}",
                wall(zero_copy, "bare ureq"),
                cpu(zero_copy, "bare ureq")
            ),
        );
        table.info(
            &format!("{label}: crate with sendfile on / sendfile(2), wall / CPU"),
            format!(
                "{:.2} / {:.2}",
                wall(zero_copy, "sendfile(2)"),
                cpu(zero_copy, "sendfile(2)")
            ),
        );
    }
    let on_thread = "bare ureq on a thread";
    if s.contains_key(on_thread) {
        table.info(
            &format!("{label}: crate/bare ureq on a thread, wall / CPU"),
            format!(
                "{:.2} / {:.2}",
                wall("this crate", on_thread),
                cpu("this crate", on_thread)
            ),
        );
        table.info(
            &format!("{label}: bare ureq on a thread/bare ureq (the thread's cost), wall / CPU"),
            format!(
                "{:.2} / {:.2}",
                wall(on_thread, "bare ureq"),
                cpu(on_thread, "bare ureq")
            ),
        );
    }
    let r = wall("bare ureq", "curl");
    table.info(
        &format!("{label}: wall, bare ureq/curl (anchor)"),
        format!("{r:.2}"),
    );
}

pub fn print_header(quick: bool, runs: usize, load_at_start: &str) {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "transfer benchmark ({}, {runs} runs each, {} at 64 MiB and {} at 1 GiB, medians): {} × \
         {cpu}; load average {} at start, {} at end",
        if quick { "quick" } else { "full" },
        3 * runs,
        2 * runs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_at_start,
        load_average()
    );
}
