//! The mount agent: a filesystem mounted by a transient systemd mount unit.
//!
//! Start creates `<escaped mountpoint>.mount` with StartTransientUnit
//! (What=, Where=, Type=, Options=, DirectoryMode=0755: systemd creates a
//! missing mountpoint) and waits for the job. With `fsck = auto` the unit
//! Requires= and is After= a transient oneshot `duet-fsck@<escaped
//! device>.service` that runs systemd-fsck on the device, created in the
//! same call; see docs/resources.md for why not systemd-fsck@.service.
//!
//! Stop stops the unit; when the unmount fails while processes still use
//! the filesystem, they get SIGTERM, then SIGKILL, and the stop is tried
//! once more. Monitor checks /proc/self/mountinfo and the unit.
//!
//! No mount, umount or systemctl command runs: systemd's D-Bus API only.

mod holders;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zbus::zvariant::{OwnedValue, Value};

use super::Op;
use super::systemd::{
    POLL, Property, Systemd, is_no_such_unit, is_unit_exists, plain, simplify_path,
    unit_name_for_path,
};
use crate::config::Fsck;
use crate::host::mountinfo::{self, MountEntry};

/// Before the second try of an unmount that failed with no user found.
const RETRY_PAUSE: Duration = Duration::from_millis(300);
/// Unmounts tried again while no process is found using the filesystem.
const EMPTY_SCAN_TRIES: usize = 4;
/// How long the processes holding a busy mount get between SIGTERM and
/// SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// How long processes get to vanish after SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long systemd gets to catch up with a mount it did not make, or to
/// drop a transient unit from an earlier attempt.
const SETTLE: Duration = Duration::from_secs(5);

pub struct Mount<'a> {
    pub device: &'a Path,
    pub mountpoint: &'a Path,
    pub fstype: &'a str,
    pub options: &'a str,
    pub fsck: Fsck,
}

pub async fn run(bus: &zbus::Connection, m: &Mount<'_>, op: Op) -> Result<(), String> {
    let sd = Systemd::new(bus).await?;
    let n = Names::of(m)?;
    match op {
        Op::Start => start(&sd, m, &n).await,
        Op::Stop => stop(&sd, &n).await,
        Op::Monitor => monitor(&sd, m, &n).await,
    }
}

/// The units and the paths, as systemd spells them.
struct Names {
    /// e.g. mnt-shared.mount
    unit: String,
    /// e.g. duet-fsck@dev-sdb.service
    fsck: String,
    /// systemd-fsck's own instance for the device, whose ExecStart names
    /// the systemd-fsck program on this system.
    systemd_fsck: String,
    /// The mountpoint, simplified (Where=).
    target: PathBuf,
    device: String,
}

impl Names {
    fn of(m: &Mount<'_>) -> Result<Names, String> {
        if !m.mountpoint.is_absolute() {
            return Err(format!(
                "mountpoint {} is not an absolute path",
                m.mountpoint.display()
            ));
        }
        let target = simplify_path(m.mountpoint);
        if target == Path::new("/") {
            return Err("duet does not mount over /".to_string());
        }
        let device = utf8(m.device, "device")?.to_string();
        utf8(&target, "mountpoint")?;
        let unit = unit_name_for_path("", &target, ".mount")?;
        let (fsck, systemd_fsck) = if m.device.is_absolute() {
            (
                unit_name_for_path("duet-fsck@", m.device, ".service")?,
                unit_name_for_path("systemd-fsck@", m.device, ".service")?,
            )
        } else {
            // A network share ("server:/export") or a pseudo filesystem
            // ("tmpfs"): nothing to check.
            (String::new(), String::new())
        };
        Ok(Names {
            unit,
            fsck,
            systemd_fsck,
            target,
            device,
        })
    }
}

fn utf8<'p>(path: &'p Path, what: &str) -> Result<&'p str, String> {
    path.to_str().ok_or_else(|| {
        format!(
            "{what} {} is not valid UTF-8; systemd's D-Bus API takes UTF-8 paths only",
            path.display()
        )
    })
}

