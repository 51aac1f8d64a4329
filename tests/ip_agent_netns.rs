//! The floating-IP agent against a real kernel: the agent runs inside
//! namespace A, a veth pair leads to namespace B, where a packet socket
//! watches the announcements and B's neighbour table shows what it learnt.
//! Needs root. The test may use `ip` to set up and look; the agent never
//! does.

use std::io;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duet::daemon::agents::{Op, ip as agent};
use socket2::{Domain, Protocol, Socket, Type};

const MAC_A: [u8; 6] = [0x02, 0, 0x5e, 0, 0x0a, 0x01];
const MAC_A_TEXT: &str = "02:00:5e:00:0a:01";
const MAC_B_TEXT: &str = "02:00:5e:00:0b:01";
/// What B's cache says before the start: the address was on another node.
const MAC_OLD_TEXT: &str = "02:00:5e:00:0c:01";
const WAIT: Duration = Duration::from_secs(5);

fn ip(args: &[&str]) {
    show(args);
}

/// Runs `ip` and returns what it printed.
fn show(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two network namespaces, deleted when dropped (also on a panic); the
/// links and addresses in them go with them.
struct Pair {
    a: String,
    b: String,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Namespaces A and B joined by a veth pair named eth0 on both sides, with
/// fixed MACs and 198.51.100.1/24, 2001:db8::1/64 (A), .2 and ::2 (B).
fn pair() -> Pair {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (network namespaces, veth)"
    );
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let name = |side| format!("duet-ip-{}-{n}-{side}", std::process::id());
    let pair = Pair {
        a: name("a"),
        b: name("b"),
    };
    let (a, b) = (&pair.a, &pair.b);
    for ns in [a, b] {
        ip(&["netns", "add", ns]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    ip(&[
        "link", "add", "eth0", "netns", a, "address", MAC_A_TEXT, "type", "veth", "peer", "name",
        "eth0", "netns", b, "address", MAC_B_TEXT,
    ]);
    for (ns, n) in [(a, 1), (b, 2)] {
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("198.51.100.{n}/24"),
            "dev",
            "eth0",
        ]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("2001:db8::{n}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        ip(&["-n", ns, "link", "set", "eth0", "up"]);
    }
    // The carrier comes up a moment later (the kernel's link watch), and
    // only then does IPv6 take multicast (ff02::1) on the link.
    for ns in [a, b] {
        wait_for(&format!("eth0 in {ns} to take IPv6 multicast"), || {
            show(&["-n", ns, "-6", "route", "show", "table", "local"])
                .contains("multicast ff00::/8 dev eth0")
        });
    }
    pair
}

fn sysctl(ns: &str, setting: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-qw", setting])
        .output()
        .expect("run sysctl");
    assert!(
        out.status.success(),
        "sysctl {setting} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The addresses of eth0 in `ns`, one line each.
fn addresses(ns: &str) -> String {
    show(&["-n", ns, "-o", "addr", "show", "dev", "eth0"])
}

/// Polls `check` every 20 ms until it holds or `WAIT` has passed.
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn neighbour(ns: &str, address: &str) -> String {
    show(&["-n", ns, "neigh", "show", address, "dev", "eth0"])
}

/// Runs `f` on a thread of its own inside namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let netns = std::fs::File::open(&path).expect("open the namespace");
        // SAFETY: setns on a descriptor we own; it changes only this thread.
        let r = unsafe {
            nix::libc::setns(
                std::os::fd::AsRawFd::as_raw_fd(&netns),
                nix::libc::CLONE_NEWNET,
            )
        };
        assert_eq!(r, 0, "setns {path}: {}", io::Error::last_os_error());
        f()
    })
}

type Call = (IpAddr, u8, String, Op, std_mpsc::Sender<Result<(), String>>);

/// The agent on a thread inside a namespace, with a tokio runtime that
/// stays up between calls (so the spawned announcements go on).
struct Agent {
    calls: Option<tokio::sync::mpsc::UnboundedSender<Call>>,
    thread: Option<JoinHandle<()>>,
}

impl Agent {
    fn in_netns(ns: &str) -> Agent {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Call>();
        let thread = in_netns(ns, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                while let Some((address, prefix, interface, op, reply)) = rx.recv().await {
                    let result = agent::run(address, prefix, &interface, op).await;
                    let _ = reply.send(result);
                }
            });
        });
        Agent {
            calls: Some(tx),
            thread: Some(thread),
        }
    }

    /// Hands the agent a call and returns where its answer will come.
    fn send(
        &self,
        address: &str,
        prefix: u8,
        interface: &str,
        op: Op,
    ) -> std_mpsc::Receiver<Result<(), String>> {
        let address: IpAddr = address.parse().expect("test address");
        let (tx, rx) = std_mpsc::channel();
        self.calls
            .as_ref()
            .expect("agent thread")
            .send((address, prefix, interface.to_owned(), op, tx))
            .expect("agent thread alive");
        rx
    }

    fn run(&self, address: &str, prefix: u8, interface: &str, op: Op) -> Result<(), String> {
        answer(self.send(address, prefix, interface, op))
    }
}

