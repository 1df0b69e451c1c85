//! `cryptflow._cryptflow`: the Rust side of the Python package (see `cryptflow/__init__.py`
//! for the public API and `cryptflow/__init__.pyi` for its types).
//!
//! Copies: an input array is copied once from NumPy into Rust-owned memory (the library's
//! [`cryptflow::Array`] owns its data; a C-contiguous array is copied with one `memcpy`);
//! outputs are moved into NumPy without a copy (`PyArray::from_vec`). Runs release the GIL.

use std::sync::{Arc, Mutex};

use numpy::{IntoPyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

create_exception!(_cryptflow, CryptflowError, PyException, "Base class of cryptflow's errors.");
create_exception!(_cryptflow, InputError, CryptflowError, "The inputs do not fit the program (shape, count, name, dtype, values).");
create_exception!(_cryptflow, ModelError, CryptflowError, "The model could not be read, imported or compiled.");
create_exception!(_cryptflow, ProgramError, CryptflowError, "A compiled program could not be read or written.");
create_exception!(_cryptflow, RunError, CryptflowError, "The run failed (a party failed, the session broke).");
create_exception!(_cryptflow, OptionsError, CryptflowError, "An option is unknown or options contradict each other.");

fn py_err(e: cryptflow::Error) -> PyErr {
    let message = e.message();
    match e {
        cryptflow::Error::Input(_) => InputError::new_err(message),
        cryptflow::Error::Model(_) => ModelError::new_err(message),
        cryptflow::Error::Program(_) => ProgramError::new_err(message),
        cryptflow::Error::Run(_) => RunError::new_err(message),
        cryptflow::Error::Options(_) => OptionsError::new_err(message),
    }
}

/// A NumPy array as a library array: float32, float64 and int64 as they are, other integer
/// dtypes widened to int64; one copy.
fn array_of(x: &Bound<'_, PyAny>) -> PyResult<cryptflow::Array> {
    fn take<T: numpy::Element + Copy>(a: &Bound<'_, PyArrayDyn<T>>) -> PyResult<(Vec<usize>, Vec<T>)> {
        let r: PyReadonlyArrayDyn<'_, T> = a.try_readonly()?;
        let shape = r.shape().to_vec();
        // as_slice also accepts Fortran order (memory order); the library wants C order.
        let data = match r.as_slice() {
            Ok(s) if r.is_c_contiguous() => s.to_vec(),
            _ => r.as_array().iter().copied().collect(),
        };
        Ok((shape, data))
    }
    let result = if let Ok(a) = x.downcast::<PyArrayDyn<f32>>() {
        let (s, d) = take(a)?;
        cryptflow::Array::new(s, cryptflow::ArrayData::F32(d))
    } else if let Ok(a) = x.downcast::<PyArrayDyn<f64>>() {
        let (s, d) = take(a)?;
        cryptflow::Array::new(s, cryptflow::ArrayData::F64(d))
    } else if let Ok(a) = x.downcast::<PyArrayDyn<i64>>() {
        let (s, d) = take(a)?;
        cryptflow::Array::new(s, cryptflow::ArrayData::I64(d))
    } else if let Ok(a) = x.downcast::<PyArrayDyn<i32>>() {
        let (s, d) = take(a)?;
        cryptflow::Array::new(s, cryptflow::ArrayData::I64(d.into_iter().map(i64::from).collect()))
    } else {
        let dtype = x.getattr("dtype").map(|d| d.to_string()).unwrap_or_else(|_| x.get_type().to_string());
        return Err(InputError::new_err(format!(
            "unsupported array type {dtype}: give a NumPy array of float32 or int64 (float64 and int32 are converted)"
        )));
    };
    result.map_err(py_err)
}

/// Inputs: one array, a list of arrays (in the program's input order) or a dict by name.
fn inputs_of(x: &Bound<'_, PyAny>) -> PyResult<cryptflow::Inputs> {
    if let Ok(d) = x.downcast::<PyDict>() {
        let mut named = Vec::new();
        for (k, v) in d.iter() {
            named.push((k.extract::<String>()?, array_of(&v)?));
        }
        return Ok(cryptflow::Inputs::Named(named));
    }
    if let Ok(l) = x.downcast::<PyList>() {
        return Ok(cryptflow::Inputs::Ordered(l.iter().map(|v| array_of(&v)).collect::<PyResult<_>>()?));
    }
    Ok(cryptflow::Inputs::Ordered(vec![array_of(x)?]))
}

/// A JSON value as Python objects (through the `json` module).
fn to_python(py: Python<'_>, value: &impl serde::Serialize) -> PyResult<PyObject> {
    let text = serde_json::to_string(value).map_err(|e| CryptflowError::new_err(e.to_string()))?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

/// The progress callback `progress(done, total, layer)`, called with the GIL held; its first
/// exception is kept and raised after the run.
fn progress_of(progress: Option<PyObject>) -> (cryptflow::Progress, Arc<Mutex<Option<PyErr>>>) {
    let failure: Arc<Mutex<Option<PyErr>>> = Arc::new(Mutex::new(None));
    let Some(callback) = progress else {
        return (cryptflow::Progress::Silent, failure);
    };
    let kept = failure.clone();
    let f = move |done: u64, total: u64, layer: &str| {
        Python::with_gil(|py| {
            if let Err(e) = callback.call1(py, (done, total, layer)) {
                let mut slot = kept.lock().unwrap_or_else(|p| p.into_inner());
                if slot.is_none() {
                    *slot = Some(e);
                }
            }
        })
    };
    (cryptflow::Progress::Callback(Arc::new(f)), failure)
}

fn raise_kept(failure: &Arc<Mutex<Option<PyErr>>>) -> PyResult<()> {
    match failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A compiled program.
#[pyclass(module = "cryptflow._cryptflow", frozen)]
struct Program {
    inner: cryptflow::Program,
}

#[pymethods]
impl Program {
    /// Runs the program with every party in this process: (outputs, metrics JSON dict).
    #[pyo3(signature = (x, backend, protocol = "compact", truncation = "faithful", inject_fault = None, progress = None))]
    fn run(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        backend: &str,
        protocol: &str,
        truncation: &str,
        inject_fault: Option<&str>,
        progress: Option<PyObject>,
    ) -> PyResult<(Vec<PyObject>, PyObject)> {
        let mut options = cryptflow::RunOptions::new(cryptflow::backend(backend).map_err(py_err)?);
        options.protocol = cryptflow::protocol(protocol).map_err(py_err)?;
        options.truncation = cryptflow::truncation(truncation).map_err(py_err)?;
        options.fault = inject_fault.map(cryptflow::fault).transpose().map_err(py_err)?;
        let inputs = inputs_of(x)?;
        let (progress, failure) = progress_of(progress);
        options.progress = progress;
        let result = py.allow_threads(|| self.inner.run(inputs, &options));
        raise_kept(&failure)?;
        let result = result.map_err(py_err)?;
        let metrics = to_python(py, &result.metrics)?;
        let outputs = result
            .outputs
            .into_iter()
            .map(|a| {
                let (shape, data) = a.into_parts();
                let cryptflow::ArrayData::F32(v) = data else { unreachable!("outputs are float32") };
                Ok(v.into_pyarray(py).reshape(shape)?.into_any().unbind())
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok((outputs, metrics))
    }

    /// Writes the program as `cryptflow compile -o DIR` does.
    fn save(&self, py: Python<'_>, dir: std::path::PathBuf) -> PyResult<()> {
        py.allow_threads(|| self.inner.save(&dir)).map_err(py_err)
    }

    /// The inputs: a list of dicts (name, shape, integer).
    #[getter]
    fn inputs(&self, py: Python<'_>) -> PyResult<PyObject> {
        let ports: Vec<serde_json::Value> =
            self.inner.inputs().into_iter().map(|p| serde_json::json!({"name": p.name, "shape": p.shape, "integer": p.integer})).collect();
        to_python(py, &ports)
    }

    /// The outputs: a list of dicts (name, shape); a run returns the first.
    #[getter]
    fn outputs(&self, py: Python<'_>) -> PyResult<PyObject> {
        let ports: Vec<serde_json::Value> = self.inner.outputs().into_iter().map(|p| serde_json::json!({"name": p.name, "shape": p.shape})).collect();
        to_python(py, &ports)
    }

    /// The fixed-point scale.
    #[getter]
    fn scale(&self) -> u32 {
        self.inner.scale()
    }

    /// The compiler's report.
    #[getter]
    fn report(&self, py: Python<'_>) -> PyResult<PyObject> {
        to_python(py, self.inner.report())
    }

    /// The compiler's messages.
    #[getter]
    fn log(&self) -> Vec<String> {
        self.inner.log().to_vec()
    }
}

/// Compiles a model: a path (str), or the bytes of an ONNX ModelProto / TensorFlow GraphDef.
#[pyfunction]
#[pyo3(signature = (model, format = None, scale = None, calibrate = None, labels = None, input_shapes = None,
    strip_output_softmax = false, next_token = false, rounding = "nearest", eager_scale_down = false,
    relu_maxpool_switch = true, batch_norm_folding = true, liveness = true, name = None, comparison_bits = None))]
#[allow(clippy::too_many_arguments)]
fn compile(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    format: Option<&str>,
    scale: Option<u32>,
    calibrate: Option<&Bound<'_, PyAny>>,
    labels: Option<&Bound<'_, PyAny>>,
    input_shapes: Option<Vec<(String, Vec<usize>)>>,
    strip_output_softmax: bool,
    next_token: bool,
    rounding: &str,
    eager_scale_down: bool,
    relu_maxpool_switch: bool,
    batch_norm_folding: bool,
    liveness: bool,
    name: Option<String>,
    comparison_bits: Option<u32>,
) -> PyResult<Program> {
    let source = if let Ok(b) = model.downcast::<PyBytes>() {
        let bytes = b.as_bytes().to_vec();
        match format.unwrap_or("onnx") {
            "onnx" => cryptflow::ModelSource::OnnxBytes(bytes),
            "tensorflow" | "pb" => cryptflow::ModelSource::TensorFlowBytes(bytes),
            other => return Err(OptionsError::new_err(format!("unknown model format `{other}`: choose onnx or tensorflow"))),
        }
    } else if let Ok(p) = model.extract::<std::path::PathBuf>() {
        cryptflow::ModelSource::Path(p)
    } else {
        return Err(ModelError::new_err(format!(
            "cannot compile a {}: give a path, the bytes of a model or an onnx.ModelProto",
            model.get_type()
        )));
    };
    let labels = match labels {
        None => None,
        Some(l) => match array_of(l)?.into_parts() {
            (_, cryptflow::ArrayData::I64(v)) => Some(v),
            _ => return Err(InputError::new_err("labels must be an array of integers")),
        },
    };
    let options = cryptflow::CompileOptions {
        scale,
        calibrate: calibrate.map(inputs_of).transpose()?,
        labels,
        input_shapes: input_shapes.unwrap_or_default(),
        strip_output_softmax,
        next_token,
        rounding: match rounding {
            "nearest" => cryptflow::Rounding::Nearest,
            "floor" => cryptflow::Rounding::Floor,
            other => return Err(OptionsError::new_err(format!("unknown rounding `{other}`: choose nearest or floor"))),
        },
        eager_scale_down,
        relu_maxpool_switch,
        batch_norm_folding,
        liveness,
        name,
        comparison_bits,
    };
    let inner = py.allow_threads(|| cryptflow::compile(source, &options)).map_err(py_err)?;
    Ok(Program { inner })
}

/// Loads a program written by `cryptflow compile -o DIR` or `Program.save`.
#[pyfunction]
fn load(py: Python<'_>, dir: std::path::PathBuf) -> PyResult<Program> {
    let inner = py.allow_threads(|| cryptflow::Program::load(&dir)).map_err(py_err)?;
    Ok(Program { inner })
}

/// Runs one party of a distributed session (see `cryptflow party`); returns its metrics.
#[pyfunction]
#[pyo3(signature = (id, peers, dir, keys, backend = "porthos", input = None, output = None, protocol = "compact",
    truncation = "faithful", connect_timeout = 60, peer_timeout = 10, progress = None))]
