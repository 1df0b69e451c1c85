//! `cryptflow run --generate K`: greedy decoding with a decoder compiled with `--next-token`.
//!
//! The program has a fixed number of positions `L`. The prompt fills positions `0..n`
//! (`attention_mask` marks them); step `k` runs one forward pass over the prompt and the `k`
//! tokens generated so far, with `next_position = n + k - 1`, and reveals to the client only
//! the argmax of the logits there, which becomes the token at position `n + k`. One session
//! serves all steps: the parties connect, agree on the program and share the weights once.
//! Each step recomputes every position (the program has no key/value cache), so a step costs
//! one full forward pass.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use cryptflow_athos::passes::{NEXT_POSITION, NEXT_TOKEN};
use cryptflow_backend::cleartext::Cleartext;
use cryptflow_ir::artifact::{read_float_graph, FixedWeightsFile, PublicProgram};
use cryptflow_ir::llil::{Encoding, Program};
use cryptflow_runtime::{float, Runner};
use cryptflow_tensor::RingTensor;

use crate::inputs::{ClientInputs, InputSpec, Value};
use crate::run::{accumulate, Metrics, RunArgs};
use crate::secure::{ClientFeed, Inputs};
use crate::{npy, BackendName};

/// The token ids input: `input_ids`, or the model's only other integer input of shape [1, L].
const TOKENS: &str = "input_ids";
const MASK: &str = "attention_mask";

/// The prompt and where its tokens go.
pub struct Prompt {
    /// Every input's value (without `next_position`), in `names` order.
    names: Vec<String>,
    values: Vec<Value>,
    tokens: usize,
    mask: Option<usize>,
    /// Positions of the program (L) and the prompt's length.
    positions: usize,
    length: usize,
    /// Tokens to generate.
    pub steps: usize,
}

impl Prompt {
    /// The inputs of step `k`, given the tokens generated before it.
    fn step(&self, generated: &[i64]) -> ClientInputs {
        let mut values = self.values.clone();
        let end = self.length + generated.len();
        if let Value::Integer { values: ids, .. } = &mut values[self.tokens] {
            ids[self.length..end].copy_from_slice(generated);
        }
        if let Some(m) = self.mask {
            if let Value::Integer { values: mask, .. } = &mut values[m] {
                for (p, v) in mask.iter_mut().enumerate() {
                    *v = (p < end) as i64;
                }
            }
        }
        let mut names = self.names.clone();
        names.push(NEXT_POSITION.into());
        values.push(Value::Integer { shape: vec![1], values: vec![end as i64 - 1] });
        ClientInputs { names, items: vec![values], stacking: npy::Stacking::Single }
    }
}

pub fn check_decoder(program: &Program) -> Result<()> {
    let head = program.inputs.iter().any(|i| i.name == NEXT_POSITION)
        && program.outputs.len() == 1
        && program.outputs[0].name == NEXT_TOKEN
        && program.outputs[0].encoding == Encoding::Integer;
    if !head {
        bail!("--generate needs a decoder compiled with `cryptflow compile MODEL --next-token` (its program reveals only `{NEXT_TOKEN}`)");
    }
    Ok(())
}

/// Reads the prompt (`--input` values) for `steps` tokens; `prompt_length` overrides the mask.
pub fn read_prompt(input: &[String], prompt_length: Option<usize>, program: &Program, steps: usize) -> Result<Prompt> {
    check_decoder(program)?;
    if steps == 0 {
        bail!("--generate 0: nothing to generate");
    }
    let specs: Vec<InputSpec> = InputSpec::of_program(program).into_iter().filter(|s| s.name != NEXT_POSITION).collect();
    let inputs = crate::inputs::read("--input", input, &specs)?;
    if inputs.len() != 1 {
        bail!("--generate continues one prompt; the inputs hold {} items", inputs.len());
    }
    let names = inputs.names.clone();
    let values = inputs.items.into_iter().next().expect("one item");
    let integer_rows = |k: usize| matches!(&values[k], Value::Integer { shape, .. } if shape.len() == 2 && shape[0] == 1);
    let tokens = match names.iter().position(|n| n == TOKENS) {
        Some(k) => k,
        None => {
            let candidates: Vec<usize> = (0..names.len()).filter(|&k| names[k] != MASK && integer_rows(k)).collect();
            match candidates.as_slice() {
                [k] => *k,
                _ => bail!("--generate: which input holds the tokens? name it `{TOKENS}` (the inputs are {})", names.join(", ")),
            }
        }
    };
    if !integer_rows(tokens) {
        bail!("--generate: `{}` must be integer token ids of shape [1, L]", names[tokens]);
    }
    let Value::Integer { shape, .. } = &values[tokens] else { unreachable!("checked above") };
    let positions = shape[1];
    let mask = names.iter().position(|n| n == MASK);
    let length = match (prompt_length, mask) {
        (Some(n), _) => n,
        (None, Some(m)) => {
            let Value::Integer { values: bits, .. } = &values[m] else { bail!("`{MASK}` must be integers") };
            let n = bits.iter().take_while(|&&b| b == 1).count();
            if bits[n..].iter().any(|&b| b != 0) || bits.len() != positions {
                bail!("--generate: `{MASK}` must be ones over the prompt then zeros (right padding), over all {positions} positions");
            }
            n
        }
        (None, None) => bail!("--generate: give --prompt-length N (the model has no `{MASK}` input to read it from)"),
    };
    if length == 0 || length > positions {
        bail!("--generate: a prompt of {length} tokens does not fit the program's {positions} positions (give 1 to {positions})");
    }
    if length + steps > positions {
        bail!(
            "--generate {steps}: a prompt of {length} tokens leaves room for {} new tokens in the program's {positions} positions; compile the model for a longer sequence",
            positions - length
        );
    }
    Ok(Prompt { names, values, tokens, mask, positions, length, steps })
}

