use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{MessageLayer, NetError};

/// Traffic counters of one party.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Each switch from sending to waiting for a message counts one round: the number of
    /// sequential message flights this party took part in. Deterministic for a given protocol.
    pub rounds: u64,
}

/// How long a party waits for a peer's message before declaring it dead.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) enum Link {
    Local { tx: Sender<LocalMessage>, rx: Receiver<LocalMessage> },
    Net(crate::tcp::NetLink),
}

/// A message on an in-memory link, with its arrival time on the emulated timeline when the
/// session emulates a network ([`Session::local_shaped`]).
pub(crate) struct LocalMessage {
    data: Vec<u64>,
    /// Seconds since the session's epoch at which the last byte reaches the receiver.
    arrival: Option<f64>,
}

/// Network emulation for the links of a local session ([`Session::local_shaped`]): every link,
/// in each direction, carries `bandwidth` bytes per second and delays each message by
/// `latency`, like a LAN between the parties.
///
/// A message of `b` bytes sent at time `t` starts once the link is free of the messages before
/// it (`start = max(t, free)`, the link is then busy until `start + b / bandwidth`) and arrives
/// at `start + b / bandwidth + latency`; the receiver cannot have it earlier. The byte count is
/// the one [`Session::traffic`] counts (8 per ring element, no framing).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkShape {
    /// Bytes per second of each direction of each link; `f64::INFINITY` for no limit.
    pub bandwidth: f64,
    /// One-way delay of every message.
    pub latency: Duration,
    pub mode: ShapeMode,
}

/// How a shaped local session makes messages late.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeMode {
    /// Nobody sleeps: each party keeps an emulated clock ([`Session::emulated_clock`]) that runs
    /// with real time while the party computes, and that `recv` moves to the message's emulated
    /// arrival instead of counting the real wait. One run gives both the loopback figures (real
    /// time) and the emulated ones (the largest party clock). Assumes the parties' computation
    /// takes the time it takes here, where they share this machine's cores.
    Simulated,
    /// `recv` sleeps until the message's arrival time in real time; the party clocks are real
    /// time since the session started.
    Delay,
}

impl LinkShape {
    /// The LAN of the CrypTFlow paper's ImageNet experiments: 377 MBps, sub-millisecond latency
    /// (taken as 0.3 ms).
    pub const PAPER_LAN: LinkShape =
        LinkShape { bandwidth: 377e6, latency: Duration::from_micros(300), mode: ShapeMode::Simulated };

    fn transfer_seconds(&self, bytes: u64) -> f64 {
        if self.bandwidth.is_finite() && self.bandwidth > 0.0 {
            bytes as f64 / self.bandwidth
        } else {
            0.0
        }
    }
}

/// One party's emulated clock in a shaped local session: a handle that stays readable after the
/// session has moved into a backend.
#[derive(Clone, Debug)]
pub struct EmulatedClock {
    epoch: Instant,
    /// Emulated minus real time since the epoch, in nanoseconds (negative when the party spent
    /// longer blocked in real time than the emulated network made it wait).
    offset_nanos: Arc<AtomicI64>,
}

impl EmulatedClock {
    /// This party's emulated time since the session was created.
    pub fn now(&self) -> Duration {
        Duration::from_secs_f64(self.seconds().max(0.0))
    }

    fn seconds(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() + self.offset_nanos.load(Ordering::Relaxed) as f64 * 1e-9
    }

    fn real_seconds(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    fn set_seconds(&self, emulated: f64, real: f64) {
        self.offset_nanos.store(((emulated - real) * 1e9).round() as i64, Ordering::Relaxed);
    }
}

struct Shaping {
    shape: LinkShape,
    clock: EmulatedClock,
    /// Emulated time at which this party's link to each peer has sent everything queued.
    link_free: Vec<f64>,
}

/// One party's links to every other party of a session.
pub struct Session {
    id: usize,
    links: Vec<Option<Link>>,
    traffic: Traffic,
    sent_since_recv: bool,
    timeout: Duration,
    shaping: Option<Shaping>,
    /// Set by [`Session::layered`]: every message goes through it (and `links` are all `None`).
    layer: Option<Box<dyn MessageLayer>>,
    /// The first disconnection or timeout `recv` reported on a networked link: on drop, the
    /// other peers are told whom this party blames ([`crate::wire::FRAME_ABORT`]).
    failure: Option<NetError>,
}

impl Session {
    /// `n` parties connected pairwise through in-memory channels; element `i` is party `i`.
    pub fn local(n: usize) -> Vec<Session> {
        Self::local_with(n, None)
    }

