//! Networked sessions: one TCP connection per pair of parties, each with a reader thread and a
//! writer thread, optionally (and by default) under TLS 1.3 with pinned certificates.
//!
//! Set-up: the lower id listens, the higher id connects ([`crate::wire`] describes the bytes).
//! Connecting retries until the connect deadline, so parties may start in any order.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::session::{Link, Session, DEFAULT_TIMEOUT};
use crate::tls::{describe, server_name, TlsIdentity};
use crate::wire::{
    self, FrameHeader, Hello, ACK, CHUNK_BYTES, DEFAULT_MAX_MESSAGE_ELEMENTS, FRAME_ABORT, FRAME_DATA, FRAME_HEADER_LEN,
    HELLO_LEN, MODE_INSECURE_PLAINTEXT, MODE_TLS13_PINNED, VERSION,
};
use crate::NetError;

/// How long [`Session::connect`] keeps trying to reach the other parties by default.
pub const DEFAULT_CONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// Default bound on the bytes of received messages waiting for `recv` on one link (1 GiB: far
/// above what the protocols have in flight, which is at most a round's messages).
pub const DEFAULT_MAX_QUEUED_BYTES: u64 = 1 << 30;

/// How the links of a networked session are protected.
#[derive(Clone, Debug)]
pub enum Security {
    /// TLS 1.3, both sides authenticated by pinned certificates (see the crate documentation).
    Tls(TlsIdentity),
    /// **INSECURE**: plain TCP, no encryption and no authentication, for loopback tests only.
    /// [`Session::connect`] refuses it unless every address is a loopback address.
    InsecurePlaintext,
}

impl Security {
    fn mode(&self) -> u32 {
        match self {
            Security::Tls(_) => MODE_TLS13_PINNED,
            Security::InsecurePlaintext => MODE_INSECURE_PLAINTEXT,
        }
    }
}

/// Everything one party needs to join a networked session.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// This party's id, an index into `addresses`.
    pub party: usize,
    /// `host:port` of every party, indexed by id. A party listens on its own address if any
    /// higher id exists; the highest id only connects.
    pub addresses: Vec<String>,
    /// Set-up gives up this long after [`Session::connect`] is called, naming a missing peer.
    pub connect_deadline: Duration,
    /// The session timeout: how long `recv` waits for the whole of the next message from a peer
    /// (a deadline from the start of the wait, however the bytes trickle in), and how long a
    /// blocked write to a peer may make no progress.
    pub timeout: Duration,
    pub security: Security,
    /// A frame announcing more elements than this is a protocol error.
    pub max_message_elements: usize,
    /// Bytes of received messages a link holds before `recv` takes them. Beyond it the link's
    /// reader stops reading the socket (TCP flow control then holds the sender) until `recv`
    /// drains the queue, so a peer cannot make this party buffer more than this plus one
    /// message (which may be larger when nothing else is queued).
    pub max_queued_bytes: u64,
}

impl NetworkConfig {
    /// A configuration with the default deadline, timeout and message bound.
    pub fn new(party: usize, addresses: Vec<String>, security: Security) -> NetworkConfig {
        NetworkConfig {
            party,
            addresses,
            connect_deadline: DEFAULT_CONNECT_DEADLINE,
            timeout: DEFAULT_TIMEOUT,
            security,
            max_message_elements: DEFAULT_MAX_MESSAGE_ELEMENTS,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
        }
    }
}

/// Bytes that crossed the sockets of a networked session, including frame headers, set-up and
/// TLS overhead. Written by the link threads, so a snapshot may lag behind `send`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireTraffic {
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl Session {
    /// Joins a networked session: sets up a link to every other party (retrying until
    /// `config.connect_deadline`) and returns once all links are up. A party that has higher
    /// ids to accept listens on `config.addresses[config.party]`.
    pub fn connect(config: NetworkConfig) -> Result<Session, NetError> {
        validate(&config)?;
        let listener = if config.party + 1 < config.addresses.len() {
            let addr = &config.addresses[config.party];
            let addrs = resolve(addr).map_err(|reason| NetError::Config { reason })?;
            Some(TcpListener::bind(&addrs[..]).map_err(|e| NetError::Config { reason: format!("cannot listen on {addr}: {e}") })?)
        } else {
            None
        };
        establish(config, listener)
    }

    /// Like [`Session::connect`], but accepts the higher ids on an already bound `listener`
    /// (for example one bound to port 0; `config.addresses[config.party]` is then not used).
    pub fn connect_with_listener(config: NetworkConfig, listener: TcpListener) -> Result<Session, NetError> {
        validate(&config)?;
        establish(config, Some(listener))
    }

    /// Bytes that crossed this party's sockets (zero for local sessions). The protocol-level
    /// counters are [`Session::traffic`], identical for local and networked sessions.
    pub fn wire_traffic(&self) -> WireTraffic {
        if let Some(layer) = self.layer() {
            return layer.wire_traffic();
        }
        let mut w = WireTraffic::default();
        for link in self.links_iter() {
            if let Link::Net(l) = link {
                w.bytes_sent += l.shared.wire_sent.load(Ordering::Relaxed);
                w.bytes_received += l.shared.wire_received.load(Ordering::Relaxed);
            }
        }
        w
    }
}

