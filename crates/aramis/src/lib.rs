//! Aramis (CrypTFlow, paper Section V): malicious security for any semi-honest protocol,
//! assuming only the *integrity* of each party's hardware.
//!
//! A semi-honest protocol is secure as long as every party sends the messages the protocol
//! specifies. Aramis makes every message come from attested code: each party's hardware
//! measures the code of `pi*` (the protocol's next-message function plus the checks below),
//! signs a token binding that measurement to a fresh key, and signs every message that code
//! sends. A receiver acts on a message only if it carries a valid signature under the sender's
//! attested key and is the next one on its link. A host that deviates in any way (alters,
//! forges, replays, reorders or drops a message, or runs other code) is caught and the whole
//! computation aborts before any output is revealed. Nothing is assumed confidential: the
//! host may see all of the state (Theorem 1 of the paper: the result realises F_mpc against
//! malicious adversaries if the protocol realises it against semi-honest ones).
//!
//! # Where `pi*` sits: the message layer
//!
//! Every backend of this workspace talks to its peers only through
//! `cryptflow_net::Session::{send, recv}`. [`protect`] turns a session into one whose messages
//! all go through the Aramis layer (`Session::layered`, a [`cryptflow_net::MessageLayer`]), so
//! *any* backend built on a `Session` is protected without a line of its protocol code changing:
//! `Porthos::new(protected_session, variant)`. The protocol keeps counting its own traffic as
//! before; Aramis counts its additions apart.
//!
//! * **Start-up** ([`protect`]): every party sends a 32-byte OS-random nonce; the session id
//!   is SHA-256 of all of them (16 bytes). Each party then calls **Commit** of its
//!   [`Attestor`] (measure the code with the protocol configuration, fresh Ed25519 key, token
//!   bound to session and party), sends its token to everyone and checks everyone's:
//!   endorsement by the attestation authority, session and party binding, measurement equal to
//!   its own, key fresh (valid, not weak, not any other party's).
//! * **Every message**: a party signs once per *flight*, the messages it sends between two
//!   receives (to any peers): they leave together when it next waits for a message, passes an
//!   output gate or reveals an output, or as soon as they reach 1 MiB (so that a message the
//!   protocol streams in blocks overlaps its sender's computation). Each receiver gets an
//!   envelope ([`envelope`]: session id, sender, receiver, counter of the first message, count
//!   and lengths, the other receivers' part digests, Ed25519 signature; 112 bytes for one
//!   message to one peer) with its payloads: copied into the envelope's frame up to 32 KiB in
//!   all, else each in a frame of its own, never copied. The signature (**Compute** of the execution) covers the BLAKE3
//!   digest of every payload, every counter and every receiver: one signature per flight and
//!   one verification per flight and receiver, whatever the sizes. The receiver recomputes its
//!   part from what arrived, verifies the signature under the sender's attested key, checks
//!   that the counter is the next one on the link, and keeps a running digest of each link (the
//!   transcript). By default it verifies on receipt, before the protocol sees the message; with
//!   [`Options::background_verification`] a thread verifies in batches (`verify_batch`) while
//!   the protocol computes, and the party waits for it before anything leaves it (the paper's
//!   `pi*` computes a next message only from a verified transcript).
//! * **Aborts**: any failed check (or a broken link) aborts: the detecting party sends a
//!   signed abort notice naming the culprit and the check, with the number of messages its code
//!   sent on each link, to everyone, and every later call fails with that explanation
//!   ([`Failure`]). Links deliver in order, so a notice that counts more messages than arrived
//!   proves that the sender's host withheld some: a withheld message is attributed to the right
//!   host even when it stalls both ends until a time-out. A party whose link breaks reads the
//!   others' notices for a short grace period (2 s) to find such an explanation.
//! * **Output gate** ([`Aramis`], [`Handle::confirm`]): before every reveal all parties
//!   exchange signed confirmations of how many messages they received from each other and the
//!   transcript digest. An output is released only if nobody has aborted and all transcripts
//!   agree; a party that detected cheating anywhere stops every other party from releasing
//!   an output. One extra round per reveal.
//!
//! # Attestation
//!
//! [`attest`] is F_attest (Figure 7) as traits ([`Attestor`]: Commit, measure, verify;
//! [`Execution`]: Compute). [`software::SoftwareAttestor`] implements it **without any
//! hardware**: the measurement is SHA-256 of the running binary plus the configuration and
//! tokens are endorsed by an authority key held in a file. It shows the mechanism; it does not
//! provide hardware integrity (see its documentation and `docs/aramis.md` for SGX, SEV-SNP, TDX).
//!
//! # Cheating hosts
//!
//! [`host`] has the host that carries a party's messages, honest or cheating on purpose
//! ([`Cheat`]: tamper, forge, replay, reorder, drop); `wrong-code` is a party whose attestor
//! measures different code ([`software::SoftwareAttestor::simulating_different_code`]).

pub mod attest;
mod backend;
mod core;
pub mod envelope;
mod failure;
pub mod host;
pub mod software;
mod verify;

pub use attest::{Attestor, Claims, Execution, Measurement, SessionId, Token};
pub use backend::Aramis;
pub use core::{protect, Handle, Options, Stats};
pub use failure::{Check, Failure};
pub use host::{Cheat, CheatingHost, HonestHost, Host, HostLayer};
