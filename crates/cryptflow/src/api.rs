//! The library API: [`compile`], [`Program::load`], [`Program::run`], [`run_party`].
//!
//! Data movement (what is copied, for large tensors): an [`Array`] owns its elements and is
//! moved, not copied, into the run. Splitting a stack `[N, ...]` into N inferences copies each
//! item once, and encoding an item in fixed point writes a new ring tensor (the secure
//! backends need it in that form). Outputs are decoded from the revealed ring tensors into new
//! float32 buffers and stacked once into the returned [`Array`]. A program compiled in this
//! process keeps its weights in memory and runs borrow them (no copy); a loaded program reads
//! its weights from `model-owner/` as the run needs them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::ValueEnum;
use cryptflow_ir::artifact::{write_artifact, PublicProgram};
use cryptflow_ir::hlil::Graph;
use cryptflow_tensor::{FloatTensor, RingTensor};

use crate::inputs::{ClientInputs, InputSpec};
use crate::npy::{self, Elements};
use crate::run::{Artifacts, Metrics, RunOptions};
use crate::{BackendName, ProtocolName, TruncationName};

/// What went wrong, by kind; the message is the one the `cryptflow` command prints (an error
/// and its causes, joined by `: `).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The inputs do not fit the program: a wrong shape, count, name, dtype or value.
    #[error("{0}")]
    Input(String),
    /// The model could not be read, imported or compiled.
    #[error("{0}")]
    Model(String),
    /// A compiled program could not be read or written.
    #[error("{0}")]
    Program(String),
    /// The run failed (a party failed, the session broke, a fault was injected).
    #[error("{0}")]
    Run(String),
    /// An option is unknown or options contradict each other.
    #[error("{0}")]
    Options(String),
}

impl Error {
    /// The message.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// The message of an error and its causes, as the command prints it.
fn text(e: anyhow::Error) -> String {
    format!("{e:#}")
}

/// The elements of an [`Array`].
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayData {
    /// float32.
    F32(Vec<f32>),
    /// float64 (converted to float32 for a float input).
    F64(Vec<f64>),
    /// int64 (token ids, masks; converted exactly for a float input).
    I64(Vec<i64>),
}

/// A dense row-major array: a model's input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    shape: Vec<usize>,
    data: ArrayData,
}

impl Array {
    /// An array of `shape` holding `data`; the element count must match the shape.
    ///
    /// ```
    /// let x = cryptflow::Array::new(vec![2, 2], cryptflow::ArrayData::F32(vec![1.0, 2.0, 3.0, 4.0])).unwrap();
    /// assert_eq!(x.shape(), &[2, 2]);
    /// assert!(cryptflow::Array::new(vec![3], cryptflow::ArrayData::I64(vec![1])).is_err());
    /// ```
    pub fn new(shape: Vec<usize>, data: ArrayData) -> Result<Array, Error> {
        let len = match &data {
            ArrayData::F32(v) => v.len(),
            ArrayData::F64(v) => v.len(),
            ArrayData::I64(v) => v.len(),
        };
        let expected: usize = shape.iter().product();
        if len != expected {
            return Err(Error::Input(format!("an array of shape {shape:?} holds {expected} elements, {len} were given")));
        }
        Ok(Array { shape, data })
    }

    /// A float32 array (see [`Array::new`]).
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Array, Error> {
        Array::new(shape, ArrayData::F32(data))
    }

