//! Stable journal MESSAGE_IDs of duet's notable events. systemd/duet.catalog
//! explains each (`journalctl -x`), and `duetctl log` picks them out of the
//! journal. An ID never changes meaning; a new kind of event gets a new one.

pub const NODE_UP: &str = "62aa75482bb64c9fb7a4a919f03c1f7a";
pub const NODE_LATE: &str = "01433c3c348c4b0088c74be76c5d9645";
pub const NODE_DEAD: &str = "dd511fa1a4c54fbea5d5060d7bd06a89";
pub const LINK_DOWN: &str = "fa3b038dfc544da6ad05492492c21563";
pub const QUORUM_LOST: &str = "2b3ba49c3da34e86ac290ff1ac828065";
pub const QUORUM_GAINED: &str = "523d4405da16458589a8328afff52935";
pub const GROUP_RUNNING: &str = "1e809ef600d14560bf08233beea8d220";
pub const GROUP_FAILED: &str = "857b2950cade4f87aa431cff44fdaa0f";
pub const SYNC_STARTED: &str = "b1524e18e7b8474a9600677690677d5b";
pub const SYNC_FINISHED: &str = "800099441d3e45c283730b9498f059cf";
pub const SPLIT_BRAIN: &str = "7dc3b62b92a2440383f2bdaa7ecdc4c3";
pub const DISK_FAILED: &str = "73fbddd7bac04b5596653b93fc812ce7";
pub const CONFIG_DIFFERS: &str = "160a13ca82604686b8c09af36fee2d43";
pub const PEER_PROTOCOL: &str = "8fe1ca0743d14018b76b0c413fe81e1c";
pub const PROTOCOL_INCOMPATIBLE: &str = "c0f110d0809c47faa46f274aa2986082";

/// Every ID, for `duetctl log` and the test that keeps the catalog in step.
pub const ALL: &[&str] = &[
    NODE_UP,
    NODE_LATE,
    NODE_DEAD,
    LINK_DOWN,
    QUORUM_LOST,
    QUORUM_GAINED,
    GROUP_RUNNING,
    GROUP_FAILED,
    SYNC_STARTED,
    SYNC_FINISHED,
    SPLIT_BRAIN,
    DISK_FAILED,
    CONFIG_DIFFERS,
    PEER_PROTOCOL,
    PROTOCOL_INCOMPATIBLE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_is_in_the_catalog_once_and_the_catalog_has_no_other() {
        let catalog = include_str!("../../systemd/duet.catalog");
        let listed: Vec<&str> = catalog
            .lines()
            .filter_map(|l| l.strip_prefix("-- "))
            .map(str::trim)
            .collect();
        for id in ALL {
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
            assert_eq!(
                listed.iter().filter(|l| *l == id).count(),
                1,
                "{id} in the catalog"
            );
        }
        assert_eq!(listed.len(), ALL.len(), "{listed:?}");
    }
}
