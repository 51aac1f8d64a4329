//! Rate limit for log lines about dropped packets: a flood of garbage must
//! not flood the journal. Pure: time is passed in.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use crate::types::Timestamp;

pub struct RateLimit<K> {
    interval: Duration,
    /// Per key: when it was last logged and how many were held back since.
    last: HashMap<K, (Timestamp, u64)>,
}

impl<K: Hash + Eq> RateLimit<K> {
    pub fn new(interval: Duration) -> Self {
        RateLimit {
            interval,
            last: HashMap::new(),
        }
    }

    /// `Some(suppressed)` when this occurrence may be logged, with the
    /// number held back since the last line; `None` to stay quiet.
    pub fn allow(&mut self, key: K, now: Timestamp) -> Option<u64> {
        match self.last.get_mut(&key) {
            Some((at, held)) if now.since(*at) < self.interval => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                let n = *held;
                *at = now;
                *held = 0;
                Some(n)
            }
            None => {
                self.last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

/// Refusals of one listener (kinds such as "stranger" or "handshake"),
/// shared by its threads: each counted, and logged at most once per
/// interval and kind, so a flood neither fills the journal nor goes unseen.
pub struct Refusals {
    start: std::time::Instant,
    limit: std::sync::Mutex<RateLimit<&'static str>>,
    count: std::sync::atomic::AtomicU64,
}

impl Refusals {
    pub fn new(interval: Duration) -> Refusals {
        Refusals {
            start: std::time::Instant::now(),
            limit: std::sync::Mutex::new(RateLimit::new(interval)),
            count: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts one refusal of `kind`: `Some(held back)` when it may be
    /// logged, with the number of that kind not logged since the last.
    pub fn refuse(&self, kind: &'static str) -> Option<u64> {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = Timestamp(self.start.elapsed());
        self.limit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(kind, now)
    }

    /// Refusals so far, of every kind.
    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let mut r = RateLimit::new(Duration::from_secs(10));
        let t = Timestamp::from_millis;
        assert_eq!(r.allow("bad", t(0)), Some(0));
        assert_eq!(r.allow("bad", t(1)), None);
        assert_eq!(r.allow("bad", t(9_999)), None);
        assert_eq!(r.allow("other", t(5)), Some(0));
        assert_eq!(r.allow("bad", t(10_000)), Some(2));
        assert_eq!(r.allow("bad", t(10_001)), None);
    }

    #[test]
    fn refusals_are_all_counted_and_logged_once_per_interval() {
        let r = Refusals::new(Duration::from_secs(3600));
        assert_eq!(r.refuse("stranger"), Some(0));
        assert_eq!(r.refuse("handshake"), Some(0));
        for _ in 0..1000 {
            assert_eq!(r.refuse("stranger"), None);
        }
        assert_eq!(r.count(), 1002);
    }
}