    /// An int64 array (see [`Array::new`]).
    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Array, Error> {
        Array::new(shape, ArrayData::I64(data))
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements.
    pub fn data(&self) -> &ArrayData {
        &self.data
    }

    /// The float32 elements, when the array holds float32.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            ArrayData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The shape and elements, moved out.
    pub fn into_parts(self) -> (Vec<usize>, ArrayData) {
        (self.shape, self.data)
    }

    fn into_npy(self) -> npy::Array {
        let elements = match self.data {
            ArrayData::F32(v) => Elements::F32(v),
            ArrayData::F64(v) => Elements::F64(v),
            ArrayData::I64(v) => Elements::Int(v),
        };
        npy::Array { shape: self.shape, elements }
    }

    fn from_float(t: FloatTensor) -> Array {
        let shape = t.shape().to_vec();
        Array { shape, data: ArrayData::F32(t.into_data()) }
    }
}

/// A run's (or a calibration's) inputs: one array per graph input, in the program's input
/// order, or by name. Each array holds one input of the input's shape or a stack `[N, ...]`
/// of N of them (every input the same N); the outputs are stacked like the first input.
#[derive(Clone, Debug)]
pub enum Inputs {
    /// In the order of [`Program::inputs`].
    Ordered(Vec<Array>),
    /// By input name, in any order.
    Named(Vec<(String, Array)>),
}

impl From<Array> for Inputs {
    fn from(a: Array) -> Inputs {
        Inputs::Ordered(vec![a])
    }
}

impl From<Vec<Array>> for Inputs {
    fn from(a: Vec<Array>) -> Inputs {
        Inputs::Ordered(a)
    }
}

impl From<Vec<(String, Array)>> for Inputs {
    fn from(a: Vec<(String, Array)>) -> Inputs {
        Inputs::Named(a)
    }
}

impl Inputs {
    /// Matched to `specs` (the order of the specs) and split into inferences.
    fn resolve(self, specs: &[InputSpec]) -> Result<ClientInputs, Error> {
        let describe = || specs.iter().map(|s| format!("`{}` {:?}", s.name, s.shape)).collect::<Vec<_>>().join(", ");
        let (arrays, sources): (Vec<npy::Array>, Vec<String>) = match self {
            Inputs::Ordered(arrays) => {
                if arrays.len() != specs.len() {
                    return Err(Error::Input(format!(
                        "the model takes {} input{} ({}), {} array{} given",
                        specs.len(),
                        if specs.len() == 1 { "" } else { "s" },
                        describe(),
                        arrays.len(),
                        if arrays.len() == 1 { " was" } else { "s were" }
                    )));
                }
                let sources = (0..arrays.len()).map(|k| format!("array {k}")).collect();
                (arrays.into_iter().map(Array::into_npy).collect(), sources)
            }
            Inputs::Named(named) => {
                let mut slots: Vec<Option<npy::Array>> = specs.iter().map(|_| None).collect();
                for (name, array) in named {
                    let k = specs.iter().position(|s| s.name == name).ok_or_else(|| {
                        Error::Input(format!("the model has no input `{name}`; its inputs are {}", describe()))
                    })?;
                    if slots[k].is_some() {
                        return Err(Error::Input(format!("input `{name}` is given twice")));
                    }
                    slots[k] = Some(array.into_npy());
                }
                let missing: Vec<String> = specs.iter().zip(&slots).filter(|(_, a)| a.is_none()).map(|(s, _)| format!("`{}`", s.name)).collect();
                if !missing.is_empty() {
                    return Err(Error::Input(format!("missing input {} (the model's inputs are {})", missing.join(", "), describe())));
                }
                let sources = specs.iter().map(|s| format!("array `{}`", s.name)).collect();
                (slots.into_iter().map(|a| a.expect("checked")).collect(), sources)
            }
        };
        crate::inputs::from_arrays(specs, arrays, &sources).map_err(|e| Error::Input(text(e)))
    }
}

/// A model to compile.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// An ONNX file (`.onnx`) or a frozen TensorFlow GraphDef (`.pb`), by extension.
    Path(PathBuf),
    /// A serialized ONNX `ModelProto`.
    OnnxBytes(Vec<u8>),
    /// A serialized TensorFlow `GraphDef`.
    TensorFlowBytes(Vec<u8>),
    /// A model already imported into HLIL (the float graph with static shapes).
    Graph(Graph),
}

impl From<&str> for ModelSource {
    fn from(p: &str) -> ModelSource {
        ModelSource::Path(PathBuf::from(p))
    }
}

impl From<&Path> for ModelSource {
    fn from(p: &Path) -> ModelSource {
        ModelSource::Path(p.to_path_buf())
    }
}

impl From<PathBuf> for ModelSource {
    fn from(p: PathBuf) -> ModelSource {
        ModelSource::Path(p)
    }
}

impl From<Graph> for ModelSource {
    fn from(g: Graph) -> ModelSource {
        ModelSource::Graph(g)
    }
}

