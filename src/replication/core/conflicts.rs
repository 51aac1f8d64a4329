//! Overlapping operations run one at a time, in arrival order. Both disks
//! must end up with the same bytes: two overlapping writes that finish in
//! a different order on each node would leave them different, and a sync
//! read racing a client write could send old data after the new. So an
//! operation starts only when no earlier one that overlaps it is still
//! running or waiting. Non-overlapping ones run in parallel.

use crate::replication::core::io::Buf;

#[derive(Debug, Clone)]
struct Op {
    buf: Buf,
    start: u64,
    end: u64,
    running: bool,
}

#[derive(Debug, Default)]
pub struct Conflicts {
    ops: Vec<Op>,
}

fn overlaps(a: &Op, b: &Op) -> bool {
    a.start < b.end && b.start < a.end
}

impl Conflicts {
    /// Queues an operation; true if it may start now (it is then running).
    pub fn push(&mut self, buf: Buf, offset: u64, len: u32) -> bool {
        let op = Op {
            buf,
            start: offset,
            end: offset + u64::from(len.max(1)),
            running: false,
        };
        let free = !self.ops.iter().any(|o| overlaps(o, &op));
        self.ops.push(Op {
            running: free,
            ..op
        });
        free
    }

    /// The operation finished; returns those that may start now, in order
    /// (they are marked running).
    pub fn finish(&mut self, buf: Buf) -> Vec<Buf> {
        let Some(i) = self.ops.iter().position(|o| o.buf == buf) else {
            return Vec::new();
        };
        self.ops.remove(i);
        let mut started = Vec::new();
        for j in 0..self.ops.len() {
            if self.ops[j].running {
                continue;
            }
            let blocked = self.ops[..j].iter().any(|o| overlaps(o, &self.ops[j]));
            if !blocked {
                self.ops[j].running = true;
                started.push(self.ops[j].buf);
            }
        }
        started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_ops_wait_in_order_and_others_run() {
        let mut c = Conflicts::default();
        assert!(c.push(Buf::Peer(1), 0, 4096));
        assert!(!c.push(Buf::Peer(2), 2048, 4096));
        assert!(c.push(Buf::Peer(3), 8192, 4096));
        // Waits behind 2, which waits behind 1.
        assert!(!c.push(Buf::Peer(4), 4096, 100));
        assert_eq!(c.finish(Buf::Peer(1)), vec![Buf::Peer(2)]);
        assert_eq!(c.finish(Buf::Peer(2)), vec![Buf::Peer(4)]);
        assert!(c.finish(Buf::Peer(9)).is_empty());
    }
}
