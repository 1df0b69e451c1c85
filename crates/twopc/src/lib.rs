//! A semi-honest two-party backend: the model owner (party 0) and the client (party 1) run the
//! inference alone, with no helper and no trusted dealer. Every correlation comes from
//! oblivious transfer between the two of them.
//!
//! # Sharing
//! Secrets are additive 2-out-of-2 shares over Z_2^64; party 0 adds public constants. The model
//! owner's values are shared as `(v, 0)`: its share is the value, the client's is zero, which
//! tells the client nothing and costs nothing. The client's values are masked: at session
//! start party 0 draws an AES-128 key `k01` and sends it to party 1 (links are encrypted by the
//! transport); both draw `r` from `k01`, the client keeps `x - r` and the owner `r`. Revealing
//! sends one share.
//!
//! # Structural zeros
//! A product `A B` has cross terms `A_0 B_1` and `A_1 B_0`. When the client's share of an
//! operand is zero (a weight, a bias, anything computed from the owner's values and public
//! constants only), the term that multiplies it vanishes. The client tells the owner, with
//! one word per product, whether its share of `A` and of `B` is all zero, and the vanishing
//! terms are skipped: a layer of the model owner's weights on the client's data costs one OT
//! product, not two. The flags depend only on the public program: the client's share of any
//! other tensor contains a uniform mask (the input mask `x - r`, or the pads of an OT), which
//! is all zero with negligible probability. Only the client sends such flags: the owner's
//! share of its own values is the value itself.
//!
//! # Lookups: the client's one-hot rows ([`Backend::share_one_hot`])
//! A token-id lookup is the client's one-hot rows `X` (0/1) times the owner's table `W`. The
//! client knows `X` in the clear, so it is not masked: `share_one_hot` gives the client `X`
//! itself and the owner zeros (a valid additive sharing; the owner learns nothing from zeros,
//! and the runtime gives such a share to nothing but data movement and
//! [`Backend::matmul_one_hot`], so no zero flag or other message ever depends on it). The
//! product `X B` ([`TwoPc::one_hot_product`]) then has a single cross term, `X B_0`, whose
//! scalars are bits: one correlated OT per entry of `X`, chosen by the client with the entry,
//! whose correlation is the row of `B_0` (the owner's share: the table itself for a weight) as
//! `n` full words. The owner's `X_0 B = 0` and the client's `X B_1` (zero for a weight) are
//! local. Against an ordinary product of the masked rows (64 OTs and `2080 n` bits of
//! corrections per entry) this is 64 times fewer OTs and 32.5 times fewer correction bits.
//!
//! # Oblivious transfer ([`ot`])
//! Implemented here (no OT crate fitted: see `ot`'s docs): 128 Chou-Orlandi base OTs over
//! Ristretto255, IKNP extension in both directions (the second bootstrapped from the first),
//! fixed-key-AES TCCR hashing. Each party holds one IKNP sender (its own `Delta`) and one
//! receiver.
//!
//! # Protocols
//! * `matmul`, `conv`, `conv_transpose`, `mul` ([`linear`]): `A_j B_j` locally and the two
//!   cross terms by Gilboa's OT product, with the bits of one operand's share as choices and
//!   the other share's vectors as correlations. MatMul `[M, K] x [K, N]` takes the bits of the
//!   smaller of `A` (`MK` scalars, vectors of width `N`) and `B` (`KN` scalars, width `M`).
//!   Convolutions go through their lowered form `X' W'` per group (`X'` the im2col matrix of
//!   `rows` output positions by `cols` taps): the bits of the filter `W'` (`cols * cout_g`
//!   scalars per group) with the columns of `X'` (width `rows`) as correlations, unless the
//!   lowered input is the smaller. `X'` is built locally from a party's own share and never
//!   sent: what crosses the wire is one correction per OT of the width of a column, whatever the
//!   kernel size. No Beaver triple is made ahead: a triple for the same product would need the
//!   same OTs and then the openings on top.
//! * `relu`, `max_pool`, `argmax` ([`compare`]): CrypTFlow2's millionaires' protocol on
//!   1-out-of-16 OTs gives boolean shares of `[x >= 0]` (exact on all of Z_2^64 read as signed),
//!   then a multiplexer made of two correlated OTs selects. MaxPool and ArgMax compare
//!   differences in a tree (`ceil(log2 n)` levels of comparisons for windows of `n`), carrying
//!   the index for ArgMax (ties go to the first index): exact while the difference of two
//!   inputs does not wrap, i.e. for inputs in `[-2^62, 2^62)`.
//! * `scale_down`, `divide`: local truncation (SecureML): party 0 computes `floor(x_0 / d)`,
//!   party 1 `-floor(-x_1 / d)`. No communication. The result is `floor(x / d)` or one more
//!   (the off-by-one the backend interface allows), except with probability about
//!   `|x| / 2^63` per element, when a share lies within `|x|` of the wrap-around point and the
//!   result is off by about `2^64 / d` (measured rate `|x| / 2^64`). With
//!   `Truncation::Faithful` ([`TwoPc::set_truncation`]) `scale_down` is instead exact on
//!   `[-2^62, 2^62)` ([`TwoPc::faithful_scale_down`]: a DReLU and a multiplexer of `2 n`).
//!   **Why local stays the default**: Athos
//!   keeps values of a network tens of bits below 2^63 (its headroom check warns at fewer than
//!   16 spare bits), so the failure probability per element is `2^-20` at the very worst
//!   allowed and `2^-30` or less for the fixture models (values under `2^33` at scale 2s = 24),
//!   while CrypTFlow2's faithful truncation costs a millionaires' comparison per element, as
//!   much as a ReLU. Shares are uniformly random: the sharing of inputs uses a uniform mask and
//!   every OT product, comparison and multiplexer output is masked by fresh pads.
//!
//! # Communication (words of 8 bytes, per party, as counted by the session)
//! `ext(m) = 128 * ceil(m / 64)` is the cost of receiving `m` extended OTs.
//! * session set-up: party 0 sends `2 + 512` words (`k01`, base-OT receiver points), party 1
//!   `4 + ext(128)` = `260` (base-OT sender point, bootstrap of the second direction).
//! * a product (MatMul, Conv, ConvTranspose, Mul): one word of flags from the client, then per
//!   cross term that does not vanish, an OT product of `s` scalars with vectors of width `w`:
//!   `ext(64 s) = 128 s` words from its chooser and `s * ceil(2080 w / 64)` words of
//!   corrections from the other party. MatMul `[M,K] x [K,N]`: `s = MK`, `w = N` (bits of `A`,
//!   term `A_j B_{1-j}` chosen by party `j`) when `MK <= KN`, else `s = KN`, `w = M` (bits of
//!   `B`, chosen by the holder of the `B` share). Elementwise product of `n`: `s = n`, `w = 1`
//!   (128 + 33 words per element). Conv, per the lowered shapes: bits of the filter
//!   (`s = groups * cols * cout_g`, `w = rows`) when `cout_g <= rows`, else of the lowered
//!   input (`s = groups * rows * cols`, `w = cout_g`).
//! * Batched product `[B,M,K] x [B,K,N]` (`Backend::batch_matmul`): the local products per
//!   entry and the cross terms of all entries in one OT product (one group per entry): one word
//!   of flags, then per cross term that does not vanish `ext(64 s)` and `s * ceil(2080 w / 64)`
//!   with `s = BMK`, `w = N` (bits of `A`) when `MK <= KN`, else `s = BKN`, `w = M` (bits of
//!   `B`). That is the words of `B` separate MatMuls less their `B - 1` extra flag words, in the
//!   rounds of one MatMul. Nothing when the result is empty or `K` is 0.
//! * One-hot product `[M, K] x [K, N]` (`Backend::matmul_one_hot`, rows from
//!   `Backend::share_one_hot`, which itself sends nothing): no flags; the client sends
//!   `ext(M K) = 128 ceil(M K / 64)` words of OT extension and the model owner `M K N` words of
//!   corrections (one word per entry of `X` and column of `B`). In batches (see below) of `r_i`
//!   rows: `sum_i ext(r_i K)` from the client, the same `M K N` from the owner. Nothing when the
//!   result is empty or `K` is 0.
//! * DReLU of `n` (`Backend::drelu`; the bits are XOR shares, one per ring element, 0 or 1):
//!   party 0 `ext(26 n) + 8 n + L`, party 1 `ext(64 n + 26 n) + L`, where the four
//!   AND levels open `L = sum over levels of ceil(2 a_l n / 64)` words, `a_l` = 15, 7, 3, 1 ANDs per
//!   element at levels 1..4 (ordering: LT then the needed EQ).
//! * Multiplexer of `n` (`Backend::mux`): `ext(n) + n` per party. ReLU = DReLU + multiplexer.
//! * MaxPool with windows of `k` over `o` outputs, ArgMax over `k` candidates: per tree level
//!   with `p` pairs, DReLU of `p o` and a multiplexer of `p o` (`2 p o` for ArgMax).
//!
//! Products larger than [`linear::BATCH_WORDS`] words of corrections run in batches of output
//! rows (same communication, but for the padding of a one-hot product's extension to whole
//! words per batch; one more extension and correction flight per batch), which keeps
//! every message under the transport's frame limit and the memory bounded.
//!
//! # Rounds
//! As the session counts them (a receive after a send): a product at most 3 (flags, OT
//! extension, corrections; with a single cross term 1, or 2 for the model owner when it is that
//! term's chooser and first waits for the flags), the batched product the same as one MatMul
//! whatever `B`; DReLU 5 (the extension with the leaf tables right behind it, then 4
//! AND levels); multiplexer 2; ReLU 7; one-hot product 1 per batch for the client (it sends the
//! extension and waits for the corrections) and as many waits for the model owner (for each
//! batch's extension; the first counts as a round only when the owner sent last before it).