async fn start(sd: &Systemd<'_>, m: &Mount<'_>, n: &Names) -> Result<(), String> {
    if m.device.is_absolute() && !m.device.exists() {
        return Err(format!("no device {} on this node", n.device));
    }
    if let Some(e) = mounted_at(&n.target)? {
        if !holds_device(&e, m.device) {
            return Err(format!(
                "{} already has {} ({}) mounted, not {}",
                n.target.display(),
                e.source,
                e.fstype,
                n.device
            ));
        }
        // Mounted already. systemd makes a unit of every mount it sees;
        // give it a moment to have done so.
        return wait_active(sd, &n.unit, SETTLE).await.map_err(|state| {
            format!(
                "{} is mounted at {}, but systemd does not show {} active ({state})",
                n.device,
                n.target.display(),
                n.unit
            )
        });
    }
    let fsck_program = match m.fsck {
        Fsck::Auto if is_block_device(m.device) => Some(fsck_program(sd, n).await?),
        _ => None,
    };
    clear_leftover(sd, &n.unit, n).await?;
    if fsck_program.is_some() {
        clear_leftover(sd, &n.fsck, n).await?;
    }

    let target = utf8(&n.target, "mountpoint")?;
    let description = format!("duet: {} on {target}", n.device);
    let mut props: Vec<Property<'_>> = vec![
        ("Description", Value::from(description.as_str())),
        ("What", Value::from(n.device.as_str())),
        ("Where", Value::from(target)),
        ("DirectoryMode", Value::U32(0o755)),
    ];
    if !m.fstype.is_empty() {
        props.push(("Type", Value::from(m.fstype)));
    }
    if !m.options.is_empty() {
        props.push(("Options", Value::from(m.options)));
    }
    let fsck_description = format!("duet: file system check of {}", n.device);
    let mut fsck_props: Vec<Property<'_>> = Vec::new();
    if let Some(program) = &fsck_program {
        for dep in ["Requires", "After"] {
            props.push((dep, Value::from(vec![n.fsck.as_str()])));
        }
        // As systemd-fsck@.service: no default dependencies (they would
        // order it after basic.target, and so after local-fs.target,
        // which a mount is ordered before: a cycle), stopped at shutdown.
        // Not RemainAfterExit: the check runs again on every mount.
        let exec = vec![(
            program.as_str(),
            vec![program.as_str(), n.device.as_str()],
            false,
        )];
        fsck_props = vec![
            ("Description", Value::from(fsck_description.as_str())),
            ("Type", Value::from("oneshot")),
            ("ExecStart", Value::from(exec)),
            ("DefaultDependencies", Value::from(false)),
            ("Conflicts", Value::from(vec!["shutdown.target"])),
            ("Before", Value::from(vec!["shutdown.target"])),
        ];
    }
    let aux: Vec<(&str, &[Property<'_>])> = if fsck_program.is_some() {
        vec![(n.fsck.as_str(), fsck_props.as_slice())]
    } else {
        Vec::new()
    };

    let mut watch = sd.watch(&n.unit).await?;
    let job = match sd
        .manager
        .start_transient_unit(&n.unit, "replace", &props, &aux)
        .await
    {
        Ok(job) => job,
        Err(e) if is_unit_exists(&e) => {
            return Err(format!(
                "cannot create {}: {} (an earlier attempt is still ending; try again)",
                n.unit,
                plain(&e)
            ));
        }
        Err(e) => {
            return Err(format!(
                "systemd refused to mount {} at {target}: {}",
                n.device,
                plain(&e)
            ));
        }
    };
    let result = watch.result(&job).await?;
    drop(watch);
    if result == "done" {
        return match mounted_at(&n.target)? {
            Some(e) if holds_device(&e, m.device) => Ok(()),
            Some(e) => Err(format!(
                "systemd reports {} started, but {target} shows {} mounted, not {}",
                n.unit, e.source, n.device
            )),
            None => Err(format!(
                "systemd reports {} started, but nothing is mounted at {target}",
                n.unit
            )),
        };
    }
    let error = start_failure(sd, n, fsck_program.is_some(), &result).await;
    // A failed transient unit stays loaded until its failure is reset; the
    // next start makes it anew.
    sd.reset_failed(&n.unit).await;
    if fsck_program.is_some() {
        sd.reset_failed(&n.fsck).await;
    }
    Err(error)
}

