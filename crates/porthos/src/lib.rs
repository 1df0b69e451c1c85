//! Porthos: the semi-honest 3-party backend of CrypTFlow (paper Section IV), and the SecureNN
//! protocols it improves on (Wagh, Gupta, Chandran, PoPETs 2019) as a switchable variant.
//!
//! # Roles
//! Party 0 is the model owner and party 1 the client: they hold 2-out-of-2 additive shares over
//! Z_2^64 of every secret. Party 2 is the helper: it holds no shares (its "share" of a secret is
//! a zero tensor of the secret's shape), deals correlated randomness and assists comparisons.
//! Only party 0 adds public constants to its share.
//!
//! # Correlated randomness
//! At session start every pair of parties agrees on an AES-128 key drawn from the operating
//! system (party 0 draws k01 and k02, party 1 draws k12, and each sends its key over the link
//! to the other holder; links are the transport's business and are encrypted there). Keys are
//! never hard-coded, printed or logged. AES-128-CTR under a pair's key is a keystream both
//! holders expand identically ([`prf`]: block `i` of the stream is `AES_k(i)`, generated in
//! bulk with 512-bit VAES rounds where the CPU has them, AES-NI otherwise). Uniform elements of
//! Z_p and Z_p^* are sampled exactly, from 16-bit words by rejection ([`prf::ZpDraw`]), in a way
//! that lets any part of a draw be computed on its own: the comparisons compute them next to
//! their use, in parallel. With it:
//! - sharing an input costs nothing: owner and co-holder both draw `r` from k01; the owner's
//!   share is `v - r` and the other's is `r`;
//! - Beaver triples cost one message: P0 and P2 draw `A0, B0, C0` from k02, P1 and P2 draw
//!   `A1, B1` from k12, and P2 sends `C1 = AB - C0` to P1;
//! - P0 and P1 draw their common randomness (zero shares, the masks and bits of ShareConvert,
//!   ComputeMSB and PrivateCompare) from k01.
//!
//! # The three variants
//! [`ProtocolVariant::SecureNN`] runs the SecureNN protocols; [`ProtocolVariant::Porthos`] adds
//! the two Porthos optimisations (below) and is the paper's protocol, with Table III's costs;
//! [`ProtocolVariant::Compact`] (the CLI's default) is Porthos with cheaper building blocks
//! (see "The compact variant"). The Porthos optimisations:
//! 1. convolutions (and transposed convolutions) are evaluated on masks of the size of the input
//!    X, not of its reshaped (im2col) form X' (paper Algorithm 1);
//! 2. whenever the helper deals fresh shares `(r, v - r)` of a value in ShareConvert and
//!    ComputeMSB, `r` is drawn from the key it shares with one of the parties and only `v - r`
//!    is sent to the other; which party gets the sent share alternates from element to element
//!    (load balance). The random `x` of ComputeMSB needs no message at all: both of its shares
//!    come from the keys.
//!
//! # The compact variant
//! Same security model, same keys and dealing; six changes, each with its cost asserted by
//! the tests (`tests/nonlinear.rs`, `tests/primitives.rs`, `crates/math/tests/secure.rs`):
//! 1. **DReLU from one PrivateCompare** ([`Porthos::compare_compact`]): the helper's mask `r`
//!    comes from the keys, P0 and P1 open `c = x + r`, and `MSB(x) = MSB(c) XOR MSB(r) XOR
//!    [r mod 2^63 > c mod 2^63]`, the last bit by PrivateCompare on the dealt bits of
//!    `r mod 2^63`; no ShareConvert. `3 l log p + 3 l` bits and 2 flights per element
//!    (Porthos: 496 bytes and 5), exact on all of Z_2^64: 192 bytes with change 5.
//! 2. **Selections fused into the comparison** ([`Backend::select_by_sign`]): `[x >= 0] v`
//!    costs 24 more bytes per value and no flight (P0 and P1 send `v + m` with the opening,
//!    the helper returns shares of `gamma (v + m)`), so ReLU is 216 bytes and 2 flights
//!    (Porthos: 536 and 6) and each MaxPool comparison 240 (Porthos: 576).
//!    Thresholds of one secret ([`Backend::select_above`]) share the opening and the dealt
//!    bits: 120 bytes for each threshold after the first.
//! 3. **One Beaver mask per operand** ([`Backend::mul_pairs`]): products whose operands recur
//!    (squares, powers, Chebyshev steps) open each operand once: `(2 k + p) n` words for `k`
//!    operands and `p` products, a square 24 bytes per element instead of 40.
//! 4. **Weights held whole by the owner** (`share` of the model owner's inputs gives the
//!    owner the value and the client zeros, both of which reveal nothing): in a product with
//!    a weight ([`Backend::matmul_weight`]) the weight's mask comes from k02 alone and the
//!    owner opens `F = W - B` by itself, `8 (2 |X| + |W| + |Z|)` bytes instead of
//!    `8 (2 |X| + 2 |W| + |Z|)`. The client checks that its share of the weight is zero and
//!    stops with an error otherwise.
//! 5. **Seven bits per Z_p element** (`pack`): p = 67 < 2^7, so the dealt bit shares and
//!    PrivateCompare's vectors travel packed, an eighth fewer bytes (ShareConvert and
//!    ComputeMSB, which this variant does not use for DReLU, pack too).
//! 6. **Comparisons narrowed to the declared domain** ([`Porthos::set_comparison_bits`], which
//!    the runtime calls with the program's domain, 33 bits at Athos' default scale): for
//!    values in `[-2^32, 2^32)` the comparison runs on `x mod 2^33` (a ring homomorphism, so
//!    the parties reduce their shares locally): the opening is unchanged, `MSB_33(x) =
//!    MSB_33(c) XOR MSB_33(r) XOR [r mod 2^32 > c mod 2^32]`, and PrivateCompare and the
//!    dealt bits have 32 lanes: a DReLU 108 bytes (28 dealt, 16 opening, 56 PrivateCompare,
//!    8 result), a further threshold 64, in the same flights. Outside the domain a value is
//!    compared by its residue mod 2^33 read as a 33-bit two's complement integer (asserted by
//!    the tests). The helper's view is PrivateCompare's on 32 lanes; P0 and P1 see the same
//!    uniform opening as before.
//!
//! # Communication (Table III), and how the counters relate to it
//! `l = 64`, `log p = 8`. Ring elements of Z_L and Z_{L-1} (including single bits, which
//! SecureNN shares as ring elements) are one 64-bit word; Z_p elements are one byte each,
//! packed eight to a word ([`ring`]); every Z_p message carries whole 64-element bit
//! decompositions, so packing wastes nothing. The session counts 8 bytes per word, hence the
//! bytes sent, summed over the three parties, are exactly the Table III bit counts divided by
//! eight. Per element (bytes):
//!
//! | protocol | Porthos | SecureNN |
//! |---|---|---|
//! | ShareConvert | (3 l log p + 5 l)/8 = 232 | (4 l log p + 6 l)/8 = 304 |
//! | ComputeMSB | (3 l log p + 9 l)/8 = 264 | (4 l log p + 13 l)/8 = 360 |
//! | DReLU (`Backend::drelu`) | (6 l log p + 14 l)/8 = 496 | (8 l log p + 19 l)/8 = 664 |
//! | Multiplexer (`Backend::mux`, SelectShare) | 5 l/8 = 40 | 5 l/8 = 40 |
//! | ReLU = DReLU + multiplexer | (6 l log p + 19 l)/8 = 536 | (8 l log p + 24 l)/8 = 704 |
//! | MaxPool_n | (6 l log p + 24 l)(n-1)/8 = 576 (n-1) | (8 l log p + 29 l)(n-1)/8 = 744 (n-1) |
//!
//! Conv2d_{m,i,f,o} costs `8 (2 m^2 i + 2 f^2 o i + q^2 o)` bytes in Porthos and
//! `8 (2 q^2 f^2 i + 2 f^2 o i + q^2 o)` in SecureNN, generalised to any geometry as
//! `8 (2 |X| + 2 |Y| + |Z|)` and `8 (2 |X'| + 2 |Y| + |Z|)`, where `m` and `|X|` count the
//! unpadded input (padding is public zeros, never masked), `q` is the output extent, and X' is
//! the im2col matrix (`batch * output positions` rows, `i * kernel taps` columns; for a
//! transposed convolution, that of the equivalent convolution over the output positions).
//! MatMul `[M,K] x [K,N]` costs
//! `8 (2 MK + 2 KN + MN)` and the elementwise product `8 * 5` per element in both variants.
//! The batched product `[B,M,K] x [B,K,N]` (`Backend::batch_matmul`) is one Beaver product for
//! the whole batch: `8 (2 |A| + 2 |B| + |Z|) = 8 (2 BMK + 2 BKN + BMN)` bytes in both variants,
//! the bytes of `B` separate MatMuls in the rounds of one. A product whose result is empty or
//! whose `K` is 0 is zeros of a public shape and costs nothing.
//!
//! DReLU yields arithmetic shares over Z_L of the bit `[x >= 0]` (P0 and P1; the helper holds
//! zeros), which is the `SharedBits` representation the multiplexer consumes: ReLU's cost
//! without its SelectShare (`5 l` bits fewer per element).
//!
//! As in Table III (and the published Porthos implementation), the helper's shares of the bit
//! `eta'` in ShareConvert are both sent: that message is not halved, which is what makes
//! ShareConvert `3 l log p + 5 l` rather than `3 l log p + 4 l`. Also as in Table III,
//! MaxPool carries the index of the maximum along with it (SecureNN's MaxPool does, for
//! training): two selections per comparison, which [`Backend::argmax`] needs anyway.
//!
//! One deliberate addition to SecureNN, free of communication: in PrivateCompare, P0 and P1 add
//! common random shares of zero to the (blinded) vectors they send, so that the helper sees
//! only their sum and not the two shares, whose ratio would otherwise tell it about the public
//! value `r` (see `Porthos::private_compare`).
//!
//! # Rounds
//! ReLU takes 6 flights for P0 and P1 (ShareConvert 2, ComputeMSB 3, SelectShare 1; the helper
//! sends input-independent material right behind its previous message, so it adds no flight);
//! DReLU alone 5 and the multiplexer 1; MatMul, Conv, Mul and the batched product (whatever
//! `B`) take 1; MaxPool_n and ArgMax `(n - 1)` times 6.
//!
//! # Performance
//! The comparisons dominate the cost of a network (about 536 bytes and, per party, a few
//! hundred Z_p elements of keystream per ReLU element). They are computed in fused, parallel
//! passes: PrivateCompare holds one value's 64 Z_p elements in a 512-bit register (AVX-512BW
//! and VBMI: lane shifts for its suffix sums, table look-ups for its products; a portable
//! version gives the same bytes elsewhere), the helper's dealing of bit decompositions writes
//! its messages in place, and Z_p messages are read and written as the words that travel.
//! Large vectors are recycled between protocol steps and between the party threads of a local
//! run (`pool`), since fresh ones cost a page fault per 4 KiB. With the Cargo feature
//! `profile`, [`prof`] times every step per party (the `nonlinear_profile` example prints it).
//!
//! # Truncation
//! `scale_down` and `divide` run the local truncation of SecureML by default
//! ([`Truncation::Local`]: free, but off by about `2^64 / d` with probability `|x| / 2^64` per
//! element, and the client's share decides the rounding). [`Porthos::set_truncation`] with
//! [`Truncation::Faithful`] selects the helper-assisted truncation of
//! [`Porthos::faithful_divide`]: `floor(x / d)` or one more (unbiased rounding by the helper's
//! mask) for every `x` in `[-2^62, 2^62)` (`|x| <= 2^62 - d` for other divisors), 4 words
//! (32 bytes) per element in the Porthos variant (6 in SecureNN) and 1 round.
//! [`Truncation::Exact`] adds the carry of [`Porthos::exact_divide`] (a PrivateCompare on 16
//! lanes and a dealt word: 82 bytes per element in all for the compact variant's scale 12,
//! 3 flights): the floor, so that a secure run is bit-identical to the cleartext executor.
//!
//! # Ranges
//! Comparisons (ReLU, MaxPool, ArgMax) follow SecureNN: DReLU(x) is the MSB of `2x` (an even
//! value, which ShareConvert needs), so they are exact for `-2^62 <= x < 2^62`. MaxPool and
//! ArgMax compare differences of two values, so their inputs must lie in `[-2^61, 2^61)`.
//! Fixed-point values of a network are far inside these ranges.

