//! The client's inputs: `--input [NAME=]X.npy` (once per graph input), read, checked and split
//! into inferences.
//!
//! A float input is encoded in fixed point at the program's scale; an integer input
//! (`SecretInput::integer`: token ids, masks) as the exact integer (value `v` -> ring element
//! `v as i64`). Files may be float32, float64 or any integer type: integers given to a float
//! input are converted (exactly: beyond 2^24 float32 cannot hold them, an error), floats given
//! to an integer input must be integers. NaN and infinities are errors, naming the input and
//! the element.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cryptflow_ir::hlil::{Graph, Op};
use cryptflow_ir::llil::Program;
use cryptflow_runtime::{encode_input, encode_integer_input, encode_one_hot_input};
use cryptflow_tensor::{FloatTensor, RingTensor, Tensor};

use crate::npy::{self, Elements, Stacking};

/// A graph input as the client sees it.
#[derive(Clone, Debug)]
pub struct InputSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub integer: bool,
}

impl InputSpec {
    /// The client inputs of a compiled program, in its order.
    pub fn of_program(program: &Program) -> Vec<InputSpec> {
        let mut specs: Vec<InputSpec> = Vec::new();
        for i in &program.inputs {
            // An integer input shared both one-hot and plain is read once.
            if !specs.iter().any(|s| s.name == i.name) {
                specs.push(InputSpec { name: i.name.clone(), shape: i.value_shape().to_vec(), integer: i.integer });
            }
        }
        specs
    }

    /// The inputs of an HLIL graph, in its order.
    pub fn of_graph(graph: &Graph) -> Vec<InputSpec> {
        graph
            .inputs
            .iter()
            .map(|&id| {
                let node = &graph.nodes[id];
                InputSpec { name: node.name.clone(), shape: node.shape.clone(), integer: node.op == Op::IntegerInput }
            })
            .collect()
    }

    fn kind(&self) -> &'static str {
        if self.integer {
            "integer"
        } else {
            "float"
        }
    }
}

/// One inference's value of one input.
#[derive(Clone, Debug)]
pub enum Value {
    Float(FloatTensor),
    Integer { shape: Vec<usize>, values: Vec<i64> },
}

impl Value {
    /// The ring encoding: fixed point at `scale` for a float input, the exact integer for an
    /// integer input.
    pub fn encode(&self, scale: u32) -> RingTensor {
        match self {
            Value::Float(x) => encode_input(x, scale),
            Value::Integer { shape, values } => encode_integer_input(shape, values),
        }
    }

    /// The value for the float executor (integers converted to f32).
    pub fn to_float(&self) -> FloatTensor {
        match self {
            Value::Float(x) => x.clone(),
            Value::Integer { shape, values } => {
                Tensor::new(shape.clone(), values.iter().map(|&v| v as f32).collect()).expect("the shape was checked")
            }
        }
    }
}

/// The client's inputs, split into inferences.
pub struct ClientInputs {
    /// Input names, in the order of the specs they were read for.
    pub names: Vec<String>,
    /// `items[k][j]`: inference `k`'s value of input `j`.
    pub items: Vec<Vec<Value>>,
    /// How the outputs are stacked: like the first input.
    pub stacking: Stacking,
}

