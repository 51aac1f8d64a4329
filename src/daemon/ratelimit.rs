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
}
