//! Lookups: the client's one-hot rows (`share_one_hot`, held by the client alone) times a table
//! (`matmul_one_hot`, one correlated OT per entry of the rows), bit-exact against the cleartext
//! backend, with bytes and rounds asserted against the formula of the crate docs ("One-hot
//! product"): the client sends `ext(M K)` words, the model owner `M K N`.

mod common;

use common::*;
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_backend::{Backend, Owner, RingTensor};
use rand::Rng;

/// One-hot rows of `ids` over a table of `depth` rows: `[ids.len(), depth]`.
fn one_hot(ids: &[usize], depth: usize) -> RingTensor {
    let mut rows = vec![0u64; ids.len() * depth];
    for (i, &id) in ids.iter().enumerate() {
        rows[i * depth + id] = 1;
    }
    RingTensor::new(vec![ids.len(), depth], rows).unwrap()
}

/// Words each party sends for a one-hot product `[m, k] x [k, n]` run in batches of `rows`
/// output rows: `ext(r k)` per batch of `r` rows from the client, `m k n` from the owner.
fn one_hot_words(m: usize, k: usize, n: usize, rows: &[usize]) -> [u64; 2] {
    assert_eq!(rows.iter().sum::<usize>(), m);
    let client: u64 = rows.iter().map(|&r| ext((r * k) as u64)).sum();
    [(m * k * n) as u64, client]
}

/// What each party got from a one-hot product of the client's `x` with `table`, shared by
/// `table_owner` (a weight: the model owner; `Client`: a share as from a protocol output):
/// (revealed result, bytes sent and rounds during the product alone).
fn lookup(x: &RingTensor, table: &RingTensor, table_owner: Owner, batch_words: Option<usize>) -> Vec<(Option<RingTensor>, u64, u64)> {
    run(|p| {
        let me = p.party_id();
        if let Some(words) = batch_words {
            p.set_batch_words(words);
        }
        let before = p.traffic();
        let xs = p.share_one_hot(x.shape(), (me == 1).then_some(x)).unwrap();
        let mine = (table_owner == Owner::ModelOwner) == (me == 0);
        let ts = p.share(table_owner, table.shape(), mine.then_some(table)).unwrap();
        assert_eq!(p.traffic(), before, "sharing the rows and the table sends nothing");
        // The rows stay with the client: its share is the rows, the owner's zero.
        if me == 1 {
            assert_eq!(&xs, x);
        } else {
            assert!(xs.data().iter().all(|&v| v == 0));
        }
        let z = p.matmul_one_hot(&xs, &ts, (table_owner == Owner::ModelOwner).then_some(0)).unwrap();
        let after = p.traffic();
        (p.reveal(&z, Owner::Client).unwrap(), after.bytes_sent - before.bytes_sent, after.rounds - before.rounds)
    })
}

#[test]
fn lookups_match_cleartext_and_the_formula() {
    // (ids, table rows k, width n): k below, at and past a multiple of 64 (the extension is
    // padded to whole words), repeated ids, a single id, a single column.
    let cases: [(&[usize], usize, usize); 6] =
        [(&[0, 3, 3, 1], 5, 7), (&[63], 64, 3), (&[64, 0, 2, 64], 65, 2), (&[9; 20], 10, 1), (&[2, 7, 1], 129, 16), (&[], 4, 4)];
    for (seed, &(ids, k, n)) in cases.iter().enumerate() {
        let mut r = rng(100 + seed as u64);
        let x = one_hot(ids, k);
        let table = random_tensor(&mut r, &[k, n]);
        let expected = Cleartext.matmul(&x, &table).unwrap();
        let m = ids.len();
        for owner in [Owner::ModelOwner, Owner::Client] {
            let out = lookup(&x, &table, owner, None);
            assert_eq!(out[1].0.as_ref().unwrap(), &expected, "ids {ids:?} into {k}x{n} ({owner:?}'s table)");
            assert!(out[0].0.is_none());
            let batches: &[usize] = if m == 0 { &[] } else { &[m] };
            let words = one_hot_words(m, k, n, batches);
            assert_eq!([out[0].1, out[1].1], bytes(words), "ids {ids:?} into {k}x{n} ({owner:?}'s table): bytes");
            // The client waits once (for the corrections); the owner waits for the extension,
            // which the session counts as no new round here: the owner's last action before
            // was a receive (the session set-up's).
            let rounds = if m == 0 { 0 } else { 1 };
            assert_eq!([out[0].2, out[1].2], [0, rounds], "ids {ids:?} into {k}x{n}: rounds");
        }
    }
}

