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

/// The elements of a .npy array, by kind: float32, float64, or any integer type widened to
/// i64.
pub enum Elements {
    F32(Vec<f32>),
    F64(Vec<f64>),
    Int(Vec<i64>),
}

/// A .npy array of any supported dtype.
pub struct Array {
    pub shape: Vec<usize>,
    pub elements: Elements,
}

/// Reads a float32, float64 or integer (int8 to int64, uint8 to uint64) array. Values of
/// unsigned 64-bit arrays beyond i64's range are an error.
pub fn read_array(path: &Path) -> Result<Array> {
    let npy = open(path)?;
    if npy.order() != npyz::Order::C {
        bail!("{}: Fortran-order arrays are not supported; save with numpy.ascontiguousarray", path.display());
    }
    let shape = shape_of(&npy);
    let dtype = npy.dtype().descr();
    let unreadable = || format!("{}: truncated or unreadable data", path.display());
    fn widen<T: npyz::Deserialize, R: std::io::Read>(
        npy: npyz::NpyFile<R>,
        f: impl Fn(T) -> i64,
    ) -> Result<std::io::Result<Vec<i64>>, Box<npyz::NpyFile<R>>> {
        npy.try_data::<T>().map(|r| r.map(|v| v.map(&f)).collect()).map_err(Box::new)
    }
    let elements = match npy.try_data::<f32>() {
        Ok(r) => Elements::F32(r.collect::<std::io::Result<_>>().with_context(unreadable)?),
        Err(npy) => match npy.try_data::<f64>() {
            Ok(r) => Elements::F64(r.collect::<std::io::Result<_>>().with_context(unreadable)?),
            Err(npy) => {
                let ints = widen::<i64, _>(npy, |v| v)
                    .or_else(|npy| widen::<i32, _>(*npy, i64::from))
                    .or_else(|npy| widen::<i16, _>(*npy, i64::from))
                    .or_else(|npy| widen::<i8, _>(*npy, i64::from))
                    .or_else(|npy| widen::<u32, _>(*npy, i64::from))
                    .or_else(|npy| widen::<u16, _>(*npy, i64::from))
                    .or_else(|npy| widen::<u8, _>(*npy, i64::from));
                match ints {
                    Ok(values) => Elements::Int(values.with_context(unreadable)?),
                    Err(npy) => match (*npy).try_data::<u64>() {
                        Ok(r) => {
                            let values: Vec<u64> = r.collect::<std::io::Result<_>>().with_context(unreadable)?;
                            if let Some(i) = values.iter().position(|&v| v > i64::MAX as u64) {
                                bail!("{}: element {} = {} does not fit in int64", path.display(), index_text(&shape, i), values[i]);
                            }
                            Elements::Int(values.into_iter().map(|v| v as i64).collect())
                        }
                        Err(_) => bail!(
                            "{}: unsupported dtype {dtype}: give float32 or int64 (float64 and the other integer types are converted)",
                            path.display()
                        ),
                    },
                }
            }
        },
    };
    let len = match &elements {
        Elements::F32(v) => v.len(),
        Elements::F64(v) => v.len(),
        Elements::Int(v) => v.len(),
    };
    if len != cryptflow_tensor::num_elements(&shape) {
        bail!("{}: data does not match its header", path.display());
    }
    Ok(Array { shape, elements })
}

/// The multi-dimensional index of flat element `i` of an array of `shape`, as `[a, b, c]`.
pub fn index_text(shape: &[usize], i: usize) -> String {
    let mut index = vec![0; shape.len()];
    let mut rest = i;
    for (axis, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            index[axis] = rest % d;
            rest /= d;
        }
    }
    format!("{index:?}")
}

/// Reads integer class labels (int64, int32, uint8, or float32/float64 arrays holding whole
/// numbers only: a fraction, NaN or an infinity is refused, naming the element).
pub fn read_labels(path: &Path) -> Result<Vec<i64>> {
    let npy = open(path)?;
    let dtype = npy.dtype().descr();
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let unreadable = |e: std::io::Error| anyhow::Error::new(e).context(format!("{}: truncated or unreadable data", path.display()));
    let floats: Vec<f64> = match npy.try_data::<i64>() {
        Ok(r) => return r.collect::<std::io::Result<Vec<i64>>>().map_err(unreadable),
        Err(npy) => match npy.try_data::<i32>() {
            Ok(r) => return r.map(|v| v.map(i64::from)).collect::<std::io::Result<Vec<i64>>>().map_err(unreadable),
            Err(npy) => match npy.try_data::<u8>() {
                Ok(r) => return r.map(|v| v.map(i64::from)).collect::<std::io::Result<Vec<i64>>>().map_err(unreadable),
                Err(npy) => match npy.try_data::<f32>() {
                    Ok(r) => r.map(|v| v.map(f64::from)).collect::<std::io::Result<Vec<f64>>>().map_err(unreadable)?,
                    Err(npy) => match npy.try_data::<f64>() {
                        Ok(r) => r.collect::<std::io::Result<Vec<f64>>>().map_err(unreadable)?,
                        Err(_) => bail!("{}: labels must be integers, found dtype {}", path.display(), dtype),
                    },
                },
            },
        },
    };
    floats
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
                Ok(v as i64)
            } else {
                bail!(
                    "{}: labels must be whole numbers (class indices); element {} is {v} (dtype {dtype})",
                    path.display(),
                    index_text(&shape, i)
                )
            }
        })
        .collect()
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

/// How many inferences an array of shape `file` holds for a model input of shape `shape`, and
/// how (see [`Stacking`]).
pub fn batch_layout(file: &[usize], shape: &[usize], what: &str) -> Result<(usize, Stacking)> {
    if file == shape {
        return Ok((1, Stacking::Single));
    }
    if file.len() == shape.len() + 1 && &file[1..] == shape {
        return Ok((file[0], Stacking::NewAxis));
    }
    if !shape.is_empty() && shape[0] == 1 && file.len() == shape.len() && file[1..] == shape[1..] {
        return Ok((file[0], Stacking::BatchAxis));
    }
    bail!(
        "{what} has shape {file:?}; the model's input has shape {shape:?} (give one input of exactly that shape, or a stack [N, ...] of them)",
    )
}

/// Splits `x` into the inferences it holds (see [`Stacking`]).
pub fn split_batch(x: &FloatTensor, shape: &[usize], what: &str) -> Result<(Vec<FloatTensor>, Stacking)> {
    let (n, stacking) = batch_layout(x.shape(), shape, what)?;
    let per = cryptflow_tensor::num_elements(shape).max(1);
    let items = x.data().chunks(per).take(n).map(|c| Tensor::new(shape.to_vec(), c.to_vec()).expect("chunk has the right size")).collect();
    Ok((items, stacking))
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
