//! `cryptflow demo`: the whole pipeline on a shipped model, no arguments needed.
//!
//! Compiles LeNet-5 trained on MNIST (embedded in the binary), runs it securely with Porthos on
//! four shipped test digits with all three parties in this process, and prints the secure and
//! the plaintext predictions side by side with the time and the communication.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use cryptflow_athos::{compile, CompileOptions};
use cryptflow_runtime::{decode_output, encode_input, float};
use cryptflow_tensor::Tensor;

use cryptflow::compile::human_bytes;
use crate::secure::{run_porthos_local, ROLE_NAMES};
use crate::ProtocolName;

const MODEL: &[u8] = include_bytes!("../../../fixtures/models/lenet_mnist.onnx");
const SAMPLES: &[u8] = include_bytes!("../../../fixtures/data/mnist_samples_x.npy");
const LABELS: &[u8] = include_bytes!("../../../fixtures/data/mnist_samples_y.npy");

#[derive(Args)]
pub struct DemoArgs {
    /// Protocol variant.
    #[arg(long, value_enum, default_value_t)]
    pub protocol: ProtocolName,
}

pub fn demo(args: DemoArgs) -> Result<()> {
    // Its logits, as the paper measures LeNet: the output Softmax is compiled away.
    let options = cryptflow_onnx::ImportOptions { strip_output_softmax: true, ..Default::default() };
    let imported = cryptflow_onnx::import_bytes(MODEL, &options).context("the embedded LeNet model")?;
    let started = Instant::now();
    let compiled = compile(imported.graph, &CompileOptions::default())?;
    let compile_seconds = started.elapsed().as_secs_f64();
    let program = &compiled.program;

    let samples = npyz::NpyFile::new(SAMPLES)?;
    let shape: Vec<usize> = samples.shape().iter().map(|&d| d as usize).collect();
    let pixels: Vec<f32> = samples.into_vec()?;
    let labels: Vec<i64> = npyz::NpyFile::new(LABELS)?.into_vec()?;
    let per = pixels.len() / shape[0];
    let inputs: Vec<Tensor<f32>> =
        pixels.chunks(per).map(|c| Tensor::new(program.inputs[0].shape.clone(), c.to_vec())).collect::<Result<_, _>>()?;

    let started = Instant::now();
    let mut plain = Vec::new();
    for x in &inputs {
        plain.push(float::run(&compiled.hlil, std::slice::from_ref(x))?.remove(0));
    }
    let plain_seconds = started.elapsed().as_secs_f64();

    let mut cleartext = cryptflow_runtime::Runner::new(program, cryptflow_backend::cleartext::Cleartext::new());
    cleartext.share_weights(Some(&compiled.weights))?;
    let mut fixed = Vec::new();
    for x in &inputs {
        let (y, _) = cleartext.infer(Some(&[encode_input(x, program.scale)]))?;
        fixed.push(decode_output(&y.context("cleartext reveals")?[0], program.outputs[0].encoding));
    }

    let variant = args.protocol.variant();
    let encoded: Vec<_> = inputs.iter().map(|x| vec![encode_input(x, program.scale)]).collect();
    let secure = run_porthos_local(program, &compiled.weights, crate::secure::ClientFeed::Fixed(&encoded), variant, crate::TruncationName::default().mode(), None, std::time::Duration::from_secs(cryptflow::run::LOCAL_PEER_TIMEOUT_SECONDS), &crate::secure::Progress::Terminal)?;

    println!(
        "cryptflow demo: LeNet-5 trained on MNIST ({} parameters), compiled in {:.0} ms at scale {}",
        compiled.report.parameters,
        compile_seconds * 1000.0,
        program.scale
    );
    println!("secure run: {:?} with 3 parties on this machine (0 = model owner, 1 = client, 2 = helper)\n", variant);
    println!("                           max |logit difference| of the secure result");
    println!("sample  label  plaintext  secure   vs fixed point (protocol)   vs float (quantisation)");
    let mut agree = 0;
    let max_diff = |a: &Tensor<f32>, b: &Tensor<f32>| a.data().iter().zip(b.data()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    for (k, ((p, f), s)) in plain.iter().zip(&fixed).zip(&secure.outputs).enumerate() {
        let s = decode_output(&s[0], program.outputs[0].encoding);
        let (pc, sc) = (cryptflow::calibrate::predicted_class(p, false), cryptflow::calibrate::predicted_class(&s, false));
        agree += usize::from(pc == sc);
        println!(
            "{k:>6}  {:>5}  {pc:>9}  {sc:>6}   {:>24.5}   {:>22.5}",
            labels.get(k).copied().unwrap_or(-1),
            max_diff(&s, f),
            max_diff(&s, p)
        );
    }
    let n = inputs.len() as f64;
    println!(
        "\nsecure predictions agree with plaintext on {agree} of {} digits",
        inputs.len()
    );
    println!(
        "time: secure {:.1} ms per inference, plaintext {:.2} ms per inference",
        1000.0 * secure.seconds / n,
        1000.0 * plain_seconds / n
    );
    let total: u64 = secure.bytes_sent.iter().sum();
    let per_party: Vec<String> =
        secure.bytes_sent.iter().enumerate().map(|(i, b)| format!("{} {}", ROLE_NAMES[i], human_bytes((*b as f64 / n) as u64))).collect();
    println!(
        "communication per inference: {} ({} sent), {} rounds",
        human_bytes((total as f64 / n) as u64),
        per_party.join(", "),
        secure.rounds.iter().max().copied().unwrap_or(0) / inputs.len() as u64
    );
    Ok(())
}