async fn start_failure(sd: &Systemd<'_>, n: &Names, fsck: bool, result: &str) -> String {
    if fsck
        && result == "dependency"
        && let Ok(Some(state)) = sd.state(&n.fsck).await
        && state.active == "failed"
    {
        return format!(
            "the file system check of {dev} failed ({}: {}), so {dev} was not mounted; \
             see `journalctl -u {}`, repair it by hand (`fsck {dev}`) and start again",
            n.fsck,
            state.describe(),
            n.fsck,
            dev = n.device,
        );
    }
    format!(
        "mounting {} at {} failed (result: {result}; {}); see `journalctl -u {}`",
        n.device,
        n.target.display(),
        sd.describe(&n.unit).await,
        n.unit
    )
}

/// The systemd-fsck program, from systemd-fsck@.service's ExecStart (its
/// place differs between distributions).
async fn fsck_program(sd: &Systemd<'_>, n: &Names) -> Result<String, String> {
    let unit = sd.load_unit(&n.systemd_fsck).await?;
    let load = unit
        .load_state()
        .await
        .map_err(|e| format!("cannot read {}'s load state: {e}", n.systemd_fsck))?;
    if load != "loaded" {
        return Err(format!(
            "systemd-fsck@.service is not on this node (load state {load}), so {} cannot \
             be checked before mounting; install it, or mount without a check (fsck never)",
            n.device
        ));
    }
    let exec = sd
        .property(
            unit.inner().path(),
            "org.freedesktop.systemd1.Service",
            "ExecStart",
        )
        .await?;
    first_exec_path(&exec).ok_or_else(|| {
        format!(
            "systemd-fsck@.service has no ExecStart= program; cannot check {}",
            n.device
        )
    })
}

/// The program of the first ExecStart= entry, D-Bus `a(sasbttttuii)`.
fn first_exec_path(value: &OwnedValue) -> Option<String> {
    let Value::Array(entries) = &**value else {
        return None;
    };
    let Value::Structure(first) = entries.first()? else {
        return None;
    };
    match first.fields().first()? {
        Value::Str(path) if path.starts_with('/') => Some(path.to_string()),
        _ => None,
    }
}

/// Makes way for a new transient unit of this name: an inactive or failed
/// one from an earlier attempt is reset and waited out. A unit defined in
/// a file (an /etc/fstab line, a unit file) is refused.
async fn clear_leftover(sd: &Systemd<'_>, unit: &str, n: &Names) -> Result<(), String> {
    let Some(state) = sd.state(unit).await? else {
        return Ok(());
    };
    if !state.transient && !state.fragment.is_empty() {
        return Err(format!(
            "{unit} is defined on this node ({}); duet makes its own unit for {}: remove \
             that definition (an /etc/fstab line makes one too)",
            state.fragment,
            n.target.display()
        ));
    }
    match state.active.as_str() {
        "inactive" | "failed" => {}
        _ => {
            return Err(format!(
                "{unit} is {} from an earlier attempt while {} is not mounted; try again \
                 once it has ended",
                state.describe(),
                n.target.display()
            ));
        }
    }
    if state.active == "failed" {
        sd.reset_failed(unit).await;
    }
    if state.transient {
        sd.wait_unloaded(unit, SETTLE).await?;
    }
    Ok(())
}