fn config_err(reason: impl Into<String>) -> NetError {
    NetError::Config { reason: reason.into() }
}

fn resolve(addr: &str) -> Result<Vec<SocketAddr>, String> {
    match addr.to_socket_addrs() {
        Ok(a) => {
            let a: Vec<_> = a.collect();
            if a.is_empty() {
                Err(format!("{addr} resolves to no address"))
            } else {
                Ok(a)
            }
        }
        Err(e) => Err(format!("cannot resolve {addr}: {e}")),
    }
}

fn validate(cfg: &NetworkConfig) -> Result<(), NetError> {
    let n = cfg.addresses.len();
    if n < 2 {
        return Err(config_err(format!("a session needs at least 2 parties, got {n} addresses")));
    }
    if n > u32::MAX as usize {
        return Err(config_err("too many parties"));
    }
    if cfg.party >= n {
        return Err(config_err(format!("party {} out of range for {n} parties", cfg.party)));
    }
    match &cfg.security {
        Security::Tls(id) => {
            if id.parties() != n || id.party() != cfg.party {
                return Err(config_err(format!(
                    "TLS identity is for party {} of {}, but the configuration is for party {} of {n}",
                    id.party(),
                    id.parties(),
                    cfg.party
                )));
            }
        }
        Security::InsecurePlaintext => {
            for addr in &cfg.addresses {
                let addrs = resolve(addr).map_err(config_err)?;
                if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                    return Err(config_err(format!(
                        "the insecure plaintext transport is for loopback tests only, but {addr} is {a}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// A link whose set-up finished: the TCP stream and, in TLS mode, the handshaken connection.
struct Established {
    peer: usize,
    stream: TcpStream,
    tls: Option<rustls::Connection>,
}

enum SetupErr {
    Failed(NetError),
    /// Another link of this party failed first.
    Aborted,
}

fn establish(cfg: NetworkConfig, listener: Option<TcpListener>) -> Result<Session, NetError> {
    let n = cfg.addresses.len();
    let me = cfg.party;
    let deadline = Instant::now() + cfg.connect_deadline;
    let abort = AtomicBool::new(false);
    let (dialed, accepted) = thread::scope(|s| {
        let dialers: Vec<_> = (0..me)
            .map(|peer| {
                let (cfg, abort) = (&cfg, &abort);
                s.spawn(move || {
                    let r = dial(cfg, peer, deadline, abort);
                    if r.is_err() {
                        abort.store(true, Ordering::SeqCst);
                    }
                    r
                })
            })
            .collect();
        let accepted = match listener {
            Some(l) if me + 1 < n => {
                let r = accept_all(&cfg, l, deadline, &abort);
                if r.is_err() {
                    abort.store(true, Ordering::SeqCst);
                }
                r
            }
            _ => Ok(Vec::new()),
        };
        let dialed: Vec<_> = dialers
            .into_iter()
            .enumerate()
            .map(|(peer, h)| {
                h.join().unwrap_or_else(|_| {
                    Err(SetupErr::Failed(NetError::Connect { peer, reason: "set-up thread panicked".into() }))
                })
            })
            .collect();
        (dialed, accepted)
    });
    let mut established = Vec::new();
    let mut first_err = None;
    let mut record = |r: Result<Vec<Established>, SetupErr>| match r {
        Ok(v) => established.extend(v),
        Err(SetupErr::Failed(e)) => {
            first_err.get_or_insert(e);
        }
        Err(SetupErr::Aborted) => {}
    };
    for r in dialed {
        record(r.map(|e| vec![e]));
    }
    record(accepted);
    if let Some(e) = first_err {
        return Err(e); // links already up are dropped, so those peers see the link close
    }
    let mut links: Vec<Option<Link>> = (0..n).map(|_| None).collect();
    for e in established {
        let peer = e.peer;
        links[peer] = Some(Link::Net(NetLink::spawn(e, &cfg)?));
    }
    if let Some(peer) = (0..n).find(|&p| p != me && links[p].is_none()) {
        return Err(NetError::Connect { peer, reason: "set-up ended without a link".into() });
    }
    Ok(Session::from_links(me, links, cfg.timeout))
}

/// The rustls error inside an I/O error returned by rustls, if any.
fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// An I/O error of the set-up in words a person can act on: a socket timeout (which the
/// operating system reports as "Resource temporarily unavailable") says how long the peer
/// stayed silent.
fn io_text(e: &io::Error, waited: Duration) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!("no answer for {:.1} s (stalled)", waited.as_secs_f64()),
        io::ErrorKind::UnexpectedEof => "the connection was closed".into(),
        _ => e.to_string(),
    }
}

/// Socket timeouts must be non-zero.
fn at_least_1ms(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

enum DialErr {
    /// Worth another attempt before the deadline (nobody listening yet, connection dropped).
    Retry(String),
    Fatal(NetError),
}

/// Connects to the lower id `peer`, retrying until `deadline`.
fn dial(cfg: &NetworkConfig, peer: usize, deadline: Instant, abort: &AtomicBool) -> Result<Established, SetupErr> {
    let mut last = String::from("no attempt made");
    let mut backoff = Duration::from_millis(10);
    loop {
        if abort.load(Ordering::SeqCst) {
            return Err(SetupErr::Aborted);
        }
        if Instant::now() >= deadline {
            return Err(SetupErr::Failed(NetError::Connect {
                peer,
                reason: format!(
                    "no link to {} within {:?} (last attempt: {last})",
                    cfg.addresses[peer], cfg.connect_deadline
                ),
            }));
        }
        match try_dial(cfg, peer, deadline) {
            Ok(e) => return Ok(e),
            Err(DialErr::Fatal(e)) => return Err(SetupErr::Failed(e)),
            Err(DialErr::Retry(reason)) => last = reason,
        }
        thread::sleep(backoff.min(remaining(deadline)));
        backoff = (backoff * 2).min(Duration::from_millis(250));
    }
}

fn try_dial(cfg: &NetworkConfig, peer: usize, deadline: Instant) -> Result<Established, DialErr> {
    let me = cfg.party;
    let addrs = resolve(&cfg.addresses[peer]).map_err(DialErr::Retry)?;
    let mut last = String::new();
    let mut stream = None;
    for a in &addrs {
        let left = remaining(deadline);
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(a, left.min(Duration::from_secs(2))) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    let Some(mut stream) = stream else {
        return Err(DialErr::Retry(if last.is_empty() { "deadline reached".into() } else { last }));
    };
    // Bounded by the session timeout too, so that a set-up aborted because another link failed
    // ends soon; a peer that has not answered by then is simply tried again.
    let left = at_least_1ms(remaining(deadline).min(cfg.timeout));
    let io_retry = |what: &str, e: io::Error| DialErr::Retry(format!("{what}: {}", io_text(&e, left)));
    stream.set_nodelay(true).map_err(|e| io_retry("TCP_NODELAY", e))?;
    stream.set_read_timeout(Some(left)).map_err(|e| io_retry("socket", e))?;
    stream.set_write_timeout(Some(left)).map_err(|e| io_retry("socket", e))?;
    let hello = Hello::new(me, peer, cfg.addresses.len(), cfg.security.mode());
    stream.write_all(&hello.encode()).map_err(|e| io_retry("sending hello", e))?;
    let mut ack = [0u8; 8];
    let tls = match &cfg.security {
        Security::InsecurePlaintext => {
            stream.read_exact(&mut ack).map_err(|e| {
                io_retry(&format!("party {peer} at {} did not accept the set-up (wrong mode, party or number of parties?)", cfg.addresses[peer]), e)
            })?;
            None
        }
        Security::Tls(id) => {
            let config = id.client_config(peer).map_err(DialErr::Fatal)?;
            let mut conn = rustls::ClientConnection::new(config, server_name(peer))
                .map_err(|e| DialErr::Fatal(NetError::Tls { peer, reason: e.to_string() }))?;
            let classify = |e: io::Error| match rustls_error(&e) {
                Some(t) => DialErr::Fatal(NetError::Tls { peer, reason: describe(peer, t) }),
                None => io_retry(&format!("TLS handshake with party {peer}"), e),
            };
            while conn.is_handshaking() {
                match conn.complete_io(&mut stream) {
                    Ok((0, 0)) => return Err(DialErr::Retry(format!("party {peer} closed the connection during the TLS handshake"))),
                    Ok(_) => {}
                    Err(e) => return Err(classify(e)),
                }
            }
            // The answer proves that the peer accepted our certificate.
            rustls::Stream::new(&mut conn, &mut stream).read_exact(&mut ack).map_err(classify)?;
            conn.set_buffer_limit(None);
            Some(rustls::Connection::Client(conn))
        }
    };
    if ack != ACK {
        return Err(DialErr::Fatal(NetError::Protocol { peer, reason: "unexpected answer to the set-up hello".into() }));
    }
    Ok(Established { peer, stream, tls })
}

enum AcceptErr {
    /// Not a usable connection from a party we wait for; keep listening.
    Ignore(String),
    /// A connection claiming to be `peer` did not authenticate as it: it presented another
    /// certificate than the one pinned for `peer` (or none), or answered ours with a TLS alert
    /// (the real party refusing us). Anyone who can reach the port can do either, so set-up goes
    /// on (the real party may still come); if `peer` never connects, this is the error
    /// reported at the deadline. The connecting side learns at once from the handshake.
    Refused(usize, NetError, String),
    Fatal(NetError),
}

/// Accepts every higher id on `listener` before `deadline`.
fn accept_all(
    cfg: &NetworkConfig,
    listener: TcpListener,
    deadline: Instant,
    abort: &AtomicBool,
) -> Result<Vec<Established>, SetupErr> {
    let n = cfg.addresses.len();
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    listener
        .set_nonblocking(true)
        .map_err(|e| SetupErr::Failed(config_err(format!("listener {local}: {e}"))))?;
    let mut pending: BTreeSet<usize> = (cfg.party + 1..n).collect();
    let mut out = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut logged: BTreeSet<String> = BTreeSet::new();
    let mut refused: Vec<(usize, NetError)> = Vec::new();
    while let Some(&first) = pending.first() {
        if abort.load(Ordering::SeqCst) {
            return Err(SetupErr::Aborted);
        }
        if Instant::now() >= deadline {
            if let Some((_, e)) = refused.iter().find(|(p, _)| pending.contains(p)) {
                return Err(SetupErr::Failed(e.clone()));
            }
            let notes = if notes.is_empty() { String::new() } else { format!(" (ignored: {})", notes.join("; ")) };
            return Err(SetupErr::Failed(NetError::Connect {
                peer: first,
                reason: format!("party {first} did not connect to {local} within {:?}{notes}", cfg.connect_deadline),
            }));
        }
        match listener.accept() {
            Ok((stream, addr)) => match accept_one(cfg, stream, addr, deadline, &pending) {
                Ok(e) => {
                    pending.remove(&e.peer);
                    out.push(e);
                }
                Err(AcceptErr::Refused(peer, e, note)) => {
                    eprintln!("party {}: ignored a connection on {local}: {note}", cfg.party);
                    refused.push((peer, e));
                }
                Err(AcceptErr::Ignore(note)) => {
                    // One line per distinct reason and source host (a misconfigured peer
                    // retries several times a second). Addresses and claims only, no secrets.
                    let key = format!("{}|{}", addr.ip(), note.split_once(": ").map_or(note.as_str(), |(_, r)| r));
                    if logged.insert(key) {
                        eprintln!("party {}: ignored a connection on {local}: {note}", cfg.party);
                    }
                    if notes.len() == 4 {
                        notes.remove(0);
                    }
                    notes.push(note);
                }
                Err(AcceptErr::Fatal(e)) => return Err(SetupErr::Failed(e)),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
                thread::sleep(Duration::from_millis(5).min(remaining(deadline)))
            }
            Err(e) => {
                notes.push(format!("accept: {e}"));
                thread::sleep(Duration::from_millis(5).min(remaining(deadline)))
            }
        }
    }
    Ok(out)
}

fn accept_one(
    cfg: &NetworkConfig,
    mut stream: TcpStream,
    addr: SocketAddr,
    deadline: Instant,
    pending: &BTreeSet<usize>,
) -> Result<Established, AcceptErr> {
    let (me, n) = (cfg.party, cfg.addresses.len());
    let ignore = |what: String| AcceptErr::Ignore(format!("{addr}: {what}"));
    // Bounded so that a silent stray connection cannot hold up the set-up for long.
    let t = at_least_1ms(cfg.timeout.min(remaining(deadline)));
    stream.set_nonblocking(false).map_err(|e| ignore(e.to_string()))?;
    stream.set_nodelay(true).map_err(|e| ignore(e.to_string()))?;
    stream.set_read_timeout(Some(t)).map_err(|e| ignore(e.to_string()))?;
    stream.set_write_timeout(Some(t)).map_err(|e| ignore(e.to_string()))?;
    let mut raw = [0u8; HELLO_LEN];
    stream.read_exact(&mut raw).map_err(|e| ignore(format!("no hello ({})", io_text(&e, t))))?;
    let hello = Hello::decode(&raw).ok_or_else(|| ignore("not a CrypTFlow hello".into()))?;
    let peer = hello.from as usize;
    if peer <= me || peer >= n {
        return Err(ignore(format!("claims to be party {peer}, which does not connect to party {me}")));
    }
    if !pending.contains(&peer) {
        return Err(ignore(format!("second connection claiming to be party {peer}")));
    }
    // The hello is unauthenticated: anyone who reaches the port can send one claiming any id.
    // One that does not fit this session is ignored (and noted), never a reason to give up:
    // the real party may still come. A real party that is misconfigured is named in the
    // deadline's error together with these notes.
    if hello.version != VERSION {
        return Err(ignore(format!("claims to be party {peer} but speaks wire version {}, this party {VERSION}", hello.version)));
    }
    if hello.to as usize != me || hello.parties as usize != n {
        return Err(ignore(format!(
            "claims to be party {peer} but expects party {} of {} parties here, this is party {me} of {n}",
            hello.to, hello.parties
        )));
    }
    if hello.mode != cfg.security.mode() {
        let name = |m| if m == MODE_TLS13_PINNED { "TLS" } else { "insecure plaintext" };
        return Err(ignore(format!(
            "claims to be party {peer} but uses {} links, this party {}",
            name(hello.mode),
            name(cfg.security.mode())
        )));
    }
    let tls = match &cfg.security {
        Security::InsecurePlaintext => {
            stream.write_all(&ACK).map_err(|e| ignore(format!("party {peer}: {}", io_text(&e, t))))?;
            None
        }
        Security::Tls(id) => {
            let config = id.server_config(peer).map_err(AcceptErr::Fatal)?;
            let mut conn = rustls::ServerConnection::new(config)
                .map_err(|e| AcceptErr::Fatal(NetError::Tls { peer, reason: e.to_string() }))?;
            // A handshake that got as far as a certificate (or an alert about ours) is a party
            // that was refused or refused us, or a stranger: noted, and the error at the
            // deadline if the party never comes. Bytes that are not TLS at all are a stray
            // connection, ignored like a malformed hello.
            let classify = |e: io::Error| match rustls_error(&e) {
                Some(t @ (rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)) => AcceptErr::Refused(
                    peer,
                    NetError::Tls { peer, reason: describe(peer, t) },
                    format!("{addr}: claims to be party {peer} but did not authenticate as it: {t}"),
                ),
                Some(t @ rustls::Error::AlertReceived(_)) => AcceptErr::Refused(
                    peer,
                    NetError::Tls { peer, reason: describe(peer, t) },
                    format!("{addr}: claims to be party {peer} and answered with a TLS alert before authenticating: {t} (if it is party {peer}, it refused this party's certificate)"),
                ),
                Some(t) => ignore(format!("claims to be party {peer} but its TLS handshake failed: {t}")),
                None => ignore(format!("party {peer}: TLS handshake: {}", io_text(&e, t))),
            };
            while conn.is_handshaking() {
                match conn.complete_io(&mut stream) {
                    Ok((0, 0)) => return Err(ignore(format!("party {peer} closed the connection during the TLS handshake"))),
                    Ok(_) => {}
                    Err(e) => return Err(classify(e)),
                }
            }
            conn.writer().write_all(&ACK).map_err(classify)?;
            while conn.wants_write() {
                conn.write_tls(&mut stream).map_err(classify)?;
            }
            conn.set_buffer_limit(None);
            Some(rustls::Connection::Server(conn))
        }
    };
    Ok(Established { peer, stream, tls })
}

// ---------------------------------------------------------------------------------------------
// Established links: a reader thread and a writer thread per peer.

/// State shared between a link's owner and its threads.
pub(crate) struct Shared {
    pub(crate) wire_sent: AtomicU64,
    pub(crate) wire_received: AtomicU64,
    /// The writer's failure, reported by the next `send` or `recv` on this link.
    write_error: Mutex<Option<NetError>>,
    /// When the reader met the end of the link (disconnection or error), if it has.
    ended: Mutex<Option<Instant>>,
    /// Bytes of complete messages the reader has queued and `recv` has not taken.
    queued: Mutex<u64>,
    /// Signalled when `recv` takes a message or the link closes.
    drained: Condvar,
    /// The link is closing: a reader waiting for room stops.
    closing: AtomicBool,
    max_queued: u64,
}

impl Shared {
    fn mark_ended(&self) {
        lock(&self.ended).get_or_insert_with(Instant::now);
    }

    /// Waits until `more` bytes (of the message being read) fit beside the queued ones, or the
    /// queue is empty (a single message may exceed the bound). `false` if the link is closing.
    fn wait_for_room(&self, more: u64) -> bool {
        let mut queued = lock(&self.queued);
        while *queued > 0 && *queued + more > self.max_queued {
            if self.closing.load(Ordering::SeqCst) {
                return false;
            }
            queued = self.drained.wait_timeout(queued, Duration::from_millis(50)).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
        !self.closing.load(Ordering::SeqCst)
    }

    fn queue(&self, bytes: u64) {
        *lock(&self.queued) += bytes;
    }

    fn dequeue(&self, bytes: u64) {
        let mut queued = lock(&self.queued);
        *queued = queued.saturating_sub(bytes);
        self.drained.notify_all();
    }

    fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.drained.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum WriterCmd {
    Data(Vec<u64>),
    /// This party gives up: a [`wire::FRAME_ABORT`] with the blame (see [`wire::encode_blame`]).
    Abort(u64),
    /// TLS data queued by the reader (e.g. a key update answer) is waiting to be written.
    Flush,
    /// Finish the queued messages, close the link for writing and stop.
    Close,
}

type Event = Result<Vec<u64>, NetError>;

pub(crate) struct NetLink {
    peer: usize,
    cmds: Sender<WriterCmd>,
    events: Receiver<Event>,
    pub(crate) shared: Arc<Shared>,
    /// A handle on the socket, to set timeouts and shut it down.
    socket: TcpStream,
    writer_done: Receiver<()>,
    threads: Vec<JoinHandle<()>>,
    /// Once a link has failed it stays failed, with the same error.
    failed: Option<NetError>,
}

impl NetLink {
    fn spawn(e: Established, cfg: &NetworkConfig) -> Result<NetLink, NetError> {
        let peer = e.peer;
        let sock_err = |e: io::Error| NetError::Protocol { peer, reason: format!("socket: {e}") };
        let stream = e.stream;
        stream.set_read_timeout(None).map_err(sock_err)?;
        stream.set_write_timeout(Some(at_least_1ms(cfg.timeout))).map_err(sock_err)?;
        let shared = Arc::new(Shared {
            wire_sent: AtomicU64::new(0),
            wire_received: AtomicU64::new(0),
            write_error: Mutex::new(None),
            ended: Mutex::new(None),
            queued: Mutex::new(0),
            drained: Condvar::new(),
            closing: AtomicBool::new(false),
            max_queued: cfg.max_queued_bytes,
        });
        let (cmd_tx, cmd_rx) = channel();
        let (ev_tx, ev_rx) = channel();
        let (done_tx, done_rx) = channel();
        let (input, output) = match e.tls {
            None => (Input::Plain(stream.try_clone().map_err(sock_err)?), Output::Plain(stream.try_clone().map_err(sock_err)?)),
            Some(conn) => {
                let conn = Arc::new(Mutex::new(conn));
                let input = Input::Tls(TlsInput {
                    sock: stream.try_clone().map_err(sock_err)?,
                    conn: conn.clone(),
                    net: vec![0; 256 << 10],
                    plain: Vec::new(),
                    pos: 0,
                    closed: false,
                    flush: cmd_tx.clone(),
                });
                let output = Output::Tls { sock: stream.try_clone().map_err(sock_err)?, conn, wire: Vec::new() };
                (input, output)
            }
        };
        let (max, parties) = (cfg.max_message_elements, cfg.addresses.len());
        let sh = shared.clone();
        let reader = thread::Builder::new()
            .name(format!("net-read-{peer}"))
            .spawn(move || reader_main(peer, input, ev_tx, sh, max, parties))
            .map_err(|e| config_err(format!("cannot start a thread: {e}")))?;
        let sh = shared.clone();
        let writer = thread::Builder::new()
            .name(format!("net-write-{peer}"))
            .spawn(move || writer_main(peer, output, cmd_rx, sh, done_tx))
            .map_err(|e| config_err(format!("cannot start a thread: {e}")))?;
        Ok(NetLink {
            peer,
            cmds: cmd_tx,
            events: ev_rx,
            shared,
            socket: stream,
            writer_done: done_rx,
            threads: vec![reader, writer],
            failed: None,
        })
    }

    fn fail(&mut self, e: NetError) -> NetError {
        self.failed = Some(e.clone());
        e
    }

    fn check(&mut self) -> Result<(), NetError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let write_error = lock(&self.shared.write_error).take();
        if let Some(e) = write_error {
            return Err(self.fail(e));
        }
        Ok(())
    }

    pub(crate) fn send(&mut self, data: Vec<u64>) -> Result<(), NetError> {
        self.check()?;
        if self.cmds.send(WriterCmd::Data(data)).is_err() {
            let write_error = lock(&self.shared.write_error).take();
            let e = write_error.unwrap_or(NetError::Disconnected { peer: self.peer });
            return Err(self.fail(e));
        }
        Ok(())
    }

    /// The next message, waiting until nothing at all has arrived from the peer for `timeout`
    /// (a large message still streaming in does not time out).
    /// The next message, which must arrive whole within `timeout` of this call: a deadline per
    /// expected message, not an idle timer, so that a peer trickling a byte now and then cannot
    /// hold the receiver beyond it. A disconnection is reported as soon as the reader sees it.
    pub(crate) fn recv(&mut self, timeout: Duration) -> Result<Vec<u64>, NetError> {
        self.check()?;
        match self.events.recv_timeout(timeout) {
            Ok(Ok(data)) => {
                self.shared.dequeue(8 * data.len() as u64);
                Ok(data)
            }
            Ok(Err(e)) => Err(self.fail(e)),
            Err(RecvTimeoutError::Timeout) => Err(NetError::Timeout { peer: self.peer, seconds: timeout.as_secs() }),
            Err(RecvTimeoutError::Disconnected) => Err(self.fail(NetError::Disconnected { peer: self.peer })),
        }
    }

    /// When this link's reader met the end of the stream, if it has.
    pub(crate) fn ended(&self) -> Option<Instant> {
        *lock(&self.shared.ended)
    }

    pub(crate) fn peer(&self) -> usize {
        self.peer
    }

    pub(crate) fn set_timeout(&self, timeout: Duration) {
        let _ = self.socket.set_write_timeout(Some(at_least_1ms(timeout)));
    }

    /// Tells the peer, after the queued messages, that this party gives up blaming `blame`
    /// (see [`wire::encode_blame`]).
    pub(crate) fn abort(&mut self, blame: u64) {
        let _ = self.cmds.send(WriterCmd::Abort(blame));
    }

    /// Asks the writer to finish the queued messages and close; see [`NetLink::finish_close`].
    pub(crate) fn begin_close(&mut self) {
        let _ = self.cmds.send(WriterCmd::Close);
    }

    /// Waits (until `deadline`) for the writer to flush, then shuts the socket and joins both
    /// threads.
    pub(crate) fn finish_close(&mut self, deadline: Instant) {
        let _ = self.writer_done.recv_timeout(remaining(deadline));
        self.shared.close();
        let _ = self.socket.shutdown(Shutdown::Both);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for NetLink {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.begin_close();
            self.finish_close(Instant::now() + DEFAULT_TIMEOUT);
        }
    }
}

// --- writer ----------------------------------------------------------------------------------

enum Output {
    Plain(TcpStream),
    Tls { sock: TcpStream, conn: Arc<Mutex<rustls::Connection>>, wire: Vec<u8> },
}

impl Output {
    fn sock(&self) -> &TcpStream {
        match self {
            Output::Plain(s) | Output::Tls { sock: s, .. } => s,
        }
    }

    /// Writes `bytes` of application data; in TLS mode encrypts them first (holding the
    /// connection lock only while encrypting, never while blocked on the socket).
    fn put(&mut self, bytes: &[u8], shared: &Shared) -> io::Result<()> {
        match self {
            Output::Plain(s) => {
                s.write_all(bytes)?;
                shared.wire_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
            Output::Tls { conn, .. } => {
                lock(conn).writer().write_all(bytes)?;
                self.flush_tls(shared)?;
            }
        }
        Ok(())
    }

    /// Writes whatever TLS records the connection has queued.
    fn flush_tls(&mut self, shared: &Shared) -> io::Result<()> {
        if let Output::Tls { sock, conn, wire } = self {
            {
                let mut c = lock(conn);
                while c.wants_write() {
                    c.write_tls(wire)?;
                }
            }
            sock.write_all(wire)?;
            shared.wire_sent.fetch_add(wire.len() as u64, Ordering::Relaxed);
            wire.clear();
        }
        Ok(())
    }

    fn send_frame(&mut self, seq: u64, data: &[u64], scratch: &mut Vec<u8>, shared: &Shared) -> io::Result<()> {
        const PER_CHUNK: usize = CHUNK_BYTES / 8;
        /// Up to this many elements, header and payload go out in one write (one TCP segment
        /// or TLS record for small messages); larger payloads are written straight from `data`.
        const STAGED: usize = 8 << 10;
        scratch.clear();
        scratch.extend_from_slice(&FrameHeader::data(seq, data.len()).encode());
        let (head, mut rest) = data.split_at(data.len().min(STAGED));
        append_le(scratch, head);
        self.put(scratch, shared)?;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(PER_CHUNK));
            rest = tail;
            if cfg!(target_endian = "little") {
                self.put(bytemuck::cast_slice(chunk), shared)?;
            } else {
                scratch.clear();
                append_le(scratch, chunk);
                self.put(scratch, shared)?;
            }
        }
        Ok(())
    }

    /// Orderly close: TLS close_notify, then TCP FIN.
    fn close(&mut self, shared: &Shared) {
        if let Output::Tls { conn, .. } = self {
            lock(conn).send_close_notify();
            let _ = self.flush_tls(shared);
        }
        let _ = self.sock().shutdown(Shutdown::Write);
    }
}

#[cfg(target_endian = "little")]
fn append_le(out: &mut Vec<u8>, data: &[u64]) {
    out.extend_from_slice(bytemuck::cast_slice(data));
}

#[cfg(not(target_endian = "little"))]
fn append_le(out: &mut Vec<u8>, data: &[u64]) {
    out.reserve(data.len() * 8);
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn writer_main(peer: usize, mut out: Output, cmds: Receiver<WriterCmd>, shared: Arc<Shared>, done: Sender<()>) {
    let mut seq = 0u64;
    let mut scratch = Vec::with_capacity(CHUNK_BYTES + FRAME_HEADER_LEN);
    while let Ok(cmd) = cmds.recv() {
        let result = match cmd {
            WriterCmd::Data(data) => {
                let r = out.send_frame(seq, &data, &mut scratch, &shared);
                seq += 1;
                r
            }
            WriterCmd::Abort(blame) => {
                scratch.clear();
                scratch.extend_from_slice(&FrameHeader::abort(seq).encode());
                append_le(&mut scratch, &[blame]);
                seq += 1;
                out.put(&scratch, &shared)
            }
            WriterCmd::Flush => out.flush_tls(&shared),
            WriterCmd::Close => {
                out.close(&shared);
                break;
            }
        };
        if let Err(e) = result {
            let seconds = out.sock().write_timeout().ok().flatten().map_or(0, |t| t.as_secs());
            let err = match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => NetError::Timeout { peer, seconds },
                _ => match rustls_error(&e) {
                    Some(t) => NetError::Protocol { peer, reason: format!("TLS: {t}") },
                    None => NetError::Disconnected { peer },
                },
            };
            *lock(&shared.write_error) = Some(err);
            // A frame may be half written: the stream is unusable from here on.
            let _ = out.sock().shutdown(Shutdown::Write);
            break;
        }
    }
    let _ = done.send(());
}

// --- reader ----------------------------------------------------------------------------------

enum Input {
    Plain(TcpStream),
    Tls(TlsInput),
}

struct TlsInput {
    sock: TcpStream,
    conn: Arc<Mutex<rustls::Connection>>,
    /// Ciphertext read from the socket.
    net: Vec<u8>,
    /// Decrypted bytes not yet handed out, from `pos`.
    plain: Vec<u8>,
    pos: usize,
    /// The peer sent close_notify.
    closed: bool,
    flush: Sender<WriterCmd>,
}

impl TlsInput {
    /// Processes what the connection holds and moves decrypted bytes into `plain`.
    fn drain(&mut self, c: &mut rustls::Connection) -> io::Result<()> {
        let state = c.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let k = state.plaintext_bytes_to_read();
        if k > 0 {
            let l = self.plain.len();
            self.plain.resize(l + k, 0);
            c.reader().read_exact(&mut self.plain[l..])?;
        }
        if state.peer_has_closed() {
            self.closed = true;
        }
        Ok(())
    }

    fn read(&mut self, out: &mut [u8], shared: &Shared) -> io::Result<usize> {
        loop {
            if self.pos < self.plain.len() {
                let k = out.len().min(self.plain.len() - self.pos);
                out[..k].copy_from_slice(&self.plain[self.pos..self.pos + k]);
                self.pos += k;
                return Ok(k);
            }
            if self.closed || out.is_empty() {
                return Ok(0);
            }
            self.plain.clear();
            self.pos = 0;
            let n = loop {
                match self.sock.read(&mut self.net) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            shared.wire_received.fetch_add(n as u64, Ordering::Relaxed);
            if n == 0 {
                // TCP closed without close_notify: the peer died (or its link was cut).
                return Ok(0);
            }
            let conn = self.conn.clone();
            let mut c = lock(&conn);
            let mut offset = 0;
            while offset < n && !self.closed {
                let mut slice = &self.net[offset..n];
                let k = c.read_tls(&mut slice)?;
                if k == 0 {
                    break;
                }
                offset += k;
                self.drain(&mut c)?;
            }
            let wants_write = c.wants_write();
            drop(c);
            if wants_write {
                let _ = self.flush.send(WriterCmd::Flush);
            }
        }
    }
}

impl Input {
    fn read(&mut self, out: &mut [u8], shared: &Shared) -> io::Result<usize> {
        match self {
            Input::Plain(s) => loop {
                match s.read(out) {
                    Ok(n) => {
                                    shared.wire_received.fetch_add(n as u64, Ordering::Relaxed);
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            },
            Input::Tls(t) => t.read(out, shared),
        }
    }

    /// Fills `buf`; `Ok(false)` if the stream ended before the first byte.
    fn fill(&mut self, buf: &mut [u8], shared: &Shared) -> io::Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            let n = self.read(&mut buf[got..], shared)?;
            if n == 0 {
                if got == 0 {
                    return Ok(false);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            got += n;
        }
        Ok(true)
    }
}

fn read_err(peer: usize, e: io::Error) -> NetError {
    match rustls_error(&e) {
        Some(t) => NetError::Protocol { peer, reason: format!("TLS: {t}") },
        None if e.kind() == io::ErrorKind::InvalidData => NetError::Protocol { peer, reason: e.to_string() },
        // EOF inside a frame, reset, or our own shutdown: the link is gone.
        None => NetError::Disconnected { peer },
    }
}

/// What a peer's [`wire::FRAME_ABORT`] means here: the party it blames left or stalled (itself,
/// or a party this session does not have, counts as its own disconnection).
fn blame_error(peer: usize, blame: u64, parties: usize) -> NetError {
    match wire::decode_blame(blame) {
        (blamed, _) if blamed == peer || blamed >= parties => NetError::Disconnected { peer },
        (blamed, Some(seconds)) => NetError::Timeout { peer: blamed, seconds },
        (blamed, None) => NetError::Disconnected { peer: blamed },
    }
}

fn read_frame(peer: usize, input: &mut Input, seq: u64, max: usize, parties: usize, shared: &Shared) -> Result<Vec<u64>, NetError> {
    let mut raw = [0u8; FRAME_HEADER_LEN];
    if !input.fill(&mut raw, shared).map_err(|e| read_err(peer, e))? {
        return Err(NetError::Disconnected { peer });
    }
    let protocol = |reason: String| NetError::Protocol { peer, reason };
    let h = FrameHeader::decode(&raw).map_err(protocol)?;
    if h.kind == FRAME_ABORT && h.seq == seq && h.len == 1 {
        let mut word = [0u8; 8];
        if !input.fill(&mut word, shared).map_err(|e| read_err(peer, e))? {
            return Err(NetError::Disconnected { peer });
        }
        return Err(blame_error(peer, u64::from_le_bytes(word), parties));
    }
    if h.kind != FRAME_DATA {
        return Err(protocol(format!("unknown frame kind {}", h.kind)));
    }
    if h.seq != seq {
        return Err(protocol(format!("frame {} out of sequence (expected {seq})", h.seq)));
    }
    if h.len > max as u64 {
        return Err(protocol(format!("frame of {} elements exceeds the limit of {max}", h.len)));
    }
    let len = h.len as usize;
    const PER_CHUNK: usize = CHUNK_BYTES / 8;
    // Memory grows with the bytes that actually arrive, not with what the header claims.
    let mut data: Vec<u64> = Vec::with_capacity(len.min(16 * PER_CHUNK));
    while data.len() < len {
        let old = data.len();
        let chunk = (len - old).min(PER_CHUNK);
        // Bounded queue: read on only while this message fits beside the queued ones.
        if !shared.wait_for_room(8 * (old + chunk) as u64) {
            return Err(NetError::Disconnected { peer });
        }
        data.resize(old + chunk, 0);
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut data[old..]);
        if !input.fill(bytes, shared).map_err(|e| read_err(peer, e))? {
            return Err(NetError::Disconnected { peer });
        }
        for v in &mut data[old..] {
            *v = u64::from_le(*v); // a no-op on little-endian machines
        }
    }
    Ok(data)
}

fn reader_main(peer: usize, mut input: Input, events: Sender<Event>, shared: Arc<Shared>, max: usize, parties: usize) {
    if let Input::Tls(t) = &mut input {
        // Records that arrived together with the set-up answer are already in the connection.
        let conn = t.conn.clone();
        let r = t.drain(&mut lock(&conn));
        if let Err(e) = r {
            shared.mark_ended();
            let _ = events.send(Err(read_err(peer, e)));
            return;
        }
    }
    let mut seq = 0u64;
    loop {
        match read_frame(peer, &mut input, seq, max, parties, &shared) {
            Ok(data) => {
                shared.queue(8 * data.len() as u64);
                if events.send(Ok(data)).is_err() {
                    return; // the session is gone
                }
                seq += 1;
            }
            Err(e) => {
                shared.mark_ended();
                let _ = events.send(Err(e));
                return;
            }
        }
    }
}