#[allow(clippy::too_many_arguments)]
fn run_party(
    py: Python<'_>,
    id: usize,
    peers: Vec<String>,
    dir: std::path::PathBuf,
    keys: std::path::PathBuf,
    backend: &str,
    input: Option<Vec<String>>,
    output: Option<std::path::PathBuf>,
    protocol: &str,
    truncation: &str,
    connect_timeout: u64,
    peer_timeout: u64,
    progress: Option<PyObject>,
) -> PyResult<PyObject> {
    let mut options = cryptflow::PartyOptions::new(id, peers, dir, keys, cryptflow::backend(backend).map_err(py_err)?);
    options.input = input.unwrap_or_default();
    options.output = output;
    options.protocol = cryptflow::protocol(protocol).map_err(py_err)?;
    options.truncation = cryptflow::truncation(truncation).map_err(py_err)?;
    options.connect_timeout = connect_timeout;
    options.peer_timeout = peer_timeout;
    let (progress, failure) = progress_of(progress);
    options.progress = progress;
    let metrics = py.allow_threads(|| cryptflow::run_party(options));
    raise_kept(&failure)?;
    to_python(py, &metrics.map_err(py_err)?)
}

/// Writes every party's key pair into one folder (local tests), or party `id`'s.
#[pyfunction]
#[pyo3(signature = (dir, parties = 3, id = None, force = false))]
fn keygen(py: Python<'_>, dir: std::path::PathBuf, parties: usize, id: Option<usize>, force: bool) -> PyResult<()> {
    let options = cryptflow::KeygenOptions { output: dir, id, parties, authority: false, force };
    py.allow_threads(|| cryptflow::keygen(options)).map_err(py_err)
}

#[pymodule]
fn _cryptflow(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Program>()?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(run_party, m)?)?;
    m.add_function(wrap_pyfunction!(keygen, m)?)?;
    m.add("CryptflowError", py.get_type::<CryptflowError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("ProgramError", py.get_type::<ProgramError>())?;
    m.add("RunError", py.get_type::<RunError>())?;
    m.add("OptionsError", py.get_type::<OptionsError>())?;
    Ok(())
}
