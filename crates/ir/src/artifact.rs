//! The compiled artifact: what `cryptflow compile -o DIR` writes.
//!
//! ```text
//! DIR/program.json                 public: the LLIL program every party runs, the HLIL
//!                                  architecture (weights removed), scale, shapes, report
//! DIR/model-owner/weights.fixed    private: the model owner's fixed-point weights
//! DIR/model-owner/weights.float    private: the float weights (for the float executor)
//! ```
//! The public part can be handed to the client and the helper; the `model-owner` folder never
//! leaves the model owner. Each weights file records the SHA-256 digest of the program it was
//! compiled with and ends with a digest of its own contents, so a corrupt, truncated or
//! mismatched file is reported as such instead of being run.
//!
//! Weights file layout (little endian): magic `CFWEIGHT`, format version (u32), element kind
//! (u8: 0 = ring u64, 1 = f32), program digest (32 bytes), tensor count (u32); per tensor:
//! name length (u32), UTF-8 name, rank (u32), extents (u64 each), elements (8 or 4 bytes each);
//! then the SHA-256 of everything before it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use cryptflow_tensor::{num_elements, FloatTensor, RingTensor, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::hlil::{Graph, Op};
use crate::llil::{Program, FORMAT_VERSION};

pub const PROGRAM_FILE: &str = "program.json";
pub const OWNER_DIR: &str = "model-owner";
pub const FIXED_WEIGHTS_FILE: &str = "weights.fixed";
pub const FLOAT_WEIGHTS_FILE: &str = "weights.float";
const MAGIC: &[u8; 8] = b"CFWEIGHT";
const FORMAT_TAG: &str = "cryptflow-program";

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a cryptflow program: {reason}")]
    BadProgram { path: PathBuf, reason: String },
    #[error("{path} was written by format version {found}; this build reads version {expected}; recompile the model")]
    Version { path: PathBuf, found: u32, expected: u32 },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} belongs to a different compiled program (digest mismatch); use the weights written together with {program}")]
    Mismatch { path: PathBuf, program: PathBuf },
}

/// The public part of a compiled model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PublicProgram {
    pub format: String,
    pub version: u32,
    /// The source model's file name.
    pub model: String,
    pub program: Program,
    /// The optimised HLIL with weight values removed (their shapes stay).
    pub hlil: Graph,
    /// The compiler's report (free-form JSON).
    pub report: serde_json::Value,
}

impl PublicProgram {
    pub fn new(model: String, program: Program, hlil_without_weights: Graph, report: serde_json::Value) -> Self {
        PublicProgram { format: FORMAT_TAG.into(), version: FORMAT_VERSION, model, program, hlil: hlil_without_weights, report }
    }

    /// SHA-256 of the program's canonical JSON: what binds weights to a program.
    pub fn digest(&self) -> [u8; 32] {
        let json = serde_json::to_vec(&(&self.program, &self.hlil)).expect("programs serialise");
        Sha256::digest(&json).into()
    }
}

/// Splits a graph into its architecture (weight nodes keep their shape but hold no values)
/// and the weight values in node order.
pub fn strip_weights(graph: &Graph) -> (Graph, Vec<(String, FloatTensor)>) {
    let mut stripped = graph.clone();
    let mut weights = Vec::new();
    for node in &mut stripped.nodes {
        if let Op::Weight(t) = &mut node.op {
            let value = std::mem::replace(t, Tensor::zeros(vec![0]));
            weights.push((node.name.clone(), value));
        }
    }
    (stripped, weights)
}

/// Puts weight values back into a stripped graph, checking names and shapes.
pub fn restore_weights(graph: &mut Graph, weights: Vec<(String, FloatTensor)>, path: &Path) -> Result<(), ArtifactError> {
    let corrupt = |reason: String| ArtifactError::Corrupt { path: path.to_path_buf(), reason };
    let mut values = weights.into_iter();
    for node in &mut graph.nodes {
        if let Op::Weight(t) = &mut node.op {
            let (name, value) = values.next().ok_or_else(|| corrupt("fewer weights than the program has".into()))?;
            if name != node.name || value.shape() != node.shape.as_slice() {
                return Err(corrupt(format!("weight `{name}` {:?} does not match `{}` {:?}", value.shape(), node.name, node.shape)));
            }
            *t = value;
        }
    }
    if values.next().is_some() {
        return Err(corrupt("more weights than the program has".into()));
    }
    Ok(())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io { path: path.to_path_buf(), source }
}

