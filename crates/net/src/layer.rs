//! Message layers: code that stands between a protocol and the links of its session.
//!
//! A protocol (Porthos, or any backend that takes a [`Session`]) talks to its peers only through
//! [`Session::send`] and [`Session::recv`]. [`Session::layered`] makes a session whose messages
//! all go through a [`MessageLayer`] instead of straight to the links; the layer usually owns an
//! ordinary session (the real links) and adds something to every message on the way: Aramis
//! (crate `cryptflow-aramis`) signs every outgoing message and verifies every incoming one, a
//! fault injector plays a dishonest host. The protocol's code does not change and cannot tell.
//!
//! The layered session keeps the protocol-level counters of [`Session::traffic`] exactly as an
//! ordinary session would (8 bytes per element the protocol sent or received, the same
//! rounds), so communication assertions on a protocol hold whatever layer it runs over; what
//! the layer adds (headers, signatures, its own messages) is the layer's to count.

use std::time::Duration;

use crate::{EmulatedClock, NetError, WireTraffic};

/// What a [`Session::layered`] session does with the protocol's messages.
///
/// `send` and `recv` have the contract of [`Session::send`] and [`Session::recv`]: `recv`
/// returns exactly `len` elements from `from` or an error naming the peer concerned.
pub trait MessageLayer: Send {
    fn send(&mut self, to: usize, data: Vec<u64>) -> Result<(), NetError>;
    fn recv(&mut self, from: usize, len: usize) -> Result<Vec<u64>, NetError>;
    /// [`Session::recv_any`] on the layered session; layers that only carry messages of known
    /// length may refuse it.
    fn recv_any(&mut self, from: usize) -> Result<Vec<u64>, NetError> {
        Err(NetError::Protocol { peer: from, reason: "this message layer cannot receive messages of unknown length".into() })
    }
    /// [`Session::set_timeout`] on the layered session.
    fn set_timeout(&mut self, _timeout: Duration) {}
    /// [`Session::wire_traffic`] of the layered session: the bytes on the sockets beneath.
    fn wire_traffic(&self) -> WireTraffic {
        WireTraffic::default()
    }
    /// [`Session::emulated_clock`] of the layered session.
    fn emulated_clock(&self) -> Option<EmulatedClock> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Session;

    /// Adds one to every element on the way out, over an ordinary session.
    struct PlusOne(Session);

    impl MessageLayer for PlusOne {
        fn send(&mut self, to: usize, mut data: Vec<u64>) -> Result<(), NetError> {
            data.iter_mut().for_each(|v| *v += 1);
            self.0.send(to, data)
        }
        fn recv(&mut self, from: usize, len: usize) -> Result<Vec<u64>, NetError> {
            self.0.recv(from, len)
        }
    }

    #[test]
    fn a_layered_session_routes_through_its_layer_and_counts_like_a_plain_one() {
        let mut raw = Session::local(3).into_iter();
        let (s0, s1, _s2) = (raw.next().unwrap(), raw.next().unwrap(), raw.next().unwrap());
        let mut p0 = Session::layered(0, 3, Duration::from_secs(1), Box::new(PlusOne(s0)));
        let mut p1 = Session::layered(1, 3, Duration::from_secs(1), Box::new(PlusOne(s1)));
        assert_eq!((p0.id(), p0.parties(), p0.timeout()), (0, 3, Duration::from_secs(1)));
        p0.send(1, vec![1, 2, 3]).unwrap();
        assert_eq!(p1.recv(0, 3).unwrap(), vec![2, 3, 4]);
        p1.send(0, vec![10]).unwrap();
        assert_eq!(p0.recv(1, 1).unwrap(), vec![11]);
        assert_eq!(p0.traffic(), crate::Traffic { bytes_sent: 24, bytes_received: 8, rounds: 1 });
        assert_eq!(p0.send(0, vec![1]), Err(NetError::NoSuchPeer { from: 0, to: 0 }));
        assert_eq!(p0.send(3, vec![1]), Err(NetError::NoSuchPeer { from: 0, to: 3 }));
        p0.send(1, vec![5, 6]).unwrap();
        assert_eq!(p1.recv(0, 3), Err(NetError::WrongLength { peer: 0, expected: 3, got: 2 }));
        assert!(p0.wire_traffic() == WireTraffic::default() && p0.emulated_clock().is_none());
        assert!(matches!(p1.recv_any(0), Err(NetError::Protocol { peer: 0, .. })));
    }

    #[test]
    fn recv_any_takes_a_message_of_any_length_and_counts_it() {
        let mut s = Session::local(2);
        s[0].send(1, vec![1, 2, 3]).unwrap();
        s[0].send(1, vec![]).unwrap();
        assert_eq!(s[1].recv_any(0).unwrap(), vec![1, 2, 3]);
        assert_eq!(s[1].recv_any(0).unwrap(), Vec::<u64>::new());
        assert_eq!(s[1].traffic(), crate::Traffic { bytes_sent: 0, bytes_received: 24, rounds: 1 });
    }
}
