//! `[metrics]`: the Prometheus endpoint, on a loopback address only.

use std::net::{IpAddr, SocketAddr};

use super::Check;
use crate::config::locate::KeyPath;
use crate::config::model::DEFAULT_METRICS_PORT;
use crate::config::raw::RawMetrics;

const LISTEN_HINT: &str = "a loopback address with an optional port, e.g. \"127.0.0.1:9649\" or \"[::1]:9649\"; \
     scrape from elsewhere through a proxy or an SSH tunnel";

impl Check {
    /// The endpoint's address; `None` (with an error) when it is not a
    /// loopback address: the figures say what the cluster does, for this
    /// machine's eyes unless an administrator forwards them.
    pub(super) fn metrics(&mut self, raw: RawMetrics, key: &KeyPath) -> Option<SocketAddr> {
        let key = key.key("listen");
        let text = raw.listen.as_deref().map(str::trim).unwrap_or("127.0.0.1");
        let at = match (text.parse::<SocketAddr>(), text.parse::<IpAddr>()) {
            (Ok(at), _) => at,
            (_, Ok(ip)) => SocketAddr::new(ip, DEFAULT_METRICS_PORT),
            _ => {
                self.error(
                    key,
                    format!("{text:?} is not an IP address with an optional port"),
                    LISTEN_HINT,
                );
                return None;
            }
        };
        if !at.ip().is_loopback() {
            self.error(
                key,
                format!(
                    "{} is not a loopback address: the metrics are served to this machine only",
                    at.ip()
                ),
                LISTEN_HINT,
            );
            return None;
        }
        if at.port() == 0 {
            self.error(key, "port 0 is not a port", LISTEN_HINT);
            return None;
        }
        Some(at)
    }
}
