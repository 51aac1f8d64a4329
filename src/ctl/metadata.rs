//! `duetctl create-md` and `dump-md`: the replica's on-disk metadata,
//! without a daemon.

use std::path::PathBuf;

use crate::config;
use crate::ctl::cli::LocalDisk;
use crate::replication::md_io;
use crate::replication::metadata::{FLAG_CONSISTENT, FLAG_PEER_OUTDATED, FLAG_PRIMARY, Superblock};

/// The replica's disk on this node, and this node's index.
fn local_disk(replica: &str, local: &LocalDisk) -> Result<(PathBuf, u16), String> {
    let loaded = config::load(&local.config).map_err(|e| e.to_string())?;
    let c = loaded.config;
    let node = config::local_node(&c, local.node.as_deref()).map_err(|e| e.to_string())?;
    let r = c.replica(replica).ok_or_else(|| {
        let names: Vec<&str> = c.replicas.iter().map(|r| r.name.as_str()).collect();
        format!(
            "no replica {replica:?} in {} (replicas: {})",
            local.config.display(),
            names.join(", ")
        )
    })?;
    let disk = r.disk(node).ok_or_else(|| {
        format!(
            "replica {replica} has no disk on node {}",
            c.node(node).name
        )
    })?;
    Ok((disk.to_path_buf(), node.0))
}

fn kib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

pub fn create(replica: &str, local: &LocalDisk, force: bool) -> Result<String, String> {
    let (disk, node) = local_disk(replica, local)?;
    let l = md_io::create(&disk, node, force).map_err(|e| e.to_string())?;
    let total = l.bitmap_offset + l.bitmap_len;
    let md = total - l.usable;
    Ok(format!(
        "{replica}: fresh metadata on {}: {} usable of {} (the metadata takes {} at the tail). \
         The disk is Inconsistent until the first sync: `duetctl primary {replica} --force` on the node whose data wins.",
        disk.display(),
        kib(l.usable),
        kib(total),
        kib(md)
    ))
}

fn flag_names(flags: u32) -> Vec<&'static str> {
    let mut names = Vec::new();
    if flags & FLAG_CONSISTENT != 0 {
        names.push("consistent");
    } else {
        names.push("inconsistent");
    }
    if flags & FLAG_PRIMARY != 0 {
        names.push("was-primary");
    }
    if flags & FLAG_PEER_OUTDATED != 0 {
        names.push("peer-outdated");
    }
    names
}

pub fn dump(replica: &str, local: &LocalDisk, json: bool) -> Result<String, String> {
    let (disk, _) = local_disk(replica, local)?;
    let (sb, _) = md_io::read(&disk).map_err(|e| e.to_string())?;
    Ok(if json {
        dump_json(replica, &disk, &sb)
    } else {
        dump_text(replica, &disk, &sb)
    })
}

fn dump_json(replica: &str, disk: &std::path::Path, sb: &Superblock) -> String {
    let g = &sb.generations;
    let v = serde_json::json!({
        "replica": replica,
        "disk": disk.display().to_string(),
        "version": crate::replication::metadata::VERSION,
        "seq": sb.seq,
        "flags": flag_names(sb.flags),
        "size": sb.size,
        "node": sb.node,
        "generations": {
            "current": g.current.to_string(),
            "bitmap": g.bitmap.to_string(),
            "history": [g.history[0].to_string(), g.history[1].to_string()],
        },
        "bitmap_granularity": sb.granularity,
        "activity_log": {"offset": sb.al_offset, "length": sb.al_len, "extent": sb.al_extent},
        "bitmap": {"offset": sb.bitmap_offset, "length": sb.bitmap_len},
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn dump_text(replica: &str, disk: &std::path::Path, sb: &Superblock) -> String {
    let g = &sb.generations;
    format!(
        "replica {replica} on {}\n  version {} seq {} node {}\n  flags {}\n  size {} ({} bytes)\n  \
         generations current {} bitmap {} history {} {}\n  bitmap {} bytes at {} ({} bytes per bit)\n  \
         activity log {} bytes at {} ({} per extent)\n",
        disk.display(),
        crate::replication::metadata::VERSION,
        sb.seq,
        sb.node,
        flag_names(sb.flags).join(" "),
        kib(sb.size),
        sb.size,
        g.current,
        g.bitmap,
        g.history[0],
        g.history[1],
        sb.bitmap_len,
        sb.bitmap_offset,
        sb.granularity,
        sb.al_len,
        sb.al_offset,
        kib(u64::from(sb.al_extent)),
    )
}
