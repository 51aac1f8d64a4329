//! The Prometheus endpoint (`[metrics] listen`): the published status as
//! Prometheus text (`text.rs`, pure) served over HTTP on a loopback address
//! (`http.rs`).

pub mod http;
pub mod text;
