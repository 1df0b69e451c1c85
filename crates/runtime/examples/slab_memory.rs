//! Measures the working memory of one slab-wise backend call under Porthos (three parties as
//! threads of this process): the peak resident memory (VmHWM) during the call above the
//! memory held before it, per party, against the call's elements. The memory plan's factors
//! (`cryptflow_runtime::slab::WORKING_BYTES_*`) come from its output.
//!
//!     cargo run --release -p cryptflow-runtime --example slab_memory -- relu|conv|convt ELEMENTS_PER_PLANE PLANES BUDGET

use cryptflow_backend::{testing, Backend, ConvGeometry, Owner, RingTensor};
use cryptflow_net::Session;
use cryptflow_porthos::{Porthos, ProtocolVariant};
use cryptflow_runtime::slab;
use cryptflow_tensor::Layout;

fn vm(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let op = args[1].clone();
    let channels: usize = args[2].parse().unwrap();
    let planes: usize = args[3].parse().unwrap();
    let budget: usize = args[4].parse().unwrap();
    let side = 64;
    let g = ConvGeometry {
        layout: Layout::ChannelsFirst,
        batch: 1,
        in_channels: channels,
        out_channels: channels,
        groups: 1,
        input: vec![planes, side, side],
        kernel: vec![3, 3, 3],
        strides: vec![1, 1, 1],
        dilations: vec![1, 1, 1],
        pads_begin: vec![1, 1, 1],
        pads_end: vec![1, 1, 1],
        output_padding: vec![],
    };
    let gt = ConvGeometry { in_channels: 2 * channels, input: vec![planes / 2, side / 2, side / 2], kernel: vec![4, 4, 4], strides: vec![2, 2, 2], output_padding: vec![0, 0, 0], ..g.clone() };
    let mut rng = testing::rng(1);
    let (x, w) = match op.as_str() {
        "convt" => (testing::signed_tensor(&mut rng, &gt.input_shape(), 1 << 20), testing::signed_tensor(&mut rng, &gt.conv_transpose_filter_shape(), 1 << 10)),
        _ => (testing::signed_tensor(&mut rng, &g.input_shape(), 1 << 20), testing::signed_tensor(&mut rng, &g.conv_filter_shape(), 1 << 10)),
    };
    let elements = x.len();
    let results = testing::run_parties(Session::local(3), |s| Porthos::new(s, ProtocolVariant::Porthos).expect("session"), |p| {
        let me = p.party_id();
        let xs = p.share(Owner::Client, x.shape(), (me == 1).then_some(&x)).unwrap();
        let ws = p.share(Owner::ModelOwner, w.shape(), (me == 0).then_some(&w)).unwrap();
        // Warm the pools, then measure the second call (what a long run sees).
        for round in 0..2 {
            if round == 1 && me == 0 {
                std::fs::write("/proc/self/clear_refs", "5").unwrap();
            }
            let z: RingTensor = match op.as_str() {
                "relu" => slab::elementwise(p, &xs, budget, |b, part, _| b.relu(part)).unwrap(),
                "conv" => slab::conv(p, &xs, &ws, &g, false, budget).unwrap(),
                _ => slab::conv(p, &xs, &ws, &gt, true, budget).unwrap(),
            };
            drop(z);
        }
        0
    });
    drop(results);
    let held = 3 * 8 * 2 * elements as u64; // x, its shares (3 parties)
    let hwm = vm("VmHWM:");
    println!(
        "{op}: {elements} input elements, budget {budget}: peak {:.1} MiB for 3 parties; {:.1} bytes per input element per party above the {:.1} MiB of operands",
        hwm as f64 / 1048576.0,
        (hwm.saturating_sub(held)) as f64 / 3.0 / elements as f64,
        held as f64 / 1048576.0
    );
}