// `is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
#![allow(clippy::manual_is_multiple_of)]
// Index loops over several parallel arrays read more clearly than zipped iterators here.
#![allow(clippy::needless_range_loop)]

pub mod bits;
pub mod compare;
pub mod linear;
pub mod ot;

use cryptflow_backend::{Backend, BackendError, ConvGeometry, Owner, PoolGeometry, Result, RingTensor, SharedBits, Traffic, Truncation};
use cryptflow_net::Session;
use cryptflow_porthos::lower::Lowering;
use cryptflow_porthos::prf::{Prf, PrfKey};
use cryptflow_tensor::{kernels, movement, num_elements, ShapeError};
use rayon::prelude::*;

use ot::{IknpReceiver, IknpSender, ReceiverRows, SenderRows};

pub const MODEL_OWNER: usize = 0;
pub const CLIENT: usize = 1;

/// One party of a two-party session.
pub struct TwoPc {
    session: Session,
    id: usize,
    /// k01: randomness common to both parties.
    common: Prf,
    /// This party's private randomness.
    own: Prf,
    /// Extension sender: this party holds `Delta` (direction = this party's id).
    ot_send: IknpSender,
    /// Extension receiver (direction = the peer's id).
    ot_recv: IknpReceiver,
    /// Largest batch of an OT product, in words of corrections ([`linear::BATCH_WORDS`]).
    batch_words: usize,
    /// How `scale_down` runs ([`TwoPc::set_truncation`]).
    truncation: Truncation,
}