impl ClientInputs {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Each inference's inputs encoded for `program` (in `program.inputs` order). A value
    /// whose fixed-point form `v * 2^scale` would not fit in 64 bits is an error.
    pub fn encoded(&self, program: &Program) -> Result<Vec<Vec<RingTensor>>> {
        let order = self.order(program.inputs.iter().map(|i| i.name.as_str()))?;
        let scale = program.scale;
        let limit = 2f64.powi(63 - scale as i32);
        for (k, item) in self.items.iter().enumerate() {
            for (&j, _) in order.iter().zip(&program.inputs).filter(|(_, spec)| !spec.one_hot) {
                let (shape, too_large) = match &item[j] {
                    Value::Float(x) => (x.shape(), x.data().iter().position(|&v| f64::from(v).abs() >= limit).map(|i| (i, f64::from(x.data()[i])))),
                    Value::Integer { shape, values } => (shape.as_slice(), values.iter().position(|&v| v.unsigned_abs() as f64 >= limit).map(|i| (i, values[i] as f64))),
                };
                if let Some((i, v)) = too_large {
                    bail!(
                        "input `{}`, item {k}, element {} = {v}: beyond the 64-bit ring at scale {scale} (values must stay below 2^{} in magnitude)",
                        self.names[j],
                        npy::index_text(shape, i),
                        63 - scale
                    );
                }
            }
        }
        self.items
            .iter()
            .enumerate()
            .map(|(k, item)| {
                order
                    .iter()
                    .zip(&program.inputs)
                    .map(|(&j, spec)| match (&item[j], spec.one_hot_depth()) {
                        (Value::Integer { shape, values }, Some(depth)) => encode_one_hot_input(shape, values, depth)
                            .map_err(|e| anyhow::anyhow!("input `{}`, item {k}: {e}", self.names[j])),
                        (Value::Float(_), Some(_)) => bail!("input `{}` selects rows of a table: give integers", self.names[j]),
                        (value, None) => Ok(value.encode(scale)),
                    })
                    .collect()
            })
            .collect()
    }

    /// Each inference's inputs as floats for `graph` (in `graph.inputs` order).
    pub fn floats(&self, graph: &Graph) -> Result<Vec<Vec<FloatTensor>>> {
        let order = self.order(graph.inputs.iter().map(|&id| graph.nodes[id].name.as_str()))?;
        Ok(self.items.iter().map(|item| order.iter().map(|&j| item[j].to_float()).collect()).collect())
    }

    /// For each name, the index of the input read under that name.
    fn order<'a>(&self, names: impl Iterator<Item = &'a str>) -> Result<Vec<usize>> {
        let order = names
            .map(|name| {
                self.names.iter().position(|n| n == name).with_context(|| format!("the program's input `{name}` was not read"))
            })
            .collect::<Result<Vec<_>>>()?;
        let distinct: std::collections::BTreeSet<usize> = order.iter().copied().collect();
        if distinct.len() != self.names.len() {
            bail!("the program takes {} inputs, {} were read", distinct.len(), self.names.len());
        }
        Ok(order)
    }
}

/// `x` [1, 4] (float), `mask` [1, 3] (integer)
fn describe(specs: &[InputSpec]) -> String {
    specs.iter().map(|s| format!("`{}` {:?} ({})", s.name, s.shape, s.kind())).collect::<Vec<_>>().join(", ")
}

/// Matches `--input` values (`NAME=X.npy`, or `X.npy` for a one-input model) to the inputs.
/// Returns one path per spec, in spec order.
pub fn resolve(flag: &str, given: &[String], specs: &[InputSpec]) -> Result<Vec<PathBuf>> {
    let mut paths: Vec<Option<&str>> = vec![None; specs.len()];
    for value in given {
        // The longest input name that `value` starts with, followed by `=`.
        let named = specs
            .iter()
            .enumerate()
            .filter(|(_, s)| value.len() > s.name.len() && value.starts_with(s.name.as_str()) && value[s.name.len()..].starts_with('='))
            .max_by_key(|(_, s)| s.name.len())
            .map(|(k, s)| (k, &value[s.name.len() + 1..]));
        let (k, path) = match named {
            Some(named) => named,
            None => match value.split_once('=') {
                Some((name, _)) if !Path::new(value).exists() => bail!(
                    "{flag} `{value}`: the model has no input `{name}`; its inputs are {}",
                    describe(specs)
                ),
                _ if specs.len() == 1 => (0, value.as_str()),
                _ => bail!(
                    "{flag} `{value}`: this model has {} inputs, give each as {flag} NAME=X.npy; its inputs are {}",
                    specs.len(),
                    describe(specs)
                ),
            },
        };
        if path.is_empty() {
            bail!("{flag} `{value}`: no file after `=`");
        }
        if let Some(previous) = paths[k] {
            bail!("input `{}` is given twice ({flag} {previous} and {flag} {value})", specs[k].name);
        }
        paths[k] = Some(path);
    }
    let missing: Vec<&InputSpec> = specs.iter().zip(&paths).filter(|(_, p)| p.is_none()).map(|(s, _)| s).collect();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|s| format!("`{}`", s.name)).collect();
        let example = missing.iter().map(|s| format!("{flag} {}=X.npy", s.name)).collect::<Vec<_>>().join(" ");
        bail!(
            "missing input{} {}: give {example} (the model's inputs are {})",
            if missing.len() > 1 { "s" } else { "" },
            names.join(", "),
            describe(specs)
        );
    }
    Ok(paths.into_iter().map(|p| PathBuf::from(p.expect("checked"))).collect())
}

