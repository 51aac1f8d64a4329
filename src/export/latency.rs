//! Latency histograms of an export's requests, by kind: lock-free
//! counters the request workers bump and the metrics endpoint reads
//! (docs/metrics.md, `duet_export_request_duration_seconds`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds of the buckets, in microseconds: from a page-cache hit
/// to a request stuck behind a lost peer.
pub const BOUNDS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    5_000_000,
];

/// The kinds of request, as labelled.
pub const KINDS: [&str; 4] = ["read", "write", "flush", "other"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    Flush,
    Other,
}

#[derive(Debug, Default)]
struct Counts {
    /// Per bucket, not cumulative; the last is above every bound.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Latency {
    kinds: [Counts; KINDS.len()],
}

/// One kind's histogram as the text format wants it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Histogram {
    pub kind: String,
    /// Cumulative counts at each of `BOUNDS_US`.
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Latency {
    pub fn record(&self, kind: Kind, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let c = &self.kinds[kind as usize];
        let at = BOUNDS_US.partition_point(|b| *b < us);
        c.buckets[at].fetch_add(1, Ordering::Relaxed);
        c.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Every kind that saw a request.
    pub fn snapshot(&self) -> Vec<Histogram> {
        KINDS
            .iter()
            .zip(&self.kinds)
            .filter_map(|(kind, c)| {
                let mut total = 0;
                let mut cumulative = Vec::with_capacity(BOUNDS_US.len());
                for b in &c.buckets[..BOUNDS_US.len()] {
                    total += b.load(Ordering::Relaxed);
                    cumulative.push(total);
                }
                let count = total + c.buckets[BOUNDS_US.len()].load(Ordering::Relaxed);
                (count > 0).then(|| Histogram {
                    kind: (*kind).to_string(),
                    cumulative,
                    count,
                    sum_seconds: c.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_lands_in_the_first_bucket_that_holds_it() {
        let l = Latency::default();
        l.record(Kind::Write, Duration::from_micros(50));
        l.record(Kind::Write, Duration::from_micros(51));
        l.record(Kind::Write, Duration::from_secs(9));
        l.record(Kind::Flush, Duration::from_millis(3));
        let snap = l.snapshot();
        assert_eq!(snap.len(), 2, "{snap:?}");
        let w = &snap[0];
        assert_eq!((w.kind.as_str(), w.count), ("write", 3));
        assert_eq!(&w.cumulative[..3], &[1, 2, 2]);
        assert_eq!(*w.cumulative.last().expect("buckets"), 2);
        assert!((w.sum_seconds - 9.000101).abs() < 1e-9);
        let f = &snap[1];
        assert_eq!(f.kind, "flush");
        assert_eq!(f.cumulative[5], 0);
        assert_eq!(f.cumulative[6], 1);
    }
}
