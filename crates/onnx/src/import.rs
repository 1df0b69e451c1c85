//! The import driver: opset check, graph inputs, topological order, value bookkeeping,
//! guarded emission of HLIL nodes, graph outputs.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::rc::Rc;

use cryptflow_ir::hlil::{infer_shape, Graph, NodeId, Op};
use cryptflow_tensor::{ConvGeometry, FloatTensor, PoolGeometry, Tensor};

use crate::attrs::Cx;
use crate::consts::{self, check_shape, checked_elements, from_sparse_proto, from_tensor_proto, Const, MAX_DIM};
use crate::proto::{tensor_shape_proto::dimension, type_proto, GraphProto, ModelProto, NodeProto};
use crate::{ImportOptions, Imported, OnnxError, MAX_OPSET, MIN_OPSET};

/// Largest tensor the importer lets `Graph::add` constant-fold (it evaluates the kernels).
const MAX_FOLD: usize = 1 << 24;

/// A tensor of the ONNX graph: known at import time, or an HLIL node.
#[derive(Clone, Debug)]
pub enum Value {
    Const(Rc<Const>),
    Node(NodeId),
}

pub struct Importer<'m> {
    pub graph: Graph,
    values: HashMap<String, Value>,
    /// Weight nodes made from named constants, so a constant used twice is one weight.
    materialized: HashMap<String, NodeId>,
    /// HLIL nodes whose values are integers (ArgMax results).
    pub int_nodes: HashSet<NodeId>,
    pub notices: Vec<String>,
    consumers: HashMap<&'m str, Vec<usize>>,
    graph_outputs: HashSet<&'m str>,
    nodes: &'m [NodeProto],
}

pub fn import(model: &ModelProto, options: &ImportOptions) -> Result<Imported, OnnxError> {
    let opset = default_opset(model)?;
    let g = model.graph.as_ref().ok_or_else(|| OnnxError::Model("the model has no graph".into()))?;
    let mut imp = Importer {
        graph: Graph::new(),
        values: HashMap::new(),
        materialized: HashMap::new(),
        int_nodes: HashSet::new(),
        notices: Vec::new(),
        consumers: HashMap::new(),
        graph_outputs: g.output.iter().filter_map(|o| o.name.as_deref()).collect(),
        nodes: &g.node,
    };
    imp.load_initializers(g)?;
    imp.load_inputs(g, options)?;
    for (i, n) in g.node.iter().enumerate() {
        for input in n.input.iter().filter(|s| !s.is_empty()) {
            imp.consumers.entry(input.as_str()).or_default().push(i);
        }
    }
    let order = topological_order(g, &imp.values)?;
    for i in order {
        let node = &g.node[i];
        let cx = Cx::new(node, i, opset);
        imp.import_node(&cx)?;
    }
    imp.finish(g)?;
    Ok(Imported { graph: imp.graph, notices: imp.notices })
}

fn default_opset(model: &ModelProto) -> Result<i64, OnnxError> {
    let entry = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .ok_or_else(|| OnnxError::UnsupportedOpset("the model imports no default-domain (ai.onnx) opset".into()))?;
    let v = entry
        .version
        .ok_or_else(|| OnnxError::UnsupportedOpset("the default-domain opset import has no version".into()))?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&v) {
        return Err(OnnxError::UnsupportedOpset(format!(
            "the model uses default-domain opset {v}; supported opsets are {MIN_OPSET} to {MAX_OPSET} \
             (convert it with onnx.version_converter.convert_version)"
        )));
    }
    Ok(v)
}

