//! One replica's core, shared by the threads that feed it: the export's
//! workers (client requests), the link's reader (frames from the peer),
//! the disk workers (completions), a timer thread and the bus (admin).
//! Whoever feeds an input carries out what the core asks at once: cheap
//! actions under the lock (queueing frames in the core's order, taking
//! the answers to waiters), then sending the queue, answering (a write's
//! answer sends the client's reply: never under the lock) and the disk
//! I/O after it. A request so crosses as few threads as possible: on a
//! busy two-core machine each crossing costs tens of µs, more than the
//! work it hands over.

use crate::host::message_ids as ids;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::daemon::replica::disk::{DiskIo, Done, Job};
use crate::daemon::replica::link::Out;
use crate::daemon::replica::status::Snapshot;
use crate::export::backend::{WriteDone, eio};
use crate::export::conn::send_held_so_far;
use crate::host::direct;
use crate::replication::core::{
    Action, Buf, Event, FenceInput, FenceView, Input, Msg, Replica, ReqId,
};
use crate::replication::states::{Connection, Role};
use crate::replication::wire::Frame;
use crate::types::Timestamp;

/// How long a dropped connection waits for the peer to close its side.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the thread feeding an input may wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A thread that may wait for the disk (an export worker starting a
    /// request, a disk worker, the bus): it does the disk I/O itself.
    Blocking,
    /// The link's reader or the timer: writes here; flushes (a barrier
    /// at most every 5 ms of mirrored writes: the frames behind one need
    /// not wait for it) and reads (resync, verify: many at once) go to
    /// the disk workers.
    Background,
    /// The link's reader with more frames already read: as Background,
    /// but what the core sends waits for the last frame of the batch, so
    /// that the answers to a batch leave in one send.
    Batched,
    /// The daemon's runtime (the fencing relay): every piece of I/O goes
    /// to the disk workers, since a heartbeat must never wait for a disk.
    Offload,
}

pub enum Client {
    /// Answered with the outcome and, when nothing else holds it any
    /// more, the data's buffer for the next write.
    Write {
        offset: u64,
        data: Vec<u8>,
        fua: bool,
        done: WriteDone,
    },
    Read {
        offset: u64,
        len: u32,
        reply: Sender<Option<Vec<u8>>>,
    },
    Flush {
        reply: Sender<bool>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    Up,
    Down,
    Attach,
    Adjust,
    PauseSync,
    ResumeSync,
    Primary { force: bool },
    Secondary,
    Connect { discard_my_data: bool },
    Disconnect,
    Verify,
    Invalidate,
    InvalidateRemote,
    Detach,
}

enum Waiter {
    Done(Sender<bool>),
    Written(WriteDone),
    Data(Sender<Option<Vec<u8>>>),
}

/// Where the replica comes from: what attach and adjust read again.
pub struct Origin {
    pub config: std::path::PathBuf,
    pub local: crate::types::NodeId,
    /// The data disk and where its metadata is.
    pub backing: crate::replication::md_io::Backing,
    pub verify: crate::config::VerifyAlg,
}

/// What the lock guards: the core and what lives beside it.
struct State {
    core: Replica,
    disk: Option<Arc<DiskIo>>,
    bufs: HashMap<Buf, Arc<Vec<u8>>>,
    waiters: HashMap<ReqId, Waiter>,
    /// Writes answered under the lock, to be told after it is let go (a
    /// client's socket is never written while the engine is held).
    answered: Vec<(WriteDone, bool, Option<Vec<u8>>)>,
    next_req: u64,
    link: Option<Arc<Out>>,
    /// The states last logged (each change is logged once).
    logged: Option<[&'static str; 5]>,
    /// What the fencing relay last saw (`FenceKey`): a change wakes it.
    fence_seen: FenceKey,
    /// Whether the disk failed here and awaits a whole sync, on disk.
    distrust: super::distrust::Record,
}

/// What the fencing relay acts on: its view, and what decides whether
/// this node can answer its peer's request (`Replica::fence_view`).
type FenceKey = (FenceView, Connection, Role);

fn fence_key(core: &Replica) -> FenceKey {
    (core.fence_view(), core.connection(), core.role())
}

pub struct Engine {
    me: Weak<Engine>,
    state: Mutex<State>,
    pub name: String,
    origin: Origin,
    start: Instant,
    pub wants_link: Arc<AtomicBool>,
    pub stopped: AtomicBool,
    /// The timer thread sleeps until the core's next wakeup, in µs since
    /// `start` (u64::MAX: none); an earlier one wakes it.
    planned: AtomicU64,
    /// The core's next wakeup as of its last input (µs, u64::MAX: none).
    wakeup: AtomicU64,
    timer: (Mutex<()>, Condvar),
    /// Wakes the daemon's fencing relay when what it acts on changed.
    kick: Arc<tokio::sync::Notify>,
}

/// A piece of work after the lock: I/O, or an input to feed next.
enum Step {
    Feed(Input),
    FeedWithData(Input, Buf, Vec<u8>),
    Io(Job),
}

impl Engine {
    /// `me` is the engine's own Arc, for the disk threads of a later
    /// attach (built with Arc::new_cyclic).
    pub fn new(
        core: Replica,
        name: String,
        disk: Option<DiskIo>,
        origin: Origin,
        me: Weak<Engine>,
        kick: Arc<tokio::sync::Notify>,
        distrust: super::distrust::Record,
    ) -> Engine {
        let fence_seen = fence_key(&core);
        Engine {
            me,
            state: Mutex::new(State {
                fence_seen,
                distrust,
                core,
                disk: disk.map(Arc::new),
                bufs: HashMap::new(),
                waiters: HashMap::new(),
                answered: Vec::new(),
                next_req: 0,
                link: None,
                logged: None,
            }),
            name,
            origin,
            start: Instant::now(),
            wants_link: Arc::default(),
            stopped: AtomicBool::new(false),
            planned: AtomicU64::new(u64::MAX),
            wakeup: AtomicU64::new(u64::MAX),
            timer: (Mutex::new(()), Condvar::new()),
            kick,
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.start.elapsed())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot::of(&self.lock().core)
    }

