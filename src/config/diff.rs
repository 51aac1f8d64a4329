//! What changed between the config duetd runs with and the file now, key
//! by key, for `duetctl reload`: which changes apply live and which need
//! a restart of duetd.

/// Replica settings the running replica takes with Adjust.
const LIVE_REPLICA_KEYS: &[&str] = &[
    "protocol",
    "fencing",
    "after-sb-0pri",
    "after-sb-1pri",
    "after-sb-2pri",
    "on-io-error",
    "timeout",
    "resync",
];

/// The keys whose values differ, added or removed, as paths like
/// `timings.deadtime` or `replica.r0.resync.rate-max` (elements of arrays
/// of tables by their `name`, else by index). Errors name the text that is
/// not TOML.
pub fn changed_keys(old: &str, new: &str) -> Result<Vec<String>, String> {
    let old: toml::Table = toml::from_str(old).map_err(|e| format!("the running config: {e}"))?;
    let new: toml::Table = toml::from_str(new).map_err(|e| format!("the file: {e}"))?;
    let mut out = Vec::new();
    tables("", &old, &new, &mut out);
    Ok(out)
}

fn tables(at: &str, old: &toml::Table, new: &toml::Table, out: &mut Vec<String>) {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let path = if at.is_empty() {
            k.clone()
        } else {
            format!("{at}.{k}")
        };
        match (old.get(k), new.get(k)) {
            (Some(a), Some(b)) => values(&path, a, b, out),
            _ => out.push(path),
        }
    }
}

fn values(path: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    use toml::Value::{Array, Table};
    match (a, b) {
        (Table(a), Table(b)) => tables(path, a, b, out),
        (Array(a), Array(b)) if all_tables(a) && all_tables(b) => elements(path, a, b, out),
        _ if a != b => out.push(path.to_string()),
        _ => {}
    }
}

fn all_tables(items: &[toml::Value]) -> bool {
    !items.is_empty() && items.iter().all(toml::Value::is_table)
}

/// Arrays of tables, matched by `name` where every element has one.
fn elements(path: &str, a: &[toml::Value], b: &[toml::Value], out: &mut Vec<String>) {
    let name = |v: &toml::Value| v.get("name").and_then(|n| n.as_str()).map(str::to_string);
    let named = a.iter().chain(b).all(|v| name(v).is_some());
    let label = |i: usize, v: &toml::Value| match name(v) {
        Some(n) if named => n,
        _ => i.to_string(),
    };
    let left: Vec<(String, &toml::Value)> = a
        .iter()
        .enumerate()
        .map(|(i, v)| (label(i, v), v))
        .collect();
    let right: Vec<(String, &toml::Value)> = b
        .iter()
        .enumerate()
        .map(|(i, v)| (label(i, v), v))
        .collect();
    for (l, v) in &left {
        match right.iter().find(|(r, _)| r == l) {
            Some((_, w)) => values(&format!("{path}.{l}"), v, w, out),
            None => out.push(format!("{path}.{l}")),
        }
    }
    for (r, _) in &right {
        if !left.iter().any(|(l, _)| l == r) {
            out.push(format!("{path}.{r}"));
        }
    }
}

/// The replica a changed key applies to live (`replica.NAME.KEY...` with
/// an adjustable KEY); `None` when the change needs a restart.
pub fn live_replica(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("replica.")?;
    let (name, setting) = rest.split_once('.')?;
    let first = setting.split('.').next()?;
    LIVE_REPLICA_KEYS.contains(&first).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[cluster]\nname = \"lab\"\n\n[timings]\ndeadtime = \"1s\"\n\n\
        [[replica]]\nname = \"r0\"\nprotocol = \"C\"\n[replica.resync]\nrate-max = \"100M\"\n\n\
        [[replica]]\nname = \"r1\"\nport = 7790\n";

    #[test]
    fn only_what_changed_is_named_by_its_path() {
        assert_eq!(changed_keys(BASE, BASE), Ok(vec![]));
        let new = BASE
            .replace("deadtime = \"1s\"", "deadtime = \"2s\"")
            .replace("rate-max = \"100M\"", "rate-max = \"50M\"")
            .replace("port = 7790", "port = 7791\nprotocol = \"A\"");
        assert_eq!(
            changed_keys(BASE, &new),
            Ok(vec![
                "replica.r0.resync.rate-max".to_string(),
                "replica.r1.port".to_string(),
                "replica.r1.protocol".to_string(),
                "timings.deadtime".to_string(),
            ])
        );
        // A replica added, one gone, and comments that change nothing.
        let other = format!(
            "# edited\n{}",
            BASE.replace("name = \"r1\"", "name = \"r2\"")
        );
        assert_eq!(
            changed_keys(BASE, &other),
            Ok(vec!["replica.r1".to_string(), "replica.r2".to_string()])
        );
        assert!(changed_keys(BASE, "[[[").is_err());
    }

    #[test]
    fn replica_settings_the_engine_adjusts_apply_live() {
        assert_eq!(live_replica("replica.r0.resync.rate-max"), Some("r0"));
        assert_eq!(live_replica("replica.r0.protocol"), Some("r0"));
        assert_eq!(live_replica("replica.r0.port"), None);
        assert_eq!(live_replica("replica.r0"), None);
        assert_eq!(live_replica("timings.deadtime"), None);
    }
}
