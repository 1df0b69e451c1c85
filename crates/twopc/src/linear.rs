//! Products of secrets from correlated OT (Gilboa's multiplication, the OT-based matrix product
//! of SecureML and CrypTFlow2).
//!
//! For a product `A B` of additively shared operands, `A_0 B_0` and `A_1 B_1` are local and the
//! cross terms `A_0 B_1`, `A_1 B_0` each come from one "OT product": the *chooser* holds a
//! matrix `X [outs, inner]` of scalars, the *sender* vectors `V_k` of width `w`, and they get
//! additive shares of `Z_o = sum_k X[o, k] V_k`. Every scalar `x` is taken bit by bit,
//! `x = sum_t x_t 2^t`: OT `(o, k, t)` has the bit `x_t` as choice and the correlation `V_k`
//! modulo `2^(64 - t)` (the higher bits vanish once multiplied by `2^t`). From the IKNP row `q`
//! the sender derives pads `p0 = H(q)`, `p1 = H(q ^ Delta)` of `w` values of `64 - t` bits (the
//! first `(64 - t) w` bits of the TCCR expansion), sends
//! `y = p1 - p0 - V_k mod 2^(64 - t)` and keeps `-2^t p0`; the receiver, with row
//! `t = q ^ x_t Delta`, keeps `2^t p0` or `2^t (p1 - y) = 2^t (p0 + V_k)`. Both cross terms run
//! at once, each party being chooser in one and sender in the other: one extension flight and
//! one flight of corrections.
//!
//! Communication per party for `items = outs * inner` scalars: `128 * items` words of OT
//! extension (64 OTs per scalar) and `items * ceil(65 w / 2)` words of corrections (the 64
//! corrections of one scalar hold `sum_t (64 - t) w = 2080 w` bits, packed and padded to whole
//! words per scalar).
//!
//! # Scalars known to be bits
//! When the chooser's scalars are all 0 or 1 (its one-hot rows, held in the clear: see
//! `TwoPc::matmul_one_hot`) only bit 0 can be set, so a term may declare `bits = 1`: one OT
//! per scalar, whose correlation is the whole vector modulo `2^64` (`64 w` bits = `w` words of
//! correction). In general a term takes the low `bits` bits of each scalar: `bits` OTs per
//! scalar and `sum_{t < bits} (64 - t) w` bits of corrections ([`correction_words`]).

use rayon::prelude::*;

use crate::bits::{low_mask, BitReader, BitWriter};
use crate::ot::{self, ReceiverRows, SenderRows};
use crate::{Result, TwoPc};

/// Words of corrections per chosen scalar of `bits` bits (its low `bits` bits, `1..=64`) for
/// vectors of width `w`: `ceil(sum_{t < bits} (64 - t) w / 64)`, i.e. `ceil(2080 w / 64)` for
/// whole words and `w` for single bits.
pub fn correction_words(w: usize, bits: u32) -> usize {
    let per_vector: usize = (0..bits as usize).map(|t| 64 - t).sum();
    (per_vector * w).div_ceil(64)
}

/// Layout of the pads of one scalar's `bits` OTs: OT `t` needs `(64 - t) w` bits of
/// `H(q_t ^ xor)`, i.e. `ceil((64 - t) w / 128)` blocks; `offsets[t]` is its first block
/// (`offsets[t] = offsets[bits]` for `t >= bits`).
pub(crate) fn pad_offsets(w: usize, bits: u32) -> [usize; 65] {
    let mut off = [0usize; 65];
    for t in 0..64 {
        let blocks = if t < bits as usize { ((64 - t) * w).div_ceil(128) } else { 0 };
        off[t + 1] = off[t] + blocks;
    }
    off
}

