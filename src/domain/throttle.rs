//! How much guessing is allowed: the window failures count in, the limits, and the
//! in-memory count for the setup link (which exists before any tenant, in one process).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

/// Failures are counted within this window, and a pause lasts until enough of them age out.
pub const WINDOW: Duration = Duration::minutes(15);
/// Failed checks for one account in the window before its checks pause.
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 5;
/// Failed checks from one address in the window, across all accounts and tenants.
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;
/// Wrong setup links from one address in the window.
pub const MAX_SETUP_FAILURES_PER_ADDRESS: usize = 10;

/// Addresses tracked at most; past that, failures from new addresses go uncounted rather
/// than let a flood of addresses grow memory without bound.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// Recent failures per address, in memory.
#[derive(Debug)]
pub struct AddressFailures {
    max: usize,
    recent: Mutex<HashMap<IpAddr, Vec<OffsetDateTime>>>,
}

impl AddressFailures {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            recent: Mutex::default(),
        }
    }

    /// Whether `ip` has had `max` failures within the window before `now`.
    pub fn is_throttled(&self, ip: IpAddr, now: OffsetDateTime) -> bool {
        self.recent.lock().is_ok_and(|recent| {
            recent.get(&ip).is_some_and(|failures| {
                failures.iter().filter(|at| now - **at < WINDOW).count() >= self.max
            })
        })
    }

    pub fn record(&self, ip: IpAddr, now: OffsetDateTime) {
        let Ok(mut recent) = self.recent.lock() else {
            return;
        };
        if recent.len() >= MAX_TRACKED_ADDRESSES {
            recent.retain(|_, failures| failures.iter().any(|at| now - *at < WINDOW));
        }
        if recent.len() >= MAX_TRACKED_ADDRESSES && !recent.contains_key(&ip) {
            return;
        }
        let failures = recent.entry(ip).or_default();
        failures.retain(|at| now - *at < WINDOW);
        failures.push(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_pauses_after_its_failures_until_they_age_out() {
        let failures = AddressFailures::new(3);
        let (ip, other): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let start = OffsetDateTime::now_utc();
        for minute in 0..3 {
            assert!(!failures.is_throttled(ip, start + Duration::minutes(minute)));
            failures.record(ip, start + Duration::minutes(minute));
        }
        assert!(failures.is_throttled(ip, start + Duration::minutes(3)));
        assert!(!failures.is_throttled(other, start + Duration::minutes(3)));
        // The first failure ages out 15 minutes after it happened.
        assert!(failures.is_throttled(ip, start + Duration::minutes(14)));
        assert!(!failures.is_throttled(ip, start + Duration::minutes(15)));
    }
}
