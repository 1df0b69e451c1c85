//! `cryptflow zoo`: the paper's benchmark networks as ONNX files with seeded random weights.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use cryptflow_zoo::Options;

use crate::compile::human_bytes;

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
    /// Output classes (default 10 for MNIST/CIFAR, 1000 for ImageNet, 2 for the 3D-UNet).
    #[arg(long)]
    pub classes: Option<usize>,
}

impl ZooOptions {
    pub fn options(&self) -> Options {
        Options { seed: self.seed, input_size: self.input_size.clone(), width: self.width, classes: self.classes }
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
    let model = cryptflow_zoo::build(name, &options)?;
    let parameters = cryptflow_zoo::parameter_count(name, &options)?;
    let shape = cryptflow_zoo::input_shape(name, &options)?;
    let bytes = cryptflow_zoo::encode(&model);
    drop(model);
    std::fs::write(output, &bytes).with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "{}: {parameters} parameters, input {shape:?}, seed {}; wrote {} ({})",
        cryptflow_zoo::info(name)?.name,
        options.seed,
        output.display(),
        human_bytes(bytes.len() as u64)
    );
    Ok(())
}