/// Reads the `--input` files for `specs` (see [`resolve`]), checks them and splits them into
/// inferences, which must be equally many in every file.
pub fn read(flag: &str, given: &[String], specs: &[InputSpec]) -> Result<ClientInputs> {
    let paths = resolve(flag, given, specs)?;
    let mut per_input: Vec<(Vec<Value>, Stacking)> = Vec::with_capacity(specs.len());
    for (spec, path) in specs.iter().zip(&paths) {
        per_input.push(read_one(spec, path)?);
    }
    let sources: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    assemble(specs, &sources, per_input)
}

/// The inputs from arrays in memory, one per spec in spec order (named as the caller named
/// them in `sources`, for messages); checked and split as [`read`] does with files.
pub fn from_arrays(specs: &[InputSpec], arrays: Vec<npy::Array>, sources: &[String]) -> Result<ClientInputs> {
    if arrays.len() != specs.len() {
        bail!("the model takes {} input{} ({}), {} were given", specs.len(), if specs.len() == 1 { "" } else { "s" }, describe(specs), arrays.len());
    }
    let mut per_input: Vec<(Vec<Value>, Stacking)> = Vec::with_capacity(specs.len());
    for ((spec, array), source) in specs.iter().zip(arrays).zip(sources) {
        per_input.push(split_values(spec, array, &format!("input `{}` ({source})", spec.name))?);
    }
    assemble(specs, sources, per_input)
}

/// Checks that every input holds the same number of items and makes the inferences.
fn assemble(specs: &[InputSpec], paths: &[String], per_input: Vec<(Vec<Value>, Stacking)>) -> Result<ClientInputs> {
    let counts: Vec<usize> = per_input.iter().map(|(items, _)| items.len()).collect();
    if counts.iter().any(|&n| n != counts[0]) {
        let list: Vec<String> =
            specs.iter().zip(paths).zip(&counts).map(|((s, p), n)| format!("`{}` {n} ({p})", s.name)).collect();
        bail!("the inputs hold different numbers of items: {}; every input needs one item per inference", list.join(", "));
    }
    let n = counts.first().copied().unwrap_or(0);
    if n == 0 {
        bail!("the input files hold no items");
    }
    let stacking = per_input.first().map_or(Stacking::Single, |(_, s)| *s);
    let mut columns: Vec<std::vec::IntoIter<Value>> = per_input.into_iter().map(|(items, _)| items.into_iter()).collect();
    let items = (0..n).map(|_| columns.iter_mut().map(|c| c.next().expect("counts agree")).collect()).collect();
    Ok(ClientInputs { names: specs.iter().map(|s| s.name.clone()).collect(), items, stacking })
}

/// Reads one input's file: checks every value, converts it to the input's kind and splits it.
fn read_one(spec: &InputSpec, path: &Path) -> Result<(Vec<Value>, Stacking)> {
    let what = format!("input `{}` ({})", spec.name, path.display());
    let array = npy::read_array(path).with_context(|| format!("input `{}`", spec.name))?;
    split_values(spec, array, &what)
}

