//! Scheduling policy as pure functions: what runs next, how long to back off, which host
//! an upload needs.

use std::collections::{HashMap, HashSet};
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
fn key(u: &UploadState) -> (u64, u8, std::cmp::Reverse<UploadId>) {
    (u.current_seq, rank(u.priority), std::cmp::Reverse(u.id))
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

/// The best upload to start now among the `queued` ones, if any.
pub(crate) fn next(
    queued: &std::collections::BTreeSet<UploadId>,
    state: &State,
    ctx: &Ctx,
) -> Option<UploadId> {
    queued
        .iter()
        .filter_map(|id| state.uploads.get(id))
        .filter(|u| may_start(u, state, ctx))
        .max_by_key(|u| key(u))
        .map(|u| u.id)
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