/// How constants are rounded to fixed point (`cryptflow compile --rounding`).
pub use crate::compile::RoundingArg as Rounding;

/// The compiler's options: those of `cryptflow compile`, with the same defaults.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// The fixed-point scale (None: the compiler's default, or the calibrated one).
    pub scale: Option<u32>,
    /// Choose the scale by sweeping it on the cleartext executor over these inputs
    /// (`--calibrate`); incompatible with `scale`.
    pub calibrate: Option<Inputs>,
    /// Labels of the calibration inputs (`--labels`): score by accuracy.
    pub labels: Option<Vec<i64>>,
    /// Static input shapes, by name (`--input-shape`; symbolic dimensions default to 1).
    pub input_shapes: Vec<(String, Vec<usize>)>,
    /// Compile a Softmax at a graph output away (`--strip-output-softmax`).
    pub strip_output_softmax: bool,
    /// Reveal only the greedy next token of a decoder (`--next-token`).
    pub next_token: bool,
    /// Rounding of constants (`--rounding`, default nearest).
    pub rounding: Rounding,
    /// A ScaleDown after every multiplication (`--eager-scale-down`).
    pub eager_scale_down: bool,
    /// ReLU/MaxPool switching (off: `--no-relu-maxpool-switch`).
    pub relu_maxpool_switch: bool,
    /// Batch-norm folding (off: `--no-batch-norm-folding`).
    pub batch_norm_folding: bool,
    /// Liveness analysis (off: `--no-liveness`).
    pub liveness: bool,
    /// The model's name in the program (default: the file name, or `model`).
    pub name: Option<String>,
    /// The range of the compared values, in bits (`--comparison-bits`, `1..=64`; default: the
    /// compiler's choice, `scale + 21`).
    pub comparison_bits: Option<u32>,
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        CompileOptions {
            scale: None,
            calibrate: None,
            labels: None,
            input_shapes: Vec::new(),
            strip_output_softmax: false,
            next_token: false,
            rounding: Rounding::Nearest,
            eager_scale_down: false,
            relu_maxpool_switch: true,
            batch_norm_folding: true,
            liveness: true,
            name: None,
            comparison_bits: None,
        }
    }
}