    pub fn fence_view(&self) -> FenceView {
        self.lock().core.fence_view()
    }

    /// What the membership brought back about fencing. Fed from the
    /// daemon's runtime: its I/O goes to the disk workers.
    pub fn fence(&self, f: FenceInput) {
        self.feed(Input::Fence(f), Mode::Offload);
    }

    /// Feeds one input and everything that follows from it.
    pub fn feed(&self, input: Input, mode: Mode) {
        self.drive(VecDeque::from([Step::Feed(input)]), mode);
    }

    /// A disk completion from a worker.
    pub fn done(&self, done: Done) {
        let step = match done {
            Done::Input(i) => Step::Feed(i),
            Done::WithData(i, buf, data) => Step::FeedWithData(i, buf, data),
        };
        self.drive(VecDeque::from([step]), Mode::Blocking);
    }

    fn drive(&self, mut todo: VecDeque<Step>, mode: Mode) {
        while let Some(step) = todo.pop_front() {
            match step {
                Step::Io(job) => {
                    // The clients' replies held so far leave before this
                    // thread writes to disk (resync data on a Primary
                    // that is SyncTarget), and the peer's answers before
                    // a synced write holds it for a cache flush.
                    if mode == Mode::Batched {
                        send_held_so_far();
                        if matches!(job, Job::Write { fua: true, .. }) {
                            self.send_queued();
                        }
                    }
                    todo.extend(self.io(job, mode))
                }
                Step::Feed(input) => todo.extend(self.locked(None, input, mode)),
                Step::FeedWithData(input, buf, data) => {
                    todo.extend(self.locked(Some((buf, data)), input, mode))
                }
            }
        }
        self.after();
    }

    /// Runs the core on `input` under the lock; returns the I/O to do.
    fn locked(&self, data: Option<(Buf, Vec<u8>)>, input: Input, mode: Mode) -> Vec<Step> {
        let now = self.now();
        let (steps, link, answered) = {
            let mut st = self.lock();
            if let Some((buf, data)) = data {
                st.bufs.insert(buf, Arc::new(data));
            }
            let actions = st.core.on(input, now);
            let steps = self.apply(&mut st, actions);
            let link = (mode != Mode::Batched).then(|| st.link.clone()).flatten();
            (steps, link, std::mem::take(&mut st.answered))
        };
        if let Some(l) = link {
            l.kick();
        }
        tell(answered);
        steps
    }