impl std::fmt::Debug for TwoPc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwoPc").field("party", &self.id).finish_non_exhaustive()
    }
}

fn shape_err(msg: String) -> BackendError {
    BackendError::Shape(ShapeError::new(msg))
}

fn os_key() -> Result<PrfKey> {
    PrfKey::random().map_err(|e| BackendError::Aborted(format!("operating system randomness unavailable: {e}")))
}

fn ot_err(peer: usize) -> impl Fn(ot::OtError) -> BackendError {
    move |e| match e {
        ot::OtError::Randomness(r) => BackendError::Aborted(format!("operating system randomness unavailable: {r}")),
        other => BackendError::Peer { peer, reason: other.to_string() },
    }
}

impl TwoPc {
    /// Joins a 2-party session: agrees on `k01`, runs the base OTs and bootstraps OT extension
    /// in both directions.
    pub fn new(session: Session) -> Result<TwoPc> {
        if session.parties() != 2 {
            return Err(BackendError::Aborted(format!("the 2PC backend needs 2 parties, the session has {}", session.parties())));
        }
        let id = session.id();
        let own = Prf::new(os_key()?);
        let mut session = session;
        let peer = 1 - id;
        let send = |s: &mut Session, data: Vec<u64>| s.send(peer, data).map_err(|e| BackendError::Peer { peer, reason: e.to_string() });
        let recv = |s: &mut Session, len: usize| s.recv(peer, len).map_err(|e| BackendError::Peer { peer, reason: e.to_string() });
        let (common, ot_send, ot_recv) = if id == MODEL_OWNER {
            let k01 = os_key()?;
            send(&mut session, k01.to_words())?;
            // Base OTs: party 0 receives with the bits of Delta_0.
            let delta0 = u128::from_le_bytes(ot::os_bytes::<16>().map_err(ot_err(peer))?);
            let a = recv(&mut session, 4)?;
            let (keys, b) = ot::base_receiver(delta0, &a).map_err(ot_err(peer))?;
            send(&mut session, b)?;
            let mut ot_send = IknpSender::new(0, delta0, &keys);
            // Bootstrap: party 1 chooses the bits of Delta_1 in 128 extended OTs.
            let u = recv(&mut session, ot::extension_words(ot::KAPPA))?;
            let rows = ot_send.extend(ot::KAPPA, &u).map_err(ot_err(peer))?;
            let ot_recv = IknpReceiver::new(1, &ot::bootstrap_sender_keys(&rows));
            (Prf::new(k01), ot_send, ot_recv)
        } else {
            let k01 = PrfKey::from_words(&recv(&mut session, 2)?).expect("two words");
            let (base, a) = ot::base_sender_start().map_err(ot_err(peer))?;
            send(&mut session, a)?;
            let b = recv(&mut session, 4 * ot::KAPPA)?;
            let pairs = ot::base_sender_finish(&base, &b).map_err(ot_err(peer))?;
            let mut ot_recv = IknpReceiver::new(0, &pairs);
            let delta1 = u128::from_le_bytes(ot::os_bytes::<16>().map_err(ot_err(peer))?);
            let (rows, u) = ot_recv.extend(ot::KAPPA, &[delta1 as u64, (delta1 >> 64) as u64]);
            send(&mut session, u)?;
            let ot_send = IknpSender::new(1, delta1, &ot::bootstrap_receiver_keys(&rows));
            (Prf::new(k01), ot_send, ot_recv)
        };
        Ok(TwoPc { session, id, common, own, ot_send, ot_recv, batch_words: linear::BATCH_WORDS, truncation: Truncation::Local })
    }

    /// Sets the largest batch of an OT product (words of corrections; both parties must use
    /// the same value). Smaller batches bound memory and message sizes at the cost of rounds;
    /// the communication is the same.
    pub fn set_batch_words(&mut self, words: usize) {
        self.batch_words = words.max(1);
    }

    /// Chooses the truncation of `scale_down` (both parties must choose the same):
    /// [`Truncation::Local`] (the default) or [`Truncation::Faithful`]
    /// ([`TwoPc::faithful_scale_down`]). `divide` stays local in both modes.
    pub fn set_truncation(&mut self, mode: Truncation) {
        self.truncation = mode;
    }

