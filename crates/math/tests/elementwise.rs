//! The elementwise activations of `cryptflow-math`: accuracy against f64 on the cleartext
//! backend (every representable input of the polynomial range at scale 12, a grid and random
//! points at scale 16 and 8), the exact asymptotes outside it (up to the comparisons' range),
//! and the secure evaluations under Porthos (3 parties) and 2PC (2 parties), with Porthos'
//! bytes and rounds asserted as formulas in the number of elements.

use cryptflow_backend::cleartext::Cleartext;
use cryptflow_backend::testing::{rng, run_parties};
use cryptflow_backend::{Backend, Owner, RingTensor};
use cryptflow_math::fixed::{chebyshev_cost, decode, encode};
use cryptflow_math::GeluForm;
use cryptflow_net::Session;
use cryptflow_porthos::{Porthos, ProtocolVariant};
use cryptflow_twopc::TwoPc;
use rand::Rng;

// ---- references (independent of the library's own f64 code) --------------------------------

/// erf: the alternating Taylor series below 2.5 (terms below 600, so f64 keeps ~1e-13), the
/// continued fraction of erfc above (Laplace: `erfc x = e^-x^2 / sqrt(pi) / (x + (1/2) / (x +
/// 1 / (x + (3/2) / (x + ...))))`, 200 levels evaluated backwards).
fn erf_ref(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 2.5 {
        let (mut term, mut sum, mut n) = (a, a, 0.0);
        loop {
            n += 1.0;
            term *= -a * a / n;
            let t = term / (2.0 * n + 1.0);
            sum += t;
            if t.abs() < 1e-18 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let mut k = a;
        for i in (1..=200).rev() {
            k = a + (i as f64 / 2.0) / k;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / k
    };
    r.copysign(x)
}

#[test]
fn erf_reference_matches_tabulated_values() {
    // Abramowitz & Stegun / mpmath values.
    for (x, e) in [(0.5, 0.5204998778130465), (1.0, 0.8427007929497149), (2.0, 0.9953222650189527), (3.0, 0.9999779095030014), (2.5, 0.999593047982555), (-1.5, -0.9661051464753108)] {
        assert!((erf_ref(x) - e).abs() < 1e-14, "erf({x}) = {} vs {e}", erf_ref(x));
    }
}

fn sigmoid_ref(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

// ---- the functions under test ---------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum F {
    Abs,
    Sigmoid,
    Tanh,
    Erf,
    Gelu(GeluForm),
    Silu,
    Softplus,
    Elu(f32),
    HardSigmoid(f32, f32),
    HardSwish,
}

const ALL: [F; 14] = [
    F::Abs,
    F::Sigmoid,
    F::Tanh,
    F::Erf,
    F::Gelu(GeluForm::Erf),
    F::Gelu(GeluForm::Tanh),
    F::Silu,
    F::Softplus,
    F::Elu(1.0),
    F::Elu(0.5),
    F::HardSigmoid(0.2, 0.5),
    F::HardSigmoid(-0.25, 0.5),
    F::HardSwish,
    F::HardSigmoid(1.0 / 6.0, 0.5),
];

fn apply<B: Backend + ?Sized>(f: F, b: &mut B, x: &RingTensor, scale: u32) -> RingTensor {
    match f {
        F::Abs => cryptflow_math::abs(b, x),
        F::Sigmoid => cryptflow_math::sigmoid(b, x, scale),
        F::Tanh => cryptflow_math::tanh(b, x, scale),
        F::Erf => cryptflow_math::erf(b, x, scale),
        F::Gelu(form) => cryptflow_math::gelu(b, x, scale, form),
        F::Silu => cryptflow_math::silu(b, x, scale),
        F::Softplus => cryptflow_math::softplus(b, x, scale),
        F::Elu(a) => cryptflow_math::elu(b, x, scale, a),
        F::HardSigmoid(a, c) => cryptflow_math::hard_sigmoid(b, x, scale, a, c),
        F::HardSwish => cryptflow_math::hard_swish(b, x, scale),
    }
    .unwrap_or_else(|e| panic!("{f:?}: {e}"))
}

fn reference(f: F, x: f64) -> f64 {
    match f {
        F::Abs => x.abs(),
        F::Sigmoid => sigmoid_ref(x),
        F::Tanh => x.tanh(),
        F::Erf => erf_ref(x),
        F::Gelu(GeluForm::Erf) => 0.5 * x * (1.0 + erf_ref(x / std::f64::consts::SQRT_2)),
        F::Gelu(GeluForm::Tanh) => 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh()),
        F::Silu => x * sigmoid_ref(x),
        F::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        F::Elu(a) => {
            if x >= 0.0 {
                x
            } else {
                a as f64 * x.exp_m1()
            }
        }
        F::HardSigmoid(a, c) => (a as f64 * x + c as f64).clamp(0.0, 1.0),
        F::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
    }
}

/// The documented largest error against f64 at scale 12 (cleartext), from measurement.
fn bound(f: F) -> f64 {
    match f {
        F::Abs => 0.0,
        F::Sigmoid => 2.4e-4,
        F::Tanh => 3.6e-4,
        F::Erf => 1.7e-4,
        F::Gelu(GeluForm::Erf) => 1.8e-4,
        F::Gelu(GeluForm::Tanh) => 1.9e-4,
        F::Silu => 2.5e-4,
        F::Softplus => 1.7e-4,
        F::Elu(_) => 1.4e-4,
        F::HardSigmoid(..) | F::HardSwish => 1.3e-4,
    }
}

/// Where the polynomial (or the linear piece) ends: the result is the exact asymptote for
/// `x >= hi` and `x < lo`.
fn edges(f: F) -> (f64, f64) {
    match f {
        F::Abs => (0.0, 0.0),
        F::Sigmoid => (-10.0, 10.0),
        F::Tanh => (-5.0, 5.0),
        F::Erf => (-3.5, 3.5),
        F::Gelu(_) => (-4.0, 4.0),
        F::Silu => (-12.0, 12.0),
        F::Softplus => (-10.0, 10.0),
        F::Elu(_) => (-12.0, 0.0),
        F::HardSigmoid(a, c) => {
            let (x0, x1) = (-c as f64 / a as f64, (1.0 - c as f64) / a as f64);
            (x0.min(x1), x0.max(x1))
        }
        F::HardSwish => (-3.0, 3.0),
    }
}

/// The exact ring value outside the edges, at `scale`.
fn asymptote(f: F, x: u64, scale: u32) -> u64 {
    let pos = (x as i64) >= 0;
    let one = encode(1.0, scale);
    match f {
        F::Abs => (x as i64).unsigned_abs(),
        F::Sigmoid => if pos { one } else { 0 },
        F::Tanh | F::Erf => if pos { one } else { one.wrapping_neg() },
        F::Gelu(_) | F::Silu | F::Softplus | F::HardSwish => if pos { x } else { 0 },
        F::Elu(a) => if pos { x } else { encode(a as f64, scale).wrapping_neg() },
        F::HardSigmoid(a, _) => if pos == (a > 0.0) { one } else { 0 },
    }
}

fn name(f: F) -> String {
    format!("{f:?}")
}

fn tensor(v: Vec<u64>) -> RingTensor {
    RingTensor::new(vec![v.len()], v).unwrap()
}

/// Max |f(x) - reference| over `xs` (at `scale`), and where.
fn max_error(f: F, xs: &RingTensor, ys: &RingTensor, scale: u32) -> (f64, f64) {
    xs.data()
        .iter()
        .zip(ys.data())
        .map(|(&x, &y)| {
            let xr = decode(x, scale);
            ((decode(y, scale) - reference(f, xr)).abs(), xr)
        })
        .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
}

/// Inputs far outside: edges' neighbours, powers of two up to the comparisons' range, and the
/// ring's ends less the `2^28` ulps where `x +- T` could wrap around (`T 2^scale < 2^25` for
/// every function and scale up to 20).
fn far_values(f: F, scale: u32) -> Vec<u64> {
    let (lo, hi) = edges(f);
    let mut v = vec![encode(hi, scale), encode(hi, scale) + 1, encode(lo, scale).wrapping_sub(1), encode(lo, scale).wrapping_sub(1000)];
    for k in [20u32, 30, 40, 50, 55, 61] {
        let m = 1u64 << k;
        v.extend([m, m.wrapping_neg(), m + 12345, (m + 12345).wrapping_neg()]);
    }
    // Real values +-2^30 at the scale.
    v.extend([encode(2f64.powi(30), scale), encode(-(2f64.powi(30)), scale)]);
    // Porthos compares in [-2^62, 2^62); cleartext and 2PC on the whole ring.
    v.extend([(1u64 << 62) - (1 << 28), ((1u64 << 62) - (1 << 28)).wrapping_neg(), i64::MAX as u64 - (1 << 28), (i64::MIN as u64) + (1 << 28)]);
    v.retain(|&x| outside(f, x, scale));
    v
}

/// Whether `x` is past the edges as the functions compare (with the edges encoded at the
/// scale).
fn outside(f: F, x: u64, scale: u32) -> bool {
    let (lo, hi) = edges(f);
    (x as i64) >= encode(hi, scale) as i64 || (x as i64) < encode(lo, scale) as i64
}

// ---- cleartext accuracy -------------------------------------------------------------------

#[test]
fn every_input_near_the_polynomial_range_at_scale_12() {
    let scale = 12;
    let mut c = Cleartext::new();
    for f in ALL {
        let (lo, hi) = edges(f);
        let (a, b) = (encode(lo - 2.0, scale) as i64, encode(hi + 2.0, scale) as i64);
        let xs = tensor((a..=b).map(|v| v as u64).collect());
        let ys = apply(f, &mut c, &xs, scale);
        let (e, at) = max_error(f, &xs, &ys, scale);
        println!("{:<28} scale 12: max error {e:.3e} at {at}", name(f));
        assert!(e <= bound(f), "{f:?}: error {e:.3e} at x = {at} exceeds {:.1e}", bound(f));
    }
}

#[test]
fn grid_and_random_points_at_scales_8_16_20() {
    let mut c = Cleartext::new();
    let mut r = rng(7);
    for scale in [8u32, 16, 20] {
        let ulp = 2f64.powi(-(scale as i32));
        for f in ALL {
            let (lo, hi) = edges(f);
            let (a, b) = (encode(lo - 3.0, scale) as i64, encode(hi + 3.0, scale) as i64);
            let step = ((b - a) / 40_000).max(1);
            let mut v: Vec<u64> = (a..=b).step_by(step as usize).map(|v| v as u64).collect();
            v.extend((0..5000).map(|_| r.random_range(a..=b) as u64));
            let xs = tensor(v);
            let ys = apply(f, &mut c, &xs, scale);
            let (e, at) = max_error(f, &xs, &ys, scale);
            // Documented: the scale-12 bound plus one ulp of the scale.
            let allowed = if matches!(f, F::Abs) { 0.0 } else { bound(f) + ulp };
            println!("{:<28} scale {scale}: max error {e:.3e} at {at} (allowed {allowed:.2e})", name(f));
            assert!(e <= allowed, "{f:?} at scale {scale}: error {e:.3e} at x = {at} exceeds {allowed:.2e}");
        }
    }
}

#[test]
fn exact_asymptotes_far_outside() {
    let mut c = Cleartext::new();
    for scale in [8u32, 12, 16, 20] {
        for f in ALL {
            let xs = tensor(far_values(f, scale));
            let ys = apply(f, &mut c, &xs, scale);
            for (&x, &y) in xs.data().iter().zip(ys.data()) {
                assert_eq!(y, asymptote(f, x, scale), "{f:?} at scale {scale}, x = {} ({})", x as i64, decode(x, scale));
            }
        }
    }
}

#[test]
fn abs_and_prelu_are_exact() {
    let mut c = Cleartext::new();
    let mut r = rng(3);
    let xs: Vec<u64> = (0..2000).map(|i| if i < 1000 { r.random::<u64>() } else { r.random_range(-(1i64 << 30)..(1 << 30)) as u64 }).filter(|&v| v != i64::MIN as u64).collect();
    let y = cryptflow_math::abs(&mut c, &tensor(xs.clone())).unwrap();
    for (&x, &y) in xs.iter().zip(y.data()) {
        assert_eq!(y, (x as i64).unsigned_abs());
    }
    // PReLU at scale 12: x >= 0 gives x exactly, x < 0 gives floor(slope x / 2^12).
    let scale = 12;
    let xs: Vec<u64> = (0..2000).map(|_| r.random_range(-(1i64 << 28)..(1 << 28)) as u64).collect();
    let slopes: Vec<u64> = (0..2000).map(|_| r.random_range(-(1i64 << 13)..(1 << 13)) as u64).collect();
    let y = cryptflow_math::prelu(&mut c, &tensor(xs.clone()), &tensor(slopes.clone()), scale).unwrap();
    for ((&x, &s), &y) in xs.iter().zip(&slopes).zip(y.data()) {
        let want = if (x as i64) >= 0 { x } else { ((x as i64 as i128 * s as i64 as i128) >> scale) as i64 as u64 };
        assert_eq!(y, want);
    }
}

#[test]
fn chebyshev_costs_as_documented() {
    // (products, rounds) of the series the functions use; the cost formulas below rely on them.
    assert_eq!(chebyshev_cost(27, |k| k % 2 == 1), (17, 5)); // sigmoid, tanh
    assert_eq!(chebyshev_cost(19, |k| k % 2 == 1), (13, 5)); // erf
    assert_eq!(chebyshev_cost(8, |_| true), (7, 3)); // GELU (degree 16 in x)
    assert_eq!(chebyshev_cost(20, |_| true), (19, 5)); // SiLU (degree 40)
    assert_eq!(chebyshev_cost(16, |_| true), (15, 4)); // softplus (degree 32)
    assert_eq!(chebyshev_cost(12, |_| true), (11, 4)); // ELU
}

// ---- secure evaluations -------------------------------------------------------------------

/// Per-element Porthos cost of a function: (DReLU elements, mul + mux elements, DReLU calls,
/// mul + mux calls).
fn porthos_cost(f: F) -> (u64, u64, u64, u64) {
    match f {
        F::Abs => (1, 1, 1, 1),
        // 2 comparisons; the odd series' products; 2 multiplexers.
        F::Sigmoid | F::Tanh => (2, 17 + 2, 1, 5 + 1),
        F::Erf => (2, 13 + 2, 1, 5 + 1),
        // 2 comparisons; the square, the even series' products; 2 multiplexers.
        F::Gelu(_) => (2, 1 + 7 + 2, 1, 1 + 3 + 1),
        F::Silu => (2, 1 + 19 + 2, 1, 1 + 5 + 1),
        F::Softplus => (2, 1 + 15 + 2, 1, 1 + 4 + 1),
        F::Elu(_) => (2, 11 + 2, 1, 4 + 1),
        F::HardSigmoid(..) => (2, 2, 1, 1),
        F::HardSwish => (2, 1 + 2, 1, 2),
    }
}

const DRELU_BYTES: u64 = 496;
const PRODUCT_BYTES: u64 = 40;

/// Points for the secure runs: a grid over the polynomial range, random inputs, far values.
fn secure_points(f: F, scale: u32, n: usize, seed: u64) -> Vec<u64> {
    let mut r = rng(seed);
    let (lo, hi) = edges(f);
    let (a, b) = (encode(lo - 2.0, scale) as i64, encode(hi + 2.0, scale) as i64);
    let mut v: Vec<u64> = (0..n / 2).map(|i| (a + (b - a) * i as i64 / (n / 2) as i64) as u64).collect();
    let far: Vec<u64> = far_values(f, scale).into_iter().filter(|&x| (x as i64).unsigned_abs() < (1u64 << 62) - (1 << 27)).collect();
    v.extend(far);
    while v.len() < n {
        v.push(r.random_range(a..=b) as u64);
    }
    v.truncate(n);
    v
}

struct Outcome {
    value: RingTensor,
    bytes: u64,
    rounds: Vec<u64>,
}

/// Runs every function on its points in one session; the client's revealed results, bytes
/// summed over the parties, rounds per party.
fn secure_run<B: Backend>(sessions: Vec<Session>, make: impl Fn(Session) -> B + Sync, cases: &[(F, RingTensor)], scale: u32) -> Vec<Outcome> {
    let per_party = run_parties(sessions, make, |p| {
        let me = p.party_id();
        cases
            .iter()
            .map(|(f, xs)| {
                let share = p.share(Owner::Client, xs.shape(), (me == 1).then_some(xs)).unwrap();
                let before = p.traffic();
                let z = apply(*f, p, &share, scale);
                let spent = p.traffic() - before;
                (p.reveal(&z, Owner::Client).unwrap(), spent.bytes_sent, spent.rounds)
            })
            .collect::<Vec<_>>()
    });
    (0..cases.len())
        .map(|i| Outcome {
            value: per_party[1][i].0.clone().expect("client output"),
            bytes: per_party.iter().map(|p| p[i].1).sum(),
            rounds: per_party.iter().map(|p| p[i].2).collect(),
        })
        .collect()
}

/// Secure results: within the cleartext bound plus one ulp (local truncations may be off by
/// one), and the exact asymptote outside the edges.
fn check_secure(f: F, xs: &RingTensor, ys: &RingTensor, scale: u32, backend: &str) {
    let ulp = 2f64.powi(-(scale as i32));
    for (&x, &y) in xs.data().iter().zip(ys.data()) {
        let xr = decode(x, scale);
        if outside(f, x, scale) {
            let want = asymptote(f, x, scale);
            assert_eq!(y, want, "{backend} {f:?}: x = {xr} gave {} not the asymptote", decode(y, scale));
        } else {
            let e = (decode(y, scale) - reference(f, xr)).abs();
            assert!(e <= bound(f) + ulp, "{backend} {f:?}: error {e:.3e} at x = {xr}");
        }
    }
}

#[test]
fn porthos_accuracy_bytes_and_rounds() {
    let scale = 12;
    let n = 300;
    let cases: Vec<(F, RingTensor)> = ALL.iter().enumerate().map(|(i, &f)| (f, tensor(secure_points(f, scale, n, 100 + i as u64)))).collect();
    let out = secure_run(Session::local(3), |s| Porthos::new(s, ProtocolVariant::Porthos).unwrap(), &cases, scale);
    for ((f, xs), o) in cases.iter().zip(&out) {
        check_secure(*f, xs, &o.value, scale, "porthos");
        let (d, p, dc, pc) = porthos_cost(*f);
        let n = n as u64;
        assert_eq!(o.bytes, n * (d * DRELU_BYTES + p * PRODUCT_BYTES), "{f:?}: bytes");
        for party in 0..2 {
            assert_eq!(o.rounds[party], 5 * dc + pc, "{f:?}: rounds of party {party}");
        }
        assert!(o.rounds[0] <= 18);
        println!("{:<28} {} B/element, {} rounds", name(*f), o.bytes / n, o.rounds[0]);
    }
    // PReLU: one comparison, one product, one multiplexer.
    let mut r = rng(5);
    let xs = tensor((0..n).map(|_| r.random_range(-(1i64 << 20)..(1 << 20)) as u64).collect());
    let slopes = tensor((0..n).map(|_| r.random_range(-(1i64 << 12)..(1 << 12)) as u64).collect());
    let res = run_parties(Session::local(3), |s| Porthos::new(s, ProtocolVariant::Porthos).unwrap(), |p| {
        let me = p.party_id();
        let x = p.share(Owner::Client, xs.shape(), (me == 1).then_some(&xs)).unwrap();
        let s = p.share(Owner::ModelOwner, slopes.shape(), (me == 0).then_some(&slopes)).unwrap();
        let before = p.traffic();
        let z = cryptflow_math::prelu(p, &x, &s, scale).unwrap();
        let spent = p.traffic() - before;
        (p.reveal(&z, Owner::Client).unwrap(), spent)
    });
    let y = res[1].0.clone().unwrap();
    for ((&x, &s), &y) in xs.data().iter().zip(slopes.data()).zip(y.data()) {
        let want = if (x as i64) >= 0 { x as i64 } else { ((x as i64 as i128 * s as i64 as i128) >> scale) as i64 };
        assert!((y as i64 - want).abs() <= 1, "prelu({x}, {s}) = {} not {want}", y as i64);
    }
    let bytes: u64 = res.iter().map(|r| r.1.bytes_sent).sum();
    assert_eq!(bytes, n as u64 * (DRELU_BYTES + 2 * PRODUCT_BYTES));
    assert_eq!(res[0].1.rounds, 5 + 1 + 1);
}

#[test]
fn twopc_accuracy() {
    let scale = 12;
    let n = 200;
    let cases: Vec<(F, RingTensor)> = ALL.iter().enumerate().map(|(i, &f)| (f, tensor(secure_points(f, scale, n, 200 + i as u64)))).collect();
    let out = secure_run(Session::local(2), |s| TwoPc::new(s).unwrap(), &cases, scale);
    for ((f, xs), o) in cases.iter().zip(&out) {
        check_secure(*f, xs, &o.value, scale, "2pc");
        println!("{:<28} 2pc: {} B/element (both parties), {} rounds", name(*f), o.bytes / n as u64, o.rounds[0]);
    }
}