/// Compiles a model into a fixed-point program held in memory ([`Program::save`] writes it as
/// `cryptflow compile -o` does). The compiler's report is in [`Program::report`], its
/// messages in [`Program::log`].
///
/// ```
/// // (doc tests run in crates/cryptflow)
/// let options = cryptflow::CompileOptions { scale: Some(12), ..Default::default() };
/// let program = cryptflow::compile("../../fixtures/models/mlp_mnist.onnx", &options).unwrap();
/// assert_eq!(program.scale(), 12);
/// let dir = tempfile::tempdir().unwrap();
/// program.save(dir.path()).unwrap();
/// assert_eq!(cryptflow::Program::load(dir.path()).unwrap().inputs(), program.inputs());
/// let missing = cryptflow::compile("missing.onnx", &Default::default()).err().unwrap();
/// assert!(matches!(missing, cryptflow::Error::Model(_)), "{missing}");
/// ```
pub fn compile(model: impl Into<ModelSource>, options: &CompileOptions) -> Result<Program, Error> {
    let started = Instant::now();
    if options.scale.is_some() && options.calibrate.is_some() {
        return Err(Error::Options("give a scale or calibration inputs, not both".into()));
    }
    if options.labels.is_some() && options.calibrate.is_none() {
        return Err(Error::Options("labels score a calibration: give calibration inputs too".into()));
    }
    if let Some(bits) = options.comparison_bits.filter(|b| !(1..=64).contains(b)) {
        return Err(Error::Options(format!("a comparison domain of {bits} bits is outside 1..=64")));
    }
    let source = model.into();
    let (loaded, default_name) = match source {
        ModelSource::Path(path) => {
            let loaded = crate::model::load(&path, &options.input_shapes, options.strip_output_softmax).map_err(|e| Error::Model(text(e)))?;
            (loaded, path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
        }
        ModelSource::OnnxBytes(bytes) => {
            let o = cryptflow_onnx::ImportOptions { input_shapes: options.input_shapes.iter().cloned().collect(), strip_output_softmax: options.strip_output_softmax };
            let imported = cryptflow_onnx::import_bytes(&bytes, &o).map_err(|e| Error::Model(format!("cannot import the ONNX model: {e}")))?;
            (crate::model::LoadedModel { graph: imported.graph, notices: imported.notices }, "model.onnx".into())
        }
        ModelSource::TensorFlowBytes(bytes) => {
            let o = cryptflow_tensorflow::ImportOptions { input_shapes: options.input_shapes.iter().cloned().collect(), strip_output_softmax: options.strip_output_softmax };
            let imported =
                cryptflow_tensorflow::import_bytes(&bytes, &o).map_err(|e| Error::Model(format!("cannot import the TensorFlow graph: {e}")))?;
            (crate::model::LoadedModel { graph: imported.graph, notices: imported.notices }, "model.pb".into())
        }
        ModelSource::Graph(graph) => (crate::model::LoadedModel { graph, notices: Vec::new() }, "model".into()),
    };
    let name = options.name.clone().unwrap_or(default_name);
    let settings = crate::compile::Settings {
        scale: options.scale,
        emit: None,
        eager_scale_down: options.eager_scale_down,
        relu_maxpool_switch: options.relu_maxpool_switch,
        rounding: options.rounding,
        batch_norm_folding: options.batch_norm_folding,
        liveness: options.liveness,
        next_token: options.next_token,
        comparison_bits: options.comparison_bits,
    };
    // The calibration set is resolved once the optimised graph's inputs are known (the options
    // are borrowed: its arrays are cloned once, here).
    let pending = std::cell::RefCell::new(options.calibrate.clone());
    let input_error = std::cell::Cell::new(false);
    let calibration = options.calibrate.as_ref().map(|_| crate::compile::Calibration {
        inputs: Box::new(|specs: &[InputSpec]| {
            let inputs = pending.borrow_mut().take().ok_or_else(|| anyhow::anyhow!("the calibration set was used"))?;
            inputs.resolve(specs).map_err(|e| {
                input_error.set(true);
                anyhow::anyhow!("{e}")
            })
        }),
        labels: Box::new(|| Ok(options.labels.clone())),
    });
    let mut log = Vec::new();
    let compiled = crate::compile::compile_model(loaded, &name, &name, &settings, calibration, started, &mut |line| log.push(line.to_string()))
        .map_err(|e| if input_error.get() { Error::Input(text(e)) } else { Error::Model(text(e)) })?;
    Ok(Program {
        public: compiled.public,
        store: Store::Memory { weights: compiled.weights, float_weights: compiled.float_weights, hlil: compiled.hlil },
        log,
    })
}

enum Store {
    Memory { weights: Vec<RingTensor>, float_weights: Vec<(String, FloatTensor)>, hlil: Graph },
    Dir(PathBuf),
}

/// A graph input or output as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// The name in the model.
    pub name: String,
    /// The shape of one item.
    pub shape: Vec<usize>,
    /// An integer input (token ids, masks), shared as the exact integer.
    pub integer: bool,
}

/// A compiled program: the public program, and the model owner's weights (in memory after
/// [`compile`], in `model-owner/` after [`Program::load`]).
pub struct Program {
    public: PublicProgram,
    store: Store,
    log: Vec<String>,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The dequantised first output of the model, stacked like the first input (float32).
    pub outputs: Vec<Array>,
    /// Time, communication and the per-layer breakdown (as `cryptflow run --metrics` writes).
    pub metrics: Metrics,
}

impl RunOptions {
    /// The options of `cryptflow run --backend B` with every other flag at its default, and no
    /// progress report.
    pub fn new(backend: BackendName) -> RunOptions {
        RunOptions {
            backend,
            protocol: ProtocolName::default(),
            truncation: TruncationName::default(),
            fault: None,
            peer_timeout: std::time::Duration::from_secs(crate::run::LOCAL_PEER_TIMEOUT_SECONDS),
            progress: crate::secure::Progress::Silent,
        }
    }
}