/// Pads of the OTs of one scalar (one per row of `rows`), as one bit stream per OT (`out`
/// holds two words per block at the blocks of `offsets`). All blocks go through AES in one
/// pipelined call.
fn item_pads(rows: &[u128], xor: u128, dir: u8, first: u64, offsets: &[usize; 65], out: &mut [u64], buf: &mut Vec<aes::Block>) {
    let mut y: Vec<u128> = rows.iter().map(|&r| r ^ xor).collect();
    ot::permute(&mut y);
    buf.clear();
    for (t, &yt) in y.iter().enumerate() {
        let t0 = ot::tweak(dir, first + t as u64, 0);
        buf.extend((0..offsets[t + 1] - offsets[t]).map(|b| aes::Block::from((yt ^ (t0 + b as u128)).to_le_bytes())));
    }
    ot::pi_blocks(buf);
    for (t, &yt) in y.iter().enumerate() {
        for (i, blk) in buf[offsets[t]..offsets[t + 1]].iter().enumerate() {
            let h = u128::from_le_bytes((*blk).into()) ^ yt;
            out[2 * (offsets[t] + i)] = h as u64;
            out[2 * (offsets[t] + i) + 1] = (h >> 64) as u64;
        }
    }
}

/// How the scalars of one OT product are split into tasks: `(o, k_begin, k_end)`.
fn tasks(outs: usize, inner: usize) -> Vec<(usize, usize, usize)> {
    let per_row = (32usize.div_ceil(outs.max(1))).clamp(1, inner.max(1));
    let step = inner.div_ceil(per_row).max(1);
    let mut v = Vec::new();
    for o in 0..outs {
        let mut k = 0;
        while k < inner {
            v.push((o, k, (k + step).min(inner)));
            k += step;
        }
    }
    v
}

/// One OT product of a bilinear operation: party `chooser` holds the scalars
/// `X [outs, inner]`, the other the vectors `V(o, k)` of width `w`.
pub(crate) struct Term<'a, 'b> {
    pub chooser: usize,
    pub outs: usize,
    pub inner: usize,
    pub w: usize,
    /// Bits of each scalar taken (`1..=64`): 64 for ring elements, 1 for scalars the chooser
    /// knows to be 0 or 1 (higher bits of the scalars are ignored).
    pub bits: u32,
    /// The scalars, if this party is the chooser.
    pub x: Option<&'a [u64]>,
    /// The vectors, if this party is the sender.
    pub corr: Option<&'a (dyn Fn(usize, usize) -> &'b [u64] + Sync)>,
}

impl Term<'_, '_> {
    fn items(&self) -> usize {
        self.outs * self.inner
    }

    /// Extended OTs of the term.
    fn ots(&self) -> usize {
        self.items() * self.bits as usize
    }

    /// Words of corrections per scalar.
    fn wpi(&self) -> usize {
        correction_words(self.w, self.bits)
    }
}

/// Most words of corrections one batch of an OT product sends (512 MiB): larger products run
/// in batches of output rows, so that no message outgrows the transport's frame limit and the
/// memory stays bounded. Every product of the fixture models fits in one batch.
pub const BATCH_WORDS: usize = 1 << 26;

/// Output rows per batch for a term (at least one).
fn rows_per_batch(t: &Term, limit: usize) -> usize {
    // Whichever is larger per scalar: its corrections or its OT extension (2 words per OT).
    let per_row = t.inner * t.wpi().max(2 * t.bits as usize);
    (limit / per_row.max(1)).max(1)
}