    pub fn truncation(&self) -> Truncation {
        self.truncation
    }

    /// Exact `floor(x / 2^k)` (`1 <= k <= 63`) for every `x` in `[-2^62, 2^62)`, whatever the
    /// shares (CrypTFlow2's faithful truncation, with the wrap of the shares from their known
    /// MSB instead of a second comparison).
    ///
    /// Party 0 shifts its share to `y = x + 2^62`, in `[0, 2^63)`. With logical shifts,
    /// `floor(y / 2^k) = (y_0 >> k) + (y_1 >> k) + c - 2^(64-k) w`, where
    /// `c = [y_0 mod 2^k + y_1 mod 2^k >= 2^k]` (the carry of the low bits) and
    /// `w = [y_0 + y_1 >= 2^64]` (the wrap). Since `MSB(y) = 0`, `w = m_0 | m_1` with
    /// `m_j = MSB(y_j)`: `w = m_0 + m_1 - m_0 m_1`. The carry is the MSB of the value shared as
    /// `(y_j mod 2^k) << (63 - k)` (each share below `2^63`): one DReLU (the millionaires'
    /// comparison), giving XOR shares of `c`. One multiplexer of `2 n` turns them into the
    /// arithmetic `c` (`c . 1`) and gives `m_0 m_1` (`m_1 . m_0`). Then party 0 subtracts
    /// `2^(62-k)`. By 63 the result is that of 62 (both are `-[x < 0]` on the range).
    ///
    /// Communication (words, per party, `ext(m) = 128 ceil(m / 64)`): a DReLU of `n`
    /// (party 0 `ext(26 n) + 8 n + L`, party 1 `ext(90 n) + L`) and a multiplexer of `2 n`
    /// (`ext(2 n) + 2 n` each); rounds: 5 + 2 = 7.
    pub fn faithful_scale_down(&mut self, x: &[u64], k: u32) -> Result<Vec<u64>> {
        let n = x.len();
        let k = k.min(62);
        if n == 0 || k == 0 {
            return Ok(x.to_vec());
        }
        let lead = self.id == MODEL_OWNER;
        let y: Vec<u64> = x.iter().map(|&v| if lead { v.wrapping_add(1 << 62) } else { v }).collect();
        let low = (1u64 << k) - 1;
        let lows: Vec<u64> = y.iter().map(|&v| (v & low) << (63 - k)).collect();
        // DReLU = 1 ^ MSB = 1 ^ c: party 0 flips its share.
        let mut bits = self.drelu(&lows)?;
        if lead {
            bits.iter_mut().for_each(|b| *b ^= 1);
        }
        // c . 1 (party 0 holds the 1) and m_1 . m_0 (party 1's bit, party 0's value).
        let mut d = bits;
        d.extend(y.iter().map(|&v| if lead { 0 } else { (v >> 63) as u8 }));
        let mut v: Vec<u64> = vec![lead as u64; n];
        v.extend(y.iter().map(|&v| if lead { v >> 63 } else { 0 }));
        let prod = self.select(&d, &v)?;
        let top = 64 - k;
        Ok((0..n)
            .map(|i| {
                let w = (y[i] >> 63).wrapping_sub(prod[n + i]);
                let t = (y[i] >> k).wrapping_add(prod[i]).wrapping_sub(w << top);
                if lead {
                    t.wrapping_sub(1 << (62 - k))
                } else {
                    t
                }
            })
            .collect())
    }

    fn peer(&self) -> usize {
        1 - self.id
    }

    fn send(&mut self, to: usize, data: Vec<u64>) -> Result<()> {
        self.session.send(to, data).map_err(|e| BackendError::Peer { peer: to, reason: e.to_string() })
    }

    fn recv(&mut self, from: usize, len: usize) -> Result<Vec<u64>> {
        self.session.recv(from, len).map_err(|e| BackendError::Peer { peer: from, reason: e.to_string() })
    }

    /// One flight of OT extension in both directions: this party receives `my_m` OTs with
    /// `choices` and sends `peer_m` (the peer's count, public).
    pub(crate) fn extend_both(&mut self, choices: &[u64], my_m: usize, peer_m: usize) -> Result<(ReceiverRows, SenderRows)> {
        let peer = self.peer();
        let rr = if my_m > 0 {
            let (rr, u) = self.ot_recv.extend(my_m, choices);
            self.send(peer, u)?;
            rr
        } else {
            ReceiverRows::empty(peer as u8, self.ot_recv.count())
        };
        let sr = if peer_m > 0 {
            let u = self.recv(peer, ot::extension_words(peer_m))?;
            self.ot_send.extend(peer_m, &u).map_err(ot_err(peer))?
        } else {
            SenderRows::empty(self.id as u8, self.ot_send.delta(), self.ot_send.count())
        };
        Ok((rr, sr))
    }

