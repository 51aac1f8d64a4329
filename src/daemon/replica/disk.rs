//! The backing disk's I/O for one replica. The thread that feeds the core
//! does quick I/O itself (see the engine); what would hold up the link's
//! reader goes to a few worker threads here, which feed the completion to
//! the engine themselves. Data goes to the data disk; metadata to the data
//! disk's tail or to its own device (`MdDisk`), each write synced after
//! syncing the data disk, so that it never reaches stable storage ahead of
//! the data it describes (`MdDisk::commit` says why).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, Weak};

use crate::config::VerifyAlg;
use crate::daemon::replica::engine::Engine;
use crate::host::{direct, pagecache};
use crate::replication::core::{Buf, Input, MetaWrite};
use crate::replication::md_io::MdDisk;

/// Worker threads per replica: enough to keep a disk's queue busy.
const THREADS: usize = 4;

pub enum Job {
    Read {
        buf: Buf,
        offset: u64,
        len: u32,
    },
    Write {
        buf: Buf,
        offset: u64,
        data: Arc<Vec<u8>>,
        fua: bool,
    },
    Flush {
        token: u64,
    },
    Meta {
        token: u64,
        write: MetaWrite,
    },
}

/// A finished job, for the core.
pub enum Done {
    Input(Input),
    /// A read: its data goes into the buffer store first.
    WithData(Input, Buf, Vec<u8>),
}

impl Job {
    /// The core's input for this job when it cannot run at all.
    pub fn failed(&self) -> Input {
        match self {
            Job::Read { buf, .. } => Input::ReadDone {
                buf: *buf,
                ok: false,
                digest: 0,
            },
            Job::Write { buf, .. } => Input::Written {
                buf: *buf,
                ok: false,
            },
            Job::Flush { token } => Input::FlushDone {
                token: *token,
                ok: false,
            },
            Job::Meta { token, .. } => Input::MetaDone {
                token: *token,
                ok: false,
            },
        }
    }
}

struct Disk {
    replica: String,
    file: File,
    /// The same file opened O_DIRECT, for large aligned writes; `None`
    /// where it cannot be opened so.
    direct: Option<File>,
    /// A direct write was refused: none is tried again.
    direct_refused: AtomicBool,
    md: Mutex<MdDisk>,
    verify: VerifyAlg,
}

pub struct DiskIo {
    disk: Arc<Disk>,
    jobs: Sender<Job>,
}

impl DiskIo {
    /// Starts the workers; they feed completions to `engine` and stop
    /// when this is dropped.
    pub fn start(
        replica: &str,
        md: MdDisk,
        engine: Weak<Engine>,
        verify: VerifyAlg,
    ) -> std::io::Result<DiskIo> {
        let file = md.data_file().try_clone()?;
        // Advice only: a disk that refuses it (none known) works as before.
        let _ = pagecache::no_readahead(&file);
        let direct = direct::reopen(&file)
            .inspect_err(|e| {
                let disk = md.data_path().display();
                tracing::info!(
                    replica,
                    "{disk}: no direct I/O, large writes go through the page cache: {e}"
                );
            })
            .ok();
        let disk = Arc::new(Disk {
            replica: replica.to_string(),
            file,
            direct,
            direct_refused: AtomicBool::new(false),
            md: Mutex::new(md),
            verify,
        });
        let (jobs, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..THREADS {
            let (disk, rx, engine) = (disk.clone(), rx.clone(), engine.clone());
            std::thread::Builder::new()
                .name(format!("duet-disk{i}"))
                .spawn(move || work(&disk, &rx, &engine))?;
        }
        Ok(DiskIo { disk, jobs })
    }

    pub fn submit(&self, job: Job) {
        // The workers only stop when this sender is dropped.
        let _ = self.jobs.send(job);
    }

    /// Does the job on this thread.
    pub fn execute(&self, job: Job) -> Done {
        self.disk.execute(job)
    }
}

fn work(disk: &Disk, rx: &Mutex<Receiver<Job>>, engine: &Weak<Engine>) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        let Ok(job) = job else { return };
        let done = disk.execute(job);
        let Some(engine) = engine.upgrade() else {
            return;
        };
        engine.done(done);
    }
}

