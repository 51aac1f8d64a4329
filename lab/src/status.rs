//! Reading a node's `duetctl status --json` (as `Lab::status` returns it):
//! how it sees a peer and each of the peer's links.

use serde_json::Value;

/// The entry of node `name` in a status.
pub fn peer<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == name)
}

/// "up", "late", "dead" or "init", as the status's node sees `name`.
pub fn state_of(status: &Value, name: &str) -> Option<String> {
    peer(status, name)?["state"].as_str().map(String::from)
}

/// The state of link `link` to node `name` ("up", "down" or "init").
pub fn link_of(status: &Value, name: &str, link: &str) -> Option<String> {
    peer(status, name)?["links"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == link)?["state"]
        .as_str()
        .map(String::from)
}
