//! .npy input and output (NumPy's format, through the `npyz` crate).

use std::fs::File;
use std::io::{BufWriter, Read, Seek};
use std::path::Path;

use anyhow::{bail, Context, Result};
use cryptflow_tensor::{FloatTensor, Tensor};
use npyz::WriterBuilder;

fn open(path: &Path) -> Result<npyz::NpyFile<std::io::BufReader<File>>> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // npyz parses the header as a Python literal in time exponential in its nesting: the header
    // is checked (and its sizes bounded) first, by a linear parser of the only form NumPy writes.
    check(&mut file).with_context(|| format!("{} is not a valid .npy file", path.display()))?;
    file.rewind().with_context(|| format!("cannot read {}", path.display()))?;
    npyz::NpyFile::new(std::io::BufReader::new(file)).with_context(|| format!("{} is not a valid .npy file", path.display()))
}

/// Longest .npy header accepted, in bytes (NumPy itself refuses headers over 10,000 bytes by
/// default).
pub const MAX_HEADER_BYTES: usize = 1 << 16;
/// Most dimensions of an array accepted.
const MAX_DIMS: usize = 64;

/// What the header of a .npy file announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
    /// Offset of the data from the start of the file.
    pub data_offset: u64,
}

/// Reads and checks the preamble and header of a .npy file, in time and memory linear in the
/// header (itself at most [`MAX_HEADER_BYTES`]), and checks that the file holds the data the
/// header announces.
pub fn check(file: &mut File) -> Result<Header> {
    let file_len = file.metadata().context("cannot read its size")?.len();
    let mut pre = [0u8; 8];
    file.read_exact(&mut pre).map_err(|_| anyhow::anyhow!("too short for a .npy preamble"))?;
    if &pre[..6] != b"\x93NUMPY" {
        bail!("no .npy magic string");
    }
    let (len_bytes, offset) = match pre[6] {
        1 => (2, 10u64),
        2 | 3 => (4, 12u64),
        v => bail!("unsupported .npy format version {v}.{}", pre[7]),
    };
    let mut raw = [0u8; 4];
    file.read_exact(&mut raw[..len_bytes]).map_err(|_| anyhow::anyhow!("too short for a .npy preamble"))?;
    let header_len = u32::from_le_bytes(raw) as usize;
    if header_len > MAX_HEADER_BYTES {
        bail!("a header of {header_len} bytes (at most {MAX_HEADER_BYTES} accepted)");
    }
    if header_len as u64 > file_len.saturating_sub(offset) {
        bail!("truncated: the header announces {header_len} bytes, the file is {file_len} bytes");
    }
    let mut text = vec![0u8; header_len];
    file.read_exact(&mut text).map_err(|_| anyhow::anyhow!("truncated header"))?;
    let mut header = parse_header(&text)?;
    header.data_offset = offset + header_len as u64;
    let itemsize = itemsize(&header.descr)?;
    // Even a shape with a zero extent must not overflow where its extents are multiplied.
    if header.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d.max(1))).is_none_or(|p| p > isize::MAX as u64) {
        bail!("shape {:?} has too many elements", header.shape);
    }
    let elements = header.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    let bytes = elements.and_then(|e| e.checked_mul(itemsize));
    let available = file_len - header.data_offset;
    match bytes {
        Some(b) if b <= available => Ok(header),
        _ => bail!(
            "truncated: the header announces shape {:?} of {} ({} bytes of data), the file holds {available}",
            header.shape,
            header.descr,
            bytes.map_or("more than 2^64".to_string(), |b| b.to_string())
        ),
    }
}

/// Bytes per element of a NumPy type string such as `<f4`, `|u1` or `<U10`.
fn itemsize(descr: &str) -> Result<u64> {
    let body = descr.trim_start_matches(['<', '>', '|', '=']);
    let mut chars = body.chars();
    let kind = chars.next().filter(char::is_ascii_alphabetic);
    let digits = chars.as_str();
    match (kind, digits.parse::<u64>()) {
        (Some('U'), Ok(n)) => n.checked_mul(4).ok_or_else(|| anyhow::anyhow!("unsupported dtype {descr}")),
        (Some(_), Ok(n)) if !digits.starts_with('+') => Ok(n),
        _ => bail!("unsupported dtype {descr}: give float32 or int64 (float64 and the other integer types are converted)"),
    }
}