#[test]
fn any_zero_one_rows_work_not_only_one_hot() {
    // Data movement of one-hot rows (a slice of columns, a concatenation) gives rows with no
    // or several ones: still bits, still exact.
    let mut r = rng(7);
    let (m, k, n) = (6, 70, 5);
    let x = RingTensor::new(vec![m, k], (0..m * k).map(|_| r.random_range(0..2u64)).collect()).unwrap();
    let table = signed_tensor(&mut r, &[k, n], 1 << 40);
    let out = lookup(&x, &table, Owner::ModelOwner, None);
    assert_eq!(out[1].0.as_ref().unwrap(), &Cleartext.matmul(&x, &table).unwrap());
    assert_eq!([out[0].1, out[1].1], bytes(one_hot_words(m, k, n, &[m])));
}

#[test]
fn large_lookups_run_in_batches() {
    let mut r = rng(8);
    let (k, n) = (5, 9);
    let ids = [4, 0, 1, 1, 3, 2, 4];
    let x = one_hot(&ids, k);
    let table = random_tensor(&mut r, &[k, n]);
    let expected = Cleartext.matmul(&x, &table).unwrap();
    // A batch holds limit / (k * max(n, 2)) output rows: 2 rows per batch, batches of
    // 2, 2, 2, 1 rows, each a flight of extension and one of corrections.
    let out = lookup(&x, &table, Owner::ModelOwner, Some(2 * k * n));
    assert_eq!(out[1].0.as_ref().unwrap(), &expected);
    assert_eq!([out[0].1, out[1].1], bytes(one_hot_words(7, k, n, &[2, 2, 2, 1])));
    // One round per batch for the client, one per batch after the first for the owner (see
    // above).
    assert_eq!([out[0].2, out[1].2], [3, 4]);
}

#[test]
fn a_lookup_costs_what_the_ordinary_product_would_not() {
    // The same product through an ordinary share of the rows: 64 OTs and 2080 n bits per entry.
    let mut r = rng(9);
    let (k, n) = (100, 8);
    let x = one_hot(&[5, 99, 0], k);
    let table = random_tensor(&mut r, &[k, n]);
    let (got, sent) = secure_eval(&[(Owner::Client, x.clone()), (Owner::ModelOwner, table.clone())], |p, s| p.matmul(&s[0], &s[1]).unwrap());
    assert_eq!(got, Cleartext.matmul(&x, &table).unwrap());
    let ordinary = bytes(product_words((Owner::Client, Owner::ModelOwner), 3 * k as u64, n as u64, true));
    assert_eq!(sent, ordinary);
    let out = lookup(&x, &table, Owner::ModelOwner, None);
    let new = [out[0].1, out[1].1];
    assert_eq!(new, bytes(one_hot_words(3, k, n, &[3])));
    // 64 times fewer extended OTs (the client), 32.5 times fewer correction bits (the owner).
    assert_eq!(ordinary[1] - 8, 64 * new[1] - 8 * (64 * ext(300) - ext(64 * 300)));
    assert_eq!(2 * ordinary[0], 65 * new[0]);
}

#[test]
fn rows_not_shared_by_share_one_hot_are_refused_before_any_message() {
    let mut r = rng(10);
    let x = one_hot(&[1, 2], 3);
    let table = random_tensor(&mut r, &[3, 2]);
    let out = run(|p| {
        let me = p.party_id();
        // An ordinary (masked) share of the rows: the client's share is not bits, the owner's
        // not zero. Both refuse on their own.
        let xs = p.share(Owner::Client, x.shape(), (me == 1).then_some(&x)).unwrap();
        let ts = p.share(Owner::ModelOwner, table.shape(), (me == 0).then_some(&table)).unwrap();
        let before = p.traffic();
        let e = p.matmul_one_hot(&xs, &ts, Some(0)).unwrap_err().to_string();
        // A client value that is not a bit is refused when shared.
        let bad = RingTensor::new(vec![1, 2], vec![1, 2]).unwrap();
        let e2 = p.share_one_hot(&[1, 2], (me == 1).then_some(&bad)).map(|_| ()).map_err(|e| e.to_string());
        (e, p.traffic() == before, e2)
    });
    assert!(out[0].0.contains("not zero"), "{}", out[0].0);
    assert!(out[1].0.contains("not 0 or 1"), "{}", out[1].0);
    assert!(out[0].1 && out[1].1, "nothing was sent");
    assert!(out[0].2.is_ok());
    assert!(out[1].2.as_ref().unwrap_err().contains("element 1 is 2"), "{:?}", out[1].2);
}
