//! ONNX tensors as constants: `TensorProto`s (initializers, `Constant` values) and
//! `SparseTensorProto`s. Constants and their evaluator are shared with the other front ends
//! ([`cryptflow_frontend::consts`]).

use cryptflow_frontend::consts::{bf16_to_f32, check_shape, f16_to_f32, raw_chunks, Const, Data};
use cryptflow_tensor::strides_of;

use crate::proto::{tensor_proto::DataType, SparseTensorProto, TensorProto};

/// Largest number of elements a constant computed at import time may have when it is larger
/// than its inputs (Expand, ConstantOfShape, Range, Tile, Pad, broadcasting).
pub const MAX_GENERATED: usize = 1 << 27;

fn expect_len<T>(v: Vec<T>, n: usize, field: &str) -> Result<Vec<T>, String> {
    if v.len() != n {
        return Err(format!("{field} holds {} elements, but the dims need {n}", v.len()));
    }
    Ok(v)
}

/// Decodes a `TensorProto` into a constant. `what` names the tensor in errors.
pub fn from_tensor_proto(t: &TensorProto) -> Result<Const, String> {
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return Err("EXTERNAL".into());
    }
    if t.segment.is_some() {
        return Err("segmented tensors are not supported".into());
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(format!("negative dimension {d} in dims {:?}", t.dims));
        }
        shape.push(usize::try_from(d).map_err(|_| format!("dimension {d} too large"))?);
    }
    let n = check_shape(&shape)?;
    let dtype = t.data_type.unwrap_or(0);
    let raw = t.raw_data.as_deref();
    let dt = DataType::try_from(dtype).map_err(|_| format!("unknown data type {dtype}"))?;
    let data = match dt {
        DataType::Float => Data::F(match raw {
            Some(r) => raw_chunks::<4>(r, n, "FLOAT")?.into_iter().map(f32::from_le_bytes).collect(),
            None => expect_len(t.float_data.clone(), n, "float_data")?,
        }),
        DataType::Double => Data::F(match raw {
            Some(r) => raw_chunks::<8>(r, n, "DOUBLE")?.into_iter().map(|b| f64::from_le_bytes(b) as f32).collect(),
            None => expect_len(t.double_data.iter().map(|&x| x as f32).collect(), n, "double_data")?,
        }),
        DataType::Float16 | DataType::Bfloat16 => {
            let conv = if dt == DataType::Float16 { f16_to_f32 } else { bf16_to_f32 };
            Data::F(match raw {
                Some(r) => raw_chunks::<2>(r, n, "16-bit float")?.into_iter().map(|b| conv(u16::from_le_bytes(b))).collect(),
                None => expect_len(t.int32_data.iter().map(|&x| conv(x as u16)).collect(), n, "int32_data")?,
            })
        }
        DataType::Int64 => Data::I(match raw {
            Some(r) => raw_chunks::<8>(r, n, "INT64")?.into_iter().map(i64::from_le_bytes).collect(),
            None => expect_len(t.int64_data.clone(), n, "int64_data")?,
        }),
        DataType::Int32 => Data::I(match raw {
            Some(r) => raw_chunks::<4>(r, n, "INT32")?.into_iter().map(|b| i32::from_le_bytes(b) as i64).collect(),
            None => expect_len(t.int32_data.iter().map(|&x| x as i64).collect(), n, "int32_data")?,
        }),
        DataType::Int16 => Data::I(match raw {
            Some(r) => raw_chunks::<2>(r, n, "INT16")?.into_iter().map(|b| i16::from_le_bytes(b) as i64).collect(),
            None => expect_len(t.int32_data.iter().map(|&x| x as i16 as i64).collect(), n, "int32_data")?,
        }),
        DataType::Uint16 => Data::I(match raw {
            Some(r) => raw_chunks::<2>(r, n, "UINT16")?.into_iter().map(|b| u16::from_le_bytes(b) as i64).collect(),
            None => expect_len(t.int32_data.iter().map(|&x| x as u16 as i64).collect(), n, "int32_data")?,
        }),
        DataType::Int8 => Data::I(match raw {
            Some(r) => expect_len(r.iter().map(|&b| b as i8 as i64).collect(), n, "raw_data")?,
            None => expect_len(t.int32_data.iter().map(|&x| x as i8 as i64).collect(), n, "int32_data")?,
        }),
        DataType::Uint8 => Data::I(match raw {
            Some(r) => expect_len(r.iter().map(|&b| b as i64).collect(), n, "raw_data")?,
            None => expect_len(t.int32_data.iter().map(|&x| x as u8 as i64).collect(), n, "int32_data")?,
        }),
        DataType::Bool => Data::I(match raw {
            Some(r) => expect_len(r.iter().map(|&b| (b != 0) as i64).collect(), n, "raw_data")?,
            None => expect_len(t.int32_data.iter().map(|&x| (x != 0) as i64).collect(), n, "int32_data")?,
        }),
        DataType::Uint32 => Data::I(match raw {
            Some(r) => raw_chunks::<4>(r, n, "UINT32")?.into_iter().map(|b| u32::from_le_bytes(b) as i64).collect(),
            None => expect_len(t.uint64_data.iter().map(|&x| x as u32 as i64).collect(), n, "uint64_data")?,
        }),
        DataType::Uint64 => Data::I(match raw {
            Some(r) => raw_chunks::<8>(r, n, "UINT64")?.into_iter().map(|b| u64::from_le_bytes(b) as i64).collect(),
            None => expect_len(t.uint64_data.iter().map(|&x| x as i64).collect(), n, "uint64_data")?,
        }),
        other => return Err(format!("data type {} is not supported", other.as_str_name())),
    };
    Ok(Const { shape, data })
}