    /// After a batch: wakes the timer if the core now wants an earlier
    /// tick (recorded under the lock by `apply`).
    fn after(&self) {
        if self.wakeup.load(Ordering::SeqCst) < self.planned.load(Ordering::SeqCst) {
            let _g = self.timer.0.lock().unwrap_or_else(|e| e.into_inner());
            self.timer.1.notify_all();
        }
    }

    /// One turn of the timer thread: ticks the core if it is due, else
    /// waits until it is (or for at most a second). The thread holds the
    /// engine only for a turn, so dropping the last handle ends it.
    pub fn run_timer_once(&self) {
        const IDLE: Duration = Duration::from_secs(1);
        // Holding the timer's lock from reading the wakeup to waiting:
        // whoever moves the wakeup earlier notifies under this lock, so
        // the change is either seen here or wakes the wait.
        let g = self.timer.0.lock().unwrap_or_else(|e| e.into_inner());
        // Until the wait below is planned, any wakeup recorded counts as
        // earlier: a thread that moved it after the read below then
        // notifies (blocking on the timer's lock until the wait starts)
        // instead of comparing with a plan already past.
        self.planned.store(u64::MAX, Ordering::SeqCst);
        let next = self.lock().core.next_wakeup();
        let now = self.now();
        if next.is_some_and(|t| t <= now) {
            drop(g);
            self.feed(Input::Tick, Mode::Background);
            return;
        }
        let at = next.map_or(u64::MAX, |t| t.0.as_micros() as u64);
        self.planned.store(at, Ordering::SeqCst);
        let wait = next.map_or(IDLE, |t| t.0.saturating_sub(now.0)).min(IDLE);
        let (g, waited) = self
            .timer
            .1
            .wait_timeout(g, wait)
            .unwrap_or_else(|e| e.into_inner());
        drop(g);
        // With no wakeup asked for, a tick a second all the same, as the
        // core has always been given.
        if next.is_none() && waited.timed_out() && !self.stopped.load(Ordering::SeqCst) {
            self.feed(Input::Tick, Mode::Background);
        }
    }

    /// A client request (the export); the answer comes on its channel.
    pub fn client(&self, c: Client) {
        let input = {
            let mut st = self.lock();
            st.next_req += 1;
            let req = ReqId(st.next_req);
            match c {
                Client::Write {
                    offset,
                    data,
                    fua,
                    done,
                } => {
                    let len = data.len() as u32;
                    st.bufs.insert(Buf::App(req), Arc::new(data));
                    st.waiters.insert(req, Waiter::Written(done));
                    Input::Write {
                        req,
                        offset,
                        len,
                        fua,
                    }
                }
                Client::Read { offset, len, reply } => {
                    st.waiters.insert(req, Waiter::Data(reply));
                    Input::Read { req, offset, len }
                }
                Client::Flush { reply } => {
                    st.waiters.insert(req, Waiter::Done(reply));
                    Input::FlushReq { req }
                }
            }
        };
        self.feed(input, Mode::Blocking);
    }

    /// A new connection to the peer, handshaken.
    pub fn link_up(&self, out: Arc<Out>) {
        self.lock().link = Some(out);
        self.feed(Input::TransportUp, Mode::Background);
    }

    pub fn link_down(&self, conn: u64) {
        let mine = {
            let mut st = self.lock();
            let mine = st.link.as_ref().is_some_and(|l| l.conn == conn);
            if mine {
                st.link = None;
            }
            mine
        };
        if mine {
            self.feed(Input::TransportDown, Mode::Background);
        }
    }

    /// A frame from connection `conn` (the link's reader); `more`: the
    /// reader holds the next frame already.
    pub fn received(&self, conn: u64, frame: Frame, more: bool) {
        let current = self.lock().link.as_ref().is_some_and(|l| l.conn == conn);
        match current.then(|| step_of(frame)).flatten() {
            Some(step) => {
                let mode = if more {
                    Mode::Batched
                } else {
                    Mode::Background
                };
                self.drive(VecDeque::from([step]), mode);
            }
            // A frame that feeds the core nothing can end a batch too.
            None if !more => self.send_queued(),
            None => {}
        }
    }