/// Orders nodes so that producers come before consumers (stable: an already sorted graph
/// keeps its order), checking that every input is defined and that names are assigned once.
fn topological_order(g: &GraphProto, available: &HashMap<String, Value>) -> Result<Vec<usize>, OnnxError> {
    let n = g.node.len();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, node) in g.node.iter().enumerate() {
        for o in node.output.iter().filter(|s| !s.is_empty()) {
            let cx = || Cx::new(node, i, 0);
            if available.contains_key(o) {
                return Err(cx().invalid(format!("output `{o}` redefines a graph input or initializer")));
            }
            if producer.insert(o.as_str(), i).is_some() {
                return Err(cx().invalid(format!("tensor `{o}` is produced by more than one node")));
            }
        }
    }
    let mut indegree = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in g.node.iter().enumerate() {
        for input in node.input.iter().filter(|s| !s.is_empty()) {
            if available.contains_key(input) {
                continue;
            }
            match producer.get(input.as_str()) {
                Some(&p) => {
                    indegree[i] += 1;
                    dependents[p].push(i);
                }
                None => {
                    let cx = Cx::new(node, i, 0);
                    return Err(OnnxError::UndefinedTensor { node: cx.name, op_type: cx.op, tensor: input.clone() });
                }
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    if order.len() < n {
        let i = (0..n).find(|&i| indegree[i] > 0).unwrap_or(0);
        let cx = Cx::new(&g.node[i], i, 0);
        return Err(cx.invalid("the graph has a cycle through this node"));
    }
    Ok(order)
}

impl<'m> Importer<'m> {
    fn load_initializers(&mut self, g: &GraphProto) -> Result<(), OnnxError> {
        for t in &g.initializer {
            let name = t.name.clone().unwrap_or_default();
            if name.is_empty() {
                return Err(OnnxError::Model("an initializer has no name".into()));
            }
            let c = from_tensor_proto(t).map_err(|e| tensor_error(&name, e))?;
            if self.values.insert(name.clone(), Value::Const(Rc::new(c))).is_some() {
                return Err(OnnxError::Tensor { tensor: name, reason: "initializer defined twice".into() });
            }
        }
        for s in &g.sparse_initializer {
            let name = s.values.as_ref().and_then(|v| v.name.clone()).unwrap_or_default();
            if name.is_empty() {
                return Err(OnnxError::Model("a sparse initializer has no name".into()));
            }
            let c = from_sparse_proto(s).map_err(|e| tensor_error(&name, e))?;
            if self.values.insert(name.clone(), Value::Const(Rc::new(c))).is_some() {
                return Err(OnnxError::Tensor { tensor: name, reason: "initializer defined twice".into() });
            }
        }
        Ok(())
    }

    fn load_inputs(&mut self, g: &GraphProto, options: &ImportOptions) -> Result<(), OnnxError> {
        let real: Vec<_> = g
            .input
            .iter()
            .filter(|i| !self.values.contains_key(i.name.as_deref().unwrap_or_default()))
            .collect();
        let names: Vec<String> = real.iter().map(|i| i.name.clone().unwrap_or_default()).collect();
        for name in options.input_shapes.keys() {
            if !names.contains(name) {
                return Err(OnnxError::UnknownInputShapeName { name: name.clone(), inputs: names.clone() });
            }
        }
        if real.is_empty() {
            return Err(OnnxError::Model("the graph has no inputs (other than initializers)".into()));
        }
        for vi in real {
            let name = vi.name.clone().unwrap_or_default();
            let err = |reason: String| OnnxError::Input { input: name.clone(), reason };
            if name.is_empty() {
                return Err(OnnxError::Model("a graph input has no name".into()));
            }
            if self.values.contains_key(&name) {
                return Err(err("declared twice".into()));
            }
            let tensor_type = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                Some(type_proto::Value::TensorType(t)) => Some(t),
                None => None,
                Some(_) => return Err(err("is not a tensor (sequences, maps and optionals are not supported)".into())),
            };
            if let Some(elem) = tensor_type.and_then(|t| t.elem_type) {
                // FLOAT, FLOAT16, DOUBLE, BFLOAT16.
                if ![1, 10, 11, 16].contains(&elem) {
                    let ty = crate::proto::tensor_proto::DataType::try_from(elem)
                        .map(|d| d.as_str_name())
                        .unwrap_or("UNKNOWN");
                    return Err(err(format!("has element type {ty}; only floating-point inputs are supported")));
                }
            }
            let declared: Option<Vec<Option<usize>>> = match tensor_type.and_then(|t| t.shape.as_ref()) {
                Some(s) => Some(
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(dimension::Value::DimValue(v)) if v > 0 => {
                                if v as u64 > MAX_DIM as u64 {
                                    Err(err(format!("dimension {v} is too large")))
                                } else {
                                    Ok(Some(v as usize))
                                }
                            }
                            Some(dimension::Value::DimValue(0)) => Err(err("has an empty (0) dimension".into())),
                            _ => Ok(None),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                None => None,
            };
            let shape = match (options.input_shapes.get(&name), declared) {
                (Some(given), declared) => {
                    if let Some(d) = &declared {
                        if d.len() != given.len() {
                            return Err(err(format!(
                                "--input-shape gives rank {} ({given:?}) but the model declares rank {}",
                                given.len(),
                                d.len()
                            )));
                        }
                        let fixed_differs = d.iter().zip(given).any(|(d, g)| d.is_some_and(|d| d != *g));
                        if fixed_differs {
                            self.notices.push(format!(
                                "input `{name}`: --input-shape {given:?} overrides fixed dimensions declared in the model ({})",
                                describe_dims(d)
                            ));
                        }
                    }
                    if given.contains(&0) {
                        return Err(err(format!("--input-shape {given:?} has an empty (0) dimension")));
                    }
                    given.clone()
                }
                (None, Some(d)) => {
                    if d.iter().any(Option::is_none) {
                        self.notices.push(format!(
                            "input `{name}` has symbolic or unknown dimensions ({}); they are set to 1 (use --input-shape {name}=... to choose)",
                            describe_dims(&d)
                        ));
                    }
                    d.iter().map(|d| d.unwrap_or(1)).collect()
                }
                (None, None) => {
                    return Err(err("the model does not declare its shape; give it with --input-shape".into()));
                }
            };
            check_shape(&shape).map_err(err)?;
            let id = self.graph.input(name.clone(), shape);
            self.values.insert(name, Value::Node(id));
        }
        Ok(())
    }

    fn finish(&mut self, g: &GraphProto) -> Result<(), OnnxError> {
        if g.output.is_empty() {
            return Err(OnnxError::Model("the graph has no outputs".into()));
        }
        let mut outs: Vec<(String, NodeId)> = Vec::new();
        for o in &g.output {
            let name = o.name.clone().unwrap_or_default();
            let v = self
                .values
                .get(&name)
                .cloned()
                .ok_or_else(|| OnnxError::Model(format!("graph output `{name}` is not produced by any node")))?;
            if let Value::Const(c) = &v {
                if c.len() == 0 {
                    return Err(OnnxError::Model(format!("graph output `{name}` is empty (shape {:?})", c.shape)));
                }
            }
            let id = match v {
                Value::Node(id) => id,
                Value::Const(c) => self.materialize_named(&name, &c).map_err(|r| OnnxError::Tensor { tensor: name.clone(), reason: r })?,
            };
            outs.push((name, id));
        }
        // Graph outputs keep their ONNX names: rename the producing node when it is not
        // already claimed by another name, else add an identity (a same-shape Reshape).
        let mut claimed: HashSet<NodeId> = self.graph.inputs.iter().copied().collect();
        for (name, id) in &outs {
            if self.graph.nodes[*id].name == *name {
                claimed.insert(*id);
            }
        }
        let mut final_ids = Vec::new();
        for (name, id) in outs {
            let id = if self.graph.nodes[id].name == name {
                id
            } else if claimed.insert(id) {
                self.graph.nodes[id].name = name.clone();
                id
            } else {
                let shape = self.graph.nodes[id].shape.clone();
                self.graph
                    .add(name.clone(), Op::Reshape { shape }, &[id])
                    .map_err(|e| OnnxError::Model(format!("graph output `{name}`: {e}")))?
            };
            final_ids.push(id);
        }
        self.graph.outputs = final_ids;
        self.graph.prune();
        self.graph.validate().map_err(|e| OnnxError::Model(format!("internal check of the imported graph failed: {e}")))?;
        Ok(())
    }

    // ---- values ------------------------------------------------------------------------

    pub fn lookup(&self, cx: &Cx, name: &str) -> Result<Value, OnnxError> {
        self.values.get(name).cloned().ok_or_else(|| OnnxError::UndefinedTensor {
            node: cx.name.clone(),
            op_type: cx.op.clone(),
            tensor: name.to_string(),
        })
    }

    /// Required input `i`.
    pub fn input(&self, cx: &Cx, i: usize) -> Result<Value, OnnxError> {
        match cx.input_name(i) {
            Some(name) => self.lookup(cx, name),
            None => Err(cx.invalid(format!("missing required input {i}"))),
        }
    }

    /// Optional input `i` (absent or empty name gives None).
    pub fn opt_input(&self, cx: &Cx, i: usize) -> Result<Option<Value>, OnnxError> {
        match cx.input_name(i) {
            Some(name) => self.lookup(cx, name).map(Some),
            None => Ok(None),
        }
    }

    /// Input `i`, which must be known at import time.
    pub fn const_input(&self, cx: &Cx, i: usize, what: &str) -> Result<Rc<Const>, OnnxError> {
        match self.input(cx, i)? {
            Value::Const(c) => Ok(c),
            Value::Node(_) => Err(cx.unsupported(format!(
                "input {i} ({what}) must be a constant known at import time, but `{}` is computed from the model inputs",
                cx.input_name(i).unwrap_or_default()
            ))),
        }
    }

    pub fn opt_const_input(&self, cx: &Cx, i: usize, what: &str) -> Result<Option<Rc<Const>>, OnnxError> {
        match cx.input_name(i) {
            Some(_) => self.const_input(cx, i, what).map(Some),
            None => Ok(None),
        }
    }

    /// Integer constant input `i` (e.g. a shape or axes).
    pub fn ints_input(&self, cx: &Cx, i: usize, what: &str) -> Result<Vec<i64>, OnnxError> {
        let c = self.const_input(cx, i, what)?;
        c.ints()
            .map(<[i64]>::to_vec)
            .ok_or_else(|| cx.invalid(format!("input {i} ({what}) must be an integer tensor")))
    }

    pub fn opt_ints_input(&self, cx: &Cx, i: usize, what: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        match cx.input_name(i) {
            Some(_) => self.ints_input(cx, i, what).map(Some),
            None => Ok(None),
        }
    }

    pub fn shape(&self, v: &Value) -> Vec<usize> {
        match v {
            Value::Const(c) => c.shape.clone(),
            Value::Node(id) => self.graph.nodes[*id].shape.clone(),
        }
    }

    pub fn bind(&mut self, name: String, v: Value) {
        self.values.insert(name, v);
    }

    fn materialize_named(&mut self, name: &str, c: &Const) -> Result<NodeId, String> {
        if let Some(&id) = self.materialized.get(name) {
            return Ok(id);
        }
        let id = self.weight(name.to_string(), c)?;
        self.materialized.insert(name.to_string(), id);
        Ok(id)
    }

    /// Adds a weight node holding a constant (converted to float).
    pub fn weight(&mut self, name: String, c: &Const) -> Result<NodeId, String> {
        check_shape(&c.shape)?;
        let t: FloatTensor = Tensor::new(c.shape.clone(), c.to_f32()).map_err(|e| e.to_string())?;
        Ok(self.graph.weight(name, t))
    }

    /// The HLIL node of input `i` (a constant becomes a weight named after its tensor).
    pub fn node(&mut self, cx: &Cx, i: usize) -> Result<NodeId, OnnxError> {
        let v = self.input(cx, i)?;
        let name = cx.input_name(i).unwrap_or_default().to_string();
        self.node_of(cx, &name, &v)
    }

    /// The HLIL node of a value; `name` is the tensor name used for (and caching) a weight.
    pub fn node_of(&mut self, cx: &Cx, name: &str, v: &Value) -> Result<NodeId, OnnxError> {
        match v {
            Value::Node(id) => Ok(*id),
            Value::Const(c) => self.materialize_named(name, c).map_err(|e| cx.shape_err(e)),
        }
    }

    /// Adds an HLIL node after checking, without panicking, everything `Graph::add` assumes.
    pub fn emit(&mut self, cx: &Cx, name: String, op: Op, inputs: &[NodeId]) -> Result<NodeId, OnnxError> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|&i| self.graph.nodes[i].shape.clone()).collect();
        for s in &shapes {
            check_shape(s).map_err(|e| cx.shape_err(e))?;
            if s.contains(&0) {
                return Err(cx.shape_err(format!("{} `{name}` would read an empty tensor of shape {s:?}", op.name())));
            }
        }
        precheck(&op, &shapes).map_err(|e| cx.shape_err(format!("{} `{name}`: {e}", op.name())))?;
        let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let out = infer_shape(&op, &refs).map_err(|e| cx.shape_err(format!("{} `{name}`: {e}", op.name())))?;
        let n = check_shape(&out).map_err(|e| cx.shape_err(e))?;
        if out.contains(&0) {
            return Err(cx.shape_err(format!("{} `{name}` would produce an empty tensor of shape {out:?}", op.name())));
        }
        let folds = inputs.iter().all(|&i| matches!(self.graph.nodes[i].op, Op::Weight(_)));
        if folds && n > MAX_FOLD {
            return Err(cx.shape_err(format!("constant result of shape {out:?} is too large to fold")));
        }
        self.graph.add(name, op, inputs).map_err(|e| cx.shape_err(e.to_string()))
    }

    // ---- import-time knowledge of the graph ------------------------------------------------

    /// Whether tensor `name` is consumed (by a node or as a graph output).
    pub fn is_used(&self, name: &str) -> bool {
        self.graph_outputs.contains(name) || self.consumers.get(name).is_some_and(|c| !c.is_empty())
    }

    /// Whether every use of `name` is a graph output, possibly through Identity, Dropout or
    /// Cast nodes. Returns the first offending consumer otherwise.
    pub fn only_reaches_outputs(&self, name: &str) -> Result<(), (String, String)> {
        let mut stack = vec![name.to_string()];
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(t) = stack.pop() {
            if !seen.insert(t.clone()) {
                continue;
            }
            for &c in self.consumers.get(t.as_str()).map(Vec::as_slice).unwrap_or(&[]) {
                let node = &self.nodes[c];
                let op = node.op_type.as_deref().unwrap_or_default();
                let first_input_only = node.input.iter().skip(1).all(|i| *i != t);
                let passes = matches!(op, "Identity" | "Dropout" | "Cast")
                    && matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx"))
                    && node.input.first() == Some(&t)
                    && first_input_only;
                if !passes {
                    let cx = Cx::new(node, c, 0);
                    return Err((cx.name, cx.op));
                }
                if let Some(o) = node.output.first().filter(|o| !o.is_empty()) {
                    stack.push(o.clone());
                }
            }
        }
        Ok(())
    }

    pub fn reaches_an_output(&self, name: &str) -> bool {
        let mut stack = vec![name.to_string()];
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(t) = stack.pop() {
            if self.graph_outputs.contains(t.as_str()) {
                return true;
            }
            if !seen.insert(t.clone()) {
                continue;
            }
            for &c in self.consumers.get(t.as_str()).map(Vec::as_slice).unwrap_or(&[]) {
                if let Some(o) = self.nodes[c].output.first().filter(|o| !o.is_empty()) {
                    stack.push(o.clone());
                }
            }
        }
        false
    }
}

