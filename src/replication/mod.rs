//! Replication: duet's userspace replacement for DRBD. This first part is
//! the generation-identifier handshake that decides, on connect, whether
//! the two disks are in sync, which one syncs from which and how much, or
//! whether they split.

pub mod generation;