    /// Sends what the link's queue holds (as far as the socket takes it).
    fn send_queued(&self) {
        let link = self.lock().link.clone();
        if let Some(l) = link {
            l.kick();
        }
    }

    pub fn admin(&self, a: Admin) -> Result<(), String> {
        if a == Admin::Secondary {
            self.await_peer_flush();
        }
        let now = self.now();
        let (steps, answered) = {
            let mut st = self.lock();
            let actions = self.admin_actions(&mut st, a, now)?;
            tracing::info!(replica = %self.name, "{a:?} done");
            let steps = self.apply(&mut st, actions);
            (steps, std::mem::take(&mut st.answered))
        };
        self.send_queued();
        tell(answered);
        self.drive(steps.into(), Mode::Blocking);
        Ok(())
    }

    /// Before a demotion: the peer's flush of recent mirrored writes is
    /// usually a round trip away; wait for it a little rather than refuse.
    fn await_peer_flush(&self) {
        const WAIT: Duration = Duration::from_secs(5);
        let deadline = Instant::now() + WAIT;
        while self.lock().core.awaits_peer_flush() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn admin_actions(
        &self,
        st: &mut State,
        a: Admin,
        now: Timestamp,
    ) -> Result<Vec<Action>, String> {
        let core = &mut st.core;
        Ok(match a {
            Admin::Primary { force } => {
                let wall = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_micros() as u64);
                core.primary(force, wall, now)?
            }
            Admin::Secondary => core.secondary(now)?,
            Admin::Connect { discard_my_data } => core.connect(discard_my_data)?,
            Admin::Disconnect => core.disconnect(),
            Admin::Verify => core.verify(now)?,
            Admin::Invalidate => core.invalidate(now)?,
            Admin::InvalidateRemote => core.invalidate_remote(now)?,
            Admin::Detach => core.detach()?,
            Admin::Attach => self.attach(st)?,
            Admin::Up => {
                let mut a = self.attach(st)?;
                a.extend(st.core.connect(false)?);
                a
            }
            Admin::Down => {
                let mut a = core.disconnect();
                a.extend(core.detach()?);
                a
            }
            Admin::Adjust => self.adjust(core)?,
            Admin::PauseSync => core.pause_sync()?,
            Admin::ResumeSync => core.resume_sync(now)?,
        })
    }

    /// Opens the disk's metadata again and hands it to the core.
    fn attach(&self, st: &mut State) -> Result<Vec<Action>, String> {
        if st.disk.is_some() && st.core.disk() != crate::replication::states::DiskState::Diskless {
            return Ok(Vec::new());
        }
        let (md, loaded) = crate::replication::md_io::MdDisk::open(&self.origin.backing)
            .map_err(|e| e.to_string())?;
        let io = DiskIo::start(&self.name, md, self.me.clone(), self.origin.verify)
            .map_err(|e| e.to_string())?;
        let actions = st.core.attach(super::attached(loaded))?;
        st.disk = Some(Arc::new(io));
        Ok(actions)
    }

    /// Reads the config file again and applies what can change live.
    fn adjust(&self, core: &mut Replica) -> Result<Vec<Action>, String> {
        let loaded = crate::config::load(&self.origin.config).map_err(|e| e.to_string())?;
        let c = &loaded.config;
        let r = c.replica(&self.name).ok_or_else(|| {
            format!(
                "{} is no longer in {}",
                self.name,
                self.origin.config.display()
            )
        })?;
        let s = core.settings();
        let peer = r
            .peer(self.origin.local)
            .ok_or_else(|| "the replica has no peer any more".to_string())?;
        let new = super::settings(c, r, self.origin.local, peer, s.size);
        core.adjust(new)
    }

    /// Carries out the cheap actions; returns the I/O (and inputs) left.
    /// Also records, while the lock is held anyway, whether the link is
    /// wanted and when the core next wants a tick.
    fn apply(&self, st: &mut State, actions: Vec<Action>) -> Vec<Step> {
        let mut steps = Vec::new();
        for a in actions {
            if let Some(s) = self.action(st, a) {
                steps.push(s);
            }
        }
        self.wants_link
            .store(st.core.wants_transport(), Ordering::SeqCst);
        let next = st.core.next_wakeup();
        let at = next.map_or(u64::MAX, |t| t.0.as_micros() as u64);
        self.wakeup.store(at, Ordering::SeqCst);
        let distrusted = st.core.disk_distrusted();
        st.distrust.keep(distrusted, &self.name);
        let key = fence_key(&st.core);
        if key != st.fence_seen {
            st.fence_seen = key;
            self.kick.notify_one();
        }
        steps
    }

