//! Making a kernel block device of an export. Where the kernel has an NBD
//! driver, /dev/nbdN through netlink (`kernel`); where it has none (this
//! machine, containers), nbdfuse shows the export as a file and a loop
//! device with direct I/O sits on that file. Either way the device gets the
//! stable path from the config (a symlink such as /dev/duet/r0), so mount
//! units never change.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::export::kernel::{self, KernelDevice, KernelError};
use crate::export::netlink::NetlinkError;

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("cannot run {program}: {source} (is it installed?)")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error("{program} failed: {message}")]
    Failed {
        program: &'static str,
        message: String,
    },
    #[error("kernel NBD: {0}")]
    Kernel(KernelError),
    #[error("nbdfuse did not come up within {0:?}")]
    Timeout(Duration),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections the kernel NBD driver gets to the export.
const KERNEL_CONNECTIONS: usize = 4;

/// An attached export. Dropping it does not detach: call `detach`.
pub struct Attachment {
    /// The stable path (a symlink).
    pub device: PathBuf,
    /// The block device it points at (/dev/nbdN or /dev/loopN).
    pub block_device: PathBuf,
    via: Via,
    detached: bool,
}

enum Via {
    Kernel(KernelDevice),
    Fuse {
        mountpoint: PathBuf,
        nbdfuse: Child,
        /// Names the loop device until it is detached (`clear_leftovers`).
        record: PathBuf,
        /// The loop device's backing file as the kernel showed it when it
        /// was bound: what it must still show for the detach to be ours.
        bound_to: Option<String>,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AttachError + '_ {
    move |source| AttachError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn run(program: &'static str, args: &[&str]) -> Result<String, AttachError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| AttachError::Spawn { program, source })?;
    if !out.status.success() {
        return Err(AttachError::Failed {
            program,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Attaches export `name` of the server at `socket` as a block device
/// reachable at `device` (a symlink). The kernel's NBD driver is used when
/// there is one; otherwise nbdfuse + loop, with `work` a private folder for
/// the FUSE mount point.
pub fn attach(
    socket: &Path,
    name: &str,
    device: &Path,
    work: &Path,
) -> Result<Attachment, AttachError> {
    match kernel::nbd_family() {
        Ok(_) => attach_kernel(socket, name, device),
        Err(KernelError::Netlink(NetlinkError::NoNbdDriver)) => {
            attach_fuse(socket, name, device, work)
        }
        Err(e) => Err(AttachError::Kernel(e)),
    }
}

fn attach_kernel(socket: &Path, name: &str, device: &Path) -> Result<Attachment, AttachError> {
    let dev = kernel::connect(socket, name, KERNEL_CONNECTIONS).map_err(AttachError::Kernel)?;
    let block_device = dev.path();
    if let Err(e) = link(device, &block_device) {
        let _ = dev.disconnect();
        return Err(e);
    }
    Ok(Attachment {
        device: device.to_path_buf(),
        block_device,
        via: Via::Kernel(dev),
        detached: false,
    })
}

fn attach_fuse(
    socket: &Path,
    name: &str,
    device: &Path,
    work: &Path,
) -> Result<Attachment, AttachError> {
    let mountpoint = work.join(name);
    let record = work.join(format!("{name}.loop"));
    clear_leftovers(&record, &mountpoint);
    fs::create_dir_all(&mountpoint).map_err(io(&mountpoint))?;
    let pidfile = work.join(format!("{name}.nbdfuse.pid"));
    let _ = fs::remove_file(&pidfile);
    let uri = format!("nbd+unix:///{name}?socket={}", socket.display());
    let file = mountpoint.join("disk");
    let mut nbdfuse = Command::new("nbdfuse")
        .arg("-P")
        .arg(&pidfile)
        .arg(&file)
        .arg(&uri)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|source| AttachError::Spawn {
            program: "nbdfuse",
            source,
        })?;
    let start = Instant::now();
    while !pidfile.exists() {
        if let Ok(Some(status)) = nbdfuse.try_wait() {
            return Err(AttachError::Failed {
                program: "nbdfuse",
                message: format!("exited with {status} before serving {uri}"),
            });
        }
        if start.elapsed() > START_TIMEOUT {
            let _ = nbdfuse.kill();
            let _ = nbdfuse.wait();
            return Err(AttachError::Timeout(START_TIMEOUT));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let loop_device = match bind_loop(&file) {
        Ok(dev) => dev,
        Err(e) => {
            let _ = run("fusermount3", &["-u", &mountpoint.to_string_lossy()]);
            let _ = nbdfuse.wait();
            return Err(e);
        }
    };
    // Best effort: without it a restart after a crash leaks this loop.
    let _ = fs::write(&record, loop_device.to_string_lossy().as_bytes());
    let bound_to = backing_file(&loop_device).ok().flatten();
    link(device, &loop_device)?;
    Ok(Attachment {
        device: device.to_path_buf(),
        block_device: loop_device,
        via: Via::Fuse {
            mountpoint,
            nbdfuse,
            record,
            bound_to,
        },
        detached: false,
    })
}

/// Removes what an attachment of a daemon that was killed left: its loop
/// device, bound to a file whose nbdfuse died with the daemon (a loop is
/// the kernel's and outlives both), and the dead FUSE mount. A machine
/// that rebooted has neither (the record lives in /run).
fn clear_leftovers(record: &Path, mountpoint: &Path) {
    let Ok(dev) = fs::read_to_string(record) else {
        return;
    };
    let dev = dev.trim();
    if bound_to_a_disk_file(dev) {
        let _ = run("losetup", &["-d", dev]);
    }
    let _ = run("fusermount3", &["-u", "-z", &mountpoint.to_string_lossy()]);
    let _ = fs::remove_file(record);
}

/// The loop device is bound to a file named `disk`, as nbdfuse's are
/// here: a stale record must not detach a loop someone else set up.
fn bound_to_a_disk_file(dev: &str) -> bool {
    dev.starts_with("/dev/")
        && backing_file(Path::new(dev))
            .is_ok_and(|f| f.is_some_and(|f| Path::new(&f).file_name() == Some("disk".as_ref())))
}

/// Puts a loop device (direct I/O) on `file`. The loop nodes that exist in
/// /dev are tried first: in a container only the ones bound in exist, and
/// the kernel's "next free" may name one that is not there. Then any.
fn bind_loop(file: &Path) -> Result<PathBuf, AttachError> {
    let file = file.to_string_lossy().into_owned();
    let mut nodes: Vec<(u32, PathBuf)> = fs::read_dir("/dev")
        .map_err(io(Path::new("/dev")))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("loop")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    nodes.sort();
    for (_, dev) in &nodes {
        let dev = dev.to_string_lossy().into_owned();
        if run("losetup", &["--direct-io=on", &dev, &file]).is_ok() {
            return Ok(PathBuf::from(dev));
        }
    }
    run("losetup", &["--find", "--show", "--direct-io=on", &file]).map(PathBuf::from)
}

/// The file a loop device is bound to as the kernel shows it (None: not
/// bound); an error when that cannot be read.
fn backing_file(dev: &Path) -> std::io::Result<Option<String>> {
    let name = dev
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")) {
        Ok(text) => Ok(Some(
            text.trim_end_matches('\n')
                .trim_end_matches(" (deleted)")
                .to_string(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opening a block device with O_EXCL fails with EBUSY while it is
/// mounted or otherwise claimed.
fn exclusive(dev: &Path) -> Result<(), AttachError> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_EXCL)
        .open(dev)
        .map(drop)
        .map_err(|e| {
            let message = if e.raw_os_error() == Some(nix::libc::EBUSY) {
                format!("{} is in use ({e}); {}", dev.display(), who_holds(dev))
            } else {
                format!("cannot open {}: {e}", dev.display())
            };
            AttachError::Failed {
                program: "detach",
                message,
            }
        })
}

/// What keeps `dev` claimed, for the administrator: a mount in some mount
/// namespace, or, when no namespace shows one, the two causes that leave
/// no mount behind.
fn who_holds(dev: &Path) -> String {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Some(rdev) = fs::metadata(dev)
        .ok()
        .filter(|m| m.file_type().is_block_device())
        .map(|m| m.rdev())
    else {
        return "unmount it first".into();
    };
    let number = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let mounts = crate::host::mountinfo::mounts_of(number);
    match mounts.first() {
        Some(m) => format!(
            "it is mounted at {} in the mount namespace of process {} ({}){}; unmount it there first",
            m.target.display(),
            m.pid,
            m.command,
            match mounts.len() {
                1 => String::new(),
                n => format!(" (and {} more mounts)", n - 1),
            }
        ),
        None => match stacked_on(number) {
            Some(holders) => format!(
                "{holders} is built on it (device-mapper, md or the like): remove that first"
            ),
            None => "no mount namespace shows it mounted: a filesystem frozen (fsfreeze) \
                     and then unmounted holds its device until it is thawed, or a program \
                     has the device open exclusively (fsck, mkfs)"
                .into(),
        },
    }
}

/// The block devices built on device `number` (the kernel's holders).
fn stacked_on(number: (u64, u64)) -> Option<String> {
    let dir = format!("/sys/dev/block/{}:{}/holders", number.0, number.1);
    let names: Vec<String> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// Points `device` at `target`, replacing an old link.
fn link(device: &Path, target: &Path) -> Result<(), AttachError> {
    if let Some(dir) = device.parent() {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    match fs::remove_file(device) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(device)(e)),
        _ => {}
    }
    std::os::unix::fs::symlink(target, device).map_err(io(device))
}

impl Attachment {
    /// Flushes, removes the loop device and the FUSE mount. Fails (and
    /// leaves everything attached) while the device is busy, e.g. mounted.
    /// Calling it again after success does nothing.
    pub fn detach(&mut self) -> Result<(), AttachError> {
        if self.detached {
            return Ok(());
        }
        let dev = self.block_device.to_string_lossy().into_owned();
        match &mut self.via {
            Via::Kernel(k) => {
                // Detaching a mounted device would only schedule it;
                // refuse instead, so the caller knows it is still in use.
                exclusive(&self.block_device)?;
                run("blockdev", &["--flushbufs", &dev])?;
                k.disconnect().map_err(AttachError::Kernel)?
            }
            Via::Fuse {
                mountpoint,
                nbdfuse,
                record,
                bound_to,
            } => {
                // Gone already (an earlier `losetup -d` while it was in use
                // set autoclear, and the last close detached it), or
                // taken by another attachment since: not ours to detach.
                // Unreadable: tried as ours, as before this check.
                let ours = match backing_file(&self.block_device) {
                    Ok(Some(now)) => bound_to.as_ref().is_none_or(|b| *b == now),
                    Ok(None) => false,
                    Err(_) => true,
                };
                if ours {
                    exclusive(&self.block_device)?;
                    run("blockdev", &["--flushbufs", &dev])?;
                    run("losetup", &["-d", &dev])?;
                } else {
                    tracing::warn!(
                        device = %dev,
                        "the loop device is no longer bound to {}; nothing to detach",
                        mountpoint.join("disk").display()
                    );
                }
                let _ = fs::remove_file(record);
                let _ = run("fusermount3", &["-u", &mountpoint.to_string_lossy()]);
                wait_or_kill(nbdfuse);
            }
        }
        self.detached = true;
        let _ = fs::remove_file(&self.device);
        Ok(())
    }
}

fn wait_or_kill(child: &mut Child) {
    let start = Instant::now();
    while start.elapsed() < START_TIMEOUT {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