// `is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
#![allow(clippy::manual_is_multiple_of)]

mod compare;
mod ctr;
pub mod lower;
pub mod prf;
mod pack;
mod pool;
pub mod prof;
mod simd;
pub mod ring;

use cryptflow_backend::{Backend, BackendError, ConvGeometry, Owner, PoolGeometry, Result, RingTensor, SharedBits, Traffic, Truncation};
use cryptflow_net::Session;
use cryptflow_tensor::{kernels, movement, num_elements, ShapeError};
use rayon::prelude::*;

use lower::Lowering;
use prf::{for_chunks, Prf, PrfKey, WORDS};
use ring::{add_zl1, sub_zl1, to_zl1, wraps, Ring, ZL, ZL1};

/// Which protocol family runs (`--protocol porthos`, `securenn` or `compact`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolVariant {
    /// SecureNN with both Porthos optimisations: the paper's protocol, Table III's costs.
    Porthos,
    /// Plain SecureNN (Table III, left column), for comparison (Table VIII).
    SecureNN,
    /// Porthos with the compact comparison ([`Porthos::drelu_compact`]): DReLU from one
    /// PrivateCompare on a masked opening instead of ShareConvert and ComputeMSB, 192 bytes
    /// and 2 flights per element instead of 496 and 5, exact on all of Z_2^64 (108 bytes on
    /// a declared 33-bit domain), and the other changes of "The compact variant".
    Compact,
}

/// The public divisors of a faithful division ([`Porthos::faithful_divide`]).
#[derive(Clone, Copy, Debug)]
pub enum Div<'a> {
    /// `2^k` for every element, `1 <= k <= 62`.
    Pow2(u32),
    /// One divisor per element, each in `[1, 2^63)`.
    Each(&'a [u64]),
}

pub const MODEL_OWNER: usize = 0;
pub const CLIENT: usize = 1;
pub const HELPER: usize = 2;

/// Elementwise work below this many elements stays on the calling thread.
const PAR_MIN: usize = 1 << 12;

/// One party of a Porthos (or SecureNN) session.
pub struct Porthos {
    session: Session,
    variant: ProtocolVariant,
    id: usize,
    /// k01: P0 and P1.
    k01: Option<Prf>,
    /// k02: P0 and P2.
    k02: Option<Prf>,
    /// k12: P1 and P2.
    k12: Option<Prf>,
    /// This party's private randomness (the helper's in SecureNN dealing).
    own: Prf,
    /// Load-balancing phase of the helper's dealing: element `i` of a deal has its share for
    /// P0 drawn from k02 when `(i + parity)` is even, its share for P1 drawn from k12 otherwise.
    parity: usize,
    /// How `scale_down` and `divide` run ([`Porthos::set_truncation`]).
    truncation: Truncation,
    /// `Some` when weights' Beaver masks are kept for the session
    /// ([`Backend::set_weight_mask_reuse`]), by weight number.
    weight_masks: Option<std::collections::HashMap<usize, WeightMask>>,
    /// The declared comparison domain ([`Backend::set_comparison_bits`]): the compact
    /// variant's comparisons run on 32 bits when it is at most [`NARROW_COMPARISON_BITS`].
    comparison_bits: u32,
}

/// The widest comparison domain (two's complement bits) the compact variant's narrowed
/// comparisons serve: values in `[-2^32, 2^32)`, compared on their residues mod `2^33` with
/// PrivateCompare on 32 lanes.
pub const NARROW_COMPARISON_BITS: u32 = compare::NARROW as u32 + 1;

/// Shares of [`Porthos::compare_compact_thresholds`]: the bits per threshold, and the selected
/// values per threshold and value.
pub type ThresholdShares = (Vec<Vec<u64>>, Vec<Vec<Vec<u64>>>);

/// What masks one weight `W` for a session: the Beaver mask `B` (P0 and P1: their shares; the
/// helper: all of it) and, on P0 and P1, the opened `F = W - B`, which does not depend on how
/// `W` is shared.
struct WeightMask {
    b: Vec<u64>,
    f: Vec<u64>,
}

impl std::fmt::Debug for Porthos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Porthos").field("party", &self.id).field("variant", &self.variant).finish_non_exhaustive()
    }
}

fn os_key() -> Result<PrfKey> {
    PrfKey::random().map_err(|e| BackendError::Aborted(format!("operating system randomness unavailable: {e}")))
}

fn shape_err(msg: String) -> BackendError {
    BackendError::Shape(ShapeError::new(msg))
}

impl Porthos {
    /// Joins a 3-party session and agrees on the pairwise PRF keys (one message per pair).
    pub fn new(session: Session, variant: ProtocolVariant) -> Result<Porthos> {
        if session.parties() != 3 {
            return Err(BackendError::Aborted(format!("Porthos needs 3 parties, the session has {}", session.parties())));
        }
        let id = session.id();
        let mut p = Porthos {
            session,
            variant,
            id,
            k01: None,
            k02: None,
            k12: None,
            own: Prf::new(os_key()?),
            parity: 0,
            truncation: Truncation::Local,
            comparison_bits: 64,
            weight_masks: None,
        };
        match id {
            MODEL_OWNER => {
                let k01 = os_key()?;
                let k02 = os_key()?;
                p.send(CLIENT, k01.to_words())?;
                p.send(HELPER, k02.to_words())?;
                p.k01 = Some(Prf::new(k01));
                p.k02 = Some(Prf::new(k02));
            }
            CLIENT => {
                let k12 = os_key()?;
                p.send(HELPER, k12.to_words())?;
                p.k12 = Some(Prf::new(k12));
                p.k01 = Some(Prf::new(p.recv_key(MODEL_OWNER)?));
            }
            _ => {
                p.k02 = Some(Prf::new(p.recv_key(MODEL_OWNER)?));
                p.k12 = Some(Prf::new(p.recv_key(CLIENT)?));
            }
        }
        Ok(p)
    }

    pub fn variant(&self) -> ProtocolVariant {
        self.variant
    }

    /// Chooses the truncation of `scale_down` and `divide` (all three parties must choose the
    /// same): [`Truncation::Local`] (the default), [`Truncation::Faithful`] (see
    /// [`Porthos::faithful_divide`]) or [`Truncation::Exact`] ([`Porthos::exact_divide`]).
    pub fn set_truncation(&mut self, mode: Truncation) {
        self.truncation = mode;
    }

    pub fn truncation(&self) -> Truncation {
        self.truncation
    }

    /// Declares the domain of the values this party's comparisons see: two's complement
    /// integers of `bits` bits (`1..=64`; all three parties must declare the same). The
    /// compact variant then compares on 32 lanes when `bits <=` [`NARROW_COMPARISON_BITS`];
    /// a value outside `[-2^32, 2^32)` is then compared by its residue mod `2^33` read as a
    /// 33-bit two's complement integer. The other variants always compare all 64 bits.
    pub fn set_comparison_bits(&mut self, bits: u32) -> Result<()> {
        cryptflow_backend::check_comparison_bits(bits)?;
        self.comparison_bits = bits;
        Ok(())
    }

    pub fn comparison_bits(&self) -> u32 {
        self.comparison_bits
    }

    /// The lanes of PrivateCompare and the bit whose value is the sign for the compact
    /// comparisons at the declared domain.
    fn comparison_width(&self) -> (usize, u32) {
        if self.variant == ProtocolVariant::Compact && self.comparison_bits <= NARROW_COMPARISON_BITS {
            (compare::NARROW, NARROW_COMPARISON_BITS - 1)
        } else {
            (compare::W, 63)
        }
    }

    /// Whether Porthos' two optimisations apply (every variant but SecureNN).
    fn porthos(&self) -> bool {
        self.variant != ProtocolVariant::SecureNN
    }

    fn recv_key(&mut self, from: usize) -> Result<PrfKey> {
        let words = self.recv(from, 2)?;
        PrfKey::from_words(&words).ok_or_else(|| BackendError::Peer { peer: from, reason: "malformed key".into() })
    }

    // ----- links -------------------------------------------------------------------------

    fn send(&mut self, to: usize, data: Vec<u64>) -> Result<()> {
        let _p = prof::scope("net.send");
        self.session.send(to, data).map_err(|e| BackendError::Peer { peer: to, reason: e.to_string() })
    }

    fn recv(&mut self, from: usize, len: usize) -> Result<Vec<u64>> {
        let _p = prof::scope("net.recv (waiting)");
        self.session.recv(from, len).map_err(|e| BackendError::Peer { peer: from, reason: e.to_string() })
    }

    fn recv_ring<R: Ring>(&mut self, from: usize, len: usize) -> Result<Vec<R::E>> {
        let words = self.recv(from, R::words(len))?;
        let _p = prof::scope("wire.decode");
        R::decode(words, len)
            .ok_or_else(|| BackendError::Peer { peer: from, reason: format!("sent an element outside {}", R::NAME) })
    }

    // ----- keys --------------------------------------------------------------------------

    /// k01 (P0 and P1 only).
    fn common(&mut self) -> &mut Prf {
        self.k01.as_mut().expect("k01 is held by parties 0 and 1")
    }

    /// The key this share-holder shares with the helper (k02 for P0, k12 for P1).
    fn with_helper(&mut self) -> &mut Prf {
        if self.id == MODEL_OWNER {
            self.k02.as_mut().expect("k02 is held by parties 0 and 2")
        } else {
            self.k12.as_mut().expect("k12 is held by parties 1 and 2")
        }
    }

    /// The helper's key with share-holder `j`.
    fn helper_key(&mut self, j: usize) -> &mut Prf {
        if j == MODEL_OWNER {
            self.k02.as_mut().expect("k02 is held by parties 0 and 2")
        } else {
            self.k12.as_mut().expect("k12 is held by parties 1 and 2")
        }
    }

    /// Adds shares of zero drawn from k01 (SecureNN's `U`), so that output shares are fresh.
    fn rerandomise(&mut self, z: &mut [u64]) {
        if self.id == HELPER || z.is_empty() {
            return;
        }
        let u = self.common().draw_words(z.len(), false);
        let lead = self.id == MODEL_OWNER;
        for_chunks(z, [&u], |_, z, &[u]| {
            for (v, &u) in z.iter_mut().zip(u) {
                *v = if lead { v.wrapping_add(u) } else { v.wrapping_sub(u) };
            }
        });
    }

    // ----- the helper's dealing ----------------------------------------------------------

