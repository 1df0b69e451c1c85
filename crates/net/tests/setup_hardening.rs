//! Session set-up against strays and stalls, blame after a cascade of disconnections, and
//! per-party key generation.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use cryptflow_net::wire::{Hello, MODE_TLS13_PINNED};
use cryptflow_net::{
    cert_path, fingerprint, generate_identity, key_path, keygen_party, NetError, NetworkConfig, Security, Session,
    TlsIdentity,
};

fn tls(n: usize) -> Vec<Security> {
    let pairs: Vec<_> = (0..n).map(|i| generate_identity(i).unwrap()).collect();
    let certs: Vec<&str> = pairs.iter().map(|(c, _)| c.as_str()).collect();
    (0..n).map(|i| Security::Tls(TlsIdentity::from_pem(i, &certs, &pairs[i].1).unwrap())).collect()
}

fn connect_on(listeners: Vec<TcpListener>, addrs: &[String], security: Vec<Security>) -> Vec<Result<Session, NetError>> {
    thread::scope(|s| {
        let handles: Vec<_> = listeners
            .into_iter()
            .zip(security)
            .enumerate()
            .map(|(i, (l, sec))| {
                let mut cfg = NetworkConfig::new(i, addrs.to_vec(), sec);
                cfg.connect_deadline = Duration::from_secs(10);
                cfg.timeout = Duration::from_secs(2);
                s.spawn(move || Session::connect_with_listener(cfg, l))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn malformed_hellos_before_the_real_peers_are_ignored() {
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    // Unauthenticated strays reach party 0's port first, each with 28 bytes that look like a
    // hello from party 2 but do not fit the session.
    let mut strays = Vec::new();
    let mut bad_version = Hello::new(2, 0, 3, MODE_TLS13_PINNED);
    bad_version.version = 99;
    let wrong_count = Hello::new(2, 0, 4, MODE_TLS13_PINNED);
    let wrong_target = Hello::new(2, 1, 3, MODE_TLS13_PINNED);
    let wrong_mode = Hello::new(2, 0, 3, 0);
    for h in [bad_version, wrong_count, wrong_target, wrong_mode] {
        let mut s = TcpStream::connect(&addrs[0]).unwrap();
        s.write_all(&h.encode()).unwrap();
        strays.push(s);
    }
    // A well-formed hello followed by bytes that are not TLS.
    let mut s = TcpStream::connect(&addrs[0]).unwrap();
    s.write_all(&Hello::new(2, 0, 3, MODE_TLS13_PINNED).encode()).unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]).unwrap();
    strays.push(s);
    let results = connect_on(listeners, &addrs, tls(3));
    drop(strays);
    let mut sessions: Vec<Session> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|e| panic!("party {i} gave up because of a stray connection: {e}")))
        .collect();
    sessions[2].send(0, vec![42]).unwrap();
    assert_eq!(sessions[0].recv(2, 1).unwrap(), vec![42]);
}

#[test]
fn a_peer_silent_during_set_up_is_named_with_how_long_it_stalled() {
    // Party 0's port accepts TCP connections (the kernel does) but nobody answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = vec![silent.local_addr().unwrap().to_string(), "127.0.0.1:9".to_string()];
    let mut cfg = NetworkConfig::new(1, addrs, tls(2).pop().unwrap());
    cfg.connect_deadline = Duration::from_millis(1500);
    cfg.timeout = Duration::from_millis(400);
    let start = Instant::now();
    let err = Session::connect(cfg).err().expect("nobody answers");
    assert!(start.elapsed() < Duration::from_secs(10));
    let text = err.to_string();
    assert!(matches!(err, NetError::Connect { peer: 0, .. }), "{text}");
    assert!(!text.contains("Resource temporarily unavailable"), "{text}");
    assert!(text.contains("party 0") && text.contains("no answer for 0.") && text.contains("stalled"), "{text}");
}

#[test]
fn after_a_cascade_of_disconnections_the_party_that_left_first_is_blamed() {
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    let mut sessions: Vec<Session> = connect_on(listeners, &addrs, tls(3)).into_iter().map(|r| r.unwrap()).collect();
    let p2 = sessions.pop().unwrap();
    let p0 = sessions.remove(0);
    let mut p1 = sessions.pop().unwrap();
    p1.set_timeout(Duration::from_secs(20));
    // Party 2 fails; party 0 notices and stops, closing its links; party 1, waiting on party
    // 0 at that moment, must still name party 2.
    let cascade = thread::spawn(move || {
        let mut p0 = p0;
        p0.set_timeout(Duration::from_secs(20));
        drop(p2);
        assert_eq!(p0.recv(2, 1), Err(NetError::Disconnected { peer: 2 }));
        thread::sleep(Duration::from_millis(200));
        drop(p0);
    });
    let err = p1.recv(0, 1).unwrap_err();
    cascade.join().unwrap();
    assert_eq!(err, NetError::Disconnected { peer: 2 });
}

#[test]
fn keygen_for_one_party_writes_its_key_and_certificate_only() {
    use std::os::unix::fs::PermissionsExt;
    let dirs: Vec<_> = (0..2).map(|_| tempfile_dir()).collect();
    let prints: Vec<String> = (0..2).map(|i| keygen_party(&dirs[i], i).unwrap()).collect();
    for i in 0..2 {
        let mode = std::fs::metadata(key_path(&dirs[i], i)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!key_path(&dirs[i], 1 - i).exists(), "party {i}'s folder holds only its own key");
        let cert = std::fs::read_to_string(cert_path(&dirs[i], i)).unwrap();
        assert_eq!(fingerprint(&cert).unwrap(), prints[i]);
        assert_eq!(prints[i].len(), 32 * 3 - 1, "{}", prints[i]);
    }
    assert_ne!(prints[0], prints[1]);
    // Before the exchange: the missing certificate is named, with what to do.
    let err = TlsIdentity::load(&dirs[0], 0, 2).unwrap_err().to_string();
    assert!(err.contains("party1.crt") && err.contains("copy"), "{err}");
    let err = TlsIdentity::load(&dirs[0], 1, 2).unwrap_err().to_string();
    assert!(err.contains("party1.key") && err.contains("keygen --id 1"), "{err}");
    // After copying the certificates, each folder loads and the two connect.
    for i in 0..2 {
        std::fs::copy(cert_path(&dirs[1 - i], 1 - i), cert_path(&dirs[i], 1 - i)).unwrap();
    }
    let ids: Vec<Security> = (0..2).map(|i| Security::Tls(TlsIdentity::load(&dirs[i], i, 2).unwrap())).collect();
    let listeners: Vec<TcpListener> = (0..2).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    let mut s: Vec<Session> = connect_on(listeners, &addrs, ids).into_iter().map(|r| r.unwrap()).collect();
    s[1].send(0, vec![7]).unwrap();
    assert_eq!(s[0].recv(1, 1).unwrap(), vec![7]);
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("cryptflow-net-h-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_valid_hello_then_a_tls_alert_from_a_stray_does_not_end_set_up() {
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    // Anyone who reaches party 0's port: a well-formed hello claiming party 2, then a TLS fatal
    // alert (bad_certificate), as the real party 2 would send if it refused party 0's
    // certificate. It is unauthenticated, so the session must still come up.
    let mut stray = TcpStream::connect(&addrs[0]).unwrap();
    stray.write_all(&Hello::new(2, 0, 3, MODE_TLS13_PINNED).encode()).unwrap();
    stray.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x2a]).unwrap();
    let results = connect_on(listeners, &addrs, tls(3));
    drop(stray);
    let mut sessions: Vec<Session> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|e| panic!("party {i} gave up because of a stray TLS alert: {e}")))
        .collect();
    sessions[2].send(0, vec![7]).unwrap();
    assert_eq!(sessions[0].recv(2, 1).unwrap(), vec![7]);
}

