//! `cryptflow zoo`: the paper's benchmark networks as ONNX files with seeded random weights.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use cryptflow_zoo::Options;

use cryptflow::compile::human_bytes;

#[derive(Args)]
pub struct ZooArgs {
    /// The network (see --list), e.g. resnet50, lenet, unet3d.
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// Where to write the ONNX model.
    #[arg(short = 'o', long = "output", value_name = "FILE.onnx", required_unless_present = "list")]
    pub output: Option<PathBuf>,
    /// List the networks with their datasets, inputs and parameter counts.
    #[arg(long, conflicts_with_all = ["name", "output"])]
    pub list: bool,
    #[command(flatten)]
    pub options: ZooOptions,
}

/// Options shared by `zoo` and `bench`.
#[derive(Args, Clone, Debug, Default)]
pub struct ZooOptions {
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Spatial input size of the ImageNet networks (H,W; default 224) or of the 3D-UNet (D,H,W;
    /// default 16); one value means a square (cube).
    #[arg(long = "input-size", value_name = "N[,N...]", value_delimiter = ',')]
    pub input_size: Option<Vec<usize>>,
    /// Base width of the 3D-UNet (channels of its first level; default 4).
    #[arg(long)]
    pub width: Option<usize>,
    /// Output classes (default 10 for MNIST/CIFAR, 1000 for ImageNet, 2 for the 3D-UNet and
    /// the BERT classifiers).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Sequence length of the transformers (default 128 for BERT, 32 for GPT-2; at most the
    /// model's positions, 512 and 1024).
    #[arg(long, value_name = "L")]
    pub seq: Option<usize>,
    /// Transformers: number of layers (for small test models).
    #[arg(long, hide = true)]
    pub layers: Option<usize>,
    /// Transformers: hidden size (the intermediate size follows as 4x unless given).
    #[arg(long, hide = true)]
    pub hidden: Option<usize>,
    /// Transformers: attention heads.
    #[arg(long, hide = true)]
    pub heads: Option<usize>,
    /// Transformers: intermediate (feed-forward) size.
    #[arg(long, hide = true)]
    pub intermediate: Option<usize>,
    /// Transformers: vocabulary size.
    #[arg(long, hide = true)]
    pub vocab: Option<usize>,
    /// unet3d-innereye: end with the per-voxel class scores (logits, [1, classes, D, H, W])
    /// instead of the segmentation map (each voxel's class, [1, D, H, W]).
    #[arg(long)]
    pub output_logits: bool,
}

impl ZooOptions {
    pub fn options(&self) -> Options {
        Options {
            seed: self.seed,
            input_size: self.input_size.clone(),
            width: self.width,
            classes: self.classes,
            seq: self.seq,
            layers: self.layers,
            hidden: self.hidden,
            heads: self.heads,
            intermediate: self.intermediate,
            vocab: self.vocab,
            output_logits: self.output_logits,
        }
    }
}

pub fn zoo(args: ZooArgs) -> Result<()> {
    if args.list {
        println!("{:<20} {:<9} {:>12}  {:<18} description", "network", "dataset", "parameters", "input");
        for name in cryptflow_zoo::names() {
            let info = cryptflow_zoo::info(name)?;
            let options = Options::default();
            let parameters = cryptflow_zoo::parameter_count(name, &options)?;
            let shape = cryptflow_zoo::input_shape(name, &options)?;
            println!("{:<20} {:<9} {:>12}  {:<18} {}", name, info.dataset, parameters, format!("{shape:?}"), info.description);
        }
        return Ok(());
    }
    let (Some(name), Some(output)) = (&args.name, &args.output) else {
        bail!("give a network name and -o FILE.onnx, or --list");
    };
    let options = args.options.options();
    let parameters = cryptflow_zoo::parameter_count(name, &options)?;
    let inputs = cryptflow_zoo::inputs(name, &options)?;
    let net = cryptflow_zoo::info(name)?.name;
    let started = std::time::Instant::now();
    // Written to a temporary file beside the output, renamed when complete: an interrupted or
    // failed write leaves no truncated model under the output's name.
    let partial = output.with_extension("onnx.partial");
    let written = (|| -> Result<u64> {
        let file = std::fs::File::create(&partial).with_context(|| format!("cannot write {}", output.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let n = cryptflow_zoo::write(name, &options, &mut w).with_context(|| format!("cannot write {}", output.display()))?;
        let file = w.into_inner().map_err(|e| e.into_error()).with_context(|| format!("cannot write {}", output.display()))?;
        file.sync_all().ok();
        std::fs::rename(&partial, output).with_context(|| format!("cannot write {}", output.display()))?;
        Ok(n)
    })();
    let written = match written {
        Ok(n) => n,
        Err(e) => {
            std::fs::remove_file(&partial).ok();
            return Err(e);
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    if let Some(config) = cryptflow_zoo::transformer_config(name, &options)? {
        let described: Vec<String> = inputs.iter().map(|(n, t, s)| format!("{n} {t} {s:?}")).collect();
        println!(
            "{net}: {parameters} parameters ({:.1} M), {} layers, hidden {}, {} heads, sequence length {}; inputs {}; seed {}; \
             wrote {} ({}) in {seconds:.1} s",
            parameters as f64 / 1e6,
            config.layers,
            config.hidden,
            config.heads,
            config.seq,
            described.join(", "),
            options.seed,
            output.display(),
            human_bytes(written)
        );
    } else {
        println!(
            "{net}: {parameters} parameters, input {:?}, seed {}; wrote {} ({})",
            inputs[0].2,
            options.seed,
            output.display(),
            human_bytes(written)
        );
    }
    Ok(())
}
