//! Links between the parties of a session.
//!
//! A [`Session`] is one party's view of the network: a link to every other party, each with its
//! own reader and writer so that two parties sending large tensors to each other at once cannot
//! deadlock on full buffers. Messages are vectors of ring elements (`u64`), framed as a whole and
//! never serialised element by element. Every link counts the bytes that cross it and the
//! communication rounds a party waits for.
//!
//! # Transports
//!
//! * [`Session::local`] connects parties of one process through in-memory channels (tests,
//!   `--backend porthos` runs).
//! * [`Session::local_shaped`] is the same with network emulation ([`LinkShape`]): each link
//!   carries a given bandwidth and delays each message by a latency, either on an emulated clock
//!   per party ([`ShapeMode::Simulated`], nobody sleeps) or in real time ([`ShapeMode::Delay`],
//!   the receiver sleeps until the message would have arrived). For benchmarks.
//! * [`Session::connect`] joins a networked session over TCP, one connection per pair of
//!   parties: the lower id listens, the higher id connects, retrying until
//!   [`NetworkConfig::connect_deadline`] so the parties may start in any order. Each link has a
//!   reader thread, which drains the socket into a queue whatever the party is doing, and a writer
//!   thread, to which `send` hands the message. Frames are a 24-byte header and the little-endian
//!   payload, streamed in 1 MiB chunks ([`wire`] has the format). `TCP_NODELAY` is set.
//!
//! * [`Session::layered`] puts a [`MessageLayer`] between the protocol and the links (which the
//!   layer owns, usually as another session): the protocol code is unchanged while every message
//!   is, for example, signed and verified (Aramis, crate `cryptflow-aramis`).
//!
//! Received messages wait in a queue until `recv` takes them. On networked links the queue is
//! bounded ([`NetworkConfig::max_queued_bytes`], 1 GiB by default): when it is full the reader
//! stops reading the socket and TCP flow control holds the sender, so a peer cannot make this
//! party buffer more than the bound plus one message of at most
//! [`NetworkConfig::max_message_elements`]. (The in-memory links of [`Session::local`] join
//! parties of one process and are not bounded.)
//!
//! Both transports behave the same towards the protocol code: [`Session::traffic`] counts 8 bytes
//! per ring element sent or received and the same rounds, so communication assertions hold in
//! either mode (frame and TLS overhead is counted apart, in [`Session::wire_traffic`]).
//!
//! # Failures
//!
//! `recv` returns [`NetError::Disconnected`] as soon as the peer's connection ends (an orderly
//! close, a crash, a reset; the messages that arrived before it are still delivered first) and
//! [`NetError::Timeout`] when nothing at all has arrived from the peer for the session timeout
//! (default 5 s; a large message still streaming in keeps the link alive). A failed write (peer
//! gone, or a peer that stopped reading for the timeout) is reported by the next `send` or `recv`
//! on that link. A malformed frame (bad magic, unknown kind, out of sequence, longer than
//! [`NetworkConfig::max_message_elements`], or undecryptable) is a [`NetError::Protocol`] error.
//! Every error names the peer; a failed link stays failed. A session dropped after `recv`
//! reported a disconnection or a timeout first sends every other peer a
//! [`wire::FRAME_ABORT`] naming the party it blames, which their `recv` reports as that party's
//! disconnection or timeout: the party that left because a third one stalled is not blamed. Dropping a [`Session`] lets each
//! writer finish its queued messages (for at most the timeout), closes the links and joins the
//! threads.
//!
//! # Security of networked links
//!
//! [`Security::Tls`] (the one to use) runs TLS 1.3 only, with rustls and the `ring` provider,
//! and authenticates **both** ends of every link by certificate pinning:
//!
//! * `keygen` ([`keygen_party`] on each party's machine; [`keygen`] writes every party's key
//!   into one folder, for tests) gives a party a fresh ECDSA P-256 key from the operating
//!   system's RNG and a self-signed certificate, whose SHA-256 [`fingerprint`] the operators
//!   compare out of band. Nothing is hard-coded and there is no certificate authority.
//! * Party `i` must hold its own key `party{i}.key` (mode 0600, which [`TlsIdentity::load`]
//!   insists on) and the certificates `party{j}.crt` of **all** parties. It trusts exactly those
//!   certificates, each for its own party id: in a link with party `j`, on the client side as on
//!   the server side, the peer is accepted only if its end-entity certificate is byte-for-byte the
//!   one pinned for `j` and it proves possession of the matching key in the handshake. Names,
//!   validity dates and CA flags are not consulted; a certificate pinned for another party is
//!   refused. Otherwise the handshake fails with [`NetError::Tls`] naming the peer. The
//!   connecting side gives up at once (it dialled the address it was given); the accepting side
//!   cannot tell a misconfigured party from anyone who reached its port, so it keeps waiting for
//!   the right party and reports the refusal as its error only at the connect deadline.
//! * The certificates must reach the other parties authentically (out of band: copied by the
//!   operators, or published by the model owner); whoever can swap a certificate file can
//!   impersonate that party. There is no revocation: a leaked key is replaced by running keygen
//!   again and redistributing the certificates.
//! * Session resumption, tickets and 0-RTT are disabled, so every connection is fully
//!   authenticated.
//!
//! What TLS protects: the confidentiality and integrity of every message against anyone on the
//! network path (eavesdropping on shares would let a network attacker that also sees another
//! link reconstruct secrets), and the identity of each peer (no one without a party's key can
//! take its place). A truncated stream shows as a disconnection, never as a short message.
//!
//! What it does not protect: the endpoints themselves (a party's host, its key file, its memory);
//! the behaviour of an authenticated peer (Porthos is semi-honest: a party that deviates is not
//! detected here); traffic analysis (message sizes, timing and counts are visible and reveal the
//! model's layer shapes, which CrypTFlow treats as public); availability (anyone who can reach a
//! listening port can hold up a session's set-up, though connections whose unauthenticated hello
//! does not fit the session, or that do not speak TLS after it, are ignored with a line on
//! standard error naming their address; anyone on the path can cut links);
//! and the binding of a session run to a particular query (the same keys serve every run, and
//! two runs are told apart only by their TCP connections).
//!
//! [`Security::InsecurePlaintext`] is plain TCP without encryption or authentication, **insecure
//! by design**, for loopback tests only: [`Session::connect`] refuses it unless every address is a
//! loopback address.

mod error;
mod layer;
mod session;
mod tcp;
mod tls;
pub mod wire;

pub use error::NetError;
pub use layer::MessageLayer;
pub use session::{EmulatedClock, LinkShape, Session, ShapeMode, Traffic, DEFAULT_TIMEOUT};
pub use tcp::{NetworkConfig, Security, WireTraffic, DEFAULT_CONNECT_DEADLINE, DEFAULT_MAX_QUEUED_BYTES};
pub use tls::{
    cert_path, fingerprint, generate_identity, key_path, keygen, keygen_party, write_identity, write_key_file, TlsIdentity,
};
