//! Networked sessions over loopback (127.0.0.1 only): TLS with pinned certificates, and the
//! insecure plaintext transport where a raw peer has to speak the wire format by hand.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use cryptflow_net::wire::{FrameHeader, Hello, ACK, HELLO_LEN, MODE_INSECURE_PLAINTEXT};
use cryptflow_net::{
    generate_identity, key_path, keygen, NetError, NetworkConfig, Security, Session, TlsIdentity,
};

const DEADLINE: Duration = Duration::from_secs(10);

/// Fresh identities for `n` parties: `ids[i]` is party `i`'s.
fn identities(n: usize) -> Vec<TlsIdentity> {
    let pairs: Vec<_> = (0..n).map(|i| generate_identity(i).unwrap()).collect();
    let certs: Vec<&str> = pairs.iter().map(|(c, _)| c.as_str()).collect();
    (0..n).map(|i| TlsIdentity::from_pem(i, &certs, &pairs[i].1).unwrap()).collect()
}

fn tls(n: usize) -> Vec<Security> {
    identities(n).into_iter().map(Security::Tls).collect()
}

fn loopback_listeners(n: usize) -> (Vec<TcpListener>, Vec<String>) {
    let ls: Vec<_> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs = ls.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    (ls, addrs)
}

/// Connects every party in its own thread; element `i` is party `i`'s result.
fn try_connect_all(security: Vec<Security>, deadline: Duration) -> Vec<Result<Session, NetError>> {
    let (listeners, addrs) = loopback_listeners(security.len());
    thread::scope(|s| {
        let handles: Vec<_> = listeners
            .into_iter()
            .zip(security)
            .enumerate()
            .map(|(i, (l, sec))| {
                let mut cfg = NetworkConfig::new(i, addrs.clone(), sec);
                cfg.connect_deadline = deadline;
                s.spawn(move || Session::connect_with_listener(cfg, l))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn connect_all(security: Vec<Security>) -> Vec<Session> {
    try_connect_all(security, DEADLINE).into_iter().map(|r| r.unwrap()).collect()
}

/// Runs `f(party, session)` for every party at once.
fn run<R: Send>(sessions: &mut [Session], f: impl Fn(usize, &mut Session) -> R + Sync) -> Vec<R> {
    thread::scope(|s| {
        let handles: Vec<_> = sessions.iter_mut().enumerate().map(|(i, sess)| {
            let f = &f;
            s.spawn(move || f(i, sess))
        }).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn message(from: usize, to: usize, k: usize, len: usize) -> Vec<u64> {
    (0..len as u64).map(|x| x.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((from * 100 + to * 10 + k) as u64) << 56).collect()
}

/// A Porthos-like pattern: all-to-all exchanges of varied sizes (some spanning several 1 MiB
/// chunks), then a request/answer between 0 and 1 with 2 idle, then 2 sends to both.
fn pattern(me: usize, s: &mut Session) {
    let n = s.parties();
    let sizes = [0usize, 1, 1000, 300_000, 7];
    for (k, &len) in sizes.iter().enumerate() {
        for to in (0..n).filter(|&p| p != me) {
            s.send(to, message(me, to, k, len)).unwrap();
        }
        for from in (0..n).filter(|&p| p != me) {
            let got = s.recv(from, len).unwrap();
            assert!(got == message(from, me, k, len), "message {k} from {from} to {me} corrupted");
        }
    }
    match me {
        0 => {
            s.send(1, vec![1, 2, 3]).unwrap();
            assert_eq!(s.recv(1, 2).unwrap(), vec![6, 6]);
        }
        1 => {
            let q = s.recv(0, 3).unwrap();
            s.send(0, vec![q.iter().sum(), 6]).unwrap();
        }
        _ => {}
    }
    if n == 3 {
        if me == 2 {
            s.send(0, vec![42; 10]).unwrap();
            s.send(1, vec![43; 20]).unwrap();
        } else {
            let v = s.recv(2, 10 + 10 * me).unwrap();
            assert!(v.iter().all(|&x| x == 42 + me as u64));
        }
    }
}

#[test]
fn three_parties_over_tls_deliver_intact_messages_in_order_with_local_counters() {
    let mut net = connect_all(tls(3));
    run(&mut net, pattern);
    let mut local = Session::local(3);
    run(&mut local, pattern);
    for i in 0..3 {
        assert_eq!(net[i].traffic(), local[i].traffic(), "party {i}: networked and local counters differ");
        assert!(net[i].traffic().rounds > 0);
        let wire = net[i].wire_traffic();
        assert!(wire.bytes_sent > net[i].traffic().bytes_sent, "frame and TLS overhead is counted apart");
    }
    // Wrong lengths are reported the same way as locally, and don't break the link.
    net[0].send(1, vec![5; 4]).unwrap();
    assert_eq!(net[1].recv(0, 3), Err(NetError::WrongLength { peer: 0, expected: 3, got: 4 }));
    net[0].send(1, vec![6; 3]).unwrap();
    assert_eq!(net[1].recv(0, 3).unwrap(), vec![6; 3]);
    assert_eq!(net[0].recv(0, 1), Err(NetError::NoSuchPeer { from: 0, to: 0 }));
}

#[test]
fn plaintext_counters_match_local_too() {
    let mut net = connect_all(vec![Security::InsecurePlaintext, Security::InsecurePlaintext]);
    run(&mut net, pattern);
    let mut local = Session::local(2);
    run(&mut local, pattern);
    for i in 0..2 {
        assert_eq!(net[i].traffic(), local[i].traffic());
    }
}

fn exchange_64mib(security: Vec<Security>, label: &str) {
    const LEN: usize = 8 << 20; // 64 MiB of u64
    let mut s = connect_all(security);
    let barrier = std::sync::Barrier::new(2);
    let times = run(&mut s, |me, sess| {
        let other = 1 - me;
        let data: Vec<u64> = (0..LEN as u64).map(|x| x ^ (me as u64) << 63).collect();
        barrier.wait();
        let start = Instant::now();
        sess.send(other, data).unwrap(); // both send before either receives
        let got = sess.recv(other, LEN).unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(got.len(), LEN);
        assert!(got.iter().enumerate().all(|(i, &x)| x == (i as u64) ^ (other as u64) << 63));
        secs
    });
    let secs = times[0].max(times[1]);
    // 64 MiB each way, both at once, on a shared 2-core machine: report, don't assert speed.
    println!(
        "{label}: 2 x 64 MiB exchanged in {secs:.2} s: {:.0} MB/s per direction, {:.0} MB/s total",
        64.0 * 1.048_576 / secs,
        2.0 * 64.0 * 1.048_576 / secs
    );
    for sess in &s {
        assert_eq!(sess.traffic().bytes_sent, (LEN * 8) as u64);
        assert_eq!(sess.traffic().bytes_received, (LEN * 8) as u64);
    }
}

#[test]
fn simultaneous_64mib_sends_complete_over_tls() {
    exchange_64mib(tls(2), "TLS");
}

#[test]
fn simultaneous_64mib_sends_complete_over_plaintext() {
    exchange_64mib(vec![Security::InsecurePlaintext, Security::InsecurePlaintext], "plaintext");
}

#[test]
fn a_party_dropped_mid_protocol_is_named_promptly() {
    let mut s = connect_all(tls(3));
    for sess in &mut s {
        // Far above the bound below: the disconnection must be seen, not timed out.
        sess.set_timeout(Duration::from_secs(30));
    }
    let p2 = s.pop().unwrap();
    let dropper = thread::spawn(move || {
        let mut p2 = p2;
        p2.send(0, vec![7; 100]).unwrap();
        p2.send(1, vec![8; 100]).unwrap();
        drop(p2); // its last messages are still delivered, then the links close
    });
    let results = run(&mut s, |me, sess| {
        assert_eq!(sess.recv(2, 100).unwrap(), vec![7 + me as u64; 100]);
        let start = Instant::now();
        let err = sess.recv(2, 100).unwrap_err();
        (err, start.elapsed())
    });
    dropper.join().unwrap();
    for (me, (err, waited)) in results.into_iter().enumerate() {
        assert_eq!(err, NetError::Disconnected { peer: 2 }, "party {me}");
        assert!(waited < Duration::from_secs(10), "party {me} waited {waited:?}");
    }
    // The failure is sticky, and sending to the dead party fails too (eventually, once the
    // writer notices; it must not hang).
    assert_eq!(s[0].recv(2, 1), Err(NetError::Disconnected { peer: 2 }));
    assert!(matches!(s[0].send(2, vec![1]), Err(NetError::Disconnected { peer: 2 })));
    // The surviving link still works.
    let out = run(&mut s, |me, sess| {
        sess.send(1 - me, vec![me as u64]).unwrap();
        sess.recv(1 - me, 1).unwrap()
    });
    assert_eq!(out, vec![vec![1], vec![0]]);
}

#[test]
fn a_write_to_a_vanished_party_fails_on_a_later_send() {
    let mut s = connect_all(vec![Security::InsecurePlaintext, Security::InsecurePlaintext]);
    drop(s.pop().unwrap());
    let start = Instant::now();
    let err = loop {
        if let Err(e) = s[0].send(1, vec![0; 100_000]) {
            break e;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "sends to a closed peer kept succeeding");
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(err, NetError::Disconnected { peer: 1 });
    assert_eq!(s[0].recv(1, 1), Err(NetError::Disconnected { peer: 1 }));
}

#[test]
fn a_stalled_party_times_out() {
    let mut s = connect_all(tls(3));
    s[0].set_timeout(Duration::from_millis(300));
    let start = Instant::now();
    assert_eq!(s[0].recv(2, 1), Err(NetError::Timeout { peer: 2, seconds: 0 }));
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(10), "{waited:?}");
    // A timeout is not fatal: the message that comes later is received.
    s[2].send(0, vec![9]).unwrap();
    assert_eq!(s[0].recv(2, 1).unwrap(), vec![9]);
}

fn identity(party: usize, certs: &[&str], key: &str) -> Security {
    Security::Tls(TlsIdentity::from_pem(party, certs, key).unwrap())
}

fn expect_rejection(r: &[Result<Session, NetError>], impostor: usize) {
    let honest = 1 - impostor;
    match &r[honest] {
        Err(NetError::Tls { peer, reason }) if *peer == impostor => assert!(reason.contains("pinned"), "{reason}"),
        other => panic!("party {honest} accepted or misreported impostor {impostor}: {:?}", other.as_ref().err()),
    }
    // The impostor learns that it was refused, by whom.
    match &r[impostor] {
        Err(NetError::Tls { peer, .. }) if *peer == honest => {}
        other => panic!("impostor {impostor}: {:?}", other.as_ref().err()),
    }
}

#[test]
fn a_certificate_other_than_the_pinned_one_is_rejected() {
    let p: Vec<(String, String)> = (0..3).map(|i| generate_identity(i).unwrap()).collect();
    let (rogue_cert, rogue_key) = generate_identity(1).unwrap();

    // The connecting party 1 presents a certificate party 0 has never seen.
    let r = try_connect_all(
        vec![identity(0, &[&p[0].0, &p[1].0], &p[0].1), identity(1, &[&p[0].0, &rogue_cert], &rogue_key)],
        DEADLINE,
    );
    expect_rejection(&r, 1);

    // The listening party 0 is the impostor.
    let r = try_connect_all(
        vec![identity(0, &[&rogue_cert, &p[1].0], &rogue_key), identity(1, &[&p[0].0, &p[1].0], &p[1].1)],
        DEADLINE,
    );
    expect_rejection(&r, 0);

    // A genuine certificate, but another party's: party 2's key and certificate cannot stand in
    // for party 1.
    let r = try_connect_all(
        vec![identity(0, &[&p[0].0, &p[1].0], &p[0].1), identity(1, &[&p[0].0, &p[2].0], &p[2].1)],
        DEADLINE,
    );
    expect_rejection(&r, 1);

    // With the right pins the same keys work.
    let r = try_connect_all(
        vec![identity(0, &[&p[0].0, &p[1].0], &p[0].1), identity(1, &[&p[0].0, &p[1].0], &p[1].1)],
        DEADLINE,
    );
    assert!(r.iter().all(|s| s.is_ok()));
}

#[test]
fn connect_retries_until_the_peer_appears() {
    // Reserve a port, free it, and start party 0 on it only after party 1 has been retrying.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addrs = vec![format!("127.0.0.1:{port}"), "127.0.0.1:9".to_string()];
    let mut sec = tls(2).into_iter();
    let (s0, s1) = (sec.next().unwrap(), sec.next().unwrap());
    let mut cfg1 = NetworkConfig::new(1, addrs.clone(), s1);
    cfg1.connect_deadline = DEADLINE;
    let started = Instant::now();
    let p1 = thread::spawn(move || Session::connect(cfg1));
    thread::sleep(Duration::from_millis(700));
    let mut cfg0 = NetworkConfig::new(0, addrs, s0);
    cfg0.connect_deadline = DEADLINE;
    let mut p0 = Session::connect(cfg0).unwrap();
    let mut p1 = p1.join().unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(700));
    p1.send(0, vec![1, 2]).unwrap();
    assert_eq!(p0.recv(1, 2).unwrap(), vec![1, 2]);
}

#[test]
fn connect_deadline_names_the_missing_peer() {
    // The connecting side: nobody listens at party 0's address.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addrs = vec![format!("127.0.0.1:{port}"), "127.0.0.1:9".to_string()];
    let mut cfg = NetworkConfig::new(1, addrs, Security::InsecurePlaintext);
    cfg.connect_deadline = Duration::from_millis(500);
    let start = Instant::now();
    let err = Session::connect(cfg).err().unwrap();
    assert!(matches!(err, NetError::Connect { peer: 0, .. }), "{err}");
    assert!(err.to_string().contains("party 0"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));

    // The listening side: party 2 never comes (party 1 does).
    let ids = tls(3);
    let (ls, addrs) = loopback_listeners(3);
    let mut ls = ls.into_iter();
    let (l0, l1) = (ls.next().unwrap(), ls.next().unwrap());
    let mut ids = ids.into_iter();
    let (s0, s1) = (ids.next().unwrap(), ids.next().unwrap());
    let mut c0 = NetworkConfig::new(0, addrs.clone(), s0);
    let mut c1 = NetworkConfig::new(1, addrs, s1);
    c0.connect_deadline = Duration::from_millis(800);
    c1.connect_deadline = Duration::from_millis(800);
    let start = Instant::now();
    let h1 = thread::spawn(move || Session::connect_with_listener(c1, l1));
    let e0 = Session::connect_with_listener(c0, l0).err().unwrap();
    let e1 = h1.join().unwrap().err().unwrap();
    assert!(matches!(e0, NetError::Connect { peer: 2, .. }), "{e0}");
    assert!(matches!(e1, NetError::Connect { peer: 2, .. }), "{e1}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// A raw TCP peer posing as party 1 of 2 in plaintext mode: the returned stream has done the
/// set-up, and party 0's session is being connected in the returned thread.
fn raw_peer() -> (TcpStream, thread::JoinHandle<Result<Session, NetError>>) {
    let (mut ls, addrs) = loopback_listeners(2);
    let l0 = ls.remove(0);
    let mut cfg = NetworkConfig::new(0, addrs.clone(), Security::InsecurePlaintext);
    cfg.connect_deadline = DEADLINE;
    let h = thread::spawn(move || Session::connect_with_listener(cfg, l0));
    // A stray connection that does not speak the protocol is ignored.
    let mut stray = TcpStream::connect(&addrs[0]).unwrap();
    stray.write_all(&[0xAB; HELLO_LEN]).unwrap();
    drop(stray);
    let mut s = TcpStream::connect(&addrs[0]).unwrap();
    s.write_all(&Hello::new(1, 0, 2, MODE_INSECURE_PLAINTEXT).encode()).unwrap();
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, ACK);
    (s, h)
}

fn expect_protocol_error(bytes: &[u8], what: &str) {
    let (mut raw, h) = raw_peer();
    let mut p0 = h.join().unwrap().unwrap();
    raw.write_all(bytes).unwrap();
    let start = Instant::now();
    match p0.recv(1, 4) {
        Err(NetError::Protocol { peer: 1, reason }) => assert!(reason.contains(what), "{reason}"),
        other => panic!("expected a protocol error about {what}, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn malformed_frames_are_protocol_errors_naming_the_peer() {
    expect_protocol_error(&[0x5A; 64], "bad frame header");
    expect_protocol_error(&FrameHeader::data(0, usize::MAX >> 1).encode(), "exceeds the limit");
    expect_protocol_error(&FrameHeader::data(3, 4).encode(), "out of sequence");
    let mut h = FrameHeader::data(0, 4);
    h.kind = 77;
    expect_protocol_error(&h.encode(), "unknown frame kind");

    // A well-formed frame is received; a peer dying inside the next one is a disconnection.
    let (mut raw, h) = raw_peer();
    let mut p0 = h.join().unwrap().unwrap();
    let mut bytes = FrameHeader::data(0, 4).encode().to_vec();
    for v in [1u64, 2, 3, 4] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes.extend_from_slice(&FrameHeader::data(1, 1000).encode());
    bytes.extend_from_slice(&[0; 100]);
    raw.write_all(&bytes).unwrap();
    drop(raw);
    assert_eq!(p0.recv(1, 4).unwrap(), vec![1, 2, 3, 4]);
    assert_eq!(p0.recv(1, 1000), Err(NetError::Disconnected { peer: 1 }));
}

/// Writes `bytes` to `raw` one byte every `interval`, until done (then hands the open stream
/// back) or the link breaks.
fn trickle(mut raw: TcpStream, bytes: Vec<u8>, interval: Duration) -> thread::JoinHandle<Option<TcpStream>> {
    thread::spawn(move || {
        for b in bytes {
            raw.write_all(&[b]).ok()?;
            thread::sleep(interval);
        }
        Some(raw)
    })
}

fn frame(seq: u64, values: &[u64]) -> Vec<u8> {
    let mut bytes = FrameHeader::data(seq, values.len()).encode().to_vec();
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}

#[test]
fn a_peer_trickling_bytes_cannot_extend_the_timeout() {
    // One byte every 40 ms, far below the 400 ms timeout, but the frame needs seconds to arrive
    // whole: the timeout is a deadline for the whole message, not an idle timer.
    let (raw, h) = raw_peer();
    let mut p0 = h.join().unwrap().unwrap();
    p0.set_timeout(Duration::from_millis(400));
    let bytes = frame(0, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let t = trickle(raw, bytes, Duration::from_millis(40));
    let start = Instant::now();
    assert_eq!(p0.recv(1, 8), Err(NetError::Timeout { peer: 1, seconds: 0 }));
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(400) && waited < Duration::from_millis(1500), "{waited:?}");
    drop(p0); // the trickler's writes then fail and it ends
    t.join().unwrap();

    // The deadline is per message and starts when the receiver starts waiting: a message that
    // is trickled but whole in time is received, and so is the next one.
    let (raw, h) = raw_peer();
    let mut p0 = h.join().unwrap().unwrap();
    p0.set_timeout(Duration::from_secs(5));
    let mut bytes = frame(0, &[7]);
    bytes.extend(frame(1, &[8, 9]));
    let t = trickle(raw, bytes, Duration::from_millis(5));
    assert_eq!(p0.recv(1, 1).unwrap(), vec![7]);
    assert_eq!(p0.recv(1, 2).unwrap(), vec![8, 9]);
    let _open = t.join().unwrap();
    // A peer that goes quiet (stopped) is timed out; one that closes is seen at once.
    p0.set_timeout(Duration::from_millis(300));
    let start = Instant::now();
    assert_eq!(p0.recv(1, 1), Err(NetError::Timeout { peer: 1, seconds: 0 }));
    assert!(start.elapsed() < Duration::from_millis(1500));
}

#[test]
fn a_peer_that_closes_mid_trickle_is_a_disconnection_not_a_timeout() {
    let (raw, h) = raw_peer();
    let mut p0 = h.join().unwrap().unwrap();
    p0.set_timeout(Duration::from_secs(30));
    let bytes = frame(0, &[1, 2, 3])[..30].to_vec();
    let t = trickle(raw, bytes, Duration::from_millis(5));
    drop(t.join().unwrap()); // closes the stream
    let start = Instant::now();
    assert_eq!(p0.recv(1, 3), Err(NetError::Disconnected { peer: 1 }));
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}

#[test]
fn plaintext_refuses_non_loopback_addresses() {
    // Refused while validating the configuration: no packet is sent anywhere.
    let cfg = NetworkConfig::new(1, vec!["0.0.0.0:9".into(), "127.0.0.1:9".into()], Security::InsecurePlaintext);
    match Session::connect(cfg) {
        Err(NetError::Config { reason }) => assert!(reason.contains("loopback"), "{reason}"),
        other => panic!("{:?}", other.err()),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptflow-net-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn keygen_writes_private_keys_0600_and_the_loaded_identities_connect() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("keygen");
    keygen(&dir, 3).unwrap();
    for i in 0..3 {
        let mode = std::fs::metadata(key_path(&dir, i)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "party{i}.key");
        assert!(dir.join(format!("party{i}.crt")).exists());
    }
    let ids: Vec<_> = (0..3).map(|i| Security::Tls(TlsIdentity::load(&dir, i, 3).unwrap())).collect();
    let mut s = connect_all(ids);
    let out = run(&mut s, |me, sess| {
        let next = (me + 1) % 3;
        let prev = (me + 2) % 3;
        sess.send(next, vec![me as u64; 3]).unwrap();
        sess.recv(prev, 3).unwrap()
    });
    assert_eq!(out, vec![vec![2; 3], vec![0; 3], vec![1; 3]]);

    // Keys are fresh every time, and a readable key file is refused.
    let again = temp_dir("keygen2");
    keygen(&again, 1).unwrap();
    assert_ne!(std::fs::read(key_path(&dir, 0)).unwrap(), std::fs::read(key_path(&again, 0)).unwrap());
    std::fs::set_permissions(key_path(&dir, 1), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(TlsIdentity::load(&dir, 1, 3), Err(NetError::Config { .. })));
    // A key that does not belong to the party's certificate is refused.
    let certs: Vec<String> = (0..2).map(|i| std::fs::read_to_string(dir.join(format!("party{i}.crt"))).unwrap()).collect();
    let other_key = std::fs::read_to_string(key_path(&dir, 0)).unwrap();
    assert!(matches!(TlsIdentity::from_pem(1, &certs, &other_key), Err(NetError::Config { .. })));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&again);
}

#[test]
fn sessions_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Session>();
}

const CHILD_ENV: &str = "CRYPTFLOW_NET_TEST_CHILD";

/// Party 2 in a separate process, for `a_killed_or_stopped_party_is_named`; does nothing in a
/// normal test run.
#[test]
fn zz_child_party() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let parts: Vec<&str> = spec.split('|').collect();
    let id = TlsIdentity::load(Path::new(parts[0]), 2, 3).unwrap();
    let cfg = NetworkConfig::new(2, parts[1..4].iter().map(|s| s.to_string()).collect(), Security::Tls(id));
    let mut s = Session::connect(cfg).unwrap();
    s.send(0, vec![2; 10]).unwrap();
    s.send(1, vec![2; 10]).unwrap();
    // Wait to be stopped and killed (but never outlive a forgotten parent for long).
    thread::sleep(Duration::from_secs(60));
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn a_stopped_then_killed_party_is_named() {
    let dir = temp_dir("child");
    keygen(&dir, 3).unwrap();
    let (mut ls, addrs) = loopback_listeners(3);
    ls.truncate(2);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "zz_child_party", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, format!("{}|{}|{}|{}", dir.display(), addrs[0], addrs[1], addrs[2]))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut s: Vec<Session> = thread::scope(|sc| {
        let hs: Vec<_> = ls.into_iter().enumerate().map(|(i, l)| {
            let mut cfg = NetworkConfig::new(i, addrs.clone(), Security::Tls(TlsIdentity::load(&dir, i, 3).unwrap()));
            cfg.connect_deadline = Duration::from_secs(30); // the child process has to start first
            sc.spawn(move || Session::connect_with_listener(cfg, l).unwrap())
        }).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for sess in &mut s {
        assert_eq!(sess.recv(2, 10).unwrap(), vec![2; 10]);
    }

    // Stalled: a stopped process keeps its connections open but neither reads nor writes.
    signal(child.id(), "-STOP");
    s[1].set_timeout(Duration::from_millis(500));
    assert_eq!(s[1].recv(2, 1), Err(NetError::Timeout { peer: 2, seconds: 0 }));
    // Party 0's writer blocks once the socket buffers are full, gives up after the timeout,
    // and a later send reports it.
    s[0].set_timeout(Duration::from_secs(1));
    s[0].send(2, vec![0; 16 << 20]).unwrap();
    let start = Instant::now();
    let err = loop {
        thread::sleep(Duration::from_millis(50));
        if let Err(e) = s[0].send(2, vec![1]) {
            break e;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "a stalled write was never reported");
    };
    assert_eq!(err, NetError::Timeout { peer: 2, seconds: 1 });

    // Crashed: the kernel closes its sockets; the disconnection is seen at once, not timed out.
    s[1].set_timeout(Duration::from_secs(30));
    child.kill().unwrap();
    child.wait().unwrap();
    let start = Instant::now();
    assert_eq!(s[1].recv(2, 1), Err(NetError::Disconnected { peer: 2 }));
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
    // The remaining parties carry on, and dropping them does not hang.
    s[0].send(1, vec![5]).unwrap();
    assert_eq!(s[1].recv(0, 1).unwrap(), vec![5]);
    let start = Instant::now();
    drop(s);
    assert!(start.elapsed() < Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_flooding_peer_is_held_by_the_bounded_receive_queue() {
    // Party 0 never calls recv while party 1 (a raw peer) floods it with 64 KiB messages: the
    // receive queue holds at most 1 MiB, then the reader stops and TCP holds the sender.
    let (mut ls, addrs) = loopback_listeners(2);
    let l0 = ls.remove(0);
    let mut cfg = NetworkConfig::new(0, addrs.clone(), Security::InsecurePlaintext);
    cfg.connect_deadline = DEADLINE;
    cfg.max_queued_bytes = 1 << 20;
    let h = thread::spawn(move || Session::connect_with_listener(cfg, l0));
    let mut raw = TcpStream::connect(&addrs[0]).unwrap();
    raw.write_all(&Hello::new(1, 0, 2, MODE_INSECURE_PLAINTEXT).encode()).unwrap();
    let mut ack = [0u8; 8];
    raw.read_exact(&mut ack).unwrap();
    let mut p0 = h.join().unwrap().unwrap();
    raw.set_write_timeout(Some(Duration::from_millis(1500))).unwrap();
    let values: Vec<u64> = (0..8192).collect();
    let mut sent_messages = 0u64;
    // Up to 256 MiB; before the bound, all of it went into party 0's memory at once.
    for seq in 0..4096u64 {
        if raw.write_all(&frame(seq, &values)).is_err() {
            break;
        }
        sent_messages += 1;
    }
    let sent_bytes = sent_messages * (8 * 8192 + 24);
    // The queue (1 MiB) plus one message being read plus what the kernel buffers on loopback.
    assert!(sent_bytes < 48 << 20, "the peer pushed {sent_bytes} bytes into a party that read nothing");
    // What was queued is intact and in order.
    for _ in 0..4 {
        assert_eq!(p0.recv(1, 8192).unwrap(), values);
    }
}
