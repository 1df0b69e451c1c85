//! TensorFlow tensors as constants: the `value` of `Const` nodes (`TensorProto`) and data
//! types. Constants and their evaluator are shared with the other front ends
//! ([`cryptflow_frontend::consts`]).

use cryptflow_frontend::consts::{bf16_to_f32, check_shape, f16_to_f32, raw_chunks, Const, Data};

use crate::proto::{DataType, TensorProto, TensorShapeProto};

/// Largest number of elements a constant computed at import time may have when it is larger
/// than its inputs (Fill, Range, Tile, Pad, broadcasting).
pub const MAX_GENERATED: usize = 1 << 24;

/// Largest number of elements a `TensorProto` may describe with fewer stored values than
/// elements (TensorFlow repeats the last value; splat constants such as zeros).
const MAX_FILLED: usize = 1 << 24;

/// The dimensions of a fully known shape.
pub fn shape_from_proto(s: &TensorShapeProto) -> Result<Vec<usize>, String> {
    if s.unknown_rank {
        return Err("the shape has unknown rank".into());
    }
    let mut shape = Vec::with_capacity(s.dim.len());
    for d in &s.dim {
        if d.size < 0 {
            return Err(format!("dimension {} is unknown", d.size));
        }
        shape.push(usize::try_from(d.size).map_err(|_| format!("dimension {} is too large", d.size))?);
    }
    check_shape(&shape)?;
    Ok(shape)
}

/// Values stored in a typed field: exactly `n`, or fewer (the last one is repeated; none
/// means zeros), as TensorFlow reads them.
fn filled<T: Copy + Default>(v: &[T], n: usize, field: &str) -> Result<Vec<T>, String> {
    if v.len() == n {
        return Ok(v.to_vec());
    }
    if v.len() > n {
        return Err(format!("{field} holds {} values, but the shape has {n} elements", v.len()));
    }
    if n > MAX_FILLED {
        return Err(format!("a filled constant of {n} elements is too large"));
    }
    let last = v.last().copied().unwrap_or_default();
    let mut out = v.to_vec();
    out.resize(n, last);
    Ok(out)
}

/// The name of a `DataType` for messages.
pub fn dtype_name(dtype: i32) -> String {
    match DataType::try_from(dtype) {
        Ok(d) => d.as_str_name().to_string(),
        Err(_) => format!("data type {dtype}"),
    }
}

/// Whether a `DataType` is a floating-point type the importer accepts.
pub fn is_float_dtype(dtype: i32) -> bool {
    matches!(
        DataType::try_from(dtype),
        Ok(DataType::DtFloat | DataType::DtDouble | DataType::DtHalf | DataType::DtBfloat16)
    )
}

/// Decodes a TensorFlow `TensorProto` (the `value` of a `Const`) into a constant.
pub fn from_tensor_proto(t: &TensorProto) -> Result<Const, String> {
    let shape = match &t.tensor_shape {
        Some(s) => shape_from_proto(s)?,
        None => vec![],
    };
    let n = check_shape(&shape)?;
    let raw = (!t.tensor_content.is_empty()).then_some(t.tensor_content.as_slice());
    let dt = DataType::try_from(t.dtype).map_err(|_| format!("unknown data type {}", t.dtype))?;
    let data = match dt {
        DataType::DtFloat => Data::F(match raw {
            Some(r) => raw_chunks::<4>(r, n, "DT_FLOAT")?.into_iter().map(f32::from_le_bytes).collect(),
            None => filled(&t.float_val, n, "float_val")?,
        }),
        DataType::DtDouble => Data::F(match raw {
            Some(r) => raw_chunks::<8>(r, n, "DT_DOUBLE")?.into_iter().map(|b| f64::from_le_bytes(b) as f32).collect(),
            None => filled(&t.double_val, n, "double_val")?.into_iter().map(|x| x as f32).collect(),
        }),
        DataType::DtHalf | DataType::DtBfloat16 => {
            let conv = if dt == DataType::DtHalf { f16_to_f32 } else { bf16_to_f32 };
            Data::F(match raw {
                Some(r) => raw_chunks::<2>(r, n, "16-bit float")?.into_iter().map(|b| conv(u16::from_le_bytes(b))).collect(),
                None => filled(&t.half_val, n, "half_val")?.into_iter().map(|x| conv(x as u16)).collect(),
            })
        }
        DataType::DtInt64 => Data::I(match raw {
            Some(r) => raw_chunks::<8>(r, n, "DT_INT64")?.into_iter().map(i64::from_le_bytes).collect(),
            None => filled(&t.int64_val, n, "int64_val")?,
        }),
        DataType::DtInt32 | DataType::DtInt16 | DataType::DtInt8 | DataType::DtUint8 | DataType::DtUint16 => {
            let from_raw = |r: &[u8]| -> Result<Vec<i64>, String> {
                Ok(match dt {
                    DataType::DtInt32 => raw_chunks::<4>(r, n, "DT_INT32")?.into_iter().map(|b| i32::from_le_bytes(b) as i64).collect(),
                    DataType::DtInt16 => raw_chunks::<2>(r, n, "DT_INT16")?.into_iter().map(|b| i16::from_le_bytes(b) as i64).collect(),
                    DataType::DtUint16 => raw_chunks::<2>(r, n, "DT_UINT16")?.into_iter().map(|b| u16::from_le_bytes(b) as i64).collect(),
                    DataType::DtInt8 => raw_chunks::<1>(r, n, "DT_INT8")?.into_iter().map(|b| b[0] as i8 as i64).collect(),
                    _ => raw_chunks::<1>(r, n, "DT_UINT8")?.into_iter().map(|b| b[0] as i64).collect(),
                })
            };
            Data::I(match raw {
                Some(r) => from_raw(r)?,
                None => {
                    let narrow = |x: i32| -> i64 {
                        match dt {
                            DataType::DtInt16 => x as i16 as i64,
                            DataType::DtInt8 => x as i8 as i64,
                            DataType::DtUint8 => x as u8 as i64,
                            DataType::DtUint16 => x as u16 as i64,
                            _ => x as i64,
                        }
                    };
                    filled(&t.int_val, n, "int_val")?.into_iter().map(narrow).collect()
                }
            })
        }
        DataType::DtUint32 => Data::I(match raw {
            Some(r) => raw_chunks::<4>(r, n, "DT_UINT32")?.into_iter().map(|b| u32::from_le_bytes(b) as i64).collect(),
            None => filled(&t.uint32_val, n, "uint32_val")?.into_iter().map(|x| x as i64).collect(),
        }),
        DataType::DtUint64 => Data::I(match raw {
            Some(r) => raw_chunks::<8>(r, n, "DT_UINT64")?.into_iter().map(|b| u64::from_le_bytes(b) as i64).collect(),
            None => filled(&t.uint64_val, n, "uint64_val")?.into_iter().map(|x| x as i64).collect(),
        }),
        DataType::DtBool => Data::I(match raw {
            Some(r) => raw_chunks::<1>(r, n, "DT_BOOL")?.into_iter().map(|b| (b[0] != 0) as i64).collect(),
            None => filled(&t.bool_val, n, "bool_val")?.into_iter().map(|b| b as i64).collect(),
        }),
        other => return Err(format!("constants of type {} are not supported", other.as_str_name())),
    };
    Ok(Const { shape, data })
}