    /// The helper deals fresh additive shares over `R` (Z_L or Z_{L-1}) of its secret `values`
    /// (`n` of them); P0 and P1 get their shares, the helper an empty vector. (The shared bit
    /// decompositions over Z_p are dealt by `deal_bits`, the same way.)
    ///
    /// With `halve` in the Porthos variant, element `i` has one share drawn from a key the
    /// helper shares with a party (P0 for even `i + parity`, P1 otherwise) and only the other
    /// share sent: `n` elements on the wire in all. Otherwise both shares are sent (`2 n`),
    /// the first drawn from the helper's private randomness.
    fn deal_words<R: Ring<E = u64>>(&mut self, values: Option<&[u64]>, n: usize, halve: bool) -> Result<Vec<u64>> {
        let _p = prof::scope(if self.id == HELPER { "deal (helper)" } else { "deal (receive)" });
        let random = |prf: &mut Prf, len: usize| {
            let mut v = pool::take(len);
            R::random(prf, &mut v);
            v
        };
        if halve && self.porthos() {
            let parity = self.parity;
            self.parity = (parity + n) % 2;
            let n0 = if parity == 0 { n.div_ceil(2) } else { n / 2 };
            let n1 = n - n0;
            match self.id {
                HELPER => {
                    let v = values.expect("the helper deals its own values");
                    let r0 = self.helper_key(MODEL_OWNER).draw_words(n0, R::WORDS_ZL1);
                    let r1 = self.helper_key(CLIENT).draw_words(n1, R::WORDS_ZL1);
                    // Element i = 2k + parity has P0's share drawn: P1 gets the difference.
                    let mut for_p1 = pool::take(n0);
                    let mut for_p0 = pool::take(n1);
                    for_chunks(&mut for_p1, [&r0], |first, o, &[r]| {
                        for (k, (o, &r)) in o.iter_mut().zip(r).enumerate() {
                            *o = R::sub(v[2 * (first + k) + parity], r);
                        }
                    });
                    for_chunks(&mut for_p0, [&r1], |first, o, &[r]| {
                        for (k, (o, &r)) in o.iter_mut().zip(r).enumerate() {
                            *o = R::sub(v[2 * (first + k) + 1 - parity], r);
                        }
                    });
                    self.send(MODEL_OWNER, for_p0)?;
                    self.send(CLIENT, for_p1)?;
                    Ok(Vec::new())
                }
                j => {
                    let (drawn, sent) = if j == MODEL_OWNER { (n0, n1) } else { (n1, n0) };
                    let mine = self.with_helper().draw_words(drawn, R::WORDS_ZL1);
                    let got = self.recv_ring::<R>(HELPER, sent)?;
                    let mine_parity = if j == MODEL_OWNER { parity } else { 1 - parity };
                    let mut out = pool::take(n);
                    // Element i is element i / 2 of the drawn or of the received ones.
                    out.par_chunks_mut(WORDS).enumerate().for_each(|(c, out)| {
                        let first = c * WORDS;
                        let mut m = [0u64; WORDS / 2 + 1];
                        let count = out.len().div_ceil(2).min(drawn.saturating_sub(first / 2));
                        mine.fill(first / 2, &mut m[..count]);
                        for (k, o) in out.iter_mut().enumerate() {
                            let i = first + k;
                            *o = if i % 2 == mine_parity { m[k / 2] } else { got[i / 2] };
                        }
                    });
                    pool::give(got);
                    Ok(out)
                }
            }
        } else {
            match self.id {
                HELPER => {
                    let v = values.expect("the helper deals its own values");
                    let r = random(&mut self.own, n);
                    let mut other = pool::take(n);
                    other.par_iter_mut().with_min_len(PAR_MIN).enumerate().for_each(|(i, o)| *o = R::sub(v[i], r[i]));
                    self.send(MODEL_OWNER, r)?;
                    self.send(CLIENT, other)?;
                    Ok(Vec::new())
                }
                _ => self.recv_ring::<R>(HELPER, n),
            }
        }
    }

    // ----- faithful truncation -----------------------------------------------------------

    /// Helper-assisted faithful division of shared `x` by public divisors (`Div::Pow2(k)`:
    /// `2^k`, `1 <= k <= 62`; `Div::Each`: one positive divisor `d < 2^63` per element).
    /// Result `floor(x / d) + e` with `e` in `{0, 1}`, for every `x` with `-D <= x < 2^63 - D`,
    /// `D = floor(2^62 / d) d` (so all of `[-2^62, 2^62)` for powers of two, and
    /// `|x| <= 2^62 - d` in general); `e = 1` with probability `(x mod d) / d` over the
    /// helper's mask (unbiased rounding). The helper gets zeros.
    ///
    /// 1. P0 and P1 draw `r_0` (k02) and `r_1` (k12): the helper knows `r = r_0 + r_1`, uniform
    ///    to each of P0 and P1. P0 shifts its share to `y = x + D`, in `[0, 2^63)`.
    /// 2. P0 and P1 open `c = y + r mod 2^64` to each other (one word each, one round): uniform
    ///    and independent of `y` for both, since each misses one share of `r`.
    /// 3. The helper deals shares of `A = -floor(r / d)` and of `S = m ? B : A` with
    ///    `m = MSB(r)` and `B = ceil((2^64 - r) / d)` (one word per element each in the Porthos
    ///    variant, with the dealing's halving; two in SecureNN), input-independent: sent right
    ///    away.
    /// 4. Since `y < 2^63`, the sum `y + r` wraps iff `m = 1` and `MSB(c) = 0`. Without wrap
    ///    `y = c - r` and `floor(c / d) + A` is `floor(y / d)` or one more (the borrow of the
    ///    residues); with wrap `y = c + (2^64 - r)` and `floor(c / d) + B` is `floor(y / d)` or
    ///    one more (rounding the residue of `2^64 - r` up). So P0 takes
    ///    `floor(c / d) - D / d + (MSB(c) ? A_0 : S_0)` and P1 `MSB(c) ? A_1 : S_1`.
    ///
    /// Per element: 4 words (32 bytes) in the Porthos variant (P0 1, P1 1, the helper 2),
    /// 6 words (48 bytes) in SecureNN; 1 round for P0 and P1, none for the helper. The client
    /// sees `c`, its shares and the peer's word, all uniform: nothing of `x`'s low bits, and
    /// its share no longer predicts the rounding.
    pub fn faithful_divide(&mut self, x: &[u64], div: Div<'_>) -> Result<Vec<u64>> {
        self.masked_divide(x, div, false)
    }

    /// Helper-assisted exact division: `floor(x / d)` on the range of
    /// [`Porthos::faithful_divide`], whatever the shares and the helper's mask, so that a
    /// secure run computes what the cleartext executor does, bit for bit. The helper gets
    /// zeros.
    ///
    /// The faithful result is `floor(x / d)` plus the carry `[t > c mod d]` of the residues,
    /// where the helper knows the threshold `t`: `r mod d` when the opening does not wrap, and
    /// `(r mod d - 2^64 mod d) mod d` when it does (`c = y + r - 2^64`; the same as `r mod d`
    /// for powers of two). So after the faithful steps:
    /// 5. The helper deals shared bits of `t` (one threshold per element for powers of two; for
    ///    other divisors the no-wrap and the wrap threshold, P0 and P1 keeping the one that
    ///    `MSB(c)` selects); PrivateCompare of them with the public `c mod d` and common bits
    ///    `beta` gives the helper `beta XOR [t > c mod d]`, uniform to it.
    /// 6. The helper deals shares of that bit over Z_L (halved: one word per element); P0 and
    ///    P1 remove `beta` (public to them) and subtract the carry.
    ///
    /// PrivateCompare runs on 16 lanes for divisors up to `2^16` (every fixed-point scale),
    /// 32 up to `2^32`, 64 beyond. Per element for `2^12` in the Porthos and compact variants:
    /// the faithful 32 bytes, plus 14 (the dealt bits, 7 bits per Z_p element in the compact
    /// variant; 16 in the others), 28 (PrivateCompare, the same), and 8 (the carry): 82 bytes
    /// compact, 88 Porthos; twice the last three for divisors that are not powers of two. Two
    /// more flights than faithful (to the helper and back).
    pub fn exact_divide(&mut self, x: &[u64], div: Div<'_>) -> Result<Vec<u64>> {
        self.masked_divide(x, div, true)
    }

    /// [`Porthos::faithful_divide`], and with `exact` the carry of [`Porthos::exact_divide`].
    fn masked_divide(&mut self, x: &[u64], div: Div<'_>, exact: bool) -> Result<Vec<u64>> {
        let n = x.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let _p = prof::scope(if exact { "exact_divide" } else { "faithful_divide" });
        // floor(v / d) for unsigned v, element i; D / d; D.
        let quot = |v: u64, i: usize| -> u64 {
            match div {
                Div::Pow2(k) => v >> k,
                Div::Each(d) => v / d[i],
            }
        };
        let divisor = |i: usize| -> u64 {
            match div {
                Div::Pow2(k) => 1u64 << k,
                Div::Each(d) => d[i],
            }
        };
        const HALF_RANGE: u64 = 1 << 62;
        // The carry's comparison: per element a threshold for each case of the opening (no
        // wrap, wrap), which coincide for powers of two; lanes for the largest residue.
        let sets = if matches!(div, Div::Each(_)) { 2 } else { 1 };
        let largest = match div {
            Div::Pow2(k) => 1u64 << k,
            Div::Each(d) => d.iter().copied().max().unwrap_or(1),
        };
        let lanes = match 64 - (largest - 1).leading_zeros() as usize {
            0..=compare::SHORT => compare::SHORT,
            b if b <= compare::NARROW => compare::NARROW,
            _ => compare::W,
        };
        if self.id == HELPER {
            let mut r = self.helper_key(MODEL_OWNER).u64s(n);
            let r1 = self.helper_key(CLIENT).u64s(n);
            add_in_place(&mut r, &r1);
            pool::give(r1);
            let mut a = pool::take(n);
            let mut sel = pool::take(n);
            a.par_iter_mut().with_min_len(PAR_MIN).zip(sel.par_iter_mut()).enumerate().for_each(|(i, (a, s))| {
                let r = r[i];
                let neg_q = quot(r, i).wrapping_neg();
                *s = if r >> 63 == 1 {
                    // ceil((2^64 - r) / d); r != 0 here.
                    let d = divisor(i) as u128;
                    ((1u128 << 64) - r as u128).div_ceil(d) as u64
                } else {
                    neg_q
                };
                *a = neg_q;
            });
            self.deal_words::<ZL>(Some(&a), n, true)?;
            self.deal_words::<ZL>(Some(&sel), n, true)?;
            pool::give(sel);
            if exact {
                // Thresholds: r mod d (no wrap); (r mod d - 2^64 mod d) mod d (wrap).
                let mut t = pool::take(sets * n);
                let (no_wrap, wrap) = t.split_at_mut(n);
                no_wrap.par_iter_mut().with_min_len(PAR_MIN).enumerate().for_each(|(i, t)| *t = r[i] % divisor(i));
                wrap.par_iter_mut().with_min_len(PAR_MIN).enumerate().for_each(|(i, t)| {
                    let d = divisor(i);
                    let rd = r[i] % d;
                    *t = if r[i] >> 63 == 1 { (rd + d - ((1u128 << 64) % d as u128) as u64) % d } else { rd };
                });
                self.deal_bits(Some(&t), sets * n, lanes)?;
                let carry = self.private_compare(None, &[], &[], sets * n, lanes)?;
                t.par_iter_mut().with_min_len(PAR_MIN).zip(carry.par_iter()).for_each(|(t, &b)| *t = b as u64);
                self.deal_words::<ZL>(Some(&t), sets * n, true)?;
                pool::give(t);
            }
            pool::give(r);
            return Ok(pool::zeros(n));
        }
        let lead = self.id == MODEL_OWNER;
        let other = 1 - self.id;
        let mut c = self.with_helper().u64s(n);
        c.par_iter_mut().with_min_len(PAR_MIN).enumerate().for_each(|(i, c)| {
            let d = divisor(i);
            let offset = if lead { (HALF_RANGE / d) * d } else { 0 };
            *c = c.wrapping_add(x[i]).wrapping_add(offset);
        });
        let mut msg = pool::take(n);
        msg.copy_from_slice(&c);
        self.send(other, msg)?;
        let a = self.deal_words::<ZL>(None, n, true)?;
        let sel = self.deal_words::<ZL>(None, n, true)?;
        let tbits = if exact { self.deal_bits(None, sets * n, lanes)? } else { None };
        let got = self.recv(other, n)?;
        // The opening c (for the carry: its residues, and its MSB choosing the threshold).
        let opened = if exact {
            let mut o = pool::take(n);
            o.par_iter_mut().with_min_len(PAR_MIN).enumerate().for_each(|(i, o)| *o = c[i].wrapping_add(got[i]));
            o
        } else {
            Vec::new()
        };
        c.par_iter_mut().with_min_len(PAR_MIN).enumerate().for_each(|(i, out)| {
            let c = out.wrapping_add(got[i]);
            let share = if c >> 63 == 1 { a[i] } else { sel[i] };
            *out = if lead {
                let d = divisor(i);
                quot(c, i).wrapping_sub(HALF_RANGE / d).wrapping_add(share)
            } else {
                share
            };
        });
        if exact {
            let mut residues = pool::take(sets * n);
            residues.par_chunks_mut(n).for_each(|res| {
                res.par_iter_mut().with_min_len(PAR_MIN).enumerate().for_each(|(i, v)| *v = opened[i] % divisor(i));
            });
            let beta = self.common().bits(sets * n);
            self.private_compare(tbits.as_ref(), &residues, &beta, sets * n, lanes)?;
            drop(tbits);
            pool::give(residues);
            let flipped = self.deal_words::<ZL>(None, sets * n, true)?;
            c.par_iter_mut().with_min_len(PAR_MIN).enumerate().for_each(|(i, out)| {
                // The wrap threshold when the opening's MSB is 0 (see `faithful_divide`, 4).
                let j = if sets == 2 && opened[i] >> 63 == 0 { n + i } else { i };
                // [t > c mod d] = beta XOR beta' = beta + beta' - 2 beta beta'.
                let g = flipped[j];
                let carry = if beta[j] == 1 { g.wrapping_neg().wrapping_add(lead as u64) } else { g };
                *out = out.wrapping_sub(carry);
            });
            pool::give(flipped);
            pool::give(opened);
        }
        for v in [a, sel, got] {
            pool::give(v);
        }
        Ok(c)
    }

