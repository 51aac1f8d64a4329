//! The simulated network: two links (0: crossover, 1: public) between
//! every pair of nodes, each direction of each pair cut on its own, with
//! loss and a delay below one keepalive (heartbeats later than that are
//! a slower network than any deadtime is set for). Datagrams only: the
//! replication TCP connection is the world's (it runs over the crossover:
//! `crossover_ok` says whether it can).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use duet::testkit::SplitMix64 as Rng;

pub const LINKS: usize = 2;
pub const CROSSOVER: usize = 0;

#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub struct Datagram {
    pub at: u64,
    order: u64,
    pub to: usize,
    pub link: usize,
    pub bytes: Vec<u8>,
}

pub struct Net {
    nodes: usize,
    /// [from][to][link]: cut until (ms); 0 when not cut.
    cut_until: Vec<Vec<[u64; LINKS]>>,
    /// Per link, percent of datagrams lost, and until when.
    loss: [(u64, u64); LINKS],
    /// Per link, the most a datagram waits (ms).
    delay: [u64; LINKS],
    queue: BinaryHeap<Reverse<Datagram>>,
    order: u64,
    pub sent: u64,
}

impl Net {
    pub fn new(nodes: usize) -> Net {
        Net {
            nodes,
            cut_until: vec![vec![[0; LINKS]; nodes]; nodes],
            loss: [(0, 0); LINKS],
            delay: [5; LINKS],
            queue: BinaryHeap::new(),
            order: 0,
            sent: 0,
        }
    }

    pub fn cut(&mut self, from: usize, to: usize, link: usize, until: u64) {
        self.cut_until[from][to][link] = until;
    }

    pub fn is_cut(&self, from: usize, to: usize, link: usize, now: u64) -> bool {
        self.cut_until[from][to][link] > now
    }

    pub fn lose(&mut self, link: usize, percent: u64, until: u64) {
        self.loss[link] = (percent, until);
    }

    pub fn set_delay(&mut self, link: usize, max_ms: u64) {
        self.delay[link] = max_ms;
    }

    /// Everything back as it should be.
    pub fn heal(&mut self) {
        for row in &mut self.cut_until {
            for c in row.iter_mut() {
                *c = [0; LINKS];
            }
        }
        self.loss = [(0, 0); LINKS];
        self.delay = [5; LINKS];
    }

    /// Whether `a` and `b` reach each other both ways on some link.
    pub fn talk(&self, a: usize, b: usize, now: u64) -> bool {
        (0..LINKS).any(|l| !self.is_cut(a, b, l, now) && !self.is_cut(b, a, l, now))
    }

    /// The replication connection between the data nodes can exist.
    pub fn crossover_ok(&self, now: u64) -> bool {
        !self.is_cut(0, 1, CROSSOVER, now) && !self.is_cut(1, 0, CROSSOVER, now)
    }

    /// A heartbeat sent on `link` reaches every other node, or not.
    pub fn send(&mut self, rng: &mut Rng, from: usize, link: usize, bytes: &[u8], now: u64) {
        self.sent += 1;
        let (loss, until) = self.loss[link];
        for to in (0..self.nodes).filter(|t| *t != from) {
            if self.is_cut(from, to, link, now) || (now < until && rng.chance(loss)) {
                continue;
            }
            self.order += 1;
            let at = now + 1 + rng.below(self.delay[link].max(1));
            self.queue.push(Reverse(Datagram {
                at,
                order: self.order,
                to,
                link,
                bytes: bytes.to_vec(),
            }));
        }
    }

    /// The next datagram due by `now`.
    pub fn due(&mut self, now: u64) -> Option<Datagram> {
        if self.queue.peek().is_some_and(|Reverse(d)| d.at <= now) {
            return self.queue.pop().map(|Reverse(d)| d);
        }
        None
    }
}