    /// Like [`Session::local`], with every link behaving like a network of the given bandwidth
    /// and latency ([`LinkShape`]); each party's emulated clock is [`Session::emulated_clock`].
    pub fn local_shaped(n: usize, shape: LinkShape) -> Vec<Session> {
        Self::local_with(n, Some(shape))
    }

    // Both ends of a link are set together: indexing by the two party ids says it best.
    #[allow(clippy::needless_range_loop)]
    fn local_with(n: usize, shape: Option<LinkShape>) -> Vec<Session> {
        let epoch = Instant::now();
        let mut links: Vec<Vec<Option<Link>>> = (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        for a in 0..n {
            for b in (a + 1)..n {
                let (tx_ab, rx_ab) = channel();
                let (tx_ba, rx_ba) = channel();
                links[a][b] = Some(Link::Local { tx: tx_ab, rx: rx_ba });
                links[b][a] = Some(Link::Local { tx: tx_ba, rx: rx_ab });
            }
        }
        links
            .into_iter()
            .enumerate()
            .map(|(id, links)| Session {
                id,
                links,
                traffic: Traffic::default(),
                sent_since_recv: false,
                timeout: DEFAULT_TIMEOUT,
                shaping: shape.map(|shape| Shaping {
                    shape,
                    clock: EmulatedClock { epoch, offset_nanos: Arc::new(AtomicI64::new(0)) },
                    link_free: vec![0.0; n],
                }),
                layer: None,
                failure: None,
            })
            .collect()
    }

    pub(crate) fn from_links(id: usize, links: Vec<Option<Link>>, timeout: Duration) -> Session {
        Session { id, links, traffic: Traffic::default(), sent_since_recv: false, timeout, shaping: None, layer: None, failure: None }
    }

    /// Party `id` of `parties`, with every message sent or received going through `layer`
    /// (see [`MessageLayer`]), which owns whatever links it uses. The session keeps its own
    /// protocol-level [`Traffic`] counters; `timeout` is what [`Session::timeout`] reports and is
    /// passed to the layer.
    pub fn layered(id: usize, parties: usize, timeout: Duration, mut layer: Box<dyn MessageLayer>) -> Session {
        layer.set_timeout(timeout);
        Session {
            id,
            links: (0..parties).map(|_| None).collect(),
            traffic: Traffic::default(),
            sent_since_recv: false,
            timeout,
            shaping: None,
            layer: Some(layer),
            failure: None,
        }
    }

    pub(crate) fn layer(&self) -> Option<&dyn MessageLayer> {
        self.layer.as_deref()
    }

    pub(crate) fn links_iter(&self) -> impl Iterator<Item = &Link> {
        self.links.iter().flatten()
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn parties(&self) -> usize {
        self.links.len()
    }

    /// Sets how long `recv` waits for a peer's next message (a deadline for the whole message
    /// from the start of the wait, on networked links too: a byte trickling in does not extend
    /// it), and, on networked links, how long a blocked write may make no progress.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        if let Some(layer) = self.layer.as_mut() {
            layer.set_timeout(timeout);
        }
        for link in self.links.iter().flatten() {
            if let Link::Net(l) = link {
                l.set_timeout(timeout);
            }
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// This party's emulated clock, in a session made by [`Session::local_shaped`].
    pub fn emulated_clock(&self) -> Option<EmulatedClock> {
        match &self.layer {
            Some(layer) => layer.emulated_clock(),
            None => self.shaping.as_ref().map(|s| s.clock.clone()),
        }
    }

    /// The network emulation of this session, if any.
    pub fn link_shape(&self) -> Option<LinkShape> {
        self.shaping.as_ref().map(|s| s.shape)
    }

    fn link(&mut self, peer: usize) -> Result<&mut Link, NetError> {
        let from = self.id;
        self.links
            .get_mut(peer)
            .and_then(|l| l.as_mut())
            .ok_or(NetError::NoSuchPeer { from, to: peer })
    }

    /// Sends ring elements to `to`. Does not wait for the peer to read them (networked links
    /// hand the message to the link's writer thread and return; a write failure is reported by
    /// the next `send` or `recv` on that link).
    pub fn send(&mut self, to: usize, data: Vec<u64>) -> Result<(), NetError> {
        let bytes = (data.len() * 8) as u64;
        if let Some(layer) = self.layer.as_mut() {
            if to >= self.links.len() || to == self.id {
                return Err(NetError::NoSuchPeer { from: self.id, to });
            }
            layer.send(to, data)?;
            self.traffic.bytes_sent += bytes;
            self.sent_since_recv = true;
            return Ok(());
        }
        let arrival = match &mut self.shaping {
            Some(s) if to < s.link_free.len() => {
                let start = s.clock.seconds().max(s.link_free[to]);
                s.link_free[to] = start + s.shape.transfer_seconds(bytes);
                Some(s.link_free[to] + s.shape.latency.as_secs_f64())
            }
            _ => None,
        };
        match self.link(to)? {
            Link::Local { tx, .. } => {
                tx.send(LocalMessage { data, arrival }).map_err(|_| NetError::Disconnected { peer: to })?
            }
            Link::Net(l) => l.send(data)?,
        }
        self.traffic.bytes_sent += bytes;
        self.sent_since_recv = true;
        Ok(())
    }

    /// Receives the next message from `from` whatever its length (for layers that frame their
    /// own data; protocols use [`Session::recv`]), waiting at most the session timeout.
    pub fn recv_any(&mut self, from: usize) -> Result<Vec<u64>, NetError> {
        self.recv_impl(from, None)
    }

    /// Receives exactly `len` ring elements from `from`, waiting at most the session timeout.
    pub fn recv(&mut self, from: usize, len: usize) -> Result<Vec<u64>, NetError> {
        self.recv_impl(from, Some(len))
    }

    fn recv_impl(&mut self, from: usize, expected: Option<usize>) -> Result<Vec<u64>, NetError> {
        let timeout = self.timeout;
        // Emulated time at which this party starts waiting (before any real blocking).
        let waiting_since = self.shaping.as_ref().map(|s| s.clock.seconds());
        let (data, arrival) = if let Some(layer) = self.layer.as_mut() {
            if from >= self.links.len() || from == self.id {
                return Err(NetError::NoSuchPeer { from: self.id, to: from });
            }
            let data = match expected {
                Some(len) => layer.recv(from, len)?,
                None => layer.recv_any(from)?,
            };
            (data, None)
        } else {
            match self.link(from)? {
                Link::Local { rx, .. } => {
                    let m = rx.recv_timeout(timeout).map_err(|e| match e {
                        RecvTimeoutError::Timeout => NetError::Timeout { peer: from, seconds: timeout.as_secs() },
                        RecvTimeoutError::Disconnected => NetError::Disconnected { peer: from },
                    })?;
                    (m.data, m.arrival)
                }
                Link::Net(l) => match l.recv(timeout) {
                    Ok(data) => (data, None),
                    Err(e) => {
                        let e = match e {
                            NetError::Disconnected { peer } => self.first_to_leave(peer),
                            e => e,
                        };
                        if matches!(e, NetError::Disconnected { .. } | NetError::Timeout { .. }) {
                            self.failure.get_or_insert_with(|| e.clone());
                        }
                        return Err(e);
                    }
                },
            }
        };
        if let (Some(s), Some(arrival), Some(waiting_since)) = (&self.shaping, arrival, waiting_since) {
            match s.shape.mode {
                ShapeMode::Simulated => s.clock.set_seconds(waiting_since.max(arrival), s.clock.real_seconds()),
                ShapeMode::Delay => {
                    let early = arrival - s.clock.real_seconds();
                    if early > 0.0 {
                        std::thread::sleep(Duration::from_secs_f64(early));
                    }
                }
            }
        }
        let len = data.len();
        if let Some(expected) = expected.filter(|&e| e != len) {
            return Err(NetError::WrongLength { peer: from, expected, got: len });
        }
        if self.sent_since_recv || self.traffic.rounds == 0 {
            self.traffic.rounds += 1;
            self.sent_since_recv = false;
        }
        self.traffic.bytes_received += (len * 8) as u64;
        Ok(data)
    }
}

impl Session {
    /// The party to blame when the link to `peer` ended: when one party fails, the others stop
    /// and close their links too, so a party waiting on an honest peer may see that peer leave
    /// before it notices the party that actually failed. The link that ended first (waiting
    /// briefly for the other links' readers to catch up) names the party that left first.
    fn first_to_leave(&self, peer: usize) -> NetError {
        let ended = |link: &Link| match link {
            Link::Net(l) => l.ended().map(|t| (t, l.peer())),
            Link::Local { .. } => None,
        };
        let grace = Instant::now() + Duration::from_millis(100);
        let mut first: Option<(Instant, usize)> = None;
        loop {
            for (t, p) in self.links.iter().flatten().filter_map(ended) {
                if first.is_none_or(|(f, _)| t < f) {
                    first = Some((t, p));
                }
            }
            let all_ended = self.links.iter().flatten().all(|l| ended(l).is_some());
            if all_ended || Instant::now() >= grace {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            first = None;
        }
        NetError::Disconnected { peer: first.map_or(peer, |(_, p)| p) }
    }
}

impl Drop for Session {
    /// Networked links: every writer first finishes its queued messages (all links in parallel,
    /// for at most the session timeout), then the sockets are shut and the threads joined.
    fn drop(&mut self) {
        // A party that gives up after a peer left or stalled says whom it blames, so that a
        // party waiting on it does not blame it instead.
        let blame = match &self.failure {
            Some(NetError::Disconnected { peer }) => Some((*peer, crate::wire::encode_blame(*peer, None))),
            Some(NetError::Timeout { peer, seconds }) => Some((*peer, crate::wire::encode_blame(*peer, Some(*seconds)))),
            _ => None,
        };
        for link in self.links.iter_mut().flatten() {
            if let Link::Net(l) = link {
                if let Some((_, word)) = blame.filter(|(blamed, _)| *blamed != l.peer()) {
                    l.abort(word);
                }
                l.begin_close();
            }
        }
        let deadline = Instant::now() + self.timeout;
        for link in self.links.iter_mut().flatten() {
            if let Link::Net(l) = link {
                l.finish_close(deadline);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(mode: ShapeMode) -> LinkShape {
        LinkShape { bandwidth: 1e6, latency: Duration::from_millis(20), mode }
    }

    #[test]
    fn unshaped_local_sessions_have_no_clock() {
        let s = Session::local(2);
        assert!(s[0].emulated_clock().is_none());
        assert!(s[0].link_shape().is_none());
    }

    #[test]
    fn simulated_links_charge_bandwidth_and_latency_without_sleeping() {
        let mut s = Session::local_shaped(3, shape(ShapeMode::Simulated));
        let clocks: Vec<EmulatedClock> = s.iter().map(|p| p.emulated_clock().unwrap()).collect();
        let real = Instant::now();
        // 125_000 words = 1 MB: 1 s at 1 MB/s, twice back to back on the same link.
        s[0].send(1, vec![7; 125_000]).unwrap();
        s[0].send(1, vec![8; 125_000]).unwrap();
        // Another link is not held up by the first one.
        s[2].send(1, vec![9; 10]).unwrap();
        assert_eq!(s[1].recv(2, 10).unwrap(), vec![9; 10]);
        let t = clocks[1].now().as_secs_f64();
        assert!((0.02..0.5).contains(&t), "small message: {t}");
        assert_eq!(s[1].recv(0, 125_000).unwrap()[0], 7);
        let t = clocks[1].now().as_secs_f64();
        assert!((1.02..1.5).contains(&t), "first megabyte arrives after 1 s + latency: {t}");
        assert_eq!(s[1].recv(0, 125_000).unwrap()[0], 8);
        let t = clocks[1].now().as_secs_f64();
        assert!((2.02..2.5).contains(&t), "the second waits for the first on the link: {t}");
        // The sender was never held up, and nothing slept.
        assert!(clocks[0].now().as_secs_f64() < 0.5);
        assert!(real.elapsed().as_secs_f64() < 0.9);
        // Counters are those of an unshaped session.
        assert_eq!(s[1].traffic().bytes_received, 2_000_080);
        assert_eq!(s[1].traffic().rounds, 1);
        // A reply leaves from the receiver's emulated time.
        s[1].send(0, vec![1]).unwrap();
        s[0].recv(1, 1).unwrap();
        assert!(clocks[0].now().as_secs_f64() >= 2.04);
    }

    #[test]
    fn delay_mode_makes_the_receiver_wait_in_real_time() {
        let mut s = Session::local_shaped(2, LinkShape { bandwidth: f64::INFINITY, ..shape(ShapeMode::Delay) });
        let clock = s[1].emulated_clock().unwrap();
        let real = Instant::now();
        for _ in 0..3 {
            s[0].send(1, vec![1, 2, 3]).unwrap();
            s[1].recv(0, 3).unwrap();
            s[1].send(0, vec![4]).unwrap();
            s[0].recv(1, 1).unwrap();
        }
        let elapsed = real.elapsed().as_secs_f64();
        assert!(elapsed >= 0.12, "six one-way trips of 20 ms: {elapsed}");
        assert!((clock.now().as_secs_f64() - elapsed).abs() < 0.05, "the clock is real time in delay mode");
    }
}