    // ----- Beaver products ---------------------------------------------------------------

    /// One Beaver matrix product (see [`Porthos::beaver_keyed`] for `weight`).
    fn matmul_keyed(&mut self, a: &RingTensor, b: &RingTensor, weight: Option<usize>) -> Result<RingTensor> {
        if a.rank() != 2 || b.rank() != 2 || a.shape()[1] != b.shape()[0] {
            return Err(shape_err(format!("matmul: cannot multiply {:?} by {:?}", a.shape(), b.shape())));
        }
        let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
        if m * n == 0 || k == 0 {
            return Ok(RingTensor::zeros(vec![m, n]));
        }
        let product = |x: &[u64], y: &[u64]| {
            let x = RingTensor::new(vec![m, k], x.to_vec())?;
            let y = RingTensor::new(vec![k, n], y.to_vec())?;
            Ok(kernels::matmul(&x, &y)?.into_data())
        };
        let z = self.beaver_keyed(a.data(), b.data(), m * n, product, weight)?;
        Ok(RingTensor::new(vec![m, n], z)?)
    }

    /// Shares of `op(X, Y)` for a bilinear `op` (matrix product, convolution, elementwise
    /// product) from shares `x`, `y` (the helper passes zeros of the right lengths).
    /// Communication: `2 |X| + 2 |Y|` words between P0 and P1, `|Z|` from the helper to P1.
    fn beaver<F>(&mut self, x: &[u64], y: &[u64], nz: usize, op: F) -> Result<Vec<u64>>
    where
        F: Fn(&[u64], &[u64]) -> std::result::Result<Vec<u64>, ShapeError>,
    {
        self.beaver_keyed(x, y, nz, op, None)
    }

    /// [`Porthos::beaver`]; with `weight`, `y` is that weight and, when masks are kept for the
    /// session, its mask `B` and `F = Y - B` are drawn and opened once: later products open
    /// only `X - A` (`8 (2 |X| + |Z|)` bytes instead of `8 (2 |X| + 2 |Y| + |Z|)`).
    fn beaver_keyed<F>(&mut self, x: &[u64], y: &[u64], nz: usize, op: F, weight: Option<usize>) -> Result<Vec<u64>>
    where
        F: Fn(&[u64], &[u64]) -> std::result::Result<Vec<u64>, ShapeError>,
    {
        let (nx, ny) = (x.len(), y.len());
        let _p = prof::scope("beaver");
        // In the compact variant a weight is held whole by the owner (the client's share is
        // zero, see `share`): its mask B is drawn from k02 alone and the owner opens
        // F = W - B by itself, one word per weight element instead of two.
        let owner_held = weight.is_some() && self.variant == ProtocolVariant::Compact;
        if owner_held && self.id == CLIENT && y.iter().any(|&v| v != 0) {
            return Err(BackendError::Aborted(format!(
                "weight {} is not held by the model owner alone (the client's share is not zero)",
                weight.unwrap_or_default()
            )));
        }
        // Some(true): the mask is kept and known; Some(false): keep it after this product.
        let kept = match (weight, &self.weight_masks) {
            (Some(w), Some(masks)) => match masks.get(&w) {
                Some(m) if m.b.len() == ny || m.f.len() == ny => Some(true),
                Some(_) => return Err(shape_err(format!("weight {w} changed size within the session"))),
                None => Some(false),
            },
            _ => None,
        };
        if self.id == HELPER {
            let a0 = self.helper_key(MODEL_OWNER).u64s(nx);
            let fresh_b0 = (kept != Some(true)).then(|| self.helper_key(MODEL_OWNER).u64s(ny));
            let c0 = self.helper_key(MODEL_OWNER).u64s(nz);
            let mut a = self.helper_key(CLIENT).u64s(nx);
            add_in_place(&mut a, &a0);
            let mut c1 = match fresh_b0 {
                Some(b0) => {
                    let mut b = if owner_held { vec![0; ny] } else { self.helper_key(CLIENT).u64s(ny) };
                    add_in_place(&mut b, &b0);
                    let c1 = op(&a, &b)?;
                    if let (Some(w), Some(masks)) = (weight, self.weight_masks.as_mut()) {
                        masks.insert(w, WeightMask { b, f: Vec::new() });
                    }
                    c1
                }
                None => {
                    let masks = self.weight_masks.as_ref().expect("kept masks");
                    op(&a, &masks[&weight.expect("a kept mask has a weight")].b)?
                }
            };
            check_len(&c1, nz)?;
            sub_in_place(&mut c1, &c0);
            self.send(CLIENT, c1)?;
            return Ok(vec![0; nz]);
        }
        let j = self.id;
        let other = 1 - j;
        let a = self.with_helper().u64s(nx);
        // The client's part of an owner-held weight's mask is zero.
        let b = (kept != Some(true)).then(|| if owner_held && j == CLIENT { vec![0; ny] } else { self.with_helper().u64s(ny) });
        let c = if j == MODEL_OWNER { Some(self.with_helper().u64s(nz)) } else { None };
        // What each party sends and receives: E's part, and F's unless it is kept; an
        // owner-held F is sent by the owner only.
        let sends_f = b.is_some() && !(owner_held && j == CLIENT);
        let gets_f = b.is_some() && !(owner_held && j == MODEL_OWNER);
        let mut msg = Vec::with_capacity(nx + if sends_f { ny } else { 0 });
        msg.extend(x.iter().zip(&a).map(|(&x, &a)| x.wrapping_sub(a)));
        if let (true, Some(b)) = (sends_f, &b) {
            msg.extend(y.iter().zip(b).map(|(&y, &b)| y.wrapping_sub(b)));
        }
        self.send(other, msg)?;
        let mut ef = self.recv(other, nx + if gets_f { ny } else { 0 })?;
        if b.is_some() && !gets_f {
            ef.resize(nx + ny, 0);
        }
        // E = (X - A) summed over both parties; recompute this party's part instead of keeping it.
        ef[..nx].par_iter_mut().with_min_len(PAR_MIN).zip(x.par_iter().zip(a.par_iter())).for_each(|(e, (&x, &a))| {
            *e = e.wrapping_add(x.wrapping_sub(a));
        });
        if let (true, Some(b)) = (sends_f, &b) {
            ef[nx..].par_iter_mut().with_min_len(PAR_MIN).zip(y.par_iter().zip(b.par_iter())).for_each(|(f, (&y, &b))| {
                *f = f.wrapping_add(y.wrapping_sub(b));
            });
        }
        drop(a);
        if let (Some(w), Some(b), Some(masks)) = (weight, b, self.weight_masks.as_mut()) {
            masks.insert(w, WeightMask { b, f: ef[nx..].to_vec() });
        }
        if kept == Some(true) {
            let masks = self.weight_masks.as_ref().expect("kept masks");
            ef.extend_from_slice(&masks[&weight.expect("a kept mask has a weight")].f);
        }
        let (e, f) = ef.split_at(nx);
        // Z_j = X_j F + E Y_j - j E F + C_j, with X_1 F - E F = (X_1 - E) F.
        let mut z = if j == MODEL_OWNER {
            op(x, f)?
        } else {
            let x_minus_e: Vec<u64> = x.iter().zip(e).map(|(&x, &e)| x.wrapping_sub(e)).collect();
            op(&x_minus_e, f)?
        };
        check_len(&z, nz)?;
        let ey = op(e, y)?;
        check_len(&ey, nz)?;
        add_in_place(&mut z, &ey);
        let c = match c {
            Some(c) => c,
            None => self.recv(HELPER, nz)?,
        };
        add_in_place(&mut z, &c);
        self.rerandomise(&mut z);
        Ok(z)
    }

    /// Products `operands[i] * operands[j]` for each `(i, j)` of `pairs` (operands of one length
    /// `n`), with one Beaver mask per operand rather than per product: the helper draws each
    /// operand's mask `A_i` from the keys (nothing sent) and sends P1 its share of
    /// `C_p = A_i A_j` per product (P0's is drawn from k02); P0 and P1 open each
    /// `E_i = X_i - A_i` once, in one flight. Then
    /// `X_i X_j = E_i E_j + E_i A_j + A_i E_j + C_p`, shared linearly. `(2 k + |pairs|) n`
    /// words for `k` operands, 1 round: a square costs 3 words per element and a Chebyshev
    /// step of `t` products over `t` operands `3 t`, against Beaver's 5 per product.
    pub fn mul_pairs_vec(&mut self, operands: &[&[u64]], pairs: &[(usize, usize)]) -> Result<Vec<Vec<u64>>> {
        let k = operands.len();
        let n = operands.first().map_or(0, |o| o.len());
        if pairs.is_empty() || n == 0 {
            return Ok(vec![Vec::new(); pairs.len()]);
        }
        let _p = prof::scope("mul_pairs");
        if self.id == HELPER {
            let mut masks = Vec::with_capacity(k);
            for _ in 0..k {
                masks.push(self.helper_key(MODEL_OWNER).u64s(n));
            }
            let mut c1 = self.helper_key(MODEL_OWNER).u64s(pairs.len() * n);
            for a in masks.iter_mut() {
                let a1 = self.helper_key(CLIENT).u64s(n);
                add_in_place(a, &a1);
            }
            c1.par_chunks_mut(n).zip(pairs.par_iter()).for_each(|(c, &(i, j))| {
                for (t, c) in c.iter_mut().enumerate() {
                    *c = masks[i][t].wrapping_mul(masks[j][t]).wrapping_sub(*c);
                }
            });
            self.send(CLIENT, c1)?;
            return Ok(vec![pool::zeros(n); pairs.len()]);
        }
        let lead = self.id == MODEL_OWNER;
        let other = 1 - self.id;
        let mut masks = Vec::with_capacity(k);
        for _ in 0..k {
            masks.push(self.with_helper().u64s(n));
        }
        let c0 = if lead { Some(self.with_helper().u64s(pairs.len() * n)) } else { None };
        let mut msg = pool::take(k * n);
        msg.par_chunks_mut(n).zip(operands.par_iter().zip(masks.par_iter())).for_each(|(m, (x, a))| {
            for (t, m) in m.iter_mut().enumerate() {
                *m = x[t].wrapping_sub(a[t]);
            }
        });
        let mut e = msg.clone();
        self.send(other, msg)?;
        let got = self.recv(other, k * n)?;
        add_in_place(&mut e, &got);
        pool::give(got);
        let c = match c0 {
            Some(c) => c,
            None => self.recv(HELPER, pairs.len() * n)?,
        };
        let mut out = Vec::with_capacity(pairs.len());
        for (p, &(i, j)) in pairs.iter().enumerate() {
            let (ei, ej) = (&e[i * n..(i + 1) * n], &e[j * n..(j + 1) * n]);
            let (ai, aj) = (&masks[i], &masks[j]);
            let cp = &c[p * n..(p + 1) * n];
            let mut z = pool::take(n);
            z.par_iter_mut().with_min_len(PAR_MIN).enumerate().for_each(|(t, z)| {
                let mut v = ei[t].wrapping_mul(aj[t]).wrapping_add(ai[t].wrapping_mul(ej[t])).wrapping_add(cp[t]);
                if lead {
                    v = v.wrapping_add(ei[t].wrapping_mul(ej[t]));
                }
                *z = v;
            });
            self.rerandomise(&mut z);
            out.push(z);
        }
        pool::give(e);
        pool::give(c);
        Ok(out)
    }

