//! Loading models through the front end that matches the file.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cryptflow_ir::hlil::Graph;

/// Parses `NAME=D0,D1,...`.
pub fn parse_input_shape(text: &str) -> Result<(String, Vec<usize>)> {
    let (name, dims) = text
        .rsplit_once('=')
        .with_context(|| format!("--input-shape `{text}`: expected NAME=D0,D1,..."))?;
    let dims = dims
        .split(',')
        .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0))
        .collect::<Option<Vec<_>>>()
        .with_context(|| format!("--input-shape `{text}`: dimensions must be positive integers"))?;
    Ok((name.to_string(), dims))
}

/// A model imported into HLIL, with the front end's notices.
pub struct LoadedModel {
    pub graph: Graph,
    pub notices: Vec<String>,
}

/// Imports `path` with the front end of its format. `strip_output_softmax`: compile a Softmax
/// at a graph output away (`ImportOptions::strip_output_softmax`).
pub fn load(path: &Path, input_shapes: &[(String, Vec<usize>)], strip_output_softmax: bool) -> Result<LoadedModel> {
    let shapes: HashMap<String, Vec<usize>> = input_shapes.iter().cloned().collect();
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match extension.as_str() {
        "onnx" => {
            let options = cryptflow_onnx::ImportOptions { input_shapes: shapes, strip_output_softmax };
            let imported = cryptflow_onnx::import_file(path, &options).with_context(|| format!("cannot import {}", path.display()))?;
            Ok(LoadedModel { graph: imported.graph, notices: imported.notices })
        }
        "pb" => {
            let options = cryptflow_tensorflow::ImportOptions { input_shapes: shapes, strip_output_softmax };
            let imported =
                cryptflow_tensorflow::import_file(path, &options).with_context(|| format!("cannot import {}", path.display()))?;
            Ok(LoadedModel { graph: imported.graph, notices: imported.notices })
        }
        _ => bail!("{}: unknown model format (expected an ONNX .onnx file or a frozen TensorFlow GraphDef .pb)", path.display()),
    }
}