impl Disk {
    fn execute(&self, job: Job) -> Done {
        match job {
            Job::Read { buf, offset, len } => self.read(buf, offset, len),
            Job::Write {
                buf,
                offset,
                data,
                fua,
            } => {
                // The peer's data goes direct; a client's stays in the
                // cache, where the client reads it back (host::direct).
                let peers = matches!(buf, Buf::Peer(_) | Buf::ResyncIn(_));
                let mut ok = self.write(&data, offset, peers).is_ok();
                if ok && fua {
                    ok = self.file.sync_data().is_ok();
                }
                Done::Input(Input::Written { buf, ok })
            }
            Job::Flush { token } => {
                let ok = self.file.sync_data().is_ok();
                Done::Input(Input::FlushDone { token, ok })
            }
            Job::Meta { token, write } => {
                let ok = self.meta(write).is_ok();
                Done::Input(Input::MetaDone { token, ok })
            }
        }
    }

    /// The part of a large write that `direct::middle` picks goes direct,
    /// the rest through the cache. A disk that refuses a direct write
    /// (EINVAL: an alignment it does not take) gets this one and every
    /// later one through the cache.
    fn write(&self, data: &[u8], offset: u64, may_go_direct: bool) -> std::io::Result<()> {
        let middle = direct::middle(offset, data.len()).filter(|_| may_go_direct);
        let direct = self
            .direct
            .as_ref()
            .filter(|_| !self.direct_refused.load(Ordering::Relaxed));
        let (Some(d), Some(m)) = (direct, middle) else {
            return pagecache::write_all_at(&self.file, data, offset);
        };
        pagecache::write_all_at(&self.file, &data[..m.start], offset)?;
        pagecache::write_all_at(&self.file, &data[m.end..], offset + m.end as u64)?;
        match direct::write_all_at(d, &data[m.clone()], offset + m.start as u64) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                let replica = &self.replica;
                tracing::warn!(
                    replica,
                    "direct writes refused ({e}): large writes go through the page cache from now on"
                );
                self.direct_refused.store(true, Ordering::Relaxed);
                pagecache::write_all_at(&self.file, &data[m.clone()], offset + m.start as u64)
            }
            r => r,
        }
    }

    fn read(&self, buf: Buf, offset: u64, len: u32) -> Done {
        let mut data = vec![0u8; len as usize];
        let ok = self.file.read_exact_at(&mut data, offset).is_ok();
        // Read for the peer or a checksum, not for a client.
        if matches!(buf, Buf::ResyncOut(_) | Buf::Verify(_)) {
            let _ = pagecache::drop_cached(&self.file, offset, u64::from(len));
        }
        let digest = if matches!(buf, Buf::Verify(_)) && ok {
            digest(self.verify, &data)
        } else {
            0
        };
        Done::WithData(Input::ReadDone { buf, ok, digest }, buf, data)
    }

    fn meta(&self, write: MetaWrite) -> std::io::Result<()> {
        let mut md = self.md.lock().unwrap_or_else(|e| e.into_inner());
        match write {
            MetaWrite::Superblock { generations, flags } => md.write_superblock(generations, flags),
            MetaWrite::Bitmap { first_word, words } => md.write_bitmap(first_word, &words),
            MetaWrite::ActivityLog(txn) => md.write_al(&txn),
        }
    }
}

/// The online-verify checksum of a block range.
pub fn digest(alg: VerifyAlg, data: &[u8]) -> u64 {
    match alg {
        VerifyAlg::Crc32c => u64::from(crc32c::crc32c(data)),
        VerifyAlg::Sha256 => {
            use sha2::Digest;
            let d = sha2::Sha256::digest(data);
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[..8]);
            u64::from_le_bytes(b)
        }
    }
}