    /// Elementwise product of two shared vectors (SecureNN's scalar MatMul / SelectShare core):
    /// [`Porthos::beaver`] specialised to one fused pass per step. The helper passes vectors
    /// of the right length (their values are not used).
    fn mul_vec(&mut self, x: &[u64], y: &[u64]) -> Result<Vec<u64>> {
        let n = x.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let _p = prof::scope("mul_vec");
        if self.id == HELPER {
            let a0 = self.helper_key(MODEL_OWNER).draw_words(n, false);
            let b0 = self.helper_key(MODEL_OWNER).draw_words(n, false);
            let c0 = self.helper_key(MODEL_OWNER).draw_words(n, false);
            let a1 = self.helper_key(CLIENT).draw_words(n, false);
            let b1 = self.helper_key(CLIENT).draw_words(n, false);
            let mut c1 = pool::take(n);
            for_chunks(&mut c1, [&a0, &b0, &c0, &a1, &b1], |_, c, &[a0, b0, c0, a1, b1]| {
                for i in 0..c.len() {
                    c[i] = a0[i].wrapping_add(a1[i]).wrapping_mul(b0[i].wrapping_add(b1[i])).wrapping_sub(c0[i]);
                }
            });
            self.send(CLIENT, c1)?;
            return Ok(pool::zeros(n));
        }
        let lead = self.id == MODEL_OWNER;
        let other = 1 - self.id;
        let a = self.with_helper().draw_words(n, false);
        let b = self.with_helper().draw_words(n, false);
        let c = if lead { Some(self.with_helper().draw_words(n, false)) } else { None };
        let mut msg = pool::take(2 * n);
        {
            let (e, f) = msg.split_at_mut(n);
            for_chunks(e, [&a], |first, e, &[a]| {
                for (k, (e, &a)) in e.iter_mut().zip(a).enumerate() {
                    *e = x[first + k].wrapping_sub(a);
                }
            });
            for_chunks(f, [&b], |first, f, &[b]| {
                for (k, (f, &b)) in f.iter_mut().zip(b).enumerate() {
                    *f = y[first + k].wrapping_sub(b);
                }
            });
        }
        self.send(other, msg)?;
        let ef = self.recv(other, 2 * n)?;
        let c_got = if lead { None } else { Some(self.recv(HELPER, n)?) };
        let u = self.common().draw_words(n, false);
        // E = (X - A) over both parties, F likewise; Z_j = X_j F + E Y_j - j E F + C_j, with
        // X_1 F - E F = (X_1 - E) F; plus the zero share U (rerandomisation).
        let share = |g: usize, a: u64, b: u64, c: u64, u: u64| {
            let e = ef[g].wrapping_add(x[g].wrapping_sub(a));
            let f = ef[n + g].wrapping_add(y[g].wrapping_sub(b));
            let xs = if lead { x[g] } else { x[g].wrapping_sub(e) };
            let v = xs.wrapping_mul(f).wrapping_add(e.wrapping_mul(y[g])).wrapping_add(c);
            if lead {
                v.wrapping_add(u)
            } else {
                v.wrapping_sub(u)
            }
        };
        let mut z = pool::take(n);
        match (&c, &c_got) {
            (Some(c), _) => for_chunks(&mut z, [&a, &b, c, &u], |first, z, &[a, b, c, u]| {
                for k in 0..z.len() {
                    z[k] = share(first + k, a[k], b[k], c[k], u[k]);
                }
            }),
            (None, Some(c)) => for_chunks(&mut z, [&a, &b, &u], |first, z, &[a, b, u]| {
                for k in 0..z.len() {
                    z[k] = share(first + k, a[k], b[k], c[first + k], u[k]);
                }
            }),
            (None, None) => unreachable!("P1 received C"),
        }
        pool::give(ef);
        if let Some(c) = c_got {
            pool::give(c);
        }
        Ok(z)
    }

    // ----- comparisons -------------------------------------------------------------------

    /// ShareConvert (SecureNN Algorithm 4): shares over Z_L of `a` (`a != 2^64 - 1`) to shares
    /// over Z_{L-1} of the same value. The helper passes zeros and gets zeros.
    /// Communication per element: Porthos `3 l log p + 5 l` bits, SecureNN `4 l log p + 6 l`.
    pub fn share_convert(&mut self, a: &[u64]) -> Result<Vec<u64>> {
        let n = a.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let _p = prof::scope("share_convert");
        if self.id == HELPER {
            let mut x = self.recv(MODEL_OWNER, n)?;
            let mut delta = self.recv(CLIENT, n)?;
            x.par_iter_mut().with_min_len(PAR_MIN).zip(delta.par_iter_mut()).for_each(|(t0, t1)| {
                let (sum, wrapped) = t0.overflowing_add(*t1);
                *t0 = sum;
                *t1 = wrapped as u64;
            });
            self.deal_bits(Some(&x), n, compare::W)?;
            self.deal_words::<ZL1>(Some(&delta), n, true)?;
            let eta_p = self.private_compare(None, &[], &[], n, compare::W)?;
            for (v, &b) in x.iter_mut().zip(&eta_p) {
                *v = b as u64;
            }
            // Sent in full in both variants, as in Table III (see the crate docs).
            self.deal_words::<ZL1>(Some(&x), n, false)?;
            pool::give(x);
            pool::give(delta);
            return Ok(pool::zeros(n));
        }
        let lead = self.id == MODEL_OWNER;
        let r0 = self.common().draw_words(n, false);
        let r1 = self.common().draw_words(n, false);
        let eta_pp = self.common().bits(n);
        // r = r0 + r1 is known to P0 and P1; keep it nonzero so that r - 1 does not wrap
        // (a change of probability 2^-64 to its distribution): r1 is read through `fix`.
        let fix = |r0: u64, r1: u64| if r0.wrapping_add(r1) == 0 { r1.wrapping_add(1) } else { r1 };
        let mut a_tilde = pool::take(n);
        for_chunks(&mut a_tilde, [&r0, &r1], |first, t, &[r0, r1]| {
            for k in 0..t.len() {
                let mine = if lead { r0[k] } else { fix(r0[k], r1[k]) };
                t[k] = a[first + k].wrapping_add(mine);
            }
        });
        self.send(HELPER, a_tilde)?;
        let xbits = self.deal_bits(None, n, compare::W)?;
        let delta = self.deal_words::<ZL1>(None, n, true)?;
        let mut y = pool::take(n);
        for_chunks(&mut y, [&r0, &r1], |_, y, &[r0, r1]| {
            for k in 0..y.len() {
                y[k] = r0[k].wrapping_add(fix(r0[k], r1[k])).wrapping_sub(1);
            }
        });
        self.private_compare(xbits.as_ref(), &y, &eta_pp, n, compare::W)?;
        drop(xbits);
        let eta_p = self.deal_words::<ZL1>(None, n, false)?;
        for_chunks(&mut y, [&r0, &r1], |first, y, &[r0, r1]| {
            for k in 0..y.len() {
                let i = first + k;
                let r1 = fix(r0[k], r1[k]);
                let alpha = wraps(r0[k], r1) as u64;
                let beta_j = wraps(a[i], if lead { r0[k] } else { r1 }) as u64;
                // eta = eta' xor eta''
                let mut eta = if eta_pp[i] == 1 { ring::neg_zl1(eta_p[i]) } else { eta_p[i] };
                if lead {
                    eta = add_zl1(eta, eta_pp[i] as u64);
                }
                // theta = beta_j + delta_j + eta_j + [lead](-alpha - 1) = shares of wrap(a_0, a_1)
                let mut theta = add_zl1(add_zl1(beta_j, delta[i]), eta);
                if lead {
                    theta = sub_zl1(theta, alpha + 1);
                }
                y[k] = sub_zl1(to_zl1(a[i]), theta);
            }
        });
        pool::give(delta);
        pool::give(eta_p);
        Ok(y)
    }

    /// ComputeMSB (SecureNN Algorithm 5): from shares over Z_{L-1} of `a`, shares over Z_L of
    /// its most significant bit. The helper passes zeros and gets zeros.
    /// Communication per element: Porthos `3 l log p + 9 l` bits, SecureNN `4 l log p + 13 l`.
    pub fn compute_msb(&mut self, a: &[u64]) -> Result<Vec<u64>> {
        let n = a.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let _p = prof::scope("compute_msb");
        if self.id == HELPER {
            let x = if self.porthos() {
                // Both shares of the random x come from the keys: nothing to send.
                let x0 = self.helper_key(MODEL_OWNER).draw_words(n, true);
                let x1 = self.helper_key(CLIENT).draw_words(n, true);
                let mut x = pool::take(n);
                for_chunks(&mut x, [&x0, &x1], |_, x, &[x0, x1]| {
                    for k in 0..x.len() {
                        x[k] = add_zl1(x0[k], x1[k]);
                    }
                });
                x
            } else {
                let x = self.own.zl1s(n);
                self.deal_words::<ZL1>(Some(&x), n, false)?;
                x
            };
            self.deal_bits(Some(&x), n, compare::W)?;
            let mut v = pool::take(n);
            v.par_iter_mut().with_min_len(PAR_MIN).zip(x.par_iter()).for_each(|(l, &x)| *l = x & 1);
            self.deal_words::<ZL>(Some(&v), n, true)?;
            let beta_p = self.private_compare(None, &[], &[], n, compare::W)?;
            v.par_iter_mut().with_min_len(PAR_MIN).zip(beta_p.par_iter()).for_each(|(v, &b)| *v = b as u64);
            self.deal_words::<ZL>(Some(&v), n, true)?;
            // The helper's operands of the product only give its length.
            self.mul_vec(&v, &v)?;
            pool::give(v);
            pool::give(x);
            return Ok(pool::zeros(n));
        }
        let lead = self.id == MODEL_OWNER;
        // x: drawn (Porthos) or dealt (SecureNN).
        let (x_draw, x_dealt) =
            if self.porthos() { (Some(self.with_helper().draw_words(n, true)), None) } else { (None, Some(self.deal_words::<ZL1>(None, n, false)?)) };
        let xbits = self.deal_bits(None, n, compare::W)?;
        let mut lsb = self.deal_words::<ZL>(None, n, true)?;
        // r = 2a + x over Z_{L-1}, opened to P0 and P1.
        let mut r_j = pool::take(n);
        match (&x_draw, &x_dealt) {
            (Some(x), _) => for_chunks(&mut r_j, [x], |first, r, &[x]| {
                for k in 0..r.len() {
                    r[k] = add_zl1(add_zl1(a[first + k], a[first + k]), x[k]);
                }
            }),
            (None, Some(x)) => r_j.par_iter_mut().with_min_len(PAR_MIN).enumerate().for_each(|(i, r)| *r = add_zl1(add_zl1(a[i], a[i]), x[i])),
            (None, None) => unreachable!(),
        }
        let mut msg = pool::take(n);
        msg.copy_from_slice(&r_j);
        let other = 1 - self.id;
        self.send(other, msg)?;
        let mut r = self.recv(other, n)?;
        r.par_iter_mut().with_min_len(PAR_MIN).zip(r_j.par_iter()).for_each(|(r, &mine)| *r = add_zl1(mine, *r));
        let beta = self.common().bits(n);
        self.private_compare(xbits.as_ref(), &r, &beta, n, compare::W)?;
        drop(xbits);
        let mut gamma = self.deal_words::<ZL>(None, n, true)?;
        // gamma = beta xor beta' = [x > r];  delta = x[0] xor r[0]
        gamma.par_iter_mut().with_min_len(PAR_MIN).zip(lsb.par_iter_mut()).enumerate().for_each(|(i, (g, d))| {
            let b = if beta[i] == 1 { g.wrapping_neg() } else { *g };
            *g = if lead { b.wrapping_add(beta[i] as u64) } else { b };
            let r0 = r[i] & 1;
            let e = if r0 == 1 { d.wrapping_neg() } else { *d };
            *d = if lead { e.wrapping_add(r0) } else { e };
        });
        let delta = lsb;
        let mut alpha = self.mul_vec(&gamma, &delta)?;
        // MSB(a) = gamma xor delta = gamma + delta - 2 gamma delta
        alpha.par_iter_mut().with_min_len(PAR_MIN).enumerate().for_each(|(i, t)| {
            *t = gamma[i].wrapping_add(delta[i]).wrapping_sub(t.wrapping_mul(2));
        });
        self.rerandomise(&mut alpha);
        for v in [r_j, r, gamma, delta] {
            pool::give(v);
        }
        if let Some(x) = x_dealt {
            pool::give(x);
        }
        Ok(alpha)
    }

