//! The backing disk's I/O for one replica: a few threads doing the reads,
//! writes and syncs the core asks for, each answering on the engine's
//! channel. Data goes to the data disk; metadata to the data disk's tail
//! or to its own device (`MdDisk`), each write synced after syncing the
//! data disk, so that it never reaches stable storage ahead of the data
//! it describes (`MdDisk::commit` says why).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use crate::config::VerifyAlg;
use crate::daemon::replica::engine::Cmd;
use crate::replication::core::{Buf, Input, MetaWrite};
use crate::replication::md_io::MdDisk;

/// Threads per replica: enough to keep a disk's queue busy.
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

pub struct DiskIo {
    jobs: Sender<Job>,
}

struct Worker {
    file: File,
    md: Arc<Mutex<MdDisk>>,
    engine: Sender<Cmd>,
    verify: VerifyAlg,
}

impl DiskIo {
    pub fn start(md: MdDisk, engine: Sender<Cmd>, verify: VerifyAlg) -> std::io::Result<DiskIo> {
        let file = md.data_file().try_clone()?;
        let md = Arc::new(Mutex::new(md));
        let (jobs, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..THREADS {
            let w = Worker {
                file: file.try_clone()?,
                md: md.clone(),
                engine: engine.clone(),
                verify,
            };
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("duet-disk{i}"))
                .spawn(move || w.run(&rx))?;
        }
        Ok(DiskIo { jobs })
    }

    pub fn submit(&self, job: Job) {
        // The workers only stop when the engine drops this sender.
        let _ = self.jobs.send(job);
    }
}

impl Worker {
    fn run(&self, rx: &Mutex<Receiver<Job>>) {
        loop {
            let job = {
                let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
                rx.recv()
            };
            let Ok(job) = job else { return };
            let cmd = self.execute(job);
            if self.engine.send(cmd).is_err() {
                return;
            }
        }
    }

    fn execute(&self, job: Job) -> Cmd {
        match job {
            Job::Read { buf, offset, len } => {
                let mut data = vec![0u8; len as usize];
                let ok = self.file.read_exact_at(&mut data, offset).is_ok();
                let digest = if matches!(buf, Buf::Verify(_)) && ok {
                    digest(self.verify, &data)
                } else {
                    0
                };
                Cmd::WithData(Input::ReadDone { buf, ok, digest }, buf, data)
            }
            Job::Write {
                buf,
                offset,
                data,
                fua,
            } => {
                let mut ok = self.file.write_all_at(&data, offset).is_ok();
                if ok && fua {
                    ok = self.file.sync_data().is_ok();
                }
                Cmd::Input(Input::Written { buf, ok })
            }
            Job::Flush { token } => {
                let ok = self.file.sync_data().is_ok();
                Cmd::Input(Input::FlushDone { token, ok })
            }
            Job::Meta { token, write } => {
                let ok = self.meta(write).is_ok();
                Cmd::Input(Input::MetaDone { token, ok })
            }
        }
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