    fn action(&self, st: &mut State, a: Action) -> Option<Step> {
        match a {
            Action::Read { buf, offset, len } => Some(Step::Io(Job::Read { buf, offset, len })),
            Action::Write {
                buf,
                offset,
                len,
                fua,
            } => Some(match st.bufs.get(&buf) {
                Some(data) if data.len() == len as usize => Step::Io(Job::Write {
                    buf,
                    offset,
                    data: data.clone(),
                    fua,
                }),
                _ => Step::Feed(Input::Written { buf, ok: false }),
            }),
            Action::Flush { token } => Some(Step::Io(Job::Flush { token })),
            Action::Meta { token, write } => Some(Step::Io(Job::Meta { token, write })),
            Action::Send { msg, payload } => {
                let data = payload.and_then(|b| st.bufs.get(&b).cloned());
                if let Some(out) = &st.link {
                    out.push(msg, data);
                }
                None
            }
            Action::Release(buf) => {
                let data = st.bufs.remove(&buf);
                // The peer's payloads serve its next frames.
                if let (Buf::Peer(_) | Buf::ResyncIn(_), Some(d)) = (buf, data)
                    && let Ok(d) = Arc::try_unwrap(d)
                {
                    super::payloads::give_back(d);
                }
                None
            }
            Action::Complete { req, ok } => {
                complete(st, req, ok);
                None
            }
            Action::Drop { reason } => {
                tracing::warn!(replica = %self.name, "replication link dropped: {reason}");
                // Closing makes the writer send what is queued (the state
                // that made the peer refuse too, say), then half-close; a
                // reset would throw that away. The reader gives a silent
                // peer a moment to close its side.
                if let Some(out) = st.link.take() {
                    out.close(CLOSE_GRACE);
                }
                None
            }
            Action::Event(e) => {
                self.event(st, e);
                None
            }
        }
    }

    /// Does one piece of disk I/O here, or hands it to a disk worker when
    /// this thread must not wait for the disk.
    fn io(&self, job: Job, mode: Mode) -> Option<Step> {
        let disk = self.lock().disk.clone();
        let Some(disk) = disk else {
            // The core never asks a diskless replica for I/O.
            tracing::error!(replica = %self.name, "disk I/O asked of a diskless replica");
            return Some(Step::Feed(job.failed()));
        };
        let inline = match (&job, mode) {
            (_, Mode::Blocking) => {
                !matches!(job, Job::Read { buf, .. } if !matches!(buf, Buf::App(_)))
            }
            // A peer's write, FUA or not: protocol C's round trip waits
            // for it, and a hop to a worker and back costs more than the
            // frames queued behind it wait. A flush costs more than the
            // hop (a disk's cache flush), and the primary sends one after
            // each burst of writes: done here, it held up every write
            // behind it (half the random writes' time at depth 1).
            // A write with a part that goes to the disk direct takes
            // longer than the frames behind it should wait (host::direct).
            (Job::Write { offset, data, .. }, Mode::Background | Mode::Batched) => {
                direct::middle(*offset, data.len()).is_none()
            }
            (_, Mode::Offload) => false,
            _ => false,
        };
        if !inline {
            disk.submit(job);
            return None;
        }
        Some(match disk.execute(job) {
            Done::Input(i) => Step::Feed(i),
            Done::WithData(i, buf, data) => Step::FeedWithData(i, buf, data),
        })
    }