fn answer(rx: std_mpsc::Receiver<Result<(), String>>) -> Result<(), String> {
    // The agent bounds each netlink request by 5 s; 30 s means it hung.
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the agent answers")
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.calls = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A packet socket on eth0 of a namespace, seeing every frame.
struct Capture(Socket);

impl Capture {
    fn on(ns: &str) -> Capture {
        in_netns(ns, || {
            const ETH_P_ALL: u16 = 0x0003;
            let socket = Socket::new(
                Domain::PACKET,
                Type::RAW,
                Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
            )
            .expect("packet socket");
            let index = nix::net::if_::if_nametoindex("eth0").expect("eth0 in B");
            // SAFETY: an all-zero sockaddr_ll is valid; the fields are set below.
            let mut sll: nix::libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = nix::libc::AF_PACKET as u16;
            sll.sll_protocol = ETH_P_ALL.to_be();
            sll.sll_ifindex = index as i32;
            // SAFETY: the address is valid for its length during the call.
            let r = unsafe {
                nix::libc::bind(
                    std::os::fd::AsRawFd::as_raw_fd(&socket),
                    (&sll as *const nix::libc::sockaddr_ll).cast(),
                    std::mem::size_of::<nix::libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(r, 0, "bind: {}", io::Error::last_os_error());
            Capture(socket)
        })
        .join()
        .expect("capture socket")
    }

    /// Frames for which `keep` holds, gathered until `enough` says so or
    /// `within` has passed.
    fn gather(
        &self,
        within: Duration,
        keep: impl Fn(&[u8]) -> bool,
        enough: impl Fn(&[(Instant, Vec<u8>)]) -> bool,
    ) -> Vec<(Instant, Vec<u8>)> {
        let deadline = Instant::now() + within;
        let mut kept = Vec::new();
        let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
        while !enough(&kept) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.0.set_read_timeout(Some(left)).expect("read timeout");
            let n = match self.0.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                // With a receive timeout set, the kernel does not restart
                // recv after a signal: the SIGCHLD of an `ip` that another
                // test thread ran, queued while that thread had signals
                // blocked in posix_spawn, can wake this thread instead.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("capture: {e}"),
            };
            // SAFETY: recv initialised the first n bytes.
            let frame: Vec<u8> = buf[..n]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            if keep(&frame) {
                kept.push((Instant::now(), frame));
            }
        }
        kept
    }
}

/// A gratuitous ARP from A for `address`: its op (1 request, 2 reply) when
/// it is one.
fn garp_from_a(frame: &[u8], address: [u8; 4]) -> Option<u16> {
    let is = frame.len() >= 42
        && frame[0..6] == [0xff; 6]
        && frame[6..12] == MAC_A
        && frame[12..14] == [0x08, 0x06]
        && frame[22..28] == MAC_A
        && frame[28..32] == address
        && frame[38..42] == address;
    is.then(|| u16::from_be_bytes([frame[20], frame[21]]))
}

/// An unsolicited neighbour advertisement from A for `target`.
fn na_from_a(frame: &[u8], target: [u8; 16]) -> bool {
    let all_nodes = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    frame.len() >= 86
        && frame[0..6] == [0x33, 0x33, 0, 0, 0, 1]
        && frame[6..12] == MAC_A
        && frame[12..14] == [0x86, 0xdd]
        && frame[20] == 58 // ICMPv6
        && frame[21] == 255 // hop limit
        && frame[38..54] == all_nodes
        && frame[54] == 136 // neighbour advertisement
        && frame[58] & 0x20 != 0 // override
        && frame[58] & 0x40 == 0 // not solicited
        && frame[62..78] == target
        && frame[78..80] == [2, 1] // target link-layer address
        && frame[80..86] == MAC_A
}

#[test]
fn ipv4_start_announce_monitor_stop() {
    let pair = pair();
    let (a, b) = (&pair.a, &pair.b);
    // B has the address cached as another node's, as after a failover; B
    // keeps the kernel's default arp_accept (0): only a correct gratuitous
    // ARP overrides a fresh entry.
    ip(&[
        "-n",
        b,
        "neigh",
        "add",
        "198.51.100.10",
        "lladdr",
        MAC_OLD_TEXT,
        "dev",
        "eth0",
        "nud",
        "stale",
    ]);
    let capture = Capture::on(b);
    let agent = Agent::in_netns(a);

    assert_eq!(agent.run("198.51.100.10", 24, "eth0", Op::Start), Ok(()));
    assert!(
        addresses(a).contains("inet 198.51.100.10/24"),
        "{}",
        addresses(a)
    );

    let ip10 = [198, 51, 100, 10];
    let arps = capture.gather(
        WAIT,
        |f| garp_from_a(f, ip10).is_some(),
        |k| k.len() >= 2 * agent::ANNOUNCEMENTS,
    );
    let ops: Vec<u16> = arps
        .iter()
        .filter_map(|(_, f)| garp_from_a(f, ip10))
        .collect();
    assert_eq!(ops, [1, 2, 1, 2, 1, 2], "request and reply, three rounds");
    let span = arps[arps.len() - 1].0 - arps[0].0;
    assert!(
        span >= Duration::from_millis(300),
        "the rounds are spread out, not a burst: {span:?}"
    );
    wait_for("B's cache to point 198.51.100.10 at A", || {
        neighbour(b, "198.51.100.10").contains(MAC_A_TEXT)
    });

    assert_eq!(
        agent.run("198.51.100.10", 24, "eth0", Op::Start),
        Ok(()),
        "a second start"
    );
    assert_eq!(
        addresses(a).matches("198.51.100.10/").count(),
        1,
        "{}",
        addresses(a)
    );
    assert_eq!(agent.run("198.51.100.10", 24, "eth0", Op::Monitor), Ok(()));

    assert_eq!(agent.run("198.51.100.10", 24, "eth0", Op::Stop), Ok(()));
    assert!(!addresses(a).contains("198.51.100.10/"), "{}", addresses(a));
    assert_eq!(
        agent.run("198.51.100.10", 24, "eth0", Op::Stop),
        Ok(()),
        "a second stop"
    );
    assert_eq!(
        agent.run("198.51.100.10", 24, "eth0", Op::Monitor),
        Err("198.51.100.10/24 is not on eth0".into())
    );
    assert!(
        addresses(a).contains("inet 198.51.100.1/24"),
        "A's own address stays"
    );
    drop(agent);
    drop(pair);
}

#[test]
fn ipv4_unknown_neighbour_learns_and_stop_cancels_announcements() {
    let pair = pair();
    let (a, b) = (&pair.a, &pair.b);
    // With arp_accept, B learns an address it has never seen.
    sysctl(b, "net.ipv4.conf.all.arp_accept=1");
    sysctl(b, "net.ipv4.conf.eth0.arp_accept=1");
    let capture = Capture::on(b);
    let agent = Agent::in_netns(a);

    // Both calls queued at once: the stop follows the start without a
    // round trip through this thread.
    let started = agent.send("198.51.100.11", 24, "eth0", Op::Start);
    let stopped = agent.send("198.51.100.11", 24, "eth0", Op::Stop);
    assert_eq!(answer(started), Ok(()));
    assert_eq!(answer(stopped), Ok(()));
    assert!(!addresses(a).contains("198.51.100.11"), "{}", addresses(a));
    // Stopped at once: only the first round (sent before start returned)
    // may go out. Watch for longer than all rounds would take.
    let watch = agent::ANNOUNCE_INTERVAL * (agent::ANNOUNCEMENTS as u32 + 1);
    let arps = capture.gather(
        watch,
        |f| garp_from_a(f, [198, 51, 100, 11]).is_some(),
        |_| false,
    );
    assert_eq!(arps.len(), 2, "a stopped address is not announced any more");
    wait_for("B to learn 198.51.100.11 from the first round", || {
        neighbour(b, "198.51.100.11").contains(MAC_A_TEXT)
    });
    drop(agent);
    drop(pair);
}

#[test]
fn ipv6_start_announce_monitor_stop() {
    let pair = pair();
    let (a, b) = (&pair.a, &pair.b);
    ip(&[
        "-n",
        b,
        "neigh",
        "add",
        "2001:db8::10",
        "lladdr",
        MAC_OLD_TEXT,
        "dev",
        "eth0",
        "nud",
        "stale",
    ]);
    let capture = Capture::on(b);
    let agent = Agent::in_netns(a);

    assert_eq!(agent.run("2001:db8::10", 64, "eth0", Op::Start), Ok(()));
    let listed = addresses(a);
    let line = listed
        .lines()
        .find(|l| l.contains("inet6 2001:db8::10/64"))
        .unwrap_or_else(|| panic!("2001:db8::10/64 not on A's eth0: {listed}"));
    assert!(
        line.contains("nodad") && !line.contains("tentative"),
        "usable at once: {line}"
    );

    let target: std::net::Ipv6Addr = "2001:db8::10".parse().expect("address");
    let nas = capture.gather(
        WAIT,
        |f| na_from_a(f, target.octets()),
        |k| k.len() >= agent::ANNOUNCEMENTS,
    );
    assert_eq!(nas.len(), agent::ANNOUNCEMENTS, "three advertisements");
    wait_for("B's cache to point 2001:db8::10 at A", || {
        neighbour(b, "2001:db8::10").contains(MAC_A_TEXT)
    });

    assert_eq!(agent.run("2001:db8::10", 64, "eth0", Op::Start), Ok(()));
    assert_eq!(agent.run("2001:db8::10", 64, "eth0", Op::Monitor), Ok(()));
    assert_eq!(agent.run("2001:db8::10", 64, "eth0", Op::Stop), Ok(()));
    assert!(!addresses(a).contains("2001:db8::10/"), "{}", addresses(a));
    assert_eq!(agent.run("2001:db8::10", 64, "eth0", Op::Stop), Ok(()));
    assert_eq!(
        agent.run("2001:db8::10", 64, "eth0", Op::Monitor),
        Err("2001:db8::10/64 is not on eth0".into())
    );
    drop(agent);
    drop(pair);
}

#[test]
fn another_prefix_is_replaced() {
    let pair = pair();
    let a = &pair.a;
    let agent = Agent::in_netns(a);
    ip(&["-n", a, "addr", "add", "198.51.100.10/25", "dev", "eth0"]);
    assert_eq!(
        agent.run("198.51.100.10", 24, "eth0", Op::Monitor),
        Err("198.51.100.10 is on eth0 as /25, not /24".into())
    );
    assert_eq!(agent.run("198.51.100.10", 24, "eth0", Op::Start), Ok(()));
    let listed = addresses(a);
    assert!(listed.contains("198.51.100.10/24"), "{listed}");
    assert!(!listed.contains("198.51.100.10/25"), "{listed}");
    assert_eq!(agent.run("198.51.100.10", 24, "eth0", Op::Monitor), Ok(()));
    // Stop removes the address whatever its prefix.
    ip(&[
        "-n",
        a,
        "addr",
        "add",
        "2001:db8::10/80",
        "dev",
        "eth0",
        "nodad",
    ]);
    assert_eq!(agent.run("2001:db8::10", 64, "eth0", Op::Stop), Ok(()));
    assert!(!addresses(a).contains("2001:db8::10/"), "{}", addresses(a));
    drop(agent);
    drop(pair);
}

#[test]
fn missing_down_and_elsewhere() {
    let pair = pair();
    let a = &pair.a;
    let agent = Agent::in_netns(a);
    for op in [Op::Start, Op::Monitor] {
        assert_eq!(
            agent.run("198.51.100.10", 24, "eth9", op),
            Err("no interface named eth9 on this node".into()),
            "{op:?}"
        );
    }
    assert_eq!(
        agent.run("198.51.100.10", 24, "eth9", Op::Stop),
        Ok(()),
        "an address cannot be on an interface that is not there"
    );
    assert_eq!(
        agent.run("198.51.100.10", 24, "an-interface-name-too-long", Op::Start),
        Err("no interface named an-interface-name-too-long on this node".into())
    );

    // A second link in A, down (a veth pair with both ends in A).
    ip(&[
        "-n", a, "link", "add", "spare0", "type", "veth", "peer", "name", "spare1",
    ]);
    let down = agent.run("198.51.100.10", 24, "spare0", Op::Start);
    assert_eq!(
        down,
        Err("spare0 is down: 198.51.100.10/24 would not be reachable there".into())
    );
    assert!(
        !show(&["-n", a, "addr", "show", "dev", "spare0"]).contains("198.51.100.10"),
        "nothing added to a down interface"
    );

    ip(&["-n", a, "link", "set", "spare0", "up"]);
    ip(&["-n", a, "addr", "add", "198.51.100.12/24", "dev", "spare0"]);
    let elsewhere = agent.run("198.51.100.12", 24, "eth0", Op::Start);
    assert!(
        elsewhere
            .as_ref()
            .is_err_and(|e| e.starts_with("198.51.100.12 is already on spare0")),
        "{elsewhere:?}"
    );
    assert!(!addresses(a).contains("198.51.100.12"), "{}", addresses(a));

    assert_eq!(
        agent.run("198.51.100.10", 33, "eth0", Op::Start),
        Err("/33 is not a valid prefix for the IPv4 address 198.51.100.10 (0 to 32)".into())
    );
    drop(agent);
    drop(pair);
}
