//! Scheduling policy as pure functions: what runs next, how long to back off, which host
//! an upload needs.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use crate::journal::{State, UploadState};
use crate::model::UploadId;
use crate::GroupBehavior;
use crate::{CostPolicy, Priority, Status};

fn rank(p: Priority) -> u8 {
    match p {
        Priority::Low => 0,
        Priority::Default => 1,
        Priority::High => 2,
    }
}

/// The order uploads start in: made current (latest first), then priority, then age.
fn key(u: &UploadState) -> (u64, u8, Reverse<UploadId>) {
    (u.current_seq, rank(u.priority), Reverse(u.id))
}

/// What the scheduler needs to know to pick.
pub(crate) struct Ctx<'a> {
    pub running: &'a HashSet<UploadId>,
    pub groups: &'a HashMap<String, GroupBehavior>,
    pub costed: bool,
    pub offline: &'a HashSet<String>,
    /// Each upload's `host:port`, parsed once.
    pub hosts: &'a HashMap<UploadId, String>,
}

/// Whether `u` could start now, ignoring the concurrency limit.
pub(crate) fn may_start(u: &UploadState, state: &State, ctx: &Ctx) -> bool {
    if u.status != Status::Queued || ctx.running.contains(&u.id) {
        return false;
    }
    if ctx.costed && u.request.cost == CostPolicy::UnrestrictedOnly {
        return false;
    }
    if ctx
        .hosts
        .get(&u.id)
        .is_some_and(|h| ctx.offline.contains(h))
    {
        return false;
    }
    if let Some(g) = &u.request.group {
        if ctx.groups.get(g) == Some(&GroupBehavior::Serialized) {
            let busy = ctx.running.iter().any(|id| {
                state
                    .uploads
                    .get(id)
                    .is_some_and(|o| o.request.group.as_ref() == Some(g))
            });
            if busy {
                return false;
            }
        }
    }
    true
}

/// The best upload to start now, if any: the first in `queue` that may start.
pub(crate) fn next(queue: &Queue, state: &State, ctx: &Ctx) -> Option<UploadId> {
    queue
        .iter()
        .filter_map(|id| state.uploads.get(&id))
        .find(|u| may_start(u, state, ctx))
        .map(|u| u.id)
}

/// Where an upload stands in the queue: ascending order is start order.
type Place = (Reverse<u64>, Reverse<u8>, UploadId);

/// The `Queued` uploads in start order, kept as they change: finding the next one to
/// start looks at the head, not at every upload the store holds.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    order: BTreeSet<Place>,
    places: HashMap<UploadId, Place>,
}

impl Queue {
    /// Puts `u` in its place if it is queued, or takes `id` out.
    pub(crate) fn update(&mut self, id: UploadId, u: Option<&UploadState>) {
        if let Some(old) = self.places.remove(&id) {
            self.order.remove(&old);
        }
        if let Some(u) = u.filter(|u| u.status == Status::Queued) {
            let (seq, rank, Reverse(id)) = key(u);
            let place = (Reverse(seq), Reverse(rank), id);
            self.order.insert(place);
            self.places.insert(id, place);
        }
    }

    /// The queued uploads, best first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = UploadId> + '_ {
        self.order.iter().map(|(_, _, id)| *id)
    }
}

/// Exponential backoff with jitter: `base * 2^(attempt-1)`, capped, times a random
/// 50–100 %.
pub(crate) fn backoff(attempt: u32, base: Duration, max: Duration, random: u64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let d = exp.min(max);
    let frac = 0.5 + (random % 1000) as f64 / 2000.0;
    d.mul_f64(frac)
}

/// `host:port` of a URL (the port defaulted by scheme), the unit of reachability.
pub(crate) fn host_key(url: &str) -> Option<String> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    let host = uri.host()?;
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    Some(format!("{host}:{port}"))
}

/// A xorshift step, for jitter.
pub(crate) fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Duration::from_secs(2);
        let m = Duration::from_secs(60);
        assert!(backoff(1, b, m, 999) <= b);
        assert!(backoff(1, b, m, 0) >= b / 2);
        assert!(backoff(3, b, m, 999) <= Duration::from_secs(8));
        assert!(backoff(30, b, m, 999) <= m);
    }

    #[test]
    fn host_keys() {
        assert_eq!(host_key("http://a.b/x").unwrap(), "a.b:80");
        assert_eq!(host_key("https://a.b/x").unwrap(), "a.b:443");
        assert_eq!(host_key("http://127.0.0.1:9/x").unwrap(), "127.0.0.1:9");
        assert_eq!(host_key("http://[::1]:9/x").unwrap(), "[::1]:9");
    }
}