    /// Whether the client's shares of the two operands are all zero, as the client tells the
    /// owner (one word from the client per product; see "Structural zeros" in the crate docs).
    fn client_zero_flags(&mut self, a: &[u64], b: &[u64]) -> Result<(bool, bool)> {
        if self.id == CLIENT {
            let (za, zb) = (a.iter().all(|&v| v == 0), b.iter().all(|&v| v == 0));
            self.send(MODEL_OWNER, vec![za as u64 | (zb as u64) << 1])?;
            Ok((za, zb))
        } else {
            let w = self.recv(CLIENT, 1)?[0];
            if w > 3 {
                return Err(BackendError::Peer { peer: CLIENT, reason: "malformed zero-share flags".into() });
            }
            Ok((w & 1 == 1, w & 2 == 2))
        }
    }

    /// `X B` for the client's rows `X [m, k]` held by the client alone (entries 0 or 1; the
    /// owner's share of `X` is zero) and a shared `B [k, n]`: the client's `X B_1` locally and
    /// `X B_0` from one OT per entry of `X` with the row of `B_0` as its correlation.
    /// A share of `X` that does not have this form (a sharing other than
    /// [`Backend::share_one_hot`]'s) is refused before any message.
    pub fn one_hot_product(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        if a.rank() != 2 || b.rank() != 2 || a.shape()[1] != b.shape()[0] {
            return Err(shape_err(format!("one-hot product: cannot multiply {:?} by {:?}", a.shape(), b.shape())));
        }
        let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
        let (me, x) = (self.id, a.data());
        if me == MODEL_OWNER && x.iter().any(|&v| v != 0) {
            return Err(BackendError::Aborted("one-hot product: the model owner's share of the rows is not zero (not shared by share_one_hot)".into()));
        }
        if me == CLIENT {
            if let Some(i) = x.iter().position(|&v| v > 1) {
                return Err(BackendError::Aborted(format!("one-hot product: element {i} of the client's rows is not 0 or 1")));
            }
        }
        if m * n == 0 || k == 0 {
            return Ok(RingTensor::zeros(vec![m, n]));
        }
        // The client's local term X B_1 (zero for a weight, whose client share is zero).
        let mut z = if me == CLIENT && b.data().iter().any(|&v| v != 0) { kernels::matmul(a, b)?.into_data() } else { vec![0u64; m * n] };
        let corr = strided(b.data(), m, k, n);
        let term = linear::Term {
            chooser: CLIENT,
            outs: m,
            inner: k,
            w: n,
            bits: 1,
            x: (me == CLIENT).then_some(x),
            corr: if me == MODEL_OWNER { Some(&corr) } else { None },
        };
        let cross = self.ot_products(&[term])?.pop().expect("one term");
        add_in_place(&mut z, &cross);
        Ok(RingTensor::new(vec![m, n], z)?)
    }

    /// The cross terms `A_0 B_1 + A_1 B_0` of `g` independent products `[m, k] x [k, n]`
    /// (`a` is `[g][m][k]`, `b` is `[g][k][n]`, the result `[g][m][n]`). With `dec_a` the bits
    /// of the `A` shares are the choices (vectors: rows of `B`, width `n`), otherwise the bits of
    /// the `B` shares (vectors: columns of `A`, width `m`). A term whose client-side operand
    /// share is all zero is skipped.
    #[allow(clippy::too_many_arguments)]
    fn cross_grouped(&mut self, a: &[u64], b: &[u64], g: usize, m: usize, k: usize, n: usize, dec_a: bool) -> Result<Vec<u64>> {
        let (za, zb) = self.client_zero_flags(a, b)?;
        let me = self.id;
        // Term 0: party 0's A with party 1's B; term 1: party 1's A with party 0's B.
        let active: Vec<usize> = [(0usize, !zb), (1, !za)].iter().filter(|t| t.1).map(|t| t.0).collect();
        if active.is_empty() {
            return Ok(vec![0; g * m * n]);
        }
        let (owned_x, owned_v);
        let (x_mine, vecs, outs, w, per_group): (&[u64], &[u64], usize, usize, usize) = if dec_a {
            (a, b, g * m, n, m)
        } else {
            owned_x = grouped_transpose(b, g, k, n);
            owned_v = grouped_transpose(a, g, m, k);
            (&owned_x, &owned_v, g * n, m, n)
        };
        let corr = strided(vecs, per_group, k, w);
        let terms: Vec<linear::Term> = active
            .iter()
            .map(|&holder_of_a| {
                let chooser = if dec_a { holder_of_a } else { 1 - holder_of_a };
                linear::Term {
                    chooser,
                    outs,
                    inner: k,
                    w,
                    bits: 64,
                    x: (chooser == me).then_some(x_mine),
                    corr: if chooser != me { Some(&corr) } else { None },
                }
            })
            .collect();
        let parts = self.ot_products(&terms)?;
        let mut z = vec![0u64; g * m * n];
        for part in parts {
            let part = if dec_a { part } else { grouped_transpose(&part, g, n, m) };
            add_in_place(&mut z, &part);
        }
        Ok(z)
    }