/// Polls until the unit is active; Err holds the last state seen.
async fn wait_active(sd: &Systemd<'_>, unit: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let state = sd.state(unit).await?;
        match &state {
            Some(s) if s.is_running() => return Ok(()),
            _ if Instant::now() >= deadline => {
                return Err(state.map_or("not loaded".to_string(), |s| s.describe()));
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

async fn stop(sd: &Systemd<'_>, n: &Names) -> Result<(), String> {
    // A check still running from a start that was given up goes first: a
    // stopped resource runs nothing.
    if !n.fsck.is_empty()
        && let Some(state) = sd.state(&n.fsck).await?
        && !matches!(state.active.as_str(), "inactive" | "failed")
    {
        stop_unit(sd, &n.fsck).await?;
    }
    let first = match stop_once(sd, n).await {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    // Busy, yet no process may be found using it at the moment of the
    // scan: a short-lived user (a job that opens a file now and then)
    // comes and goes between the scans and the unmounts. A few more tries,
    // each after a fresh scan, before the stop fails and blocks the group.
    let mut hidden = 0;
    let mut last = first.clone();
    for _ in 0..EMPTY_SCAN_TRIES {
        let Some(entry) = mounted_at(&n.target)? else {
            // The unmount went through after all.
            sd.reset_failed(&n.unit).await;
            return Ok(());
        };
        let (held_by, cannot_see) = holders::scan_all(&n.target, entry.dev);
        if !held_by.is_empty() {
            return end_holders(sd, n, entry.dev, &held_by).await;
        }
        hidden = cannot_see;
        // Nothing holds it: the failure may have passed (a user that has
        // just exited, systemd failing to spawn umount).
        sd.reset_failed(&n.unit).await;
        tokio::time::sleep(RETRY_PAUSE).await;
        match stop_once(sd, n).await {
            Ok(()) => {
                return unmounted(sd, n, format!("on a later try (the first: {first})")).await;
            }
            Err(e) => last = e,
        }
    }
    let why = if hidden > 0 {
        format!(
            " ({hidden} processes could not be looked into: that needs \
             CAP_SYS_PTRACE, and ending them CAP_KILL)"
        )
    } else {
        String::new()
    };
    Err(format!(
        "{first}; no process was found using it{why}; {EMPTY_SCAN_TRIES} more tries, the last: {last}"
    ))
}

/// Unmounted on a retry: the failed try's mark (result exit-code) goes.
async fn unmounted(sd: &Systemd<'_>, n: &Names, how: String) -> Result<(), String> {
    sd.reset_failed(&n.unit).await;
    tracing::warn!("unmounted {} {how}", n.target.display());
    Ok(())
}

/// Ends the processes using the filesystem, then unmounts once more.
async fn end_holders(
    sd: &Systemd<'_>,
    n: &Names,
    dev: (u64, u64),
    held_by: &[holders::Holder],
) -> Result<(), String> {
    let names = holders::list(held_by);
    tracing::warn!(
        "{} is busy: ending the processes using it: {names}",
        n.target.display()
    );
    let left = holders::end(&n.target, dev, TERM_GRACE, KILL_GRACE).await;
    match stop_once(sd, n).await {
        Ok(()) => {
            let how = format!("after ending the processes using it: {names}");
            unmounted(sd, n, how).await
        }
        Err(e) if left.is_empty() => Err(format!(
            "{e}; it was held by {names} (ended, yet the unmount still failed)"
        )),
        Err(e) => Err(format!(
            "{e}; it was held by {names}, and {} outlived SIGKILL",
            holders::list(&left)
        )),
    }
}

/// One StopUnit of the mount unit, waited for and checked against
/// /proc/self/mountinfo.
async fn stop_once(sd: &Systemd<'_>, n: &Names) -> Result<(), String> {
    let target = n.target.display();
    let mut watch = sd.watch(&n.unit).await?;
    let mode = sd.stop_mode(&n.unit).await;
    let job = match sd.manager.stop_unit(&n.unit, mode).await {
        Ok(job) => job,
        Err(e) if is_no_such_unit(&e) => {
            return match mounted_at(&n.target)? {
                None => Ok(()),
                Some(e) => Err(format!(
                    "{target} is mounted ({}), but systemd has no unit {} for it",
                    e.source, n.unit
                )),
            };
        }
        Err(e) => {
            return Err(format!(
                "systemd refused to unmount {target}: {}",
                plain(&e)
            ));
        }
    };
    let result = watch.result(&job).await?;
    drop(watch);
    match (result.as_str(), mounted_at(&n.target)?) {
        ("done", None) => Ok(()),
        ("done", Some(e)) => Err(format!(
            "systemd stopped {}, but {target} is still mounted ({})",
            n.unit, e.source
        )),
        _ => Err(format!(
            "unmounting {target} failed (result: {result}; {})",
            sd.describe(&n.unit).await
        )),
    }
}

/// Stops any unit and waits for the job.
async fn stop_unit(sd: &Systemd<'_>, unit: &str) -> Result<(), String> {
    let mut watch = sd.watch(unit).await?;
    let mode = sd.stop_mode(unit).await;
    let job = match sd.manager.stop_unit(unit, mode).await {
        Ok(job) => job,
        Err(e) if is_no_such_unit(&e) => return Ok(()),
        Err(e) => return Err(format!("systemd refused to stop {unit}: {}", plain(&e))),
    };
    match watch.result(&job).await?.as_str() {
        "done" => Ok(()),
        other => Err(format!("{unit} failed to stop (result: {other})")),
    }
}

async fn monitor(sd: &Systemd<'_>, m: &Mount<'_>, n: &Names) -> Result<(), String> {
    let target = n.target.display();
    let Some(e) = mounted_at(&n.target)? else {
        return Err(format!("{target} is not mounted"));
    };
    if !holds_device(&e, m.device) {
        return Err(format!(
            "{target} has {} mounted, not {}",
            e.source, n.device
        ));
    }
    match sd.state(&n.unit).await? {
        Some(s) if s.is_running() => Ok(()),
        Some(s) => Err(format!(
            "{} is mounted at {target}, but {} is not active ({})",
            n.device,
            n.unit,
            s.describe()
        )),
        None => Err(format!(
            "{} is mounted at {target}, but systemd has no unit {}",
            n.device, n.unit
        )),
    }
}

fn is_block_device(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// Whether the mount is of `device`: the same block device (by number, so
/// a symlink or a second device node still matches), else the same source.
fn holds_device(entry: &MountEntry, device: &Path) -> bool {
    match std::fs::metadata(device) {
        Ok(meta) if meta.file_type().is_block_device() => {
            let rdev = meta.rdev();
            entry.dev == (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
        }
        _ => Path::new(&entry.source) == device,
    }
}

/// What is mounted at `target` now: the topmost mount there.
fn mounted_at(target: &Path) -> Result<Option<MountEntry>, String> {
    let text = std::fs::read("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    Ok(mountinfo::parse(&text)
        .into_iter()
        .rev()
        .find(|e| e.target == target))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &[u8] = b"40 22 0:50 / /srv rw - nfs4 server:/export rw\n";

    #[test]
    fn a_source_that_is_no_block_device_matches_by_name() {
        let nfs = &mountinfo::parse(MOUNTINFO)[0];
        assert!(holds_device(nfs, Path::new("server:/export")));
        assert!(!holds_device(nfs, Path::new("server:/other")));
    }

    #[test]
    fn names_follow_systemd_and_refuse_bad_mountpoints() {
        let m = Mount {
            device: Path::new("/dev/duet/r0"),
            mountpoint: Path::new("/mnt//shared/"),
            fstype: "ext4",
            options: "",
            fsck: Fsck::Auto,
        };
        let n = Names::of(&m).expect("names");
        assert_eq!(n.unit, "mnt-shared.mount");
        assert_eq!(n.fsck, "duet-fsck@dev-duet-r0.service");
        assert_eq!(n.systemd_fsck, "systemd-fsck@dev-duet-r0.service");
        assert_eq!(n.target, Path::new("/mnt/shared"));
        for (mountpoint, words) in [
            ("mnt/shared", "not an absolute path"),
            ("/", "does not mount over /"),
            ("/mnt/../shared", "`..`"),
        ] {
            let m = Mount {
                mountpoint: Path::new(mountpoint),
                ..m
            };
            let e = Names::of(&m).err().unwrap_or_default();
            assert!(e.contains(words), "{mountpoint}: {e}");
        }
        let nfs = Mount {
            device: Path::new("server:/export"),
            ..m
        };
        assert_eq!(Names::of(&nfs).map(|n| n.fsck), Ok(String::new()));
    }

    #[test]
    fn the_program_of_the_first_exec_start_entry() {
        let entry = (
            "/lib/systemd/systemd-fsck",
            vec!["/lib/systemd/systemd-fsck", "/dev/sdb"],
            false,
            0u64,
            0u64,
            0u64,
            0u64,
            0u32,
            0i32,
            0i32,
        );
        let value = OwnedValue::try_from(Value::from(vec![entry])).expect("owned");
        assert_eq!(
            first_exec_path(&value).as_deref(),
            Some("/lib/systemd/systemd-fsck")
        );
        let empty = OwnedValue::try_from(Value::from(Vec::<(&str, Vec<&str>, bool)>::new()))
            .expect("owned");
        assert_eq!(first_exec_path(&empty), None);
    }
}