/// Parses a .npy header: a Python dict literal with exactly the keys 'descr' (a string),
/// 'fortran_order' (True or False) and 'shape' (a tuple of integers), as NumPy writes it.
/// Anything else (nesting, other keys, structured dtypes) is refused. Linear in the input.
pub fn parse_header(text: &[u8]) -> Result<Header> {
    let mut p = Lit { s: text, at: 0 };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{')?;
    loop {
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        match key.as_str() {
            "descr" if descr.is_none() => descr = Some(p.string()?),
            "fortran_order" if fortran.is_none() => fortran = Some(p.boolean()?),
            "shape" if shape.is_none() => shape = Some(p.tuple()?),
            "descr" | "fortran_order" | "shape" => bail!("header: key '{key}' given twice"),
            _ => bail!("header: unexpected key '{}'", key.escape_debug()),
        }
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    p.skip_ws();
    if p.at != text.len() {
        bail!("header: unexpected text after the dictionary at byte {}", p.at);
    }
    match (descr, fortran, shape) {
        (Some(descr), Some(fortran_order), Some(shape)) => Ok(Header { descr, fortran_order, shape, data_offset: 0 }),
        _ => bail!("header: 'descr', 'fortran_order' and 'shape' are required"),
    }
}

/// A cursor over a Python literal.
struct Lit<'a> {
    s: &'a [u8],
    at: usize,
}

impl Lit<'_> {
    fn skip_ws(&mut self) {
        while self.at < self.s.len() && matches!(self.s[self.at], b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.at) == Some(&c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if !self.eat(c) {
            bail!("header: expected '{}' at byte {}", c as char, self.at);
        }
        Ok(())
    }

    /// A quoted string without escapes (what NumPy writes for keys and type strings).
    fn string(&mut self) -> Result<String> {
        self.skip_ws();
        let q = match self.s.get(self.at) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => bail!("header: expected a string at byte {}", self.at),
        };
        let start = self.at + 1;
        let len = self.s[start..].iter().position(|&c| c == q || c == b'\\' || c == b'\n');
        match len.map(|l| (l, self.s[start + l])) {
            Some((l, c)) if c == q && l <= 256 => {
                self.at = start + l + 1;
                String::from_utf8(self.s[start..start + l].to_vec()).map_err(|_| anyhow::anyhow!("header: a string that is not UTF-8"))
            }
            _ => bail!("header: unsupported string at byte {}", self.at),
        }
    }

    fn boolean(&mut self) -> Result<bool> {
        self.skip_ws();
        for (word, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.at..].starts_with(word) {
                self.at += word.len();
                return Ok(v);
            }
        }
        bail!("header: expected True or False at byte {}", self.at)
    }

    /// `(d0, d1, ...)`: non-negative integers, a trailing comma allowed.
    fn tuple(&mut self) -> Result<Vec<u64>> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(dims);
            }
            self.skip_ws();
            let start = self.at;
            while self.at < self.s.len() && self.s[self.at].is_ascii_digit() {
                self.at += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.at]).expect("ASCII digits");
            let d: u64 = digits.parse().map_err(|_| anyhow::anyhow!("header: expected a dimension at byte {start}"))?;
            if self.s.get(self.at) == Some(&b'L') {
                self.at += 1; // Python 2's long integers
            }
            if dims.len() == MAX_DIMS {
                bail!("header: more than {MAX_DIMS} dimensions");
            }
            dims.push(d);
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }
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
    write_array(path, tensor.shape(), tensor.data())
}

/// Writes decoded outputs: float32, or int64 for integer outputs (ArgMax's class indices,
/// which the float32 decoding holds exactly).
pub fn write_output(path: &Path, tensor: &FloatTensor, encoding: cryptflow_ir::llil::Encoding) -> Result<()> {
    match encoding {
        cryptflow_ir::llil::Encoding::Integer => write_i64(path, tensor.shape(), &tensor.data().iter().map(|&v| v as i64).collect::<Vec<_>>()),
        cryptflow_ir::llil::Encoding::Fixed { .. } => write_f32(path, tensor),
    }
}

pub fn write_i64(path: &Path, shape: &[usize], data: &[i64]) -> Result<()> {
    write_array(path, shape, data)
}

