//! Making a kernel block device of an export where the kernel has no NBD
//! driver (this machine, containers): nbdfuse shows the export as a file,
//! and a loop device with direct I/O sits on that file. The device gets the
//! stable path from the config (a symlink such as /dev/duet/r0), so mount
//! units never change. (Kernels with NBD get /dev/nbdN through netlink.)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    #[error("nbdfuse did not come up within {0:?}")]
    Timeout(Duration),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

const START_TIMEOUT: Duration = Duration::from_secs(10);

/// An attached export. Dropping it does not detach: call `detach`.
pub struct Attachment {
    pub device: PathBuf,
    pub loop_device: PathBuf,
    mountpoint: PathBuf,
    nbdfuse: Child,
    detached: bool,
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
/// reachable at `device` (a symlink to the loop device). `work` is a
/// private folder for the FUSE mount point.
pub fn attach(
    socket: &Path,
    name: &str,
    device: &Path,
    work: &Path,
) -> Result<Attachment, AttachError> {
    let mountpoint = work.join(name);
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
    link(device, &loop_device)?;
    Ok(Attachment {
        device: device.to_path_buf(),
        loop_device,
        mountpoint,
        nbdfuse,
        detached: false,
    })
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

/// Opening a block device with O_EXCL fails with EBUSY while it is
/// mounted or otherwise claimed.
fn exclusive(dev: &Path) -> Result<(), AttachError> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_EXCL)
        .open(dev)
        .map(drop)
        .map_err(|e| AttachError::Failed {
            program: "detach",
            message: format!("{} is in use ({e}); unmount it first", dev.display()),
        })
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
        let dev = self.loop_device.to_string_lossy().into_owned();
        // losetup -d on a mounted device only schedules the detach; refuse
        // instead, so the caller knows the device is still in use.
        exclusive(&self.loop_device)?;
        run("blockdev", &["--flushbufs", &dev])?;
        run("losetup", &["-d", &dev])?;
        self.detached = true;
        let _ = fs::remove_file(&self.device);
        let _ = run("fusermount3", &["-u", &self.mountpoint.to_string_lossy()]);
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            if let Ok(Some(_)) = self.nbdfuse.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.nbdfuse.kill();
        let _ = self.nbdfuse.wait();
        Ok(())
    }
}