    fn conv_common(&mut self, x: &RingTensor, filter: &RingTensor, geom: &ConvGeometry, transpose_conv: bool) -> Result<RingTensor> {
        // The local term first: it validates the operands and geometry before any message.
        let local = if transpose_conv { kernels::conv_transpose(x, filter, geom)? } else { kernels::conv(x, filter, geom)? };
        if local.is_empty() || x.is_empty() || filter.is_empty() {
            return Ok(local);
        }
        let l = Lowering::new(geom, transpose_conv);
        let xl = l.lower_input(x.data(), geom.layout);
        let wl = l.lower_filter(filter.data());
        // Bits of the filter unless the lowered input has fewer elements.
        let zl = self.cross_grouped(&xl, &wl, l.groups, l.rows, l.cols, l.cout_g, l.cout_g > l.rows)?;
        let cross = l.raise_output(&zl, geom.layout);
        let mut z = local.into_data();
        add_in_place(&mut z, &cross);
        Ok(RingTensor::new(if transpose_conv { geom.conv_transpose_output_shape() } else { geom.conv_output_shape() }, z)?)
    }

    /// ReLU of a shared vector.
    pub fn relu_vec(&mut self, x: &[u64]) -> Result<Vec<u64>> {
        let d = self.drelu(x)?;
        self.select(&d, x)
    }

    /// Tree of comparisons over `rows` (`n` rows of `outs` values): shares of the maxima and
    /// (with `index`) of their first indices.
    fn tournament(&mut self, rows: &[u64], n: usize, outs: usize, index: bool) -> Result<(Vec<u64>, Vec<u64>)> {
        let lead = self.id == MODEL_OWNER;
        let mut vals: Vec<Vec<u64>> = rows.chunks(outs).map(|r| r.to_vec()).collect();
        let mut idx: Vec<Vec<u64>> = (0..n).map(|k| vec![if lead { k as u64 } else { 0 }; outs]).collect();
        while vals.len() > 1 {
            let pairs = vals.len() / 2;
            let mut diff = Vec::with_capacity(pairs * outs);
            for p in 0..pairs {
                diff.extend(vals[2 * p].iter().zip(&vals[2 * p + 1]).map(|(&a, &b)| a.wrapping_sub(b)));
            }
            // d = [a >= b]: keep the earlier candidate on ties.
            let d = self.drelu(&diff)?;
            let (sel_d, sel_x) = if index {
                let mut dd = d.clone();
                dd.extend_from_slice(&d);
                let mut xx = diff;
                for p in 0..pairs {
                    xx.extend(idx[2 * p].iter().zip(&idx[2 * p + 1]).map(|(&a, &b)| a.wrapping_sub(b)));
                }
                (dd, xx)
            } else {
                (d, diff)
            };
            let prod = self.select(&sel_d, &sel_x)?;
            let mut nv = Vec::with_capacity(vals.len().div_ceil(2));
            let mut ni = Vec::with_capacity(nv.capacity());
            for p in 0..pairs {
                let b = &vals[2 * p + 1];
                nv.push(b.iter().zip(&prod[p * outs..(p + 1) * outs]).map(|(&b, &s)| b.wrapping_add(s)).collect());
                if index {
                    let bi = &idx[2 * p + 1];
                    let off = pairs * outs + p * outs;
                    ni.push(bi.iter().zip(&prod[off..off + outs]).map(|(&b, &s)| b.wrapping_add(s)).collect());
                } else {
                    ni.push(Vec::new());
                }
            }
            if vals.len() % 2 == 1 {
                nv.push(vals.pop().unwrap());
                ni.push(idx.pop().unwrap());
            }
            vals = nv;
            idx = ni;
        }
        Ok((vals.pop().unwrap(), idx.pop().unwrap()))
    }
}

/// The vectors of an OT product: `V(o, k)` is row `k` of group `o / per_group` of
/// `vecs` (`[groups][k][w]`).
fn strided<'a>(vecs: &'a [u64], per_group: usize, k: usize, w: usize) -> impl Fn(usize, usize) -> &'a [u64] + Sync + 'a {
    move |o, kk| {
        let gi = o / per_group;
        &vecs[(gi * k + kk) * w..(gi * k + kk + 1) * w]
    }
}

/// `[g][rows][cols]` to `[g][cols][rows]`.
fn grouped_transpose(a: &[u64], g: usize, rows: usize, cols: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len());
    for gi in 0..g {
        out.extend(transpose(&a[gi * rows * cols..(gi + 1) * rows * cols], rows, cols));
    }
    out
}

fn transpose(a: &[u64], rows: usize, cols: usize) -> Vec<u64> {
    let mut out = vec![0u64; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = a[r * cols + c];
        }
    }
    out
}

fn add_in_place(a: &mut [u64], b: &[u64]) {
    a.par_iter_mut().with_min_len(1 << 12).zip(b.par_iter()).for_each(|(a, &b)| *a = a.wrapping_add(b));
}

impl Backend for TwoPc {
    fn name(&self) -> &str {
        "2pc"
    }

    fn party_id(&self) -> usize {
        self.id
    }

    fn adds_public_constants(&self) -> bool {
        self.id == MODEL_OWNER
    }

