//! Prints the table of the elementwise activations: method, domain, behaviour outside, the
//! largest error against f64 measured on the cleartext backend at scale 12 (every
//! representable input of the domain widened by 2), and the bytes per element (summed over
//! the three parties) and rounds measured under Porthos on 256 elements, with the bytes as a
//! multiple of a ReLU's (measured the same way).
//!
//! `cargo run --release -p cryptflow-math --example activation_table`

use cryptflow_backend::cleartext::Cleartext;
use cryptflow_backend::testing::run_parties;
use cryptflow_backend::{Backend, Owner, RingTensor};
use cryptflow_math::fixed::{decode, encode};
use cryptflow_math::GeluForm;
use cryptflow_net::Session;
use cryptflow_porthos::{Porthos, ProtocolVariant};

const SCALE: u32 = 12;
const N: usize = 256;

fn erf(x: f64) -> f64 {
    // 2/sqrt(pi) e^(-x^2) sum 2^n x^(2n+1) / (1 3 ... (2n+1)): positive terms only.
    if x.abs() > 6.0 {
        return x.signum();
    }
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    while term.abs() > 1e-17 * sum.abs() {
        n += 1.0;
        term *= 2.0 * x * x / (2.0 * n + 1.0);
        sum += term;
    }
    std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp() * sum
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

type Op = fn(&mut dyn Backend, &RingTensor) -> RingTensor;

struct Row {
    name: &'static str,
    method: &'static str,
    domain: (f64, f64),
    outside: &'static str,
    op: Op,
    reference: fn(f64) -> f64,
}

fn rows() -> Vec<Row> {
    vec![
        Row { name: "relu (backend)", method: "DReLU + mux", domain: (0.0, 0.0), outside: "-", op: |b, x| b.relu(x).unwrap(), reference: |x| x.max(0.0) },
        Row { name: "abs", method: "2 mux([x>=0], x) - x", domain: (0.0, 0.0), outside: "exact everywhere", op: |b, x| cryptflow_math::abs(b, x).unwrap(), reference: f64::abs },
        Row { name: "sigmoid", method: "odd Chebyshev deg 27 of sigmoid - 1/2", domain: (-10.0, 10.0), outside: "exactly 1 / 0", op: |b, x| cryptflow_math::sigmoid(b, x, SCALE).unwrap(), reference: sigmoid },
        Row { name: "tanh", method: "odd Chebyshev deg 27", domain: (-5.0, 5.0), outside: "exactly +-1", op: |b, x| cryptflow_math::tanh(b, x, SCALE).unwrap(), reference: f64::tanh },
        Row { name: "erf", method: "odd Chebyshev deg 19", domain: (-3.5, 3.5), outside: "exactly +-1", op: |b, x| cryptflow_math::erf(b, x, SCALE).unwrap(), reference: erf },
        Row {
            name: "gelu (erf)",
            method: "x/2 + even Chebyshev deg 16",
            domain: (-4.0, 4.0),
            outside: "exactly x / 0",
            op: |b, x| cryptflow_math::gelu(b, x, SCALE, GeluForm::Erf).unwrap(),
            reference: |x| 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        },
        Row {
            name: "gelu (tanh)",
            method: "x/2 + even Chebyshev deg 16",
            domain: (-4.0, 4.0),
            outside: "exactly x / 0",
            op: |b, x| cryptflow_math::gelu(b, x, SCALE, GeluForm::Tanh).unwrap(),
            reference: |x| 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh()),
        },
        Row { name: "silu", method: "x/2 + even Chebyshev deg 40", domain: (-12.0, 12.0), outside: "exactly x / 0", op: |b, x| cryptflow_math::silu(b, x, SCALE).unwrap(), reference: |x| x * sigmoid(x) },
        Row {
            name: "softplus",
            method: "x/2 + even Chebyshev deg 32",
            domain: (-10.0, 10.0),
            outside: "exactly x / 0",
            op: |b, x| cryptflow_math::softplus(b, x, SCALE).unwrap(),
            reference: |x| x.max(0.0) + (-x.abs()).exp().ln_1p(),
        },
        Row {
            name: "elu (alpha 1)",
            method: "x for x>=0; Chebyshev deg 12 of e^x - 1",
            domain: (-12.0, 0.0),
            outside: "exactly x / -alpha",
            op: |b, x| cryptflow_math::elu(b, x, SCALE, 1.0).unwrap(),
            reference: |x| if x >= 0.0 { x } else { x.exp_m1() },
        },
        Row {
            name: "hard_sigmoid (0.2, 0.5)",
            method: "round(alpha x) + beta, 2 clamps",
            domain: (-2.5, 2.5),
            outside: "exactly 0 / 1",
            op: |b, x| cryptflow_math::hard_sigmoid(b, x, SCALE, 0.2, 0.5).unwrap(),
            reference: |x| (0.2f32 as f64 * x + 0.5).clamp(0.0, 1.0),
        },
        Row {
            name: "hard_swish",
            method: "round(x (x+3) / 6), 2 clamps",
            domain: (-3.0, 3.0),
            outside: "exactly x / 0",
            op: |b, x| cryptflow_math::hard_swish(b, x, SCALE).unwrap(),
            reference: |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        },
    ]
}

fn main() {
    let rows = rows();
    // Cleartext errors over every representable input of [lo - 2, hi + 2].
    let mut c = Cleartext::new();
    let errors: Vec<f64> = rows
        .iter()
        .map(|r| {
            let (a, b) = (encode(r.domain.0 - 2.0, SCALE) as i64, encode(r.domain.1 + 2.0, SCALE) as i64);
            let xs = RingTensor::new(vec![(b - a + 1) as usize], (a..=b).map(|v| v as u64).collect()).unwrap();
            let ys = (r.op)(&mut c, &xs);
            xs.data().iter().zip(ys.data()).map(|(&x, &y)| (decode(y, SCALE) - (r.reference)(decode(x, SCALE))).abs()).fold(0.0, f64::max)
        })
        .collect();
    // Porthos traffic: every function on N elements in one session.
    let xs = RingTensor::new(vec![N], (0..N).map(|i| ((i as i64 - N as i64 / 2) * 300) as u64).collect()).unwrap();
    let per_party = run_parties(Session::local(3), |s| Porthos::new(s, ProtocolVariant::Porthos).expect("session"), |p| {
        let me = p.party_id();
        let x = p.share(Owner::Client, &[N], (me == 1).then_some(&xs)).unwrap();
        rows.iter()
            .map(|r| {
                let before = p.traffic();
                let _ = (r.op)(p, &x);
                let t = p.traffic() - before;
                (t.bytes_sent, t.rounds)
            })
            .collect::<Vec<_>>()
    });
    let cost: Vec<(u64, u64)> = (0..rows.len()).map(|i| (per_party.iter().map(|p| p[i].0).sum::<u64>() / N as u64, per_party[0][i].1)).collect();
    let relu = cost[0].0 as f64;
    println!("| function | method | domain | outside | max error (scale 12) | Porthos B/element | rounds | x ReLU |");
    println!("|---|---|---|---|---|---|---|---|");
    for ((r, e), (bytes, rounds)) in rows.iter().zip(&errors).zip(&cost) {
        let domain = if r.domain == (0.0, 0.0) { "all".to_string() } else { format!("[{}, {}]", r.domain.0, r.domain.1) };
        println!("| {} | {} | {} | {} | {:.2e} | {} | {} | {:.2} |", r.name, r.method, domain, r.outside, e, bytes, rounds, *bytes as f64 / relu);
    }
}
