//! Envelopes crafted by a hostile host: what the receiver learns from a peer before it can
//! check the peer's signature (the message count, the lengths) is capped before anything is
//! allocated for it, and refused as a failed envelope check naming the peer.

use std::time::{Duration, Instant};

use cryptflow_aramis::envelope::{Envelope, FIXED_WORDS};
use cryptflow_aramis::host::Outgoing;
use cryptflow_aramis::software::SoftwareAttestor;
use cryptflow_aramis::{protect, Check, Failure, Host, Options};
use cryptflow_net::{NetError, Session};
use ed25519_dalek::SigningKey;

/// Replaces the first envelope party 0 sends to party 1 by `craft(envelope)`, alone.
struct Crafting {
    craft: fn(Vec<u64>) -> Vec<Vec<u64>>,
    done: bool,
}

impl Host for Crafting {
    fn forward(&mut self, wire: &mut Session, to: usize, message: Outgoing) -> Result<(), NetError> {
        match (&message.envelope, self.done) {
            (Some(env), false) if to == 1 => {
                self.done = true;
                for frame in (self.craft)(env.clone()) {
                    wire.send(to, frame)?;
                }
                Ok(())
            }
            _ => cryptflow_aramis::HonestHost.forward(wire, to, message),
        }
    }
}

/// Party 0 sends 10 words to party 1 through a crafting host; returns every party's failure.
fn run(craft: fn(Vec<u64>) -> Vec<Vec<u64>>) -> Vec<(Option<Failure>, Duration)> {
    let sessions = Session::local(3);
    std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .into_iter()
            .map(|session| {
                s.spawn(move || {
                    let id = session.id();
                    let attestor = SoftwareAttestor::new(SigningKey::from_bytes(&[42; 32]), [7; 32]);
                    let mut options = Options::new(b"hostile".to_vec());
                    options.explain_grace = Duration::from_millis(300);
                    if id == 0 {
                        options.host = Box::new(Crafting { craft, done: false });
                    }
                    let (mut session, handle) = protect(session, &attestor, options).unwrap();
                    session.set_timeout(Duration::from_secs(20));
                    let start = Instant::now();
                    match id {
                        0 => session.send(1, vec![5; 10]).unwrap(),
                        1 => assert!(session.recv(0, 10).is_err()),
                        _ => {}
                    }
                    let _ = handle.confirm();
                    (handle.failure(), start.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn an_envelope_announcing_millions_of_messages_is_refused_before_allocating() {
    // 16 MiB of envelope announcing 4 M empty messages (the lengths fit the frame).
    let results = run(|env| {
        let mut w = env[..FIXED_WORDS].to_vec();
        w[2] = (w[2] & !0xffff_ffff) | (4 << 20);
        w.resize(FIXED_WORDS + (2 << 20), 0);
        w.extend_from_slice(&env[env.len() - 8..]); // the signature (no other receiver)
        vec![w]
    });
    let (f, waited) = &results[1];
    let f = f.as_ref().expect("party 1 aborts");
    assert_eq!((f.culprit, f.check), (Some(0), Check::Envelope), "{f}");
    assert!(f.message.contains("4194304 messages"), "{f}");
    assert!(*waited < Duration::from_secs(5), "{waited:?}");
    for (p, (f, _)) in results.iter().enumerate() {
        assert!(f.is_some(), "party {p} passed the output gate");
    }
}

#[test]
fn an_envelope_announcing_huge_messages_is_refused_before_receiving_them() {
    // Two messages, the first announced at 2^30 words: a real sender's flight would have left
    // long before, so the receiver refuses before waiting for (and buffering) them.
    let results = run(|env| {
        let e = Envelope::decode(&env, 3).unwrap();
        let crafted = Envelope { lens: vec![1 << 30, 10], ..e };
        vec![crafted.encode(), vec![0; 10]]
    });
    let f = results[1].0.as_ref().expect("party 1 aborts");
    assert_eq!((f.culprit, f.check), (Some(0), Check::Envelope), "{f}");
    assert!(f.message.contains("before its last message"), "{f}");
}
