use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::NetError;

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
    Local { tx: Sender<Vec<u64>>, rx: Receiver<Vec<u64>> },
    Net(crate::tcp::NetLink),
}

/// One party's links to every other party of a session.
pub struct Session {
    id: usize,
    links: Vec<Option<Link>>,
    traffic: Traffic,
    sent_since_recv: bool,
    timeout: Duration,
}

impl Session {
    /// `n` parties connected pairwise through in-memory channels; element `i` is party `i`.
    pub fn local(n: usize) -> Vec<Session> {
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
            })
            .collect()
    }

    pub(crate) fn from_links(id: usize, links: Vec<Option<Link>>, timeout: Duration) -> Session {
        Session { id, links, traffic: Traffic::default(), sent_since_recv: false, timeout }
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

    /// Sets how long `recv` waits for a peer (networked sessions: without any byte arriving),
    /// and, on networked links, how long a blocked write may make no progress.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
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
        match self.link(to)? {
            Link::Local { tx, .. } => tx.send(data).map_err(|_| NetError::Disconnected { peer: to })?,
            Link::Net(l) => l.send(data)?,
        }
        self.traffic.bytes_sent += bytes;
        self.sent_since_recv = true;
        Ok(())
    }

    /// Receives exactly `len` ring elements from `from`, waiting at most the session timeout.
    pub fn recv(&mut self, from: usize, len: usize) -> Result<Vec<u64>, NetError> {
        let timeout = self.timeout;
        let data = match self.link(from)? {
            Link::Local { rx, .. } => rx.recv_timeout(timeout).map_err(|e| match e {
                RecvTimeoutError::Timeout => NetError::Timeout { peer: from, seconds: timeout.as_secs() },
                RecvTimeoutError::Disconnected => NetError::Disconnected { peer: from },
            })?,
            Link::Net(l) => l.recv(timeout)?,
        };
        if data.len() != len {
            return Err(NetError::WrongLength { peer: from, expected: len, got: data.len() });
        }
        if self.sent_since_recv || self.traffic.rounds == 0 {
            self.traffic.rounds += 1;
            self.sent_since_recv = false;
        }
        self.traffic.bytes_received += (len * 8) as u64;
        Ok(data)
    }
}

impl Drop for Session {
    /// Networked links: every writer first finishes its queued messages (all links in parallel,
    /// for at most the session timeout), then the sockets are shut and the threads joined.
    fn drop(&mut self) {
        for link in self.links.iter_mut().flatten() {
            if let Link::Net(l) = link {
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
