//! The witness rules (docs/quorum.md): at most one, reachable, with a vote,
//! and nowhere that data or resources are placed.

use super::Check;
use crate::config::error::Issue;
use crate::config::locate::KeyPath;
use crate::config::raw::{RawConfig, RawMetaDisk};

const ONE_WITNESS_HINT: &str =
    "witness = true on one node at most: a single witness breaks every tie";

impl Check {
    pub(super) fn witness(&mut self, raw: &RawConfig, root: &KeyPath) {
        let key = root.key("node");
        let mut first: Option<usize> = None;
        for (i, node) in raw.node.iter().enumerate() {
            if node.witness != Some(true) {
                continue;
            }
            let nkey = key.index(i);
            if let Some(j) = first {
                self.error(
                    nkey.key("witness"),
                    format!("a second witness (node[{j}] is one already)"),
                    ONE_WITNESS_HINT,
                );
                continue;
            }
            first = Some(i);
            if node.address.is_empty() {
                self.error(
                    nkey.key("witness"),
                    "the witness has no address on any link, so no node would hear its vote",
                    "an address = { LINK = \"IP\" } on at least one link the data nodes use",
                );
            }
            if node.votes == Some(0) {
                self.error(
                    nkey.key("votes"),
                    "a witness without a vote breaks no tie",
                    "votes = 1 (the default) or more",
                );
            }
        }
        let Some(w) = first else {
            return;
        };
        let data_nodes = raw.node.len() - 1;
        if data_nodes < 2 {
            self.warnings.push(
                Issue::new(
                    key.index(w).key("witness"),
                    format!("a witness beside {data_nodes} data node(s) has no tie to break"),
                )
                .hint("two or more nodes without witness = true"),
            );
        }
        let Some(name) = raw.node[w].name.as_deref() else {
            return;
        };
        self.witness_placed_nowhere(raw, root, name);
    }

    /// The witness runs no group and holds no copy of a replica: naming it
    /// in one is a mistake the file must not get away with.
    fn witness_placed_nowhere(&mut self, raw: &RawConfig, root: &KeyPath, name: &str) {
        let runs_nothing = "nodes without witness = true: the witness runs no resources";
        for (g, group) in raw.group.iter().enumerate() {
            let gkey = root.key("group").index(g);
            for (k, n) in group.nodes.iter().flatten().enumerate() {
                if n == name {
                    self.error(
                        gkey.key("nodes").index(k),
                        format!("{name} is the witness and cannot run a group"),
                        runs_nothing,
                    );
                }
            }
            if group.preferred.as_deref() == Some(name) {
                self.error(
                    gkey.key("preferred"),
                    format!("{name} is the witness and cannot run a group"),
                    runs_nothing,
                );
            }
        }
        let holds_nothing = "only nodes without witness = true: the witness holds no data";
        for (r, replica) in raw.replica.iter().enumerate() {
            let rkey = root.key("replica").index(r);
            let per_node = [
                ("disk", replica.disk.contains_key(name)),
                ("address", replica.address.contains_key(name)),
                ("nbd-listen", replica.nbd_listen.contains_key(name)),
                (
                    "meta-disk",
                    matches!(&replica.meta_disk, Some(RawMetaDisk::PerNode(m)) if m.contains_key(name)),
                ),
            ];
            for (setting, named) in per_node {
                if named {
                    self.error(
                        rkey.key(setting).key(name),
                        format!("{name} is the witness and holds no copy of a replica"),
                        holds_nothing,
                    );
                }
            }
        }
    }
}
