//! Helpers for the front ends' tests (feature `test-support`): the committed fixtures,
//! `.npy` files and a reference softmax.

use std::path::{Path, PathBuf};

use cryptflow_tensor::{FloatTensor, Tensor};

/// The workspace's `fixtures/` directory.
pub fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Reads a `.npy` array (f32, f64 or integers, C or Fortran order) as a float tensor.
pub fn try_read_npy(path: &Path) -> Result<FloatTensor, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let bytes = std::fs::read(path).map_err(|e| err(&e))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| err(&e))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let fortran = npy.order() == npyz::Order::Fortran;
    let data: Vec<f32> = match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 8 => {
            npy.into_vec::<f64>().map_err(|e| err(&e))?.into_iter().map(|v| v as f32).collect()
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Int => {
            npy.into_vec::<i64>().map_err(|e| err(&e))?.into_iter().map(|v| v as f32).collect()
        }
        _ => npy.into_vec::<f32>().map_err(|e| err(&e))?,
    };
    let data = c_order(&shape, data, fortran);
    Tensor::new(shape, data).map_err(|e| err(&e))
}

/// [`try_read_npy`], panicking on errors.
pub fn read_npy(path: &Path) -> FloatTensor {
    try_read_npy(path).unwrap_or_else(|e| panic!("{e}"))
}

/// Row-major data of a possibly Fortran-ordered .npy array.
pub fn c_order(shape: &[usize], data: Vec<f32>, fortran: bool) -> Vec<f32> {
    if !fortran || shape.len() < 2 {
        return data;
    }
    let n = data.len();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        let mut off = 0;
        let mut stride = 1;
        for (i, &d) in shape.iter().enumerate() {
            off += idx[i] * stride;
            stride *= d;
        }
        out.push(data[off]);
        for axis in (0..shape.len()).rev() {
            idx[axis] += 1;
            if idx[axis] < shape[axis] {
                break;
            }
            idx[axis] = 0;
        }
    }
    out
}

/// Softmax over the last axis (what a compiled-away output Softmax would have given).
pub fn softmax_last_axis(x: &FloatTensor) -> FloatTensor {
    let n = *x.shape().last().unwrap();
    let mut out = Vec::with_capacity(x.len());
    for row in x.data().chunks(n) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = row.iter().map(|&v| (v - m).exp()).collect();
        let s: f32 = e.iter().sum();
        out.extend(e.iter().map(|v| v / s));
    }
    Tensor::new(x.shape().to_vec(), out).unwrap()
}
