//! A party that disappears or stalls makes the others fail with an error naming a peer,
//! promptly and without hanging; malformed calls fail without communicating.

use std::time::{Duration, Instant};

use cryptflow_backend::testing::{self, peer_of};
use cryptflow_backend::{Backend, BackendError, ConvGeometry, RingTensor};
use cryptflow_net::Session;
use cryptflow_porthos::{Porthos, ProtocolVariant};
use cryptflow_tensor::Layout;

/// Runs the parties with a session timeout; `f` gets the party id.
fn run_with_timeout<T: Send>(timeout: Duration, f: impl Fn(usize, Porthos) -> T + Sync) -> Vec<T> {
    let sessions = Session::local(3).into_iter().map(|mut s| {
        s.set_timeout(timeout);
        s
    });
    testing::run_parties_by_value(sessions.collect(), |s| Porthos::new(s, ProtocolVariant::Porthos).expect("setup"), f)
}

#[test]
fn a_dropped_party_makes_the_others_fail_not_hang() {
    for dead in 0..3 {
        let timeout = Duration::from_secs(20);
        let start = Instant::now();
        let out = run_with_timeout(timeout, |id, mut p| {
            if id == dead {
                drop(p);
                return None;
            }
            let x = RingTensor::new(vec![50], (0..50).map(|i| i as u64).collect()).unwrap();
            // Several protocols in a row: the error must surface in one of them.
            let r = p.relu(&x).and_then(|y| p.mul(&y, &y)).and_then(|y| p.relu(&y));
            Some(r.map(|_| ()))
        });
        assert!(start.elapsed() < timeout / 2, "parties waited for the timeout instead of noticing the drop");
        for (id, o) in out.iter().enumerate() {
            if id == dead {
                continue;
            }
            let e = o.as_ref().unwrap().as_ref().expect_err("the protocol cannot finish without a party");
            let peer = peer_of(e);
            assert_ne!(peer, id);
            assert!(e.to_string().contains(&format!("party {peer}")), "{e}");
        }
    }
}

#[test]
fn a_party_dropped_in_the_middle_of_a_protocol_makes_the_others_fail() {
    // The dead party runs the first half of DReLU (ShareConvert) and leaves; the others are
    // inside DReLU (in ComputeMSB) when they notice.
    for dead in 0..3 {
        let timeout = Duration::from_secs(20);
        let start = Instant::now();
        let out = run_with_timeout(timeout, |id, mut p| {
            let x: Vec<u64> = (0..33).map(|i| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 2).collect();
            let x = if id == 2 { vec![0; 33] } else { x };
            if id == dead {
                p.share_convert(&x).expect("the first half runs normally");
                return None;
            }
            Some(p.drelu(&x).map(|_| ()))
        });
        assert!(start.elapsed() < timeout / 2, "parties waited for the timeout instead of noticing the drop");
        for (id, o) in out.iter().enumerate() {
            if id != dead {
                let e = o.as_ref().unwrap().as_ref().expect_err("DReLU cannot finish without a party");
                assert_ne!(peer_of(e), id, "{e}");
            }
        }
    }
}

#[test]
fn a_stalled_party_times_out_with_an_error_naming_it() {
    let timeout = Duration::from_millis(300);
    let out = run_with_timeout(timeout, |id, mut p| {
        if id == 1 {
            std::thread::sleep(Duration::from_millis(1500));
            return None;
        }
        let x = RingTensor::zeros(vec![4]);
        Some(p.relu(&x).map(|_| ()))
    });
    // The helper waits on the client first; the model owner then loses the helper or times out.
    let e2 = out[2].as_ref().unwrap().as_ref().unwrap_err();
    assert_eq!(peer_of(e2), 1, "{e2}");
    let e0 = out[0].as_ref().unwrap().as_ref().unwrap_err();
    assert!(matches!(peer_of(e0), 1 | 2), "{e0}");
}

#[test]
fn session_setup_fails_cleanly_without_peers() {
    let mut sessions = Session::local(3);
    let s0 = sessions.remove(0);
    drop(sessions);
    let err = Porthos::new(s0, ProtocolVariant::Porthos).unwrap_err();
    assert!(matches!(err, BackendError::Peer { .. }), "{err}");
    let mut two = Session::local(2);
    assert!(Porthos::new(two.remove(0), ProtocolVariant::SecureNN).is_err());
}

#[test]
fn malformed_calls_fail_on_every_party_without_communicating() {
    let out = run_with_timeout(Duration::from_secs(5), |_, mut p| {
        let before = p.traffic();
        let a = RingTensor::zeros(vec![2, 3]);
        let b = RingTensor::zeros(vec![4, 2]);
        let m = p.matmul(&a, &b).is_err();
        let e = p.mul(&a, &b).is_err();
        let g = ConvGeometry {
            layout: Layout::ChannelsFirst,
            batch: 1,
            in_channels: 3,
            out_channels: 2,
            groups: 2,
            input: vec![4, 4],
            kernel: vec![5, 5],
            strides: vec![1, 1],
            dilations: vec![1, 1],
            pads_begin: vec![0, 0],
            pads_end: vec![0, 0],
            output_padding: vec![0, 0],
        };
        let c = p.conv(&RingTensor::zeros(vec![1, 3, 4, 4]), &RingTensor::zeros(vec![2, 1, 5, 5]), &g).is_err();
        let s = p.scale_down(&a, 64).is_err();
        let d = p.divide(&a, &RingTensor::zeros(vec![2, 3])).is_err();
        let x = p.argmax(&a, 2, false).is_err();
        (m && e && c && s && d && x, p.traffic() == before)
    });
    assert!(out.iter().all(|&(errs, quiet)| errs && quiet), "{out:?}");
}
