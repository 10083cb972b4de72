//! Whether this machine has a route to anywhere but itself: the tie-breaker between
//! "no network" and "no such host" when a name lookup fails.
//!
//! On Linux it reads the kernel's routing tables (`/proc/net/route`,
//! `/proc/net/ipv6_route`). A route through any interface but loopback counts, except
//! IPv6 link-local and multicast routes, which every interface that is up has even with
//! no network behind it. Elsewhere the answer is unknown, and callers treat it as "no
//! route", the choice that spends no retry.

/// Whether a route through an interface other than loopback exists.
pub(crate) fn exists() -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
        any_v4(&v4) || any_v6(&v6)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        false
    }
}

/// `/proc/net/route`: a header line, then `Iface Destination Gateway Flags ...`.
fn any_v4(table: &str) -> bool {
    table.lines().skip(1).any(|line| {
        let mut f = line.split_whitespace();
        let (Some(iface), Some(_dest), Some(_gw), Some(flags)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            return false;
        };
        let up = u32::from_str_radix(flags, 16).is_ok_and(|x| x & 0x1 != 0);
        up && iface != "lo"
    })
}

/// `/proc/net/ipv6_route`: `dest plen src splen next-hop metric refcnt use flags iface`.
fn any_v6(table: &str) -> bool {
    table.lines().any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [dest, _plen, .., flags, iface] = f.as_slice() else {
            return false;
        };
        if f.len() != 10 || *iface == "lo" {
            return false;
        }
        let up = u32::from_str_radix(flags, 16).is_ok_and(|x| x & 0x1 != 0);
        let local_only = dest.starts_with("fe80") || dest.starts_with("ff");
        up && !local_only
    })
}

#[cfg(test)]
mod tests {
    use super::{any_v4, any_v6};

    const V4_HEAD: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    #[test]
    fn v4_tables() {
        assert!(!any_v4(V4_HEAD));
        assert!(!any_v4(&format!(
            "{V4_HEAD}lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n"
        )));
        assert!(any_v4(&format!(
            "{V4_HEAD}eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        )));
        assert!(any_v4(&format!(
            "{V4_HEAD}veth0\t0000C80A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        )));
        // Not up.
        assert!(!any_v4(&format!(
            "{V4_HEAD}eth0\t00000000\t0100000A\t0002\t0\t0\t0\t00000000\t0\t0\t0\n"
        )));
    }

    #[test]
    fn v6_tables() {
        let lo = "00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000001 00000000 80200001       lo\n";
        let link_local = "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001    veth0\n";
        let multicast = "ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001    veth0\n";
        let default = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n";
        assert!(!any_v6(""));
        assert!(!any_v6(&format!("{lo}{link_local}{multicast}")));
        assert!(any_v6(default));
    }
}