fn write_array<T: npyz::Serialize + npyz::AutoSerialize + Copy>(path: &Path, shape: &[usize], data: &[T]) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(BufWriter::new(file))
        .begin_nd()
        .with_context(|| format!("cannot write {}", path.display()))?;
    writer.extend(data.iter().copied()).with_context(|| format!("cannot write {}", path.display()))?;
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
    let stacked = if file.len() == shape.len() + 1 && &file[1..] == shape {
        Some(Stacking::NewAxis)
    } else if !shape.is_empty() && shape[0] == 1 && file.len() == shape.len() && file[1..] == shape[1..] {
        Some(Stacking::BatchAxis)
    } else {
        None
    };
    match stacked {
        Some(_) if file[0] == 0 => bail!("{what} has shape {file:?}: it holds no input (N = 0)"),
        Some(stacking) => return Ok((file[0], stacking)),
        None => {}
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
    let Some(first) = outputs.first().map(|t| t.shape()) else {
        return Tensor::new(vec![0], Vec::new()).expect("an empty stack");
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A .npy file (version 1.0) with `header` as its header text (padded as NumPy pads it)
    /// and `data` after it.
    fn npy_bytes(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.as_bytes().to_vec();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend(h);
        out.extend_from_slice(data);
        out
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn valid_headers_parse_and_round_trip() {
        let h = parse_header(b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }   \n").unwrap();
        assert_eq!((h.descr.as_str(), h.fortran_order, h.shape.as_slice()), ("<f4", false, &[2u64, 3][..]));
        assert_eq!(parse_header(b"{\"shape\": (5L,), \"descr\": \"|u1\", \"fortran_order\": True}").unwrap().shape, vec![5]);
        assert_eq!(parse_header(b"{'descr':'<i8','fortran_order':False,'shape':()}").unwrap().shape, Vec::<u64>::new());
        let dir = tempfile::tempdir().unwrap();
        let t = Tensor::new(vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        let p = dir.path().join("t.npy");
        write_f32(&p, &t).unwrap();
        assert_eq!(read_f32(&p).unwrap(), t);
        let a = read_array(&p).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
    }

    #[test]
    fn hostile_headers_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            // Nested braces: npyz's parser takes minutes on 16 of them.
            (npy_bytes(&"{".repeat(40), &[]), "expected a string"),
            (npy_bytes(&format!("{{'descr': {}", "{".repeat(2000)), &[]), "expected a string"),
            (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': ((((((((((((((((1,),),),),),),),),),),),),),),),)}", &[]), "dimension"),
            (npy_bytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}", &[]), "expected a string"),
            (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", &[]), "unexpected key"),
            (npy_bytes("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", &[]), "twice"),
            (npy_bytes("{'descr': '<f4', 'fortran_order': False}", &[]), "required"),
            // Sizes: the data must be in the file, the extents must not overflow.
            (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000)}", &[0; 64]), "truncated"),
            (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", &[0; 8]), "truncated"),
            (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296)}", &[]), "too many elements"),
            (npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}", &[]), "dimension"),
            (npy_bytes("{'descr': 'O', 'fortran_order': False, 'shape': (1,)}", &[0; 8]), "unsupported dtype"),
            (b"\x93NUMPY\x02\x00\xff\xff\xff\x7f{".to_vec(), "at most"),
            (b"\x93NUMPY\x01\x00\xf0\xff{".to_vec(), "truncated"),
            (b"\x93NUMPY\x09\x00".to_vec(), "version"),
            (b"PK\x03\x04".to_vec(), "preamble"),
        ];
        for (k, (bytes, what)) in cases.iter().enumerate() {
            let p = write(dir.path(), &format!("h{k}.npy"), bytes);
            let start = Instant::now();
            for err in [read_array(&p).err(), read_f32(&p).err(), read_labels(&p).err()] {
                let err = format!("{:#}", err.expect("refused"));
                assert!(err.contains(what) && err.contains(&*p.to_string_lossy()), "case {k}: {err}");
            }
            assert!(start.elapsed() < Duration::from_secs(1), "case {k} took {:?}", start.elapsed());
        }
    }

    #[test]
    fn an_empty_stack_is_a_clear_error_not_a_panic() {
        let err = batch_layout(&[0, 1, 28, 28], &[1, 1, 28, 28], "input `x`").unwrap_err().to_string();
        assert!(err.contains("no input (N = 0)"), "{err}");
        let err = batch_layout(&[0, 28, 28], &[1, 28, 28], "input `x`").unwrap_err().to_string();
        assert!(err.contains("N = 0"), "{err}");
        assert_eq!(stack(&[], Stacking::NewAxis).shape(), &[0]);
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "e.npy", &npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3)}", &[]));
        assert_eq!(read_array(&p).unwrap().shape, vec![0, 3]);
        assert!(read_labels(&p).unwrap().is_empty());
    }

    /// Property test: mutated, truncated and spliced .npy files never panic the readers, and
    /// each is read or refused in bounded time.
    #[test]
    fn mutated_files_never_panic_the_readers() {
        let dir = tempfile::tempdir().unwrap();
        let seeds: Vec<Vec<u8>> = vec![
            npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", &f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
            npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", &[7; 24]),
            npy_bytes("{'descr': '|u1', 'fortran_order': True, 'shape': (2, 2), }", &[1, 2, 3, 4]),
            npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", &[0; 8]),
        ];
        let alphabet = b"{}()[],:' \"0123456789LTrueFalsdcpfoshi<>|=\n\\";
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let cases = 3000;
        let (mut read, mut refused) = (0, 0);
        let start = Instant::now();
        for case in 0..cases {
            let mut b = seeds[next(seeds.len())].clone();
            for _ in 0..1 + next(4) {
                let i = next(b.len());
                match next(5) {
                    0 => b[i] = next(256) as u8,
                    1 => b[i] = alphabet[next(alphabet.len())],
                    2 => b.truncate(i),
                    3 => {
                        let run = vec![alphabet[next(alphabet.len())]; next(40)];
                        b.splice(i..i, run);
                    }
                    _ => b[i] ^= 1 << next(8),
                }
                if b.is_empty() {
                    break;
                }
            }
            let p = write(dir.path(), "m.npy", &b);
            let t = Instant::now();
            let results = [read_array(&p).is_ok(), read_f32(&p).is_ok(), read_labels(&p).is_ok()];
            assert!(t.elapsed() < Duration::from_secs(1), "case {case} took {:?}", t.elapsed());
            if results[0] {
                read += 1;
            } else {
                refused += 1;
            }
        }
        eprintln!("npy property test: {cases} cases ({read} read, {refused} refused), no panic, {:?}", start.elapsed());
    }
}