    /// DReLU: shares over Z_L of `[x >= 0]`, exact for `-2^62 <= x < 2^62` (for every `x`
    /// in the compact variant).
    pub fn drelu(&mut self, a: &[u64]) -> Result<Vec<u64>> {
        if a.is_empty() {
            return Ok(Vec::new());
        }
        if self.variant == ProtocolVariant::Compact {
            return self.drelu_compact(a);
        }
        let _p = prof::scope("drelu");
        let mut two_a = pool::take(a.len());
        two_a.par_iter_mut().with_min_len(PAR_MIN).zip(a.par_iter()).for_each(|(t, &v)| *t = v.wrapping_mul(2));
        let y = self.share_convert(&two_a)?;
        pool::give(two_a);
        let msb = self.compute_msb(&y)?;
        pool::give(y);
        let mut msb = self.msb_to_drelu(msb);
        if self.id == HELPER {
            msb.fill(0);
        }
        Ok(msb)
    }

    /// The compact DReLU: shares over Z_L of `[x >= 0]` for every `x` of Z_2^64 read as
    /// signed, from one PrivateCompare and no ShareConvert.
    ///
    /// 1. The helper's mask `r` has both shares drawn from the keys (`r_0` from k02, `r_1`
    ///    from k12): nothing sent. It deals Z_p shares of the bits of `r' = r mod 2^63` (the
    ///    64-bit decomposition of a value below 2^63, halved as in `deal_bits`).
    /// 2. P0 and P1 open `c = x + r` to each other (one word each): uniform to both.
    /// 3. With `c = c_63 2^63 + c'` and `r = r_63 2^63 + r'`, `x = c - r` has
    ///    `MSB(x) = c_63 XOR r_63 XOR [r' > c']` (the borrow out of the low 63 bits).
    ///    PrivateCompare on the dealt bits of `r'`, the public `c'` and a common bit `beta`
    ///    gives the helper `beta' = beta XOR [r' > c']`, uniform to it since `beta` is not
    ///    known to it.
    /// 4. The helper deals shares over Z_L of `gamma = beta' XOR r_63` (halved: one word per
    ///    element on the wire). P0 and P1 know `e = beta XOR c_63`, so
    ///    `MSB(x) = gamma XOR e` is `gamma` or `1 - gamma` locally, and `[x >= 0] = 1 - MSB(x)`;
    ///    the result is re-randomised with common shares of zero.
    ///
    /// Per element: `l log p` (the bits) `+ 2 l` (the opening) `+ 2 l log p`
    /// (PrivateCompare) `+ l` (gamma) `= 3 l log p + 3 l` bits, 192 bytes at `l = 64` with
    /// Z_p elements in 7 bits (108 with `l = 33`, see [`Porthos::set_comparison_bits`]); 2 flights for P0 and P1 (the opening, PrivateCompare), against
    /// ShareConvert + ComputeMSB's 496 bytes and 5 flights. The views: P0 and P1 see `c`
    /// (masked by `r`, which neither knows whole) and shares dealt by the helper; the helper
    /// sees only PrivateCompare's blinded vectors, which show it `beta'`. This is SecureNN's
    /// ComputeMSB on a ring of even order, with the wrap of the opening resolved by the
    /// borrow of the low bits rather than by a share conversion to Z_{L-1}.
    pub fn drelu_compact(&mut self, a: &[u64]) -> Result<Vec<u64>> {
        Ok(self.compare_compact(a, &[])?.0)
    }

    /// The compact DReLU of `a` with selections fused in: shares of `[a >= 0]` and of
    /// `[a >= 0] * v` for each of `values` (each of `a`'s length).
    ///
    /// Each selection costs 3 words per element on top of the comparison and no flight: in the
    /// opening's flight P0 and P1 send the helper `v_j + m_j` (`m_0`, `m_1` from k01, so the
    /// helper sees `v + m`, uniform); with `gamma` the helper deals shares of
    /// `gamma (v + m)` (halved: one word). P0 and P1 subtract `gamma m` (their shares of
    /// `gamma` times the public `m`) to get shares of `gamma v`, and `[a >= 0] v` is
    /// `gamma v` when `e = 1` and `v - gamma v` otherwise. So ReLU costs 192 + 24 = 216 bytes
    /// and 2 flights per element (Porthos: 536 and 6).
    pub fn compare_compact(&mut self, a: &[u64], values: &[&[u64]]) -> Result<(Vec<u64>, Vec<Vec<u64>>)> {
        let (mut bits, mut selected) = self.compare_compact_thresholds(a, &[(0, values.to_vec())])?;
        Ok((bits.remove(0), selected.remove(0)))
    }

