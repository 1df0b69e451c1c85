//! A party that disappears makes the other fail with an error naming it, promptly; a party that
//! stalls makes it fail within the session timeout; a wrong session size is refused.

use std::time::{Duration, Instant};

use cryptflow_backend::testing::{self, peer_of};
use cryptflow_backend::{Backend, RingTensor};
use cryptflow_net::Session;
use cryptflow_twopc::TwoPc;

/// Runs both parties with a session timeout; `f` gets the party id.
fn run_with_timeout<T: Send>(timeout: Duration, f: impl Fn(usize, TwoPc) -> T + Sync) -> Vec<T> {
    let sessions = Session::local(2).into_iter().map(|mut s| {
        s.set_timeout(timeout);
        s
    });
    testing::run_parties_by_value(sessions.collect(), |s| TwoPc::new(s).expect("setup"), f)
}

#[test]
fn a_party_leaving_in_the_middle_of_relu_stops_the_other() {
    for dead in 0..2 {
        let timeout = Duration::from_secs(20);
        let start = Instant::now();
        let out = run_with_timeout(timeout, |id, mut p| {
            let x = RingTensor::new(vec![40], (0..40).map(|i| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect()).unwrap();
            if id == dead {
                // One full ReLU, then the dead party's half of a product, then it is gone.
                p.relu(&x).expect("the first ReLU runs normally");
                drop(p);
                return None;
            }
            let r = p.relu(&x).and_then(|y| p.mul(&y, &y)).and_then(|y| p.relu(&y));
            Some(r.map(|_| ()))
        });
        assert!(start.elapsed() < timeout / 2, "the survivor waited for the timeout instead of noticing");
        let e = out[1 - dead].as_ref().unwrap().as_ref().expect_err("cannot finish alone");
        assert_eq!(peer_of(e), dead);
        assert!(e.to_string().contains(&format!("party {dead}")), "{e}");
    }
}

#[test]
fn a_stalled_party_times_out() {
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let out = run_with_timeout(timeout, |id, mut p| {
        if id == 1 {
            std::thread::sleep(Duration::from_millis(1500));
            return None;
        }
        let x = RingTensor::zeros(vec![8]);
        Some(p.relu(&x).map(|_| ()))
    });
    let e = out[0].as_ref().unwrap().as_ref().expect_err("no answer from party 1");
    assert_eq!(peer_of(e), 1);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_backend_needs_exactly_two_parties() {
    let mut sessions = Session::local(3);
    let e = TwoPc::new(sessions.remove(0)).expect_err("three parties");
    assert!(e.to_string().contains("2 parties"), "{e}");
}