    fn share(&mut self, owner: Owner, shape: &[usize], value: Option<&RingTensor>) -> Result<RingTensor> {
        let owner_id = match owner {
            Owner::ModelOwner => MODEL_OWNER,
            Owner::Client => CLIENT,
        };
        if owner == Owner::ModelOwner {
            // The owner's share is the value, the client's zero (see "Structural zeros").
            if self.id != MODEL_OWNER {
                return Ok(RingTensor::zeros(shape.to_vec()));
            }
            let v = value.ok_or_else(|| BackendError::Aborted("ModelOwner gave no value to share".into()))?;
            if v.shape() != shape {
                return Err(shape_err(format!("ModelOwner input has shape {:?}, expected {shape:?}", v.shape())));
            }
            return Ok(v.clone());
        }
        // Both draw r from k01 (first, so that a rejected input keeps the streams in step).
        let mut r = self.common.u64s(num_elements(shape));
        if self.id == owner_id {
            let v = value.ok_or_else(|| BackendError::Aborted(format!("{owner:?} gave no value to share")))?;
            if v.shape() != shape {
                return Err(shape_err(format!("{owner:?} input has shape {:?}, expected {shape:?}", v.shape())));
            }
            for (r, &v) in r.iter_mut().zip(v.data()) {
                *r = v.wrapping_sub(*r);
            }
        }
        Ok(RingTensor::new(shape.to_vec(), r)?)
    }

    /// The client's rows held by the client alone: its share is the rows, the owner's zero
    /// (see "Lookups" in the crate docs). No communication and no common randomness.
    fn share_one_hot(&mut self, shape: &[usize], value: Option<&RingTensor>) -> Result<RingTensor> {
        if self.id == MODEL_OWNER {
            return Ok(RingTensor::zeros(shape.to_vec()));
        }
        let v = value.ok_or_else(|| BackendError::Aborted("the client gave no one-hot rows to share".into()))?;
        if v.shape() != shape {
            return Err(shape_err(format!("one-hot rows have shape {:?}, expected {shape:?}", v.shape())));
        }
        if let Some(i) = v.data().iter().position(|&e| e > 1) {
            return Err(BackendError::Aborted(format!("one-hot rows: element {i} is {}, not 0 or 1", v.data()[i])));
        }
        Ok(v.clone())
    }

    /// One OT per entry of the client's rows (see "Lookups" in the crate docs).
    fn matmul_one_hot(&mut self, a: &RingTensor, b: &RingTensor, weight: Option<usize>) -> Result<RingTensor> {
        // The weight's client share is zero like any owner's value: nothing to keep per weight.
        let _ = weight;
        self.one_hot_product(a, b)
    }

    fn reveal(&mut self, x: &RingTensor, to: Owner) -> Result<Option<RingTensor>> {
        let to_id = match to {
            Owner::ModelOwner => MODEL_OWNER,
            Owner::Client => CLIENT,
        };
        if self.id == to_id {
            let other = self.recv(self.peer(), x.len())?;
            let data = x.data().iter().zip(&other).map(|(&a, &b)| a.wrapping_add(b)).collect();
            Ok(Some(RingTensor::new(x.shape().to_vec(), data)?))
        } else {
            self.send(to_id, x.data().to_vec())?;
            Ok(None)
        }
    }

    fn matmul(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        if a.rank() != 2 || b.rank() != 2 || a.shape()[1] != b.shape()[0] {
            return Err(shape_err(format!("matmul: cannot multiply {:?} by {:?}", a.shape(), b.shape())));
        }
        let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
        let local = kernels::matmul(a, b)?;
        if m * n == 0 || k == 0 {
            return Ok(local);
        }
        let cross = self.cross_grouped(a.data(), b.data(), 1, m, k, n, m * k <= k * n)?;
        let mut z = local.into_data();
        add_in_place(&mut z, &cross);
        Ok(RingTensor::new(vec![m, n], z)?)
    }

    /// The local products per batch entry and the cross terms of all entries in one OT
    /// product (`cross_grouped` with one group per entry): the rounds of one MatMul.
    fn batch_matmul(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        let local = kernels::batch_matmul(a, b)?;
        let (batch, m, k, n) = (a.shape()[0], a.shape()[1], a.shape()[2], b.shape()[2]);
        if local.is_empty() || k == 0 {
            return Ok(local);
        }
        let cross = self.cross_grouped(a.data(), b.data(), batch, m, k, n, m * k <= k * n)?;
        let mut z = local.into_data();
        add_in_place(&mut z, &cross);
        Ok(RingTensor::new(vec![batch, m, n], z)?)
    }

    /// The millionaires' DReLU: XOR shares of the bit, one per ring element (0 or 1).
    fn drelu(&mut self, x: &RingTensor) -> Result<SharedBits> {
        let d = self.drelu(x.data())?;
        Ok(SharedBits(RingTensor::new(x.shape().to_vec(), d.into_iter().map(u64::from).collect())?))
    }

    /// The multiplexer of two correlated OTs: `ext(n) + n` words per party, 2 rounds.
    fn mux(&mut self, b: &SharedBits, x: &RingTensor) -> Result<RingTensor> {
        if b.shape() != x.shape() {
            return Err(shape_err(format!("mux: bits {:?}, values {:?}", b.shape(), x.shape())));
        }
        let d: Vec<u8> = b.0.data().iter().map(|&v| (v & 1) as u8).collect();
        let z = self.select(&d, x.data())?;
        Ok(RingTensor::new(x.shape().to_vec(), z)?)
    }