/// A backend by its `--backend` name: `float`, `cleartext`, `porthos`, `2pc` or `aramis`.
///
/// ```
/// assert_eq!(cryptflow::backend("2pc").unwrap(), cryptflow::BackendName::TwoPc);
/// assert!(cryptflow::backend("gpu").unwrap_err().to_string().contains("unknown backend"));
/// ```
pub fn backend(name: &str) -> Result<BackendName, Error> {
    BackendName::from_str(name, false)
        .map_err(|_| Error::Options(format!("unknown backend `{name}`: choose float, cleartext, porthos, 2pc or aramis")))
}

/// A protocol variant by its `--protocol` name.
pub fn protocol(name: &str) -> Result<ProtocolName, Error> {
    let names: Vec<String> = ProtocolName::value_variants().iter().filter_map(|v| v.to_possible_value()).map(|v| v.get_name().to_string()).collect();
    ProtocolName::from_str(name, false).map_err(|_| Error::Options(format!("unknown protocol `{name}`: choose {}", names.join(" or "))))
}

/// A truncation by its `--truncation` name (`faithful` or `local`).
pub fn truncation(name: &str) -> Result<TruncationName, Error> {
    TruncationName::from_str(name, false).map_err(|_| Error::Options(format!("unknown truncation `{name}`: choose faithful, exact or local")))
}

/// An injected fault `PARTY:KIND` (`--inject-fault`).
pub fn fault(text: &str) -> Result<crate::secure::Fault, Error> {
    crate::secure::parse_fault(text).map_err(Error::Options)
}

impl Program {
    /// Reads a program written by `cryptflow compile -o DIR` or [`Program::save`]; the weights
    /// are read from `DIR/model-owner/` when a run needs them.
    ///
    /// ```
    /// let err = cryptflow::Program::load("no/such/dir").err().unwrap();
    /// assert!(err.to_string().contains("does not exist"));
    /// ```
    pub fn load(dir: impl AsRef<Path>) -> Result<Program, Error> {
        let dir = dir.as_ref();
        let public = crate::party::read_program(dir).map_err(|e| Error::Program(text(e)))?;
        Ok(Program { public, store: Store::Dir(dir.to_path_buf()), log: Vec::new() })
    }