/// Writes a compiled model. `fixed` follows `public.program.weights`; `float_weights` follows
/// the weight nodes of the HLIL.
pub fn write_artifact(
    dir: &Path,
    public: &PublicProgram,
    fixed: &[RingTensor],
    float_weights: &[(String, FloatTensor)],
) -> Result<(), ArtifactError> {
    let owner_dir = dir.join(OWNER_DIR);
    fs::create_dir_all(&owner_dir).map_err(io_error(&owner_dir))?;
    let program_path = dir.join(PROGRAM_FILE);
    let json = serde_json::to_vec_pretty(public).expect("programs serialise");
    fs::write(&program_path, json).map_err(io_error(&program_path))?;
    let digest = public.digest();
    let names: Vec<&str> = public.program.weights.iter().map(|w| w.name.as_str()).collect();
    let fixed_named: Vec<(&str, &[usize], Vec<u8>)> = names
        .iter()
        .zip(fixed)
        .map(|(n, t)| (*n, t.shape(), t.data().iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    write_weights(&owner_dir.join(FIXED_WEIGHTS_FILE), 0, &digest, &fixed_named)?;
    let float_named: Vec<(&str, &[usize], Vec<u8>)> = float_weights
        .iter()
        .map(|(n, t)| (n.as_str(), t.shape(), t.data().iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    write_weights(&owner_dir.join(FLOAT_WEIGHTS_FILE), 1, &digest, &float_named)
}

fn write_weights(path: &Path, kind: u8, digest: &[u8; 32], tensors: &[(&str, &[usize], Vec<u8>)]) -> Result<(), ArtifactError> {
    let mut buf = Vec::new();
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(digest);
    buf.extend_from_slice(&(tensors.len() as u32).to_le_bytes());
    for (name, shape, data) in tensors {
        buf.extend_from_slice(&(name.len() as u32).to_le_bytes());
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(&(shape.len() as u32).to_le_bytes());
        for &d in *shape {
            buf.extend_from_slice(&(d as u64).to_le_bytes());
        }
        buf.extend_from_slice(data);
    }
    let check: [u8; 32] = Sha256::digest(&buf).into();
    buf.extend_from_slice(&check);
    let mut file = create_private(path).map_err(io_error(path))?;
    file.write_all(&buf).map_err(io_error(path))
}

/// Weights are the model owner's secret: readable by the owner only.
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Reads and checks `DIR/program.json`.
pub fn read_public(dir: &Path) -> Result<PublicProgram, ArtifactError> {
    let path = dir.join(PROGRAM_FILE);
    let bytes = fs::read(&path).map_err(io_error(&path))?;
    let bad = |reason: String| ArtifactError::BadProgram { path: path.clone(), reason };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT_TAG) {
        return Err(bad(format!("missing \"format\": \"{FORMAT_TAG}\"")));
    }
    let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
    if version != FORMAT_VERSION {
        return Err(ArtifactError::Version { path, found: version, expected: FORMAT_VERSION });
    }
    let public: PublicProgram = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    public.program.validate().map_err(bad)?;
    public.hlil.validate().map_err(|e| bad(format!("architecture: {e}")))?;
    Ok(public)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ArtifactError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| ArtifactError::Corrupt {
            path: self.path.to_path_buf(),
            reason: "truncated".into(),
        })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, ArtifactError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, ArtifactError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
}

fn read_weights(dir: &Path, file: &str, kind: u8, public: &PublicProgram) -> Result<Vec<(String, Vec<usize>, Vec<u8>)>, ArtifactError> {
    let path = dir.join(OWNER_DIR).join(file);
    let bytes = fs::read(&path).map_err(io_error(&path))?;
    let corrupt = |reason: &str| ArtifactError::Corrupt { path: path.clone(), reason: reason.into() };
    if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt("not a cryptflow weights file"));
    }
    let (body, check) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != check {
        return Err(corrupt("checksum mismatch (truncated or modified)"));
    }
    let mut r = Reader { bytes: body, pos: MAGIC.len(), path: &path };
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(ArtifactError::Version { path: path.clone(), found: version, expected: FORMAT_VERSION });
    }
    if r.take(1)?[0] != kind {
        return Err(corrupt("wrong element kind"));
    }
    if r.take(32)? != public.digest() {
        return Err(ArtifactError::Mismatch { path: path.clone(), program: dir.join(PROGRAM_FILE) });
    }
    let count = r.u32()? as usize;
    let width = if kind == 0 { 8 } else { 4 };
    let mut out = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let name_len = r.u32()? as usize;
        let name = String::from_utf8(r.take(name_len)?.to_vec()).map_err(|_| corrupt("weight name is not UTF-8"))?;
        let rank = r.u32()? as usize;
        if rank > 8 {
            return Err(corrupt("weight of rank > 8"));
        }
        let shape = (0..rank).map(|_| r.u64().map(|d| d as usize)).collect::<Result<Vec<_>, _>>()?;
        let len = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).and_then(|n| n.checked_mul(width));
        let len = len.ok_or_else(|| corrupt("weight extents overflow"))?;
        let data = r.take(len)?.to_vec();
        out.push((name, shape, data));
    }
    if r.pos != body.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(out)
}

/// The model owner's fixed-point weights, checked against the program's weight list.
pub fn read_fixed_weights(dir: &Path, public: &PublicProgram) -> Result<Vec<RingTensor>, ArtifactError> {
    let path = dir.join(OWNER_DIR).join(FIXED_WEIGHTS_FILE);
    let raw = read_weights(dir, FIXED_WEIGHTS_FILE, 0, public)?;
    if raw.len() != public.program.weights.len() {
        return Err(ArtifactError::Corrupt { path, reason: "weight count differs from the program".into() });
    }
    raw.into_iter()
        .zip(&public.program.weights)
        .map(|((name, shape, data), spec)| {
            if name != spec.name || shape != spec.shape {
                return Err(ArtifactError::Corrupt { path: path.clone(), reason: format!("weight `{name}` does not match `{}`", spec.name) });
            }
            let values = data.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
            debug_assert_eq!(num_elements(&shape), data.len() / 8);
            Tensor::new(shape, values).map_err(|e| ArtifactError::Corrupt { path: path.clone(), reason: e.to_string() })
        })
        .collect()
}

/// The float HLIL with its weights, for the float executor.
pub fn read_float_graph(dir: &Path, public: &PublicProgram) -> Result<Graph, ArtifactError> {
    let path = dir.join(OWNER_DIR).join(FLOAT_WEIGHTS_FILE);
    let raw = read_weights(dir, FLOAT_WEIGHTS_FILE, 1, public)?;
    let weights = raw
        .into_iter()
        .map(|(name, shape, data)| {
            let values = data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            Tensor::new(shape, values).map(|t| (name, t)).map_err(|e| ArtifactError::Corrupt { path: path.clone(), reason: e.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut graph = public.hlil.clone();
    restore_weights(&mut graph, weights, &path)?;
    Ok(graph)
}