    /// [`Porthos::compare_compact`] of `a - t` for several public thresholds `t` at once, each
    /// with its own selected values: shares of `[a - t >= 0]` per threshold and of
    /// `[a - t >= 0] v` per value. The thresholds share the helper's mask `r`, its dealt bits
    /// and the opening `c = a + r` (the opening of `a - t` is `c - t`), so each threshold
    /// after the first costs PrivateCompare and `gamma` only: `2 l log p + l` bits (120
    /// bytes, 64 on a 33-bit domain) instead of 192 (108), in the same 2 flights. The helper learns one
    /// `beta_t XOR [r' > (c - t)']` per threshold, each masked by an independent `beta_t`.
    pub fn compare_compact_thresholds(&mut self, a: &[u64], items: &[(u64, Vec<&[u64]>)]) -> Result<ThresholdShares> {
        let n = a.len();
        let t_count = items.len();
        let k: usize = items.iter().map(|(_, v)| v.len()).sum();
        if let Some(v) = items.iter().flat_map(|(_, v)| v.iter()).find(|v| v.len() != n) {
            return Err(shape_err(format!("select_by_sign: {n} compared values, {} selected", v.len())));
        }
        if n == 0 || t_count == 0 {
            return Ok((vec![Vec::new(); t_count], items.iter().map(|(_, v)| vec![Vec::new(); v.len()]).collect()));
        }
        let _p = prof::scope("compare_compact");
        // The comparison runs on x mod 2^m (m = msb + 1): exact for x in [-2^msb, 2^msb).
        let (lanes, msb) = self.comparison_width();
        let low_mask: u64 = (1 << msb) - 1;
        if self.id == HELPER {
            let mut r = self.helper_key(MODEL_OWNER).u64s(n);
            let r1 = self.helper_key(CLIENT).u64s(n);
            let mut low = pool::take(n);
            r.par_iter_mut().with_min_len(PAR_MIN).zip(r1.par_iter()).zip(low.par_iter_mut()).for_each(|((r, &r1), l)| {
                *r = r.wrapping_add(r1);
                *l = *r & low_mask;
            });
            pool::give(r1);
            self.deal_bits(Some(&low), n, lanes)?;
            pool::give(low);
            // The masked values (sent in the opening's flight, so before PrivateCompare's).
            let masked = if k > 0 {
                let mut s = self.recv(MODEL_OWNER, k * n)?;
                let s1 = self.recv(CLIENT, k * n)?;
                add_in_place(&mut s, &s1);
                pool::give(s1);
                Some(s)
            } else {
                None
            };
            let mut gamma = pool::take(t_count * n);
            for g in gamma.chunks_mut(n) {
                let beta_p = self.private_compare(None, &[], &[], n, lanes)?;
                g.par_iter_mut().with_min_len(PAR_MIN).zip(beta_p.par_iter().zip(r.par_iter())).for_each(|(g, (&b, &r))| *g = (b as u64) ^ ((r >> msb) & 1));
            }
            pool::give(r);
            self.deal_words::<ZL>(Some(&gamma), t_count * n, true)?;
            if let Some(mut s) = masked {
                // Value j of threshold i is multiplied by gamma_i.
                let owners: Vec<usize> = items.iter().enumerate().flat_map(|(i, (_, v))| std::iter::repeat_n(i, v.len())).collect();
                s.par_chunks_mut(n).zip(owners.par_iter()).for_each(|(s, &i)| {
                    s.iter_mut().zip(&gamma[i * n..(i + 1) * n]).for_each(|(s, &g)| *s = s.wrapping_mul(g));
                });
                self.deal_words::<ZL>(Some(&s), k * n, true)?;
                pool::give(s);
            }
            pool::give(gamma);
            return Ok(((0..t_count).map(|_| pool::zeros(n)).collect(), items.iter().map(|(_, v)| (0..v.len()).map(|_| pool::zeros(n)).collect()).collect()));
        }
        let lead = self.id == MODEL_OWNER;
        let other = 1 - self.id;
        let mut c = self.with_helper().u64s(n);
        c.par_iter_mut().with_min_len(PAR_MIN).zip(a.par_iter()).for_each(|(c, &x)| *c = c.wrapping_add(x));
        let mut msg = pool::take(n);
        msg.copy_from_slice(&c);
        self.send(other, msg)?;
        // m = m_0 + m_1: P_j masks its shares of the values with m_j.
        let flat: Vec<&[u64]> = items.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let masks = if k > 0 {
            let m0 = self.common().u64s(k * n);
            let m1 = self.common().u64s(k * n);
            let mut msg = pool::take(k * n);
            let mine = if lead { &m0 } else { &m1 };
            msg.par_chunks_mut(n).zip(flat.par_iter()).enumerate().for_each(|(j, (out, v))| {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = v[i].wrapping_add(mine[j * n + i]);
                }
            });
            self.send(HELPER, msg)?;
            let mut m = m0;
            add_in_place(&mut m, &m1);
            pool::give(m1);
            Some(m)
        } else {
            None
        };
        let rbits = self.deal_bits(None, n, lanes)?;
        let got = self.recv(other, n)?;
        c.par_iter_mut().with_min_len(PAR_MIN).zip(got.par_iter()).for_each(|(c, &g)| *c = c.wrapping_add(g));
        pool::give(got);
        // Per threshold: e = beta XOR MSB(c - t); [a - t >= 0] = gamma when e = 1, else 1 - gamma.
        let mut flips: Vec<Vec<bool>> = Vec::with_capacity(t_count);
        let mut low = pool::take(n);
        for &(t, _) in items {
            let beta = self.common().bits(n);
            low.par_iter_mut().with_min_len(PAR_MIN).zip(c.par_iter()).for_each(|(l, &c)| *l = c.wrapping_sub(t) & low_mask);
            self.private_compare(rbits.as_ref(), &low, &beta, n, lanes)?;
            flips.push(c.par_iter().with_min_len(PAR_MIN).zip(beta.par_iter()).map(|(&c, &b)| (b as u64) ^ ((c.wrapping_sub(t) >> msb) & 1) == 1).collect());
        }
        drop(rbits);
        pool::give(low);
        pool::give(c);
        let gamma = self.deal_words::<ZL>(None, t_count * n, true)?;
        let mut selected: Vec<Vec<Vec<u64>>> = Vec::with_capacity(t_count);
        if let Some(m) = masks {
            let tg = self.deal_words::<ZL>(None, k * n, true)?;
            let mut j = 0;
            for (i, (_, vals)) in items.iter().enumerate() {
                let (g, e) = (&gamma[i * n..(i + 1) * n], &flips[i]);
                let mut mine = Vec::with_capacity(vals.len());
                for v in vals {
                    let (tj, mj) = (&tg[j * n..(j + 1) * n], &m[j * n..(j + 1) * n]);
                    let mut out = pool::take(n);
                    out.par_iter_mut().with_min_len(PAR_MIN).enumerate().for_each(|(q, o)| {
                        let gamma_v = tj[q].wrapping_sub(g[q].wrapping_mul(mj[q]));
                        *o = if e[q] { gamma_v } else { v[q].wrapping_sub(gamma_v) };
                    });
                    self.rerandomise(&mut out);
                    mine.push(out);
                    j += 1;
                }
                selected.push(mine);
            }
            pool::give(tg);
            pool::give(m);
        } else {
            selected.resize_with(t_count, Vec::new);
        }
        let mut bits = Vec::with_capacity(t_count);
        for (i, e) in flips.iter().enumerate() {
            let mut out = pool::take(n);
            out.par_iter_mut().with_min_len(PAR_MIN).zip(gamma[i * n..(i + 1) * n].par_iter()).enumerate().for_each(|(q, (o, &g))| {
                *o = if e[q] {
                    g
                } else if lead {
                    1u64.wrapping_sub(g)
                } else {
                    g.wrapping_neg()
                };
            });
            self.rerandomise(&mut out);
            bits.push(out);
        }
        pool::give(gamma);
        Ok((bits, selected))
    }

    fn msb_to_drelu(&self, mut msb: Vec<u64>) -> Vec<u64> {
        let lead = self.id == MODEL_OWNER;
        msb.par_iter_mut().with_min_len(PAR_MIN).for_each(|v| {
            *v = if lead { 1u64.wrapping_sub(*v) } else { v.wrapping_neg() };
        });
        msb
    }

    /// ReLU of a shared vector: DReLU, then SelectShare (one product).
    pub fn relu_vec(&mut self, a: &[u64]) -> Result<Vec<u64>> {
        if self.variant == ProtocolVariant::Compact {
            let (bits, mut selected) = self.compare_compact(a, &[a])?;
            pool::give(bits);
            return Ok(selected.remove(0));
        }
        let b = self.drelu(a)?;
        let z = self.mul_vec(&b, a);
        pool::give(b);
        z
    }

    /// The maxima over `rows` (`n` rows of `outs` values) and their (first) indices, as a
    /// knock-out tree: each level compares neighbouring candidates (DReLU of their difference,
    /// then one SelectShare for value and index, vectorised over all pairs and outputs), so
    /// `ceil(log2 n)` levels instead of SecureNN's `n - 1` sequential comparisons, with the same
    /// `n - 1` comparisons per output and therefore the same communication. Ties keep the left
    /// (lower-index) candidate. Returns shares of the maxima and of their indices.
    fn tournament(&mut self, rows: &[u64], n: usize, outs: usize) -> Result<(Vec<u64>, Vec<u64>)> {
        let _p = prof::scope("tournament");
        let lead = self.id == MODEL_OWNER;
        // Candidates in index order: values and shares of their indices (public at first: the
        // model owner holds k, the client 0).
        let mut vals = pool::take(n * outs);
        vals.copy_from_slice(&rows[..n * outs]);
        let mut idx = pool::take(n * outs);
        idx.par_chunks_mut(outs).enumerate().for_each(|(k, row)| row.fill(if lead { k as u64 } else { 0 }));
        let mut m = n;
        while m > 1 {
            let pairs = m / 2;
            let p = pairs * outs;
            let mut diff = pool::take(p);
            diff.par_chunks_mut(outs).enumerate().for_each(|(k, d)| {
                let (l, r) = (2 * k * outs, (2 * k + 1) * outs);
                for o in 0..outs {
                    d[o] = vals[l + o].wrapping_sub(vals[r + o]);
                }
            });
            let mut val = pool::take(2 * p);
            val[..p].copy_from_slice(&diff);
            val[p..].par_chunks_mut(outs).enumerate().for_each(|(k, v)| {
                let (l, r) = (2 * k * outs, (2 * k + 1) * outs);
                for o in 0..outs {
                    v[o] = idx[l + o].wrapping_sub(idx[r + o]);
                }
            });
            // b = [left >= right]: the left (lower-index) candidate wins ties. prod = b * val.
            let (sel, prod) = if self.variant == ProtocolVariant::Compact {
                let (bits, selected) = self.compare_compact(&diff, &[&val[..p], &val[p..]])?;
                pool::give(bits);
                let mut prod = pool::take(2 * p);
                for (k, part) in selected.into_iter().enumerate() {
                    prod[k * p..(k + 1) * p].copy_from_slice(&part);
                    pool::give(part);
                }
                (Vec::new(), prod)
            } else {
                let b = self.drelu(&diff)?;
                let mut sel = pool::take(2 * p);
                sel[..p].copy_from_slice(&b);
                sel[p..].copy_from_slice(&b);
                pool::give(b);
                let prod = self.mul_vec(&sel, &val)?;
                (sel, prod)
            };
            pool::give(diff);
            // Winner = right + b (left - right), for values and indices; an odd candidate out
            // goes to the next level as it is, last.
            let next = pairs + m % 2;
            let mut next_vals = pool::take(next * outs);
            let mut next_idx = pool::take(next * outs);
            next_vals[..p].par_chunks_mut(outs).zip(next_idx[..p].par_chunks_mut(outs)).enumerate().for_each(|(k, (v, i))| {
                let r = (2 * k + 1) * outs;
                for o in 0..outs {
                    v[o] = vals[r + o].wrapping_add(prod[k * outs + o]);
                    i[o] = idx[r + o].wrapping_add(prod[p + k * outs + o]);
                }
            });
            if m % 2 == 1 {
                next_vals[p..].copy_from_slice(&vals[(m - 1) * outs..m * outs]);
                next_idx[p..].copy_from_slice(&idx[(m - 1) * outs..m * outs]);
            }
            for v in [sel, val, prod, std::mem::replace(&mut vals, next_vals), std::mem::replace(&mut idx, next_idx)] {
                pool::give(v);
            }
            m = next;
        }
        if self.id == HELPER {
            vals.fill(0);
            idx.fill(0);
        }
        Ok((vals, idx))
    }

    fn zeros_for_helper(&self, t: RingTensor) -> RingTensor {
        if self.id == HELPER {
            RingTensor::zeros(t.shape().to_vec())
        } else {
            t
        }
    }

    fn conv_common(&mut self, x: &RingTensor, filter: &RingTensor, geom: &ConvGeometry, transpose: bool) -> Result<RingTensor> {
        check_conv_geometry(geom, transpose)?;
        let (filter_shape, out_shape) = if transpose {
            (geom.conv_transpose_filter_shape(), geom.conv_transpose_output_shape())
        } else {
            (geom.conv_filter_shape(), geom.conv_output_shape())
        };
        let what = if transpose { "conv_transpose" } else { "conv" };
        if x.shape() != geom.input_shape().as_slice() {
            return Err(shape_err(format!("{what}: input {:?}, geometry expects {:?}", x.shape(), geom.input_shape())));
        }
        if filter.shape() != filter_shape.as_slice() {
            return Err(shape_err(format!("{what}: filter {:?}, geometry expects {:?}", filter.shape(), filter_shape)));
        }
        let nz = num_elements(&out_shape);
        if nz == 0 || x.is_empty() || filter.is_empty() {
            return Ok(RingTensor::zeros(out_shape));
        }
        let z = if self.porthos() {
            // Algorithm 1: masks of the size of X; the local products are (transposed)
            // convolutions of the masked values, by bilinearity.
            let in_shape = geom.input_shape();
            let op = |a: &[u64], b: &[u64]| -> std::result::Result<Vec<u64>, ShapeError> {
                let a = RingTensor::new(in_shape.clone(), a.to_vec())?;
                let b = RingTensor::new(filter_shape.clone(), b.to_vec())?;
                let z = if transpose { kernels::conv_transpose(&a, &b, geom)? } else { kernels::conv(&a, &b, geom)? };
                Ok(z.into_data())
            };
            self.beaver(x.data(), filter.data(), nz, op)?
        } else {
            // SecureNN: lower to per-group matrix products and mask the reshaped input X'.
            let l = Lowering::new(geom, transpose);
            let (xl, wl) = if self.id == HELPER {
                (vec![0; l.input_len()], vec![0; l.filter_len()])
            } else {
                (l.lower_input(x.data(), geom.layout), l.lower_filter(filter.data()))
            };
            let zl = self.beaver(&xl, &wl, l.output_len(), |a, b| lower::grouped_matmul(&l, a, b))?;
            if self.id == HELPER {
                vec![0; nz]
            } else {
                l.raise_output(&zl, geom.layout)
            }
        };
        Ok(RingTensor::new(out_shape, z)?)
    }
}

fn check_len(v: &[u64], n: usize) -> Result<()> {
    if v.len() != n {
        return Err(shape_err(format!("bilinear operation produced {} elements, expected {n}", v.len())));
    }
    Ok(())
}

fn add_in_place(a: &mut [u64], b: &[u64]) {
    a.par_iter_mut().with_min_len(PAR_MIN).zip(b.par_iter()).for_each(|(a, &b)| *a = a.wrapping_add(b));
}

fn sub_in_place(a: &mut [u64], b: &[u64]) {
    a.par_iter_mut().with_min_len(PAR_MIN).zip(b.par_iter()).for_each(|(a, &b)| *a = a.wrapping_sub(b));
}

fn check_conv_geometry(g: &ConvGeometry, transpose: bool) -> Result<()> {
    let r = g.spatial_rank();
    let bad = |m: &str| Err(shape_err(format!("convolution geometry: {m}")));
    if [g.kernel.len(), g.strides.len(), g.dilations.len(), g.pads_begin.len(), g.pads_end.len()].iter().any(|&l| l != r) {
        return bad("per-axis parameters do not match the spatial rank");
    }
    if transpose && g.output_padding.len() != r {
        return bad("output_padding does not match the spatial rank");
    }
    if g.groups == 0 || g.in_channels % g.groups != 0 || g.out_channels % g.groups != 0 {
        return bad("groups must divide the input and output channels");
    }
    for a in 0..r {
        if g.strides[a] == 0 || g.dilations[a] == 0 || g.kernel[a] == 0 {
            return bad("strides, dilations and kernel extents must be positive");
        }
        let span = g.dilations[a] * (g.kernel[a] - 1) + 1;
        if transpose {
            if g.input[a] == 0 {
                return bad("empty input");
            }
            let full = g.strides[a] * (g.input[a] - 1) + g.output_padding.get(a).copied().unwrap_or(0) + span;
            if full < g.pads_begin[a] + g.pads_end[a] + 1 {
                return bad("padding leaves no output");
            }
        } else if g.input[a] + g.pads_begin[a] + g.pads_end[a] < span {
            return bad("the kernel does not fit in the padded input");
        }
    }
    Ok(())
}

fn check_pool_geometry(g: &PoolGeometry) -> Result<()> {
    let r = g.spatial_rank();
    if [g.window.len(), g.strides.len(), g.pads_begin.len(), g.pads_end.len()].iter().any(|&l| l != r) {
        return Err(shape_err("pool geometry: per-axis parameters do not match the spatial rank".into()));
    }
    for a in 0..r {
        if g.strides[a] == 0 || g.window[a] == 0 || g.input[a] + g.pads_begin[a] + g.pads_end[a] < g.window[a] {
            return Err(shape_err("pool geometry: the window does not fit in the padded input".into()));
        }
    }
    Ok(())
}