/// Checks one input's array, converts it to the input's kind and splits it into items.
fn split_values(spec: &InputSpec, array: npy::Array, what: &str) -> Result<(Vec<Value>, Stacking)> {
    let what = what.to_string();
    let (n, stacking) = npy::batch_layout(&array.shape, &spec.shape, &what)?;
    let at = |i: usize| npy::index_text(&array.shape, i);
    let per = cryptflow_tensor::num_elements(&spec.shape);
    let items = if spec.integer {
        let values: Vec<i64> = match array.elements {
            Elements::Int(v) => v,
            Elements::F32(v) => v.iter().enumerate().map(|(i, &x)| float_to_integer(f64::from(x), &what, &at(i))).collect::<Result<_>>()?,
            Elements::F64(v) => v.iter().enumerate().map(|(i, &x)| float_to_integer(x, &what, &at(i))).collect::<Result<_>>()?,
        };
        values.chunks(per.max(1)).take(n).map(|c| Value::Integer { shape: spec.shape.clone(), values: c.to_vec() }).collect()
    } else {
        let values: Vec<f32> = match array.elements {
            Elements::F32(v) => {
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    bail!("{what}: element {} is {}", at(i), v[i]);
                }
                v
            }
            Elements::F64(v) => v
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    if !x.is_finite() {
                        bail!("{what}: element {} is {x}", at(i));
                    }
                    let narrowed = x as f32;
                    if !narrowed.is_finite() {
                        bail!("{what}: element {} = {x} is beyond float32's range", at(i));
                    }
                    Ok(narrowed)
                })
                .collect::<Result<_>>()?,
            Elements::Int(v) => v
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    if x.unsigned_abs() > 1 << 24 {
                        bail!("{what}: element {} = {x} has no exact float32 value (beyond 2^24); the input is a float input", at(i));
                    }
                    Ok(x as f32)
                })
                .collect::<Result<_>>()?,
        };
        values.chunks(per.max(1)).take(n).map(|c| Value::Float(Tensor::new(spec.shape.clone(), c.to_vec()).expect("chunk has the input's size"))).collect()
    };
    Ok((items, stacking))
}

fn float_to_integer(x: f64, what: &str, at: &str) -> Result<i64> {
    if !x.is_finite() {
        bail!("{what}: element {at} is {x}");
    }
    if x.fract() != 0.0 {
        bail!("{what} is an integer input: element {at} is {x}, not an integer");
    }
    // 2^63 is exactly representable; i64's range is [-2^63, 2^63).
    if !(i64::MIN as f64..-(i64::MIN as f64)).contains(&x) {
        bail!("{what}: element {at} = {x} does not fit in int64");
    }
    Ok(x as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<InputSpec> {
        vec![
            InputSpec { name: "x".into(), shape: vec![1, 4], integer: false },
            InputSpec { name: "mask".into(), shape: vec![1, 3], integer: true },
        ]
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_are_matched_and_errors_are_clear() {
        let paths = resolve("--input", &strings(&["mask=m.npy", "x=a=b.npy"]), &specs()).unwrap();
        assert_eq!(paths, vec![PathBuf::from("a=b.npy"), PathBuf::from("m.npy")]);
        let err = resolve("--input", &strings(&["y=m.npy", "x=x.npy"]), &specs()).unwrap_err().to_string();
        assert!(err.contains("no input `y`") && err.contains("`x` [1, 4] (float)") && err.contains("`mask` [1, 3] (integer)"), "{err}");
        let err = resolve("--input", &strings(&["x=x.npy"]), &specs()).unwrap_err().to_string();
        assert!(err.contains("missing input `mask`"), "{err}");
        let err = resolve("--input", &strings(&["x=x.npy", "x=y.npy", "mask=m.npy"]), &specs()).unwrap_err().to_string();
        assert!(err.contains("`x` is given twice"), "{err}");
        let err = resolve("--input", &strings(&["x.npy"]), &specs()).unwrap_err().to_string();
        assert!(err.contains("2 inputs") && err.contains("NAME=X.npy"), "{err}");
        let one = &specs()[..1];
        assert_eq!(resolve("--input", &strings(&["x.npy"]), one).unwrap(), vec![PathBuf::from("x.npy")]);
        let err = resolve("--input", &strings(&["x.npy", "x=y.npy"]), one).unwrap_err().to_string();
        assert!(err.contains("given twice"), "{err}");
    }

    #[test]
    fn float_to_integer_checks() {
        assert_eq!(float_to_integer(-3.0, "w", "[0]").unwrap(), -3);
        assert!(float_to_integer(0.5, "w", "[0]").unwrap_err().to_string().contains("not an integer"));
        assert!(float_to_integer(f64::NAN, "w", "[2]").unwrap_err().to_string().contains("[2] is NaN"));
        assert!(float_to_integer(1e19, "w", "[0]").is_err());
        assert_eq!(float_to_integer(i64::MIN as f64, "w", "[0]").unwrap(), i64::MIN);
        assert!(float_to_integer(-(i64::MIN as f64), "w", "[0]").is_err());
    }
}
