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

/// Largest `program.json` [`read_public`] reads: it is public and read whole, so it could come
/// from anyone (ResNet-50's is a few MiB).
pub const MAX_PROGRAM_BYTES: u64 = 256 << 20;

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

/// Weights are the model owner's secret: readable by the owner only. A fresh file every time
/// (an old one is removed first, so recompiling into a folder never keeps an old file's wider
/// permissions), and its mode set to 0600 explicitly (whatever the umask).
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Private weights readable by group or others are refused, as ssh refuses such a key file.
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), ArtifactError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let reason = format!(
                "the model owner's private weights are accessible by others (mode {mode:o}); chmod 600 {}",
                path.display()
            );
            return Err(ArtifactError::Io { path: path.to_path_buf(), source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, reason) });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta);
    Ok(())
}

/// Reads and checks `DIR/program.json`.
pub fn read_public(dir: &Path) -> Result<PublicProgram, ArtifactError> {
    let path = dir.join(PROGRAM_FILE);
    let bad = |reason: String| ArtifactError::BadProgram { path: path.clone(), reason };
    let too_large = |size: String| {
        bad(format!("it is {size}, more than the {} MiB a compiled program may have", MAX_PROGRAM_BYTES >> 20))
    };
    // The program is public and may come from anyone: its size is checked before reading, and
    // the read stops past the limit whatever the file claims (a pipe, a device, a file growing).
    let file = fs::File::open(&path).map_err(io_error(&path))?;
    let declared = file.metadata().map_err(io_error(&path))?.len();
    if declared > MAX_PROGRAM_BYTES {
        return Err(too_large(format!("{} MiB", declared >> 20)));
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_PROGRAM_BYTES + 1), &mut bytes).map_err(io_error(&path))?;
    if bytes.len() as u64 > MAX_PROGRAM_BYTES {
        return Err(too_large("longer than it declared".into()));
    }
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

/// The model owner's fixed-point weights, checked against the program's weight list, all in
/// memory.
pub fn read_fixed_weights(dir: &Path, public: &PublicProgram) -> Result<Vec<RingTensor>, ArtifactError> {
    let file = FixedWeightsFile::open(dir, public)?;
    (0..file.0.entries.len()).map(|k| file.read(k)).collect()
}