impl Prompt {
    /// Inference `k`'s encoded inputs from the tokens revealed before it.
    pub fn feeder<'a>(&'a self, program: &'a Program) -> impl Fn(usize, &[Vec<RingTensor>]) -> Result<Inputs, String> + Sync + 'a {
        move |_k: usize, earlier: &[Vec<RingTensor>]| {
            let generated: Vec<i64> = earlier.iter().map(|o| token_of(o)).collect();
            self.step(&generated).encoded(program).map(|mut x| x.remove(0)).map_err(|e| format!("{e:#}"))
        }
    }
}

/// The token an inference revealed.
pub fn token_of(outputs: &[RingTensor]) -> i64 {
    outputs[0].data()[0] as i64
}

pub fn generate(args: &RunArgs, public: &PublicProgram, steps: usize) -> Result<()> {
    let program = &public.program;
    crate::party::check_output_not_input(&args.output, &args.input)?;
    let prompt = read_prompt(&args.input, args.prompt_length, program, steps)?;
    let started = Instant::now();
    let mut metrics = Metrics { backend: format!("{:?}", args.backend).to_lowercase(), inferences: steps, ..Default::default() };
    let tokens: Vec<i64> = match args.backend {
        BackendName::Float => {
            let graph = read_float_graph(&args.dir, public)?;
            let mut tokens = Vec::new();
            for _ in 0..steps {
                let x = prompt.step(&tokens).floats(&graph)?.remove(0);
                let y = float::run(&graph, &x).context("float executor")?.remove(0);
                tokens.push(y.data()[0] as i64);
            }
            tokens
        }
        BackendName::Cleartext => {
            let weights = FixedWeightsFile::open(&args.dir, public)?;
            let mut runner = Runner::new(program, Cleartext::new());
            runner.share_weights(Some(&weights))?;
            let mut tokens = Vec::new();
            for _ in 0..steps {
                let x = prompt.step(&tokens).encoded(program)?.remove(0);
                let (revealed, layers) = runner.infer(Some(&x))?;
                accumulate(&mut metrics.layers, layers);
                tokens.push(token_of(&revealed.context("the cleartext backend reveals its outputs")?));
            }
            tokens
        }
        BackendName::Porthos | BackendName::TwoPc | BackendName::Aramis => {
            let weights = FixedWeightsFile::open(&args.dir, public)?;
            // Check the prompt encodes before any party starts.
            prompt.step(&[]).encoded(program)?;
            let next = prompt.feeder(program);
            let feed = ClientFeed::Generated { steps, next: &next };
            let run = match args.backend {
                BackendName::Porthos => {
                    crate::secure::run_porthos_local(program, &weights, feed, args.protocol.variant(), args.truncation.mode(), args.inject_fault, std::time::Duration::from_secs(args.peer_timeout), &crate::secure::Progress::Terminal)?
                }
                BackendName::TwoPc => {
                    metrics.backend = "2pc".into();
                    crate::twopc::run_local(program, &weights, feed, args.truncation.mode(), args.inject_fault, std::time::Duration::from_secs(args.peer_timeout), &crate::secure::Progress::Terminal)?
                }
                _ => {
                    let (run, aramis) = crate::aramis::run_local(&crate::aramis::program_json(&args.dir)?, program, &weights, feed, args.protocol, args.truncation.mode(), args.inject_fault, std::time::Duration::from_secs(args.peer_timeout), &crate::secure::Progress::Terminal)?;
                    metrics.aramis = Some(aramis);
                    run
                }
            };
            metrics.bytes_sent = run.bytes_sent.clone();
            metrics.rounds = run.rounds.iter().copied().max().unwrap_or(0);
            metrics.peak_live_bytes = run.peak_live_bytes.clone();
            metrics.layers = run.layers;
            run.outputs.iter().map(|o| token_of(o)).collect()
        }
    };
    metrics.seconds = started.elapsed().as_secs_f64();
    metrics.seconds_per_inference = metrics.seconds / steps as f64;
    metrics.bytes_total = metrics.bytes_sent.iter().sum();
    metrics.peak_rss_bytes = crate::peak_rss().into_iter().collect();
    npy::write_i64(&args.output, &[1, tokens.len()], &tokens)?;
    let list: Vec<String> = tokens.iter().map(i64::to_string).collect();
    eprintln!(
        "generated {steps} token(s) after a prompt of {} (of {} positions) on the {} backend in {:.3} s ({:.3} s and {} bytes per token): {}; wrote {}",
        prompt.length,
        prompt.positions,
        metrics.backend,
        metrics.seconds,
        metrics.seconds_per_inference,
        metrics.bytes_total / steps as u64,
        list.join(" "),
        args.output.display()
    );
    if let Some(path) = &args.metrics {
        std::fs::write(path, serde_json::to_vec_pretty(&metrics)?).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