    /// Writes the program as `cryptflow compile -o DIR` does: `DIR/program.json` (public) and
    /// `DIR/model-owner/` (the model owner's weights).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), Error> {
        let dir = dir.as_ref();
        match &self.store {
            Store::Memory { weights, float_weights, .. } => {
                write_artifact(dir, &self.public, weights, float_weights).map_err(|e| Error::Program(e.to_string()))
            }
            Store::Dir(from) => copy_tree(from, dir).map_err(|e| Error::Program(format!("cannot copy {} to {}: {e}", from.display(), dir.display()))),
        }
    }

    /// The client's inputs, in order.
    pub fn inputs(&self) -> Vec<Port> {
        InputSpec::of_program(&self.public.program).into_iter().map(|s| Port { name: s.name, shape: s.shape, integer: s.integer }).collect()
    }

    /// The outputs; a run returns the first.
    pub fn outputs(&self) -> Vec<Port> {
        self.public.program.outputs.iter().map(|o| Port { name: o.name.clone(), shape: o.shape.clone(), integer: false }).collect()
    }

    /// The fixed-point scale.
    pub fn scale(&self) -> u32 {
        self.public.program.scale
    }

    /// The compiler's report (what `program.json` holds under `report`).
    pub fn report(&self) -> &serde_json::Value {
        &self.public.report
    }

    /// The compiler's messages (notices, warnings, the summary `cryptflow compile` prints).
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// The public program.
    pub fn public(&self) -> &PublicProgram {
        &self.public
    }

    /// Runs the program on `inputs` with all parties in this process (as `cryptflow run`).
    ///
    /// ```
    /// let program = cryptflow::compile("../../fixtures/models/mlp_mnist.onnx", &Default::default()).unwrap();
    /// let shape = program.inputs()[0].shape.clone();
    /// let x = cryptflow::Array::f32(shape.clone(), vec![0.5; shape.iter().product()]).unwrap();
    /// let clear = program.run(x.clone(), &cryptflow::RunOptions::new(cryptflow::BackendName::Cleartext)).unwrap();
    /// let secure = program.run(x, &cryptflow::RunOptions::new(cryptflow::BackendName::Porthos)).unwrap();
    /// // Porthos agrees with the cleartext executor up to truncation error.
    /// let (c, s) = (clear.outputs[0].as_f32().unwrap(), secure.outputs[0].as_f32().unwrap());
    /// assert!(c.iter().zip(s).all(|(a, b)| (a - b).abs() < 0.01));
    /// assert_eq!(secure.metrics.bytes_sent.len(), 3);
    /// assert!(secure.metrics.bytes_total > 0);
    /// ```
    pub fn run(&self, inputs: impl Into<Inputs>, options: &RunOptions) -> Result<RunResult, Error> {
        let program = &self.public.program;
        let inputs = inputs.into().resolve(&InputSpec::of_program(program))?;
        let artifacts = match &self.store {
            Store::Memory { weights, hlil, .. } => Artifacts::Memory { weights, graph: hlil },
            Store::Dir(dir) => Artifacts::Dir(dir),
        };
        let stacking = inputs.stacking;
        let (outputs, metrics) = crate::run::execute(&artifacts, &self.public, &inputs, options).map_err(|e| Error::Run(text(e)))?;
        let stacked = npy::stack(&outputs, stacking);
        Ok(RunResult { outputs: vec![Array::from_float(stacked)], metrics })
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// One party of a distributed session (the options of `cryptflow party`). The client
/// (party 1) gives `input` files (`[NAME=]X.npy`) and an `output` file; the model owner
/// (party 0) runs on the folder with `model-owner/`.
pub use crate::party::PartyArgs as PartyOptions;

/// Key generation (the options of `cryptflow keygen`).
pub use crate::party::KeygenArgs as KeygenOptions;

impl PartyOptions {
    /// Party `id` of a session over `peers` (one `HOST:PORT` per party, in id order), running
    /// the program in `dir` on `backend`, with the keys in `keys`; every other option at the
    /// command's default.
    pub fn new(id: usize, peers: Vec<String>, dir: impl Into<PathBuf>, keys: impl Into<PathBuf>, backend: BackendName) -> PartyOptions {
        PartyOptions {
            id,
            peers,
            dir: dir.into(),
            input: Vec::new(),
            output: None,
            keys: keys.into(),
            protocol: ProtocolName::default(),
            truncation: TruncationName::default(),
            backend,
            connect_timeout: 60,
            peer_timeout: 10,
            inject_fault: None,
            metrics: None,
            generate: None,
            prompt_length: None,
            progress: crate::secure::Progress::Silent,
        }
    }
}

/// Runs one party of a distributed session over mutually authenticated TLS (as
/// `cryptflow party`): connects to the others, agrees on the program, runs, and returns this
/// party's metrics; the client writes the outputs to `options.output`. Like the command, it
/// reports on standard error, and an injected crash of this party (`inject_fault` `ID:crash`)
/// ends the process at once, as a real crash would.
///
/// ```no_run
/// let options = cryptflow::PartyOptions::new(
///     2, vec!["h0:7000".into(), "h1:7000".into(), "h2:7000".into()], "lenet", "keys", cryptflow::BackendName::Porthos);
/// let metrics = cryptflow::run_party(options).unwrap(); // the helper
/// println!("sent {} bytes", metrics.bytes_total);
/// ```
pub fn run_party(options: PartyOptions) -> Result<Metrics, Error> {
    crate::party::party(options).map_err(|e| Error::Run(text(e)))
}

/// Writes key pairs and certificates (as `cryptflow keygen`).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let keys = dir.path().join("keys");
/// let options = || cryptflow::KeygenOptions { output: keys.clone(), id: None, parties: 3, authority: false, force: false };
/// cryptflow::keygen(options()).unwrap();
/// assert!(keys.join("party2.crt").is_file());
/// // Existing private keys are kept unless `force`.
/// assert!(cryptflow::keygen(options()).unwrap_err().to_string().contains("already exist"));
/// ```
pub fn keygen(options: KeygenOptions) -> Result<(), Error> {
    crate::party::keygen(options).map_err(|e| Error::Options(text(e)))
}