impl Backend for Porthos {
    fn name(&self) -> &str {
        match self.variant {
            ProtocolVariant::Porthos => "porthos",
            ProtocolVariant::SecureNN => "securenn",
            ProtocolVariant::Compact => "porthos-compact",
        }
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
        let n = num_elements(shape);
        if self.id == HELPER {
            return Ok(RingTensor::zeros(shape.to_vec()));
        }
        if self.variant == ProtocolVariant::Compact && owner == Owner::ModelOwner {
            // The owner's weights stay whole in its share (the client's is zero): a product
            // with a weight then opens its mask from the owner alone (`matmul_weight`).
            if self.id != MODEL_OWNER {
                return Ok(RingTensor::zeros(shape.to_vec()));
            }
            let v = value.ok_or_else(|| BackendError::Aborted(format!("{owner:?} gave no value to share")))?;
            if v.shape() != shape {
                return Err(shape_err(format!("{owner:?} input has shape {:?}, expected {shape:?}", v.shape())));
            }
            return Ok(v.clone());
        }
        // Both share-holders draw r from k01: the owner keeps v - r, the other holds r. The
        // draw comes first so that a rejected input leaves both keystreams in step.
        let mut r = self.common().u64s(n);
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

    fn reveal(&mut self, x: &RingTensor, to: Owner) -> Result<Option<RingTensor>> {
        let to_id = match to {
            Owner::ModelOwner => MODEL_OWNER,
            Owner::Client => CLIENT,
        };
        match self.id {
            HELPER => Ok(None),
            j if j == to_id => {
                let other = self.recv(1 - j, x.len())?;
                let data = x.data().iter().zip(&other).map(|(&a, &b)| a.wrapping_add(b)).collect();
                Ok(Some(RingTensor::new(x.shape().to_vec(), data)?))
            }
            _ => {
                self.send(to_id, x.data().to_vec())?;
                Ok(None)
            }
        }
    }

    fn matmul(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        self.matmul_keyed(a, b, None)
    }

    /// `matmul` by a weight: with masks kept for the session, the weight is masked and opened
    /// in the session's first product only.
    fn matmul_weight(&mut self, a: &RingTensor, b: &RingTensor, weight: usize) -> Result<RingTensor> {
        self.matmul_keyed(a, b, Some(weight))
    }

    fn set_weight_mask_reuse(&mut self, reuse: bool) -> Result<()> {
        self.weight_masks = reuse.then(std::collections::HashMap::new);
        Ok(())
    }

    /// One Beaver product for the whole batch: `8 (2 |A| + 2 |B| + |Z|)` bytes, one round.
    fn batch_matmul(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        if a.rank() != 3 || b.rank() != 3 || a.shape()[0] != b.shape()[0] || a.shape()[2] != b.shape()[1] {
            return Err(shape_err(format!("batch_matmul: cannot multiply {:?} by {:?}", a.shape(), b.shape())));
        }
        let (batch, m, k, n) = (a.shape()[0], a.shape()[1], a.shape()[2], b.shape()[2]);
        if batch * m * n == 0 || k == 0 {
            return Ok(RingTensor::zeros(vec![batch, m, n]));
        }
        let z = self.beaver(a.data(), b.data(), batch * m * n, |x, y| {
            let x = RingTensor::new(vec![batch, m, k], x.to_vec())?;
            let y = RingTensor::new(vec![batch, k, n], y.to_vec())?;
            Ok(kernels::batch_matmul(&x, &y)?.into_data())
        })?;
        Ok(self.zeros_for_helper(RingTensor::new(vec![batch, m, n], z)?))
    }

    /// DReLU (ShareConvert then ComputeMSB): arithmetic shares of 0/1 over Z_L; the helper
    /// holds zeros. ReLU's cost without its SelectShare: `(6 l log p + 14 l) / 8 = 496` bytes
    /// per element (Porthos), 5 rounds.
    fn drelu(&mut self, x: &RingTensor) -> Result<SharedBits> {
        let b = self.drelu(x.data())?;
        Ok(SharedBits(RingTensor::new(x.shape().to_vec(), b)?))
    }

    /// The compact variant fuses the selections into its comparison
    /// ([`Porthos::compare_compact`]); the others take one DReLU and one SelectShare.
    fn select_by_sign(&mut self, x: &RingTensor, values: &[&RingTensor]) -> Result<Vec<RingTensor>> {
        if self.variant != ProtocolVariant::Compact {
            return cryptflow_backend::select_by_sign(self, x, values);
        }
        if let Some(v) = values.iter().find(|v| v.shape() != x.shape()) {
            return Err(shape_err(format!("select_by_sign: compared {:?}, selected {:?}", x.shape(), v.shape())));
        }
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let data: Vec<&[u64]> = values.iter().map(|v| v.data()).collect();
        let (bits, selected) = self.compare_compact(x.data(), &data)?;
        pool::give(bits);
        selected.into_iter().map(|z| Ok(RingTensor::new(x.shape().to_vec(), z)?)).collect()
    }

    /// The compact variant shares one masked opening of `x` between the thresholds
    /// ([`Porthos::compare_compact_thresholds`]).
    fn select_above(&mut self, x: &RingTensor, items: &[(u64, &RingTensor)]) -> Result<Vec<RingTensor>> {
        if self.variant != ProtocolVariant::Compact {
            return cryptflow_backend::select_above(self, x, items);
        }
        if let Some((_, v)) = items.iter().find(|(_, v)| v.shape() != x.shape()) {
            return Err(shape_err(format!("select_above: compared {:?}, selected {:?}", x.shape(), v.shape())));
        }
        let items: Vec<(u64, Vec<&[u64]>)> = items.iter().map(|&(t, v)| (t, vec![v.data()])).collect();
        let (bits, selected) = self.compare_compact_thresholds(x.data(), &items)?;
        for b in bits {
            pool::give(b);
        }
        selected.into_iter().map(|mut z| Ok(RingTensor::new(x.shape().to_vec(), z.remove(0))?)).collect()
    }

    /// The compact variant masks each operand once ([`Porthos::mul_pairs_vec`]); the others
    /// take one Beaver product per pair (Table III's 40 bytes per element).
    fn mul_pairs(&mut self, operands: &[&RingTensor], pairs: &[(usize, usize)]) -> Result<Vec<RingTensor>> {
        if self.variant != ProtocolVariant::Compact {
            return cryptflow_backend::mul_pairs(self, operands, pairs);
        }
        cryptflow_backend::check_pairs(operands, pairs)?;
        let data: Vec<&[u64]> = operands.iter().map(|o| o.data()).collect();
        let z = self.mul_pairs_vec(&data, pairs)?;
        let shape = operands.first().map_or(vec![0], |o| o.shape().to_vec());
        z.into_iter().map(|z| Ok(self.zeros_for_helper(RingTensor::new(shape.clone(), z)?))).collect()
    }

    /// SelectShare: one elementwise product, 40 bytes per element, one round.
    fn mux(&mut self, b: &SharedBits, x: &RingTensor) -> Result<RingTensor> {
        if b.shape() != x.shape() {
            return Err(shape_err(format!("mux: bits {:?}, values {:?}", b.shape(), x.shape())));
        }
        let z = self.mul_vec(b.0.data(), x.data())?;
        Ok(self.zeros_for_helper(RingTensor::new(x.shape().to_vec(), z)?))
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
        let z = self.mul_vec(a.data(), b.data())?;
        Ok(RingTensor::new(a.shape().to_vec(), z)?)
    }

    fn relu(&mut self, x: &RingTensor) -> Result<RingTensor> {
        let z = self.relu_vec(x.data())?;
        Ok(self.zeros_for_helper(RingTensor::new(x.shape().to_vec(), z)?))
    }

    fn max_pool(&mut self, x: &RingTensor, geom: &PoolGeometry) -> Result<RingTensor> {
        check_pool_geometry(geom)?;
        if x.shape() != geom.input_shape().as_slice() {
            return Err(shape_err(format!("max_pool: input {:?}, geometry expects {:?}", x.shape(), geom.input_shape())));
        }
        let out_shape = geom.output_shape();
        let outs = num_elements(&out_shape);
        if outs == 0 {
            return Ok(RingTensor::zeros(out_shape));
        }
        let windows = kernels::pool_windows(x, geom)?;
        let n = windows.shape()[0];
        let (max, _) = self.tournament(windows.data(), n, outs)?;
        Ok(RingTensor::new(out_shape, max)?)
    }

    fn argmax(&mut self, x: &RingTensor, axis: usize, keep_dims: bool) -> Result<RingTensor> {
        let (rows, out_shape) = movement::axis_rows(x, axis, keep_dims).map_err(|e| shape_err(format!("argmax: {e}")))?;
        let n = x.shape()[axis];
        let outs = x.len() / n;
        if outs == 0 {
            return Ok(RingTensor::zeros(out_shape));
        }
        let (_, idx) = self.tournament(rows.data(), n, outs)?;
        Ok(RingTensor::new(out_shape, idx)?)
    }

    /// Local truncation (SecureML): P0 shifts its share arithmetically, P1 computes
    /// `-((-x1) >> k)`. No communication. For a value `x` the result is `floor(x / 2^k)` or one
    /// more, except with probability `|x| / 2^64` over the sharing (when a share lies within
    /// `|x|` of the wrap-around point), where it is off by about `2^(64-k)`; the client's share
    /// alone decides the rounding (tests/truncation.rs measures both).
    ///
    /// With [`Truncation::Faithful`]: [`Porthos::faithful_divide`] by `2^shift` (32 bytes per
    /// element, 1 round), `floor(x / 2^shift)` or one more for every `x` in `[-2^62, 2^62)`;
    /// with [`Truncation::Exact`] [`Porthos::exact_divide`], the floor.
    /// A shift of 0 is free and exact; 63 runs as 62 (both floors are `-[x < 0]` on the range).
    fn scale_down(&mut self, x: &RingTensor, shift: u32) -> Result<RingTensor> {
        if shift >= 64 {
            return Err(BackendError::Aborted(format!("scale_down by {shift} bits")));
        }
        if self.truncation != Truncation::Local {
            let exact = self.truncation == Truncation::Exact;
            return Ok(match shift {
                0 => self.zeros_for_helper(x.clone()),
                // floor(x / 2^63) = floor(x / 2^62) = -[x < 0] on the range.
                k => RingTensor::new(x.shape().to_vec(), self.masked_divide(x.data(), Div::Pow2(k.min(62)), exact)?)?,
            });
        }
        Ok(match self.id {
            MODEL_OWNER => x.map(|v| ((v as i64) >> shift) as u64),
            CLIENT => x.map(|v| (((v.wrapping_neg() as i64) >> shift) as u64).wrapping_neg()),
            _ => RingTensor::zeros(x.shape().to_vec()),
        })
    }

    /// Local division by public positive integers, generalising the truncation: P0 computes
    /// `floor(x0 / d)`, P1 `-floor(-x1 / d)` (shares read as signed). With `x0 = q0 d + r0`,
    /// `-x1 = q1 d + r1` the result `q0 - q1` is `floor(x / d)` or `floor(x / d) + 1`, except
    /// with probability `|x| / 2^64` (a share within `|x|` of the wrap-around point).
    ///
    /// With [`Truncation::Faithful`]: [`Porthos::faithful_divide`] (32 bytes per element,
    /// 1 round), `floor(x / d)` or one more for every `|x| <= 2^62 - d`; with
    /// [`Truncation::Exact`] [`Porthos::exact_divide`], the floor.
    fn divide(&mut self, x: &RingTensor, divisors: &RingTensor) -> Result<RingTensor> {
        if x.shape() != divisors.shape() {
            return Err(shape_err(format!("divide: value {:?}, divisors {:?}", x.shape(), divisors.shape())));
        }
        if divisors.data().iter().any(|&d| d == 0 || (d as i64) < 0) {
            return Err(BackendError::Aborted("division by a non-positive public divisor".into()));
        }
        if self.truncation != Truncation::Local {
            let exact = self.truncation == Truncation::Exact;
            return Ok(RingTensor::new(x.shape().to_vec(), self.masked_divide(x.data(), Div::Each(divisors.data()), exact)?)?);
        }
        Ok(match self.id {
            MODEL_OWNER => x.zip_with(divisors, |v, d| (v as i64).div_euclid(d as i64) as u64)?,
            CLIENT => x.zip_with(divisors, |v, d| ((v.wrapping_neg() as i64).div_euclid(d as i64) as u64).wrapping_neg())?,
            _ => RingTensor::zeros(x.shape().to_vec()),
        })
    }

    fn exact_truncation(&self) -> bool {
        self.truncation != Truncation::Local
    }

    fn set_truncation(&mut self, mode: Truncation) -> Result<()> {
        Porthos::set_truncation(self, mode);
        Ok(())
    }

    fn set_comparison_bits(&mut self, bits: u32) -> Result<()> {
        Porthos::set_comparison_bits(self, bits)
    }

    fn comparison_bits(&self) -> u32 {
        Porthos::comparison_bits(self)
    }

    fn traffic(&self) -> Traffic {
        let t = self.session.traffic();
        Traffic { bytes_sent: t.bytes_sent, bytes_received: t.bytes_received, rounds: t.rounds }
    }
}