#[test]
fn a_peer_that_stalls_while_another_leaves_is_blamed_by_both() {
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    let mut sessions: Vec<Session> = connect_on(listeners, &addrs, tls(3)).into_iter().map(|r| r.unwrap()).collect();
    let mut p2 = sessions.pop().unwrap();
    let mut p1 = sessions.pop().unwrap();
    // Party 0 stalls: connected, but sends nothing.
    let _p0 = sessions.pop().unwrap();
    // Party 2 waits for party 0, gives up after its deadline and leaves; party 1, waiting on
    // party 2 meanwhile, must name party 0 (which stalled), not party 2 (which left because of
    // it).
    p1.set_timeout(Duration::from_secs(20));
    p2.set_timeout(Duration::from_secs(1));
    let leaver = thread::spawn(move || {
        let err = p2.recv(0, 1).unwrap_err();
        drop(p2);
        err
    });
    let err = p1.recv(2, 1).unwrap_err();
    assert_eq!(leaver.join().unwrap(), NetError::Timeout { peer: 0, seconds: 1 });
    assert_eq!(err, NetError::Timeout { peer: 0, seconds: 1 }, "{err}");
}

#[test]
fn a_stranger_with_its_own_certificate_does_not_end_set_up() {
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    let pairs: Vec<_> = (0..3).map(|i| generate_identity(i).unwrap()).collect();
    let certs: Vec<&str> = pairs.iter().map(|(c, _)| c.as_str()).collect();
    let security = |i: usize| Security::Tls(TlsIdentity::from_pem(i, &certs, &pairs[i].1).unwrap());
    let config = |i: usize, security: Security| {
        let mut cfg = NetworkConfig::new(i, addrs.clone(), security);
        cfg.connect_deadline = Duration::from_secs(10);
        cfg.timeout = Duration::from_secs(2);
        cfg
    };
    thread::scope(|s| {
        let mut listeners = listeners.into_iter();
        let (l0, l1) = (listeners.next().unwrap(), listeners.next().unwrap());
        let (c0, c1) = (config(0, security(0)), config(1, security(1)));
        let p0 = s.spawn(move || Session::connect_with_listener(c0, l0));
        let p1 = s.spawn(move || Session::connect_with_listener(c1, l1));
        // A stranger claims to be party 2 with a key and certificate of its own: it is refused
        // (and learns it at once), but parties 0 and 1 keep waiting for the real party 2.
        let (rogue_cert, rogue_key) = generate_identity(2).unwrap();
        let mut rogue_certs = certs.clone();
        rogue_certs[2] = &rogue_cert;
        let rogue = Security::Tls(TlsIdentity::from_pem(2, &rogue_certs, &rogue_key).unwrap());
        let err = Session::connect(config(2, rogue)).err().expect("the stranger is refused");
        assert!(matches!(err, NetError::Tls { .. }), "{err}");
        let mut p2 = Session::connect(config(2, security(2))).unwrap_or_else(|e| panic!("party 2: {e}"));
        let mut p0 = p0.join().unwrap().unwrap_or_else(|e| panic!("party 0 gave up because of a stranger: {e}"));
        let _p1 = p1.join().unwrap().unwrap_or_else(|e| panic!("party 1 gave up because of a stranger: {e}"));
        p2.send(0, vec![5]).unwrap();
        assert_eq!(p0.recv(2, 1).unwrap(), vec![5]);
    });
}
