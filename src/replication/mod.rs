//! Replication: duet's userspace replacement for DRBD. So far: the
//! generation-identifier handshake that decides, on connect, whether the
//! two disks are in sync, which one syncs from which and how much, or
//! whether they split; and the on-disk metadata (layout and superblock).

pub mod activity_log;
pub mod bitmap;
pub mod core;
pub mod fence;
pub mod generation;
pub mod md_io;
pub mod metadata;
pub mod split_brain;
pub mod states;
pub mod wire;