impl TwoPc {
    /// This party's shares of the products of all `terms` (each `outs * w`). Batch `r` takes
    /// batch `r` of every term: one flight of OT extension (both directions) and one flight of
    /// corrections per batch.
    pub(crate) fn ot_products<'b>(&mut self, terms: &[Term<'_, 'b>]) -> Result<Vec<Vec<u64>>> {
        let limit = self.batch_words;
        let per: Vec<usize> = terms.iter().map(|t| rows_per_batch(t, limit)).collect();
        let batches = terms.iter().zip(&per).map(|(t, &p)| t.outs.div_ceil(p)).max().unwrap_or(0);
        if batches <= 1 {
            return self.ot_products_batch(terms);
        }
        let mut out: Vec<Vec<u64>> = terms.iter().map(|t| Vec::with_capacity(t.outs * t.w)).collect();
        for r in 0..batches {
            let ranges: Vec<(usize, usize)> = terms.iter().zip(&per).map(|(t, &p)| ((r * p).min(t.outs), ((r + 1) * p).min(t.outs))).collect();
            let shifted: Vec<_> = terms
                .iter()
                .zip(&ranges)
                .map(|(t, &(o0, _))| t.corr.map(|c| move |o: usize, k: usize| c(o + o0, k)))
                .collect();
            let sub: Vec<Term> = terms
                .iter()
                .zip(&ranges)
                .zip(&shifted)
                .map(|((t, &(o0, o1)), sh)| Term {
                    chooser: t.chooser,
                    outs: o1 - o0,
                    inner: t.inner,
                    w: t.w,
                    bits: t.bits,
                    x: t.x.map(|x| &x[o0 * t.inner..o1 * t.inner]),
                    corr: sh.as_ref().map(|f| f as &(dyn Fn(usize, usize) -> &'b [u64] + Sync)),
                })
                .collect();
            for (o, part) in out.iter_mut().zip(self.ot_products_batch(&sub)?) {
                o.extend_from_slice(&part);
            }
        }
        Ok(out)
    }

    fn ot_products_batch(&mut self, terms: &[Term]) -> Result<Vec<Vec<u64>>> {
        let me = self.id;
        // The choice bits of OT (item, t) are bit t of the scalar, item after item: for whole
        // words the words are the scalars themselves.
        let mut choices = Vec::new();
        let mut writer_bits = 0usize;
        let (mut my_ots, mut peer_ots) = (0, 0);
        for t in terms {
            if t.chooser == me {
                let x = t.x.expect("the chooser passes its scalars");
                debug_assert_eq!(x.len(), t.items());
                if t.bits == 64 && writer_bits % 64 == 0 {
                    choices.extend_from_slice(x);
                } else {
                    choices.resize((writer_bits + t.ots()).div_ceil(64), 0);
                    let mut bw = BitWriter::at(&mut choices, writer_bits);
                    let mask = low_mask(t.bits);
                    for &v in x {
                        bw.put(v & mask, t.bits);
                    }
                }
                writer_bits += t.ots();
                my_ots += t.ots();
            } else {
                peer_ots += t.ots();
            }
        }
        let (rr, sr) = self.extend_both(&choices, my_ots, peer_ots)?;
        let mut out: Vec<Vec<u64>> = terms.iter().map(|t| vec![0u64; t.outs * t.w]).collect();
        let sent: usize = terms.iter().filter(|t| t.chooser != me).map(|t| t.items() * t.wpi()).sum();
        let mut y = vec![0u64; sent];
        let (mut off, mut yoff) = (0, 0);
        for (t, z) in terms.iter().zip(out.iter_mut()) {
            if t.chooser != me {
                let corr = t.corr.expect("the sender passes its vectors");
                let len = t.items() * t.wpi();
                *z = sender_side(&sr, off, t, corr, &mut y[yoff..yoff + len]);
                off += t.ots();
                yoff += len;
            }
        }
        let peer = self.peer();
        if !y.is_empty() {
            self.send(peer, y)?;
        }
        let expect: usize = terms.iter().filter(|t| t.chooser == me).map(|t| t.items() * t.wpi()).sum();
        let y_peer = if expect > 0 { self.recv(peer, expect)? } else { Vec::new() };
        let (mut off, mut yoff) = (0, 0);
        for (t, z) in terms.iter().zip(out.iter_mut()) {
            if t.chooser == me {
                let len = t.items() * t.wpi();
                let zr = receiver_side(&rr, off, t, &y_peer[yoff..yoff + len]);
                z.par_iter_mut().zip(zr.par_iter()).for_each(|(a, &b)| *a = a.wrapping_add(b));
                off += t.ots();
                yoff += len;
            }
        }
        Ok(out)
    }
}

/// The sender's side of one OT product `t` whose OTs start at row `off` of `sr`: writes the
/// corrections into `y` (zeroed, `items * wpi` words) and returns its share.
fn sender_side<'a>(sr: &SenderRows, off: usize, t: &Term, corr: &(dyn Fn(usize, usize) -> &'a [u64] + Sync), y: &mut [u64]) -> Vec<u64> {
    let (outs, inner, w, bits, wpi) = (t.outs, t.inner, t.w, t.bits as usize, t.wpi());
    let tasks = tasks(outs, inner);
    // Tasks cover consecutive scalars: cut y into their parts.
    let mut parts_y = Vec::with_capacity(tasks.len());
    let mut rest = y;
    for &(_, k0, k1) in &tasks {
        let (head, tail) = rest.split_at_mut((k1 - k0) * wpi);
        parts_y.push(head);
        rest = tail;
    }
    let parts: Vec<Vec<u64>> = tasks
        .par_iter()
        .zip(parts_y.into_par_iter())
        .map(|(&(o, k0, k1), y)| {
            let mut acc = vec![0u64; w];
            let offsets = pad_offsets(w, t.bits);
            let mut p0 = vec![0u64; 2 * offsets[64]];
            let mut p1 = vec![0u64; 2 * offsets[64]];
            let mut buf = Vec::new();
            for k in k0..k1 {
                let item = o * inner + k;
                let rows = &sr.rows[off + item * bits..off + (item + 1) * bits];
                let first = sr.first + (off + item * bits) as u64;
                item_pads(rows, 0, sr.dir, first, &offsets, &mut p0, &mut buf);
                item_pads(rows, sr.delta, sr.dir, first, &offsets, &mut p1, &mut buf);
                let v = corr(o, k);
                let mut bw = BitWriter::new(&mut y[(k - k0) * wpi..(k - k0 + 1) * wpi]);
                for t in 0..bits as u32 {
                    let n = 64 - t;
                    let mask = low_mask(n);
                    let span = 2 * offsets[t as usize]..2 * offsets[t as usize + 1];
                    let (mut r0, mut r1) = (BitReader::new(&p0[span.clone()]), BitReader::new(&p1[span]));
                    for e in 0..w {
                        let (a, b) = (r0.get(n), r1.get(n));
                        bw.put(b.wrapping_sub(a).wrapping_sub(v[e]) & mask, n);
                        acc[e] = acc[e].wrapping_sub(a << t);
                    }
                }
            }
            acc
        })
        .collect();
    sum_rows(&tasks, parts, outs, w)
}

