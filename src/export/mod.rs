//! Export: a replica as a block device on the primary, over NBD.
//!
//! `proto` is the NBD wire protocol (pure), `backend` what an export reads
//! and writes (a local disk or file now, the replica later), `server` the
//! NBD server on a unix socket, `netlink` the kernel NBD driver's netlink
//! messages. docs/export.md describes it for users.

pub mod attach;
pub mod backend;
pub mod client;
pub mod kernel;
pub mod netlink;
pub mod proto;
pub mod server;
