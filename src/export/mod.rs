//! Export: a replica as a block device on the primary, over NBD.
//!
//! `proto` is the NBD wire protocol (pure), `backend` what an export reads
//! and writes (a local disk or file now, the replica later), `server` the
//! NBD server on a unix socket (`conn` what the threads serving one
//! connection share), `tcp` the optional TCP listener in front of
//! it (TLS with client certificates, `tls`), `netlink` the kernel NBD
//! driver's netlink messages. docs/export.md describes it for users.

pub mod attach;
pub mod backend;
pub mod client;
pub mod conn;
pub mod kernel;
pub mod latency;
pub mod netlink;
pub mod proto;
pub mod server;
pub mod tcp;
pub mod tls;