    fn event(&self, st: &mut State, e: Event) {
        let r = &st.core;
        let name = &self.name;
        match e {
            Event::StateChanged => {
                let now = [
                    r.role().as_str(),
                    r.connection().as_str(),
                    r.replication().as_str(),
                    r.disk().as_str(),
                    r.peer_disk().as_str(),
                ];
                if st.logged != Some(now) {
                    st.logged = Some(now);
                    tracing::info!(
                        replica = %name,
                        role = now[0],
                        connection = now[1],
                        replication = now[2],
                        disk = now[3],
                        peer_disk = now[4],
                        "{} {} {} {}/{}",
                        now[0], now[1], now[2], now[3], now[4]
                    );
                }
            }
            Event::SyncStarted { full, bytes } => {
                tracing::info!(message_id = ids::SYNC_STARTED, replica = %name, full, bytes, "sync started")
            }
            Event::SyncFinished { bytes } => {
                tracing::info!(message_id = ids::SYNC_FINISHED, replica = %name, bytes, "sync finished")
            }
            Event::VerifyFinished { out_of_sync_bytes } => {
                tracing::info!(replica = %name, out_of_sync_bytes, "verify finished")
            }
            Event::SplitBrain { resolved } => {
                tracing::error!(message_id = ids::SPLIT_BRAIN, replica = %name, "split brain detected: {resolved}")
            }
            Event::Refused { reason } => {
                tracing::error!(replica = %name, "connection refused: {reason}")
            }
            Event::Declined { reason } => {
                tracing::warn!(replica = %name, "declined: {reason}")
            }
            Event::DiskFailed => tracing::error!(
                message_id = ids::DISK_FAILED,
                replica = %name,
                "I/O error on the backing disk: detached; this node now serves through its peer if it can. Attached again, the disk is synced whole from the peer"
            ),
            Event::Fencing { generation } => tracing::warn!(
                replica = %name,
                %generation,
                "Primary without {peer}: asking through the membership to outdate its disk; writes are answered once it is",
                peer = r.settings().peer_name
            ),
            Event::PeerOutdated { generation } => tracing::info!(
                replica = %name,
                %generation,
                "{peer} outdated its disk: writes are answered again",
                peer = r.settings().peer_name
            ),
            Event::FencedWithout { reason } => tracing::error!(replica = %name, "{reason}"),
            Event::OutdatedByPeer { generation } => tracing::warn!(
                replica = %name,
                %generation,
                "{peer}, Primary without this node, outdated this disk: it is not promoted without --force until it syncs",
                peer = r.settings().peer_name
            ),
            Event::OutdateRefused { reason } => tracing::error!(replica = %name, "{reason}"),
        }
    }

    /// Stops the timer and the link and lets the disk threads go.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let mut st = self.lock();
        if let Some(out) = st.link.take() {
            out.close(Duration::ZERO);
        }
        st.disk = None;
        drop(st);
        let _g = self.timer.0.lock().unwrap_or_else(|e| e.into_inner());
        self.timer.1.notify_all();
    }
}

/// What a frame from the peer feeds the core (with its payload into the
/// buffer it names); None for a payload on a message that has none.
fn step_of(frame: Frame) -> Option<Step> {
    let Some(data) = frame.payload else {
        let input = Input::Received {
            msg: frame.msg,
            payload: false,
        };
        return Some(Step::Feed(input));
    };
    let buf = match &frame.msg {
        Msg::Data { seq, .. } => Buf::Peer(*seq),
        Msg::ResyncData { id, .. } => Buf::ResyncIn(*id),
        Msg::ReadReply { id, .. } => Buf::App(ReqId(*id)),
        _ => return None,
    };
    let input = Input::Received {
        msg: frame.msg,
        payload: true,
    };
    Some(Step::FeedWithData(input, buf, data))
}

fn tell(answered: Vec<(WriteDone, bool, Option<Vec<u8>>)>) {
    for (done, ok, back) in answered {
        done.finish(if ok { Ok(()) } else { Err(eio()) }, back);
    }
}

fn complete(st: &mut State, req: ReqId, ok: bool) {
    let data = st.bufs.remove(&Buf::App(req));
    match st.waiters.remove(&req) {
        Some(Waiter::Done(tx)) => {
            let _ = tx.send(ok);
        }
        Some(Waiter::Written(done)) => {
            let back = data.and_then(|d| Arc::try_unwrap(d).ok());
            st.answered.push((done, ok, back));
        }
        Some(Waiter::Data(tx)) => {
            let data = data
                .filter(|_| ok)
                .map(|d| Arc::try_unwrap(d).unwrap_or_else(|d| (*d).clone()));
            let _ = tx.send(data);
        }
        None => {}
    }
}