/// The float HLIL with its weights, for the float executor.
pub fn read_float_graph(dir: &Path, public: &PublicProgram) -> Result<Graph, ArtifactError> {
    let file = WeightsFile::open(dir, FLOAT_WEIGHTS_FILE, 1, public)?;
    let weights = (0..file.entries.len())
        .map(|k| {
            let mut values = vec![0f32; num_elements(&file.entries[k].shape)];
            file.read_into(k, bytemuck::cast_slice_mut(&mut values))?;
            for v in values.iter_mut() {
                *v = f32::from_bits(u32::from_le(v.to_bits())); // a no-op on little-endian machines
            }
            let entry = &file.entries[k];
            Tensor::new(entry.shape.clone(), values).map(|t| (entry.name.clone(), t)).map_err(|e| file.corrupt(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut graph = public.hlil.clone();
    restore_weights(&mut graph, weights, &file.path)?;
    Ok(graph)
}

/// One tensor of a weights file: its name and shape, where its elements are, and what they
/// hashed to when the file was checked.
struct WeightEntry {
    name: String,
    shape: Vec<usize>,
    offset: u64,
    digest: [u8; 32],
}

/// A weights file (see the module documentation), checked once in full when opened and then
/// read one tensor at a time. Every tensor read is checked against the digest it had when the
/// file was opened, so a file changed in between is an error, never a silently different model.
struct WeightsFile {
    path: PathBuf,
    file: std::sync::Mutex<fs::File>,
    entries: Vec<WeightEntry>,
}

/// A reader that hashes everything read through it (the whole-file checksum).
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    pos: u64,
}

impl<R: std::io::Read> HashingReader<R> {
    fn bytes(&mut self, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact(out)?;
        self.hasher.update(&*out);
        self.pos += out.len() as u64;
        Ok(())
    }
    fn u32(&mut self) -> std::io::Result<u32> {
        let mut b = [0u8; 4];
        self.bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> std::io::Result<u64> {
        let mut b = [0u8; 8];
        self.bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

impl WeightsFile {
    /// Opens `DIR/model-owner/NAME` and checks all of it: magic, version, element kind (0: ring
    /// elements of 8 bytes, 1: f32), program digest, the tensors' headers and the closing
    /// checksum.
    fn open(dir: &Path, name: &str, kind: u8, public: &PublicProgram) -> Result<WeightsFile, ArtifactError> {
        use std::io::{BufReader, Read, Seek};
        let path = dir.join(OWNER_DIR).join(name);
        let corrupt = |reason: String| ArtifactError::Corrupt { path: path.clone(), reason };
        let truncated = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ArtifactError::Corrupt { path: path.clone(), reason: "truncated".into() }
            } else {
                ArtifactError::Io { path: path.clone(), source: e }
            }
        };
        let mut file = fs::File::open(&path).map_err(io_error(&path))?;
        let meta = file.metadata().map_err(io_error(&path))?;
        check_private(&path, &meta)?;
        let size = meta.len();
        if size < (MAGIC.len() + 32) as u64 {
            return Err(corrupt("not a cryptflow weights file".into()));
        }
        let body_len = size - 32;
        let mut r = HashingReader { inner: BufReader::with_capacity(1 << 20, (&mut file).take(body_len)), hasher: Sha256::new(), pos: 0 };
        let mut magic = [0u8; 8];
        r.bytes(&mut magic).map_err(truncated)?;
        if &magic != MAGIC {
            return Err(corrupt("not a cryptflow weights file".into()));
        }
        let version = r.u32().map_err(truncated)?;
        if version != FORMAT_VERSION {
            return Err(ArtifactError::Version { path: path.clone(), found: version, expected: FORMAT_VERSION });
        }
        let mut found_kind = [0u8; 1];
        r.bytes(&mut found_kind).map_err(truncated)?;
        if found_kind[0] != kind {
            return Err(corrupt("wrong element kind".into()));
        }
        let width: u64 = if kind == 0 { 8 } else { 4 };
        let mut digest = [0u8; 32];
        r.bytes(&mut digest).map_err(truncated)?;
        if digest != public.digest() {
            return Err(ArtifactError::Mismatch { path: path.clone(), program: dir.join(PROGRAM_FILE) });
        }
        let count = r.u32().map_err(truncated)? as usize;
        let mut entries = Vec::with_capacity(count.min(1 << 16));
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..count {
            let name_len = r.u32().map_err(truncated)? as usize;
            if name_len > 1 << 16 {
                return Err(corrupt("weight name longer than 64 KiB".into()));
            }
            let mut name = vec![0u8; name_len];
            r.bytes(&mut name).map_err(truncated)?;
            let name = String::from_utf8(name).map_err(|_| corrupt("weight name is not UTF-8".into()))?;
            let rank = r.u32().map_err(truncated)? as usize;
            if rank > 8 {
                return Err(corrupt("weight of rank > 8".into()));
            }
            let shape = (0..rank).map(|_| r.u64().map(|d| d as usize)).collect::<Result<Vec<_>, _>>().map_err(truncated)?;
            let len = shape.iter().try_fold(width, |acc, &d| acc.checked_mul(d as u64)).ok_or_else(|| corrupt("weight extents overflow".into()))?;
            if r.pos.checked_add(len).is_none_or(|end| end > body_len) {
                return Err(corrupt("truncated".into()));
            }
            let offset = r.pos;
            let mut tensor = Sha256::new();
            let mut left = len;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                r.bytes(&mut chunk[..n]).map_err(truncated)?;
                tensor.update(&chunk[..n]);
                left -= n as u64;
            }
            entries.push(WeightEntry { name, shape, offset, digest: tensor.finalize().into() });
        }
        if r.pos != body_len {
            return Err(corrupt("trailing bytes".into()));
        }
        let whole: [u8; 32] = r.hasher.finalize().into();
        let mut check = [0u8; 32];
        file.seek(std::io::SeekFrom::Start(body_len)).map_err(io_error(&path))?;
        file.read_exact(&mut check).map_err(truncated)?;
        if whole != check {
            return Err(corrupt("checksum mismatch (truncated or modified)".into()));
        }
        Ok(WeightsFile { path, file: std::sync::Mutex::new(file), entries })
    }

    fn corrupt(&self, reason: String) -> ArtifactError {
        ArtifactError::Corrupt { path: self.path.clone(), reason }
    }

    /// Reads the element bytes of tensor `k` into `out` (exactly their length) and checks them
    /// against the digest taken at `open`.
    fn read_into(&self, k: usize, out: &mut [u8]) -> Result<(), ArtifactError> {
        use std::io::{Read, Seek};
        let entry = &self.entries[k];
        {
            let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            file.seek(std::io::SeekFrom::Start(entry.offset)).map_err(io_error(&self.path))?;
            file.read_exact(out).map_err(io_error(&self.path))?;
        }
        if <[u8; 32]>::from(Sha256::digest(&*out)) != entry.digest {
            return Err(self.corrupt(format!("weight {k} changed since the file was checked")));
        }
        Ok(())
    }
}

/// The model owner's fixed-point weights file, checked in full (and against the program's
/// weight list) when opened, then read one tensor at a time: a party streams its weights instead
/// of holding them all.
pub struct FixedWeightsFile(WeightsFile);

impl FixedWeightsFile {
    /// Opens `DIR/model-owner/weights.fixed`: the checks of the weights file, and every tensor's
    /// name and shape against the program.
    pub fn open(dir: &Path, public: &PublicProgram) -> Result<FixedWeightsFile, ArtifactError> {
        let file = WeightsFile::open(dir, FIXED_WEIGHTS_FILE, 0, public)?;
        if file.entries.len() != public.program.weights.len() {
            return Err(file.corrupt("weight count differs from the program".into()));
        }
        for (entry, spec) in file.entries.iter().zip(&public.program.weights) {
            if entry.name != spec.name || entry.shape != spec.shape {
                return Err(file.corrupt(format!("weight `{}` does not match `{}`", entry.name, spec.name)));
            }
        }
        Ok(FixedWeightsFile(file))
    }

    /// Reads weight `k` (in program order) and checks it against the digest taken at `open`.
    pub fn read(&self, k: usize) -> Result<RingTensor, ArtifactError> {
        let entry = &self.0.entries[k];
        let mut values = vec![0u64; num_elements(&entry.shape)];
        self.0.read_into(k, bytemuck::cast_slice_mut(&mut values))?;
        for v in values.iter_mut() {
            *v = u64::from_le(*v); // a no-op on little-endian machines
        }
        Tensor::new(entry.shape.clone(), values).map_err(|e| self.0.corrupt(e.to_string()))
    }
}

impl crate::llil::WeightSource for FixedWeightsFile {
    fn count(&self) -> usize {
        self.0.entries.len()
    }
    fn shape(&self, k: usize) -> &[usize] {
        &self.0.entries[k].shape
    }
    fn load(&self, k: usize) -> Result<std::borrow::Cow<'_, RingTensor>, String> {
        self.read(k).map(std::borrow::Cow::Owned).map_err(|e| e.to_string())
    }
}