    fn conv(&mut self, x: &RingTensor, filter: &RingTensor, geom: &ConvGeometry) -> Result<RingTensor> {
        self.conv_common(x, filter, geom, false)
    }

    fn conv_transpose(&mut self, x: &RingTensor, filter: &RingTensor, geom: &ConvGeometry) -> Result<RingTensor> {
        self.conv_common(x, filter, geom, true)
    }

    fn mul(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        if a.shape() != b.shape() {
            return Err(shape_err(format!("mul: operands differ in shape: {:?} vs {:?}", a.shape(), b.shape())));
        }
        let mut z = a.mul(b)?.into_data();
        if z.is_empty() {
            return Ok(RingTensor::new(a.shape().to_vec(), z)?);
        }
        let cross = self.cross_grouped(a.data(), b.data(), a.len(), 1, 1, 1, true)?;
        add_in_place(&mut z, &cross);
        Ok(RingTensor::new(a.shape().to_vec(), z)?)
    }

    fn relu(&mut self, x: &RingTensor) -> Result<RingTensor> {
        let z = self.relu_vec(x.data())?;
        Ok(RingTensor::new(x.shape().to_vec(), z)?)
    }

    fn max_pool(&mut self, x: &RingTensor, geom: &PoolGeometry) -> Result<RingTensor> {
        let windows = kernels::pool_windows(x, geom)?;
        let out_shape = geom.output_shape();
        let outs = num_elements(&out_shape);
        if outs == 0 {
            return Ok(RingTensor::zeros(out_shape));
        }
        let n = windows.shape()[0];
        let (max, _) = self.tournament(windows.data(), n, outs, false)?;
        Ok(RingTensor::new(out_shape, max)?)
    }

    fn argmax(&mut self, x: &RingTensor, axis: usize, keep_dims: bool) -> Result<RingTensor> {
        let (rows, out_shape) = movement::axis_rows(x, axis, keep_dims).map_err(|e| shape_err(format!("argmax: {e}")))?;
        let n = x.shape()[axis];
        let outs = x.len() / n;
        if outs == 0 {
            return Ok(RingTensor::zeros(out_shape));
        }
        let (_, idx) = self.tournament(rows.data(), n, outs, true)?;
        Ok(RingTensor::new(out_shape, idx)?)
    }

    /// Local truncation (see the crate docs for the error analysis), or with
    /// [`Truncation::Faithful`] or [`Truncation::Exact`] the exact
    /// [`TwoPc::faithful_scale_down`] (already the floor: the two modes differ only in
    /// `divide`).
    fn scale_down(&mut self, x: &RingTensor, shift: u32) -> Result<RingTensor> {
        if shift >= 64 {
            return Err(BackendError::Aborted(format!("scale_down by {shift} bits")));
        }
        if self.truncation != Truncation::Local {
            return Ok(RingTensor::new(x.shape().to_vec(), self.faithful_scale_down(x.data(), shift)?)?);
        }
        Ok(if self.id == MODEL_OWNER {
            x.map(|v| ((v as i64) >> shift) as u64)
        } else {
            x.map(|v| (((v.wrapping_neg() as i64) >> shift) as u64).wrapping_neg())
        })
    }

    /// Local division by public positive integers, as the truncation.
    fn divide(&mut self, x: &RingTensor, divisors: &RingTensor) -> Result<RingTensor> {
        if x.shape() != divisors.shape() {
            return Err(shape_err(format!("divide: value {:?}, divisors {:?}", x.shape(), divisors.shape())));
        }
        if divisors.data().iter().any(|&d| d == 0 || (d as i64) < 0) {
            return Err(BackendError::Aborted("division by a non-positive public divisor".into()));
        }
        if self.truncation == Truncation::Exact {
            // Powers of two divide exactly by the faithful truncation; others are not offered.
            return match divisors.data().first() {
                Some(&d) if d.is_power_of_two() && divisors.data().iter().all(|&e| e == d) => self.scale_down(x, d.trailing_zeros()),
                None => Ok(x.clone()),
                _ => Err(BackendError::Unsupported("exact division by divisors other than one power of two (2PC's exact truncation; --truncation faithful divides by them)")),
            };
        }
        Ok(if self.id == MODEL_OWNER {
            x.zip_with(divisors, |v, d| (v as i64).div_euclid(d as i64) as u64)?
        } else {
            x.zip_with(divisors, |v, d| ((v.wrapping_neg() as i64).div_euclid(d as i64) as u64).wrapping_neg())?
        })
    }

    /// Faithful truncation applies to `scale_down`; `divide` stays local.
    fn exact_truncation(&self) -> bool {
        self.truncation != Truncation::Local
    }

    fn set_truncation(&mut self, mode: Truncation) -> Result<()> {
        TwoPc::set_truncation(self, mode);
        Ok(())
    }

    fn traffic(&self) -> Traffic {
        let t = self.session.traffic();
        Traffic { bytes_sent: t.bytes_sent, bytes_received: t.bytes_received, rounds: t.rounds }
    }
}
