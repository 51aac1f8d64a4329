//! `duetctl create-md` and `dump-md`: the replica's on-disk metadata,
//! without a daemon.

use crate::config;
use crate::ctl::cli::LocalDisk;
use crate::replication::md_io::{self, Backing};
use crate::replication::metadata::{
    FLAG_CONSISTENT, FLAG_OUTDATED, FLAG_PEER_OUTDATED, FLAG_PRIMARY, Superblock,
};

/// The replica's disk and metadata on this node, and this node's index.
fn local_disk(replica: &str, local: &LocalDisk) -> Result<(Backing, u16), String> {
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
    let backing = Backing {
        data: disk.to_path_buf(),
        meta: r.meta_disk(node).map(|p| p.to_path_buf()),
    };
    Ok((backing, node.0))
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
    let (b, node) = local_disk(replica, local)?;
    let l = md_io::create(&b, node, force).map_err(|e| e.to_string())?;
    let placed = match &b.meta {
        None => format!(
            "fresh metadata on {}: {} usable of {} (the metadata takes {} at the tail)",
            b.data.display(),
            kib(l.usable),
            kib(l.md_end()),
            kib(l.md_len())
        ),
        Some(meta) => format!(
            "fresh metadata on {} for {}: all {} of it usable (the metadata takes none of the data disk, and {} of {})",
            meta.display(),
            b.data.display(),
            kib(l.usable),
            kib(l.md_len()),
            meta.display()
        ),
    };
    Ok(format!(
        "{replica}: {placed}. \
         The disk is Inconsistent until the first sync: `duetctl primary {replica} --force` on the node whose data wins."
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
    if flags & (FLAG_CONSISTENT | FLAG_OUTDATED) == FLAG_CONSISTENT | FLAG_OUTDATED {
        names.push("outdated");
    }
    names
}

pub fn dump(replica: &str, local: &LocalDisk, json: bool) -> Result<String, String> {
    let (b, _) = local_disk(replica, local)?;
    let (sb, _) = md_io::read(&b).map_err(|e| e.to_string())?;
    Ok(if json {
        dump_json(replica, &b, &sb)
    } else {
        dump_text(replica, &b, &sb)
    })
}

/// "internal", or the metadata device's path.
fn meta_disk(b: &Backing) -> String {
    b.meta
        .as_ref()
        .map_or("internal".to_string(), |p| p.display().to_string())
}

fn dump_json(replica: &str, b: &Backing, sb: &Superblock) -> String {
    let g = &sb.generations;
    let v = serde_json::json!({
        "replica": replica,
        "disk": b.data.display().to_string(),
        "meta_disk": meta_disk(b),
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

fn dump_text(replica: &str, b: &Backing, sb: &Superblock) -> String {
    let g = &sb.generations;
    let at = match &b.meta {
        None => "internal metadata".to_string(),
        Some(meta) => format!("metadata on {}", meta.display()),
    };
    format!(
        "replica {replica} on {}, {at}\n  version {} seq {} node {}\n  flags {}\n  size {} ({} bytes)\n  \
         generations current {} bitmap {} history {} {}\n  bitmap {} bytes at {} ({} bytes per bit)\n  \
         activity log {} bytes at {} ({} per extent)\n",
        b.data.display(),
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
