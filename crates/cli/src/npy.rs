//! .npy input and output (NumPy's format, through the `npyz` crate).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cryptflow_tensor::{FloatTensor, Tensor};
use npyz::WriterBuilder;

fn open(path: &Path) -> Result<npyz::NpyFile<std::io::BufReader<File>>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    npyz::NpyFile::new(std::io::BufReader::new(file)).with_context(|| format!("{} is not a valid .npy file", path.display()))
}

fn shape_of(npy: &npyz::NpyFile<std::io::BufReader<File>>) -> Vec<usize> {
    npy.shape().iter().map(|&d| d as usize).collect()
}

/// Reads a float32 array (float64 is accepted and narrowed).
pub fn read_f32(path: &Path) -> Result<FloatTensor> {
    let npy = open(path)?;
    if npy.order() != npyz::Order::C {
        bail!("{}: Fortran-order arrays are not supported; save with numpy.ascontiguousarray", path.display());
    }
    let shape = shape_of(&npy);
    let dtype = npy.dtype().descr();
    let data: Vec<f32> = match npy.try_data::<f32>() {
        Ok(reader) => reader.collect::<std::io::Result<_>>(),
        Err(npy) => match npy.try_data::<f64>() {
            Ok(reader) => reader.map(|v| v.map(|v| v as f32)).collect::<std::io::Result<_>>(),
            Err(_) => bail!("{}: expected float32 data, found dtype {}", path.display(), dtype),
        },
    }
    .with_context(|| format!("{}: truncated or unreadable data", path.display()))?;
    Tensor::new(shape, data).with_context(|| format!("{}: data does not match its header", path.display()))
}

/// Reads integer class labels (any integer dtype, or integral floats).
pub fn read_labels(path: &Path) -> Result<Vec<i64>> {
    let npy = open(path)?;
    let dtype = npy.dtype().descr();
    let labels: std::io::Result<Vec<i64>> = match npy.try_data::<i64>() {
        Ok(r) => r.collect(),
        Err(npy) => match npy.try_data::<i32>() {
            Ok(r) => r.map(|v| v.map(i64::from)).collect(),
            Err(npy) => match npy.try_data::<u8>() {
                Ok(r) => r.map(|v| v.map(i64::from)).collect(),
                Err(npy) => match npy.try_data::<f32>() {
                    Ok(r) => r.map(|v| v.map(|v| v as i64)).collect(),
                    Err(_) => bail!("{}: labels must be integers, found dtype {}", path.display(), dtype),
                },
            },
        },
    };
    labels.with_context(|| format!("{}: truncated or unreadable data", path.display()))
}

pub fn write_f32(path: &Path, tensor: &FloatTensor) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(BufWriter::new(file))
        .begin_nd()
        .with_context(|| format!("cannot write {}", path.display()))?;
    writer.extend(tensor.data().iter().copied()).with_context(|| format!("cannot write {}", path.display()))?;
    writer.finish().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// How the inferences of an input file are laid out; outputs are stacked the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stacking {
    /// One input of exactly the model's shape.
    Single,
    /// `[N] + shape`: N inputs along a new leading axis.
    NewAxis,
    /// The model's batch extent is 1 and the file holds `[N] + shape[1..]`: N inputs along the
    /// batch axis (what a batch-1 export of a model with a symbolic batch expects).
    BatchAxis,
}

/// Splits `x` into the inferences it holds (see [`Stacking`]).
pub fn split_batch(x: &FloatTensor, shape: &[usize], what: &str) -> Result<(Vec<FloatTensor>, Stacking)> {
    let per = cryptflow_tensor::num_elements(shape).max(1);
    let split = |n: usize| -> Vec<FloatTensor> {
        x.data().chunks(per).take(n).map(|c| Tensor::new(shape.to_vec(), c.to_vec()).expect("chunk has the right size")).collect()
    };
    if x.shape() == shape {
        return Ok((vec![x.clone()], Stacking::Single));
    }
    if x.rank() == shape.len() + 1 && &x.shape()[1..] == shape {
        return Ok((split(x.shape()[0]), Stacking::NewAxis));
    }
    if !shape.is_empty() && shape[0] == 1 && x.rank() == shape.len() && x.shape()[1..] == shape[1..] {
        return Ok((split(x.shape()[0]), Stacking::BatchAxis));
    }
    bail!(
        "{what} has shape {:?}; the model's input has shape {:?} (give one input of exactly that shape, or a stack [N, ...] of them)",
        x.shape(),
        shape
    )
}

/// Stacks per-inference outputs the way the inputs were given.
pub fn stack(outputs: &[FloatTensor], stacking: Stacking) -> FloatTensor {
    let first = outputs[0].shape();
    let mut shape = vec![outputs.len()];
    match stacking {
        Stacking::Single => return outputs[0].clone(),
        Stacking::NewAxis => shape.extend_from_slice(first),
        Stacking::BatchAxis if first.first() == Some(&1) => shape.extend_from_slice(&first[1..]),
        Stacking::BatchAxis => shape.extend_from_slice(first),
    }
    let data = outputs.iter().flat_map(|t| t.data().iter().copied()).collect();
    Tensor::new(shape, data).expect("outputs share a shape")
}