/// The chooser's side of one OT product `t` whose OTs start at row `off` of `rr`, from the
/// corrections `y` (`items * wpi` words).
fn receiver_side(rr: &ReceiverRows, off: usize, t: &Term, y: &[u64]) -> Vec<u64> {
    let (outs, inner, w, bits, wpi) = (t.outs, t.inner, t.w, t.bits as usize, t.wpi());
    let x = t.x.expect("the chooser passes its scalars");
    let tasks = tasks(outs, inner);
    let parts: Vec<Vec<u64>> = tasks
        .par_iter()
        .map(|&(o, k0, k1)| {
            let mut acc = vec![0u64; w];
            let offsets = pad_offsets(w, t.bits);
            let mut p = vec![0u64; 2 * offsets[64]];
            let mut buf = Vec::new();
            for k in k0..k1 {
                let item = o * inner + k;
                let rows = &rr.rows[off + item * bits..off + (item + 1) * bits];
                item_pads(rows, 0, rr.dir, rr.first + (off + item * bits) as u64, &offsets, &mut p, &mut buf);
                let mut br = BitReader::new(&y[item * wpi..(item + 1) * wpi]);
                let xv = x[item];
                for t in 0..bits as u32 {
                    let n = 64 - t;
                    let mut pr = BitReader::new(&p[2 * offsets[t as usize]..2 * offsets[t as usize + 1]]);
                    if (xv >> t) & 1 == 1 {
                        for e in 0..w {
                            let c = br.get(n);
                            acc[e] = acc[e].wrapping_add(pr.get(n).wrapping_sub(c) << t);
                        }
                    } else {
                        br.skip(n as usize * w);
                        for e in 0..w {
                            acc[e] = acc[e].wrapping_add(pr.get(n) << t);
                        }
                    }
                }
            }
            acc
        })
        .collect();
    sum_rows(&tasks, parts, outs, w)
}

/// The output rows `[outs, w]` from the tasks' partial sums.
fn sum_rows(tasks: &[(usize, usize, usize)], parts: Vec<Vec<u64>>, outs: usize, w: usize) -> Vec<u64> {
    let mut z = vec![0u64; outs * w];
    for (&(o, _, _), acc) in tasks.iter().zip(parts) {
        for (z, a) in z[o * w..(o + 1) * w].iter_mut().zip(acc) {
            *z = z.wrapping_add(a);
        }
    }
    z
}