fn tensor_error(name: &str, e: String) -> OnnxError {
    if e == "EXTERNAL" {
        OnnxError::ExternalData { tensor: name.to_string() }
    } else {
        OnnxError::Tensor { tensor: name.to_string(), reason: e }
    }
}

fn describe_dims(d: &[Option<usize>]) -> String {
    let parts: Vec<String> = d.iter().map(|d| d.map_or("?".to_string(), |v| v.to_string())).collect();
    format!("[{}]", parts.join(", "))
}

/// Checks the arithmetic `infer_shape` will do on these parameters cannot overflow or
/// underflow (it uses plain `usize` arithmetic) and that pads fit the kernels.
fn precheck(op: &Op, shapes: &[Vec<usize>]) -> Result<(), String> {
    let small = |v: &[usize], what: &str| -> Result<(), String> {
        if v.iter().any(|&x| x > MAX_DIM) {
            return Err(format!("{what} {v:?} out of range"));
        }
        Ok(())
    };
    match op {
        Op::Conv(g) | Op::ConvTranspose(g) => {
            check_conv(g, matches!(op, Op::ConvTranspose(_)))?;
        }
        Op::MaxPool(g) | Op::AvgPool(g) => check_pool(g)?,
        Op::Reshape { shape } => {
            checked_elements(shape).ok_or_else(|| format!("shape {shape:?} is too large"))?;
        }
        Op::Pad { pads_begin, pads_end, .. } => {
            small(pads_begin, "pads")?;
            small(pads_end, "pads")?;
        }
        Op::Add | Op::Sub | Op::Mul => {
            if let [a, b] = shapes {
                consts::broadcast_shapes(a, b)?;
            }
        }
        Op::Slice { starts, ends, steps } => {
            for v in [starts, ends, steps] {
                if v.iter().any(|x| x.unsigned_abs() > MAX_DIM as u64) {
                    return Err(format!("slice parameters {v:?} out of range"));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_conv(g: &ConvGeometry, transpose: bool) -> Result<(), String> {
    let r = g.input.len();
    if !(1..=3).contains(&r) {
        return Err(format!("convolutions have 1 to 3 spatial axes, not {r}"));
    }
    for v in [&g.kernel, &g.strides, &g.dilations, &g.pads_begin, &g.pads_end, &g.output_padding] {
        if v.len() != r {
            return Err(format!("geometry {g:?} is inconsistent"));
        }
        if v.iter().any(|&x| x > MAX_DIM) {
            return Err(format!("geometry value out of range in {v:?}"));
        }
    }
    if g.kernel.iter().chain(&g.strides).chain(&g.dilations).any(|&v| v == 0) {
        return Err("kernel, strides and dilations must be positive".into());
    }
    if g.groups == 0 || g.in_channels % g.groups != 0 || g.out_channels % g.groups != 0 {
        return Err(format!(
            "{} groups do not divide {} input and {} output channels",
            g.groups, g.in_channels, g.out_channels
        ));
    }
    for i in 0..r {
        let span = g.dilations[i] * (g.kernel[i] - 1) + 1;
        if transpose {
            let full = g.strides[i] * (g.input[i].max(1) - 1) + g.output_padding[i] + span;
            if full <= g.pads_begin[i] + g.pads_end[i] {
                return Err(format!(
                    "pads {}+{} on spatial axis {i} leave no output (full extent {full})",
                    g.pads_begin[i], g.pads_end[i]
                ));
            }
        } else if g.input[i] + g.pads_begin[i] + g.pads_end[i] < span {
            return Err(format!(
                "kernel span {span} exceeds the padded input extent {} on spatial axis {i}",
                g.input[i] + g.pads_begin[i] + g.pads_end[i]
            ));
        }
    }
    Ok(())
}

fn check_pool(g: &PoolGeometry) -> Result<(), String> {
    let r = g.input.len();
    for v in [&g.window, &g.strides, &g.pads_begin, &g.pads_end] {
        if v.len() != r || v.iter().any(|&x| x > MAX_DIM) {
            return Err(format!("inconsistent pooling geometry {g:?}"));
        }
    }
    Ok(())
}
