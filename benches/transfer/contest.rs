//! The contest: curl, bare ureq, this crate (and, for plain HTTP, a `sendfile(2)` PUT and
//! this crate with `UploaderBuilder::sendfile`; for TLS, bare ureq in a spawned thread)
//! alternating on the same target, one untimed warm-up each, the order rotating each
//! round.

use std::collections::BTreeMap;
use std::path::Path;

use background_transfer::Uploader;

use crate::baselines::{run_curl, run_sendfile, run_ureq, run_ureq_thread};
use crate::measure::{pid_cpu, JournalCost};
use crate::sink::Sink;
use crate::this_crate::run_crate;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Curl,
    Ureq,
    Crate,
    /// Plain HTTP only.
    Sendfile,
    /// Plain HTTP only: this crate with `UploaderBuilder::sendfile(true)`.
    CrateSendfile,
    /// TLS only: bare ureq in a spawned thread.
    UreqThread,
}

impl Who {
    pub fn name(self) -> &'static str {
        match self {
            Who::Curl => "curl",
            Who::Ureq => "bare ureq",
            Who::Crate => "this crate",
            Who::Sendfile => "sendfile(2)",
            Who::CrateSendfile => "this crate, sendfile on",
            Who::UreqThread => "bare ureq on a thread",
        }
    }
}

#[derive(Default)]
pub struct Samples {
    pub wall: Vec<f64>,
    pub cpu: Vec<f64>,
    /// The sink's CPU during the run: near the wall time means the sink is the limit.
    pub sink: Vec<f64>,
}

pub struct Target<'a> {
    pub url: String,
    pub file: &'a Path,
    pub size: u64,
    pub cacert: Option<&'a Path>,
}

pub fn check_answer(who: &str, answer: &str, size: u64) {
    assert_eq!(
        answer.trim(),
        size.to_string(),
        "{who}: the sink did not receive the whole file"
    );
}

/// One untimed warm-up each, then `runs` rounds, rotating who goes first.
pub fn contest(
    t: &Target,
    runs: usize,
    curl: bool,
    sink: &Sink,
    (up, up_sendfile): (&Uploader, &Uploader),
    cost: &mut JournalCost,
) -> BTreeMap<&'static str, Samples> {
    let ca_pem = &sink.ca_pem;
    let mut who = vec![Who::Ureq, Who::Crate];
    if curl {
        who.insert(0, Who::Curl);
    }
    if t.cacert.is_none() {
        who.push(Who::Sendfile);
        who.push(Who::CrateSendfile);
    } else {
        who.push(Who::UreqThread);
    }
    let mut scratch = JournalCost::default();
    for w in &who {
        match w {
            Who::Curl => drop(run_curl(t)),
            Who::Ureq => drop(run_ureq(t, ca_pem)),
            Who::Crate => drop(run_crate(t, up, &mut scratch)),
            Who::Sendfile => drop(run_sendfile(t)),
            Who::CrateSendfile => drop(run_crate(t, up_sendfile, &mut scratch)),
            Who::UreqThread => drop(run_ureq_thread(t, ca_pem)),
        }
    }
    let mut out: BTreeMap<&'static str, Samples> = BTreeMap::new();
    for round in 0..runs {
        for i in 0..who.len() {
            let w = who[(round + i) % who.len()];
            let sink0 = pid_cpu(sink.child.id());
            let (wall, cpu) = match w {
                Who::Curl => run_curl(t),
                Who::Ureq => run_ureq(t, ca_pem),
                Who::Crate => run_crate(t, up, cost),
                Who::Sendfile => run_sendfile(t),
                Who::CrateSendfile => run_crate(t, up_sendfile, &mut scratch),
                Who::UreqThread => run_ureq_thread(t, ca_pem),
            };
            let s = out.entry(w.name()).or_default();
            s.wall.push(wall);
            s.cpu.push(cpu);
            s.sink.push(pid_cpu(sink.child.id()) - sink0);
        }
        eprintln!("  {} round {}/{runs} done", t.url, round + 1);
    }
    out
}