/// Densifies a sparse tensor (indices either `[NNZ]` linear or `[NNZ, rank]`).
pub fn from_sparse_proto(s: &SparseTensorProto) -> Result<Const, String> {
    let values = from_tensor_proto(s.values.as_ref().ok_or("sparse tensor without values")?)?;
    let indices = match &s.indices {
        Some(t) => from_tensor_proto(t)?,
        None => return Err("sparse tensor without indices".into()),
    };
    let mut shape = Vec::new();
    for &d in &s.dims {
        shape.push(usize::try_from(d).map_err(|_| format!("bad sparse dimension {d}"))?);
    }
    let n = check_shape(&shape)?;
    if n > MAX_GENERATED {
        return Err(format!("sparse tensor of shape {shape:?} is too large to densify"));
    }
    let idx = indices.ints().ok_or("sparse indices must be integers")?;
    let nnz = values.len();
    let st = strides_of(&shape);
    let linear: Vec<i64> = if indices.shape.len() == 1 && idx.len() == nnz {
        idx.to_vec()
    } else if indices.shape.len() == 2 && indices.shape[0] == nnz && indices.shape[1] == shape.len() {
        idx.chunks(shape.len().max(1))
            .map(|c| {
                c.iter().zip(&shape).zip(&st).try_fold(0i64, |acc, ((&i, &d), &s)| {
                    if i < 0 || i as u64 >= d as u64 {
                        None
                    } else {
                        Some(acc + i * s as i64)
                    }
                })
                .unwrap_or(-1)
            })
            .collect()
    } else {
        return Err(format!("sparse indices of shape {:?} do not fit {nnz} values", indices.shape));
    };
    if linear.iter().any(|&i| i < 0 || i as u64 >= n as u64) {
        return Err("sparse index out of range".into());
    }
    let data = match &values.data {
        Data::F(v) => {
            let mut out = vec![0f32; n];
            for (&i, &x) in linear.iter().zip(v) {
                out[i as usize] = x;
            }
            Data::F(out)
        }
        Data::I(v) => {
            let mut out = vec![0i64; n];
            for (&i, &x) in linear.iter().zip(v) {
                out[i as usize] = x;
            }
            Data::I(out)
        }
    };
    Ok(Const { shape, data })
}
