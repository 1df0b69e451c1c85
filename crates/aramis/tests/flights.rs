//! How messages are grouped into signed flights: everything sent between two receives, except
//! that a flight leaves as soon as it holds 1 MiB (a streamed message overlaps its sender's
//! computation instead of waiting for its next receive).

use cryptflow_aramis::software::SoftwareAttestor;
use cryptflow_aramis::{protect, Options};
use cryptflow_net::Session;
use ed25519_dalek::SigningKey;

const MIB_WORDS: usize = 1 << 17;

/// Party 0 sends `sizes` to party 1 back to back, then waits for its answer; returns the
/// number of flights party 0 signed, and checks that party 1 got every message intact.
fn flights_for(sizes: &[usize]) -> u64 {
    let sessions = Session::local(3);
    let sizes = sizes.to_vec();
    std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .into_iter()
            .map(|session| {
                let sizes = sizes.clone();
                s.spawn(move || {
                    let id = session.id();
                    let attestor = SoftwareAttestor::new(SigningKey::from_bytes(&[42; 32]), [7; 32]);
                    let (mut session, handle) = protect(session, &attestor, Options::new(b"flights".to_vec())).unwrap();
                    match id {
                        0 => {
                            for (k, &n) in sizes.iter().enumerate() {
                                session.send(1, vec![k as u64; n]).unwrap();
                            }
                            assert_eq!(session.recv(1, 1).unwrap(), vec![99]);
                        }
                        1 => {
                            for (k, &n) in sizes.iter().enumerate() {
                                assert_eq!(session.recv(0, n).unwrap(), vec![k as u64; n]);
                            }
                            session.send(0, vec![99]).unwrap();
                        }
                        _ => {}
                    }
                    handle.confirm().unwrap();
                    handle.stats().signatures
                })
            })
            .collect();
        let signed: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // Each party also signs one confirmation at the output gate.
        signed[0] - 1
    })
}

#[test]
fn small_messages_share_a_flight() {
    assert_eq!(flights_for(&[10, 1000, 5000]), 1);
}

#[test]
fn a_flight_leaves_once_it_holds_a_mebibyte() {
    assert_eq!(flights_for(&[MIB_WORDS, MIB_WORDS, 10]), 3);
    assert_eq!(flights_for(&[MIB_WORDS / 2, MIB_WORDS / 2, 10]), 2);
}

#[test]
fn a_flight_leaves_once_it_holds_the_most_messages_an_envelope_may_announce() {
    let most = cryptflow_aramis::envelope::MAX_FLIGHT_MESSAGES;
    assert_eq!(flights_for(&vec![1; most + 10]), 2);
    assert_eq!(flights_for(&vec![0; 2 * most]), 2);
}
