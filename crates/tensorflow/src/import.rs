//! The import driver: node index and edges, graph outputs, inputs, topological order, value
//! bookkeeping (including dead branches), guarded emission of HLIL nodes, graph outputs.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::rc::Rc;

use cryptflow_ir::hlil::{infer_shape, Graph, NodeId, Op};
use cryptflow_tensor::{ConvGeometry, FloatTensor, PoolGeometry, Tensor};

use crate::attrs::{parse_input, Cx};
use crate::consts::{self, check_shape, checked_elements, dtype_name, is_float_dtype, Const, MAX_DIM};
use crate::proto::{GraphDef, NodeDef};
use crate::{ImportOptions, Imported, TfError};

/// Largest tensor the importer lets `Graph::add` constant-fold (it evaluates the kernels).
const MAX_FOLD: usize = 1 << 24;

/// Operations that never produce a graph output (they have no data outputs, or an unused one
/// is not a result: constants, inputs).
const NEVER_OUTPUTS: &[&str] = &["NoOp", "Assert", "Const", "Placeholder", "PlaceholderWithDefault"];

/// Operations that pass their first input through unchanged.
pub const PASS_THROUGH: &[&str] = &["Identity", "Snapshot", "StopGradient", "PreventGradient", "CheckNumerics", "EnsureShape"];

/// A tensor of the TensorFlow graph: known at import time, an HLIL node, or the output of an
/// untaken `Switch` branch.
#[derive(Clone, Debug)]
pub enum Value {
    Const(Rc<Const>),
    Node(NodeId),
    Dead,
}

pub struct Importer<'g> {
    pub graph: Graph,
    pub nodes: &'g [NodeDef],
    pub index: HashMap<&'g str, usize>,
    /// Values of `(node, output)`.
    values: HashMap<(usize, usize), Value>,
    /// Nodes whose every output is dead.
    dead: HashSet<usize>,
    /// Nodes already imported (as graph inputs, or fused into an earlier node).
    pub done: HashSet<usize>,
    /// Weight nodes made from constants, by the constant's address and a tag, so a constant
    /// used twice is one weight. The `Rc` keeps the address from being reused.
    materialized: HashMap<(usize, &'static str), (Rc<Const>, NodeId)>,
    /// HLIL nodes whose values are integers (ArgMax results).
    pub int_nodes: HashSet<NodeId>,
    pub notices: Vec<String>,
    /// Data consumers of each node: `(consumer, input position, output read)`.
    pub consumers: Vec<Vec<(usize, usize, usize)>>,
    /// Nodes no other node reads (candidate outputs).
    pub sinks: Vec<usize>,
    /// Names to give HLIL nodes once the current node is imported (fused nodes are named
    /// after the TensorFlow node whose value they produce).
    pub pending_names: Vec<(NodeId, String)>,
}

pub fn import(g: &GraphDef, options: &ImportOptions) -> Result<Imported, TfError> {
    let nodes = g.node.as_slice();
    if nodes.is_empty() {
        return Err(TfError::Model("the graph has no nodes".into()));
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if n.name.is_empty() {
            return Err(TfError::Model(format!("node #{i} ({}) has no name", n.op)));
        }
        if index.insert(n.name.as_str(), i).is_some() {
            return Err(TfError::Model(format!("node name `{}` is used by more than one node", n.name)));
        }
    }
    // Data edges.
    let mut producers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut consumers: Vec<Vec<(usize, usize, usize)>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let mut pos = 0;
        for s in &n.input {
            let r = parse_input(s).map_err(|e| Cx::new(n, i).invalid(e))?;
            let Some(r) = r else {
                let name = &s[1..];
                if !index.contains_key(name) {
                    let cx = Cx::new(n, i);
                    return Err(TfError::UndefinedTensor { node: cx.name, op_type: cx.op, tensor: s.clone() });
                }
                continue;
            };
            let Some(&p) = index.get(r.node) else {
                let cx = Cx::new(n, i);
                return Err(TfError::UndefinedTensor { node: cx.name, op_type: cx.op, tensor: s.clone() });
            };
            producers[i].push(p);
            consumers[p].push((i, pos, r.output));
            pos += 1;
        }
    }
    let sinks: Vec<usize> = (0..nodes.len())
        .filter(|&i| consumers[i].is_empty() && !NEVER_OUTPUTS.contains(&nodes[i].op.as_str()))
        .collect();
    if sinks.is_empty() {
        return Err(TfError::Model("the graph has no output (every node's result is read by another node)".into()));
    }
    // Nodes the outputs need.
    let mut needed = vec![false; nodes.len()];
    let mut stack: Vec<usize> = sinks.clone();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut needed[i], true) {
            continue;
        }
        stack.extend(producers[i].iter().copied().filter(|&p| !needed[p]));
    }
    let mut imp = Importer {
        graph: Graph::new(),
        nodes,
        index,
        values: HashMap::new(),
        dead: HashSet::new(),
        done: HashSet::new(),
        materialized: HashMap::new(),
        int_nodes: HashSet::new(),
        notices: Vec::new(),
        consumers,
        sinks,
        pending_names: Vec::new(),
    };
    imp.load_inputs(&needed, options)?;
    let order = topological_order(nodes, &producers, &needed, &imp.done)?;
    for i in order {
        if imp.done.contains(&i) {
            continue;
        }
        imp.import_node(i)?;
    }
    imp.finish()?;
    Ok(Imported { graph: imp.graph, notices: imp.notices })
}

/// Orders the needed nodes so that producers come before consumers. Nodes that do not depend
/// on a graph input come first (so constants are known when a later node looks ahead at
/// them); otherwise the graph's own order is kept.
fn topological_order(
    nodes: &[NodeDef],
    producers: &[Vec<usize>],
    needed: &[bool],
    inputs: &HashSet<usize>,
) -> Result<Vec<usize>, TfError> {
    let n = nodes.len();
    let mut indegree = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in (0..n).filter(|&i| needed[i]) {
        for &p in &producers[i] {
            indegree[i] += 1;
            dependents[p].push(i);
        }
    }
    // Whether a node depends on a graph input, computed as nodes are released.
    let mut variable = vec![false; n];
    for &i in inputs {
        variable[i] = true;
    }
    let mut ready: BinaryHeap<Reverse<(bool, usize)>> =
        (0..n).filter(|&i| needed[i] && indegree[i] == 0).map(|i| Reverse((variable[i], i))).collect();
    let mut order = Vec::new();
    while let Some(Reverse((_, i))) = ready.pop() {
        order.push(i);
        for &d in &dependents[i] {
            variable[d] |= variable[i];
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.push(Reverse((variable[d], d)));
            }
        }
    }
    let total = needed.iter().filter(|&&x| x).count();
    if order.len() < total {
        let i = (0..n).find(|&i| needed[i] && indegree[i] > 0).unwrap_or(0);
        let cx = Cx::new(&nodes[i], i);
        return Err(cx.unsupported(
            "the graph has a cycle through this node (loops such as tf.while_loop are not supported)",
        ));
    }
    Ok(order)
}

fn describe_dims(d: &[Option<usize>]) -> String {
    let parts: Vec<String> = d.iter().map(|d| d.map_or("?".to_string(), |v| v.to_string())).collect();
    format!("[{}]", parts.join(", "))
}

impl<'g> Importer<'g> {
    fn load_inputs(&mut self, needed: &[bool], options: &ImportOptions) -> Result<(), TfError> {
        let placeholders: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| matches!(self.nodes[i].op.as_str(), "Placeholder" | "PlaceholderWithDefault"))
            .collect();
        let names: Vec<String> = placeholders.iter().map(|&i| self.nodes[i].name.clone()).collect();
        for name in options.input_shapes.keys() {
            if !names.contains(name) {
                return Err(TfError::UnknownInputShapeName { name: name.clone(), inputs: names.clone() });
            }
        }
        for &i in &placeholders {
            let node = &self.nodes[i];
            let name = node.name.clone();
            let given = options.input_shapes.get(&name);
            if node.op == "PlaceholderWithDefault" && given.is_none() {
                continue; // its default value is used
            }
            if !needed[i] {
                self.notices.push(format!("Placeholder `{name}` is not used by any output; it is ignored"));
                continue;
            }
            let cx = Cx::new(node, i);
            let err = |reason: String| TfError::Input { input: name.clone(), reason };
            if let Some(dtype) = cx.dtype("dtype")? {
                if !is_float_dtype(dtype) {
                    return Err(err(format!(
                        "has element type {}; only floating-point inputs are supported",
                        dtype_name(dtype)
                    )));
                }
            }
            let declared: Option<Vec<Option<usize>>> = match cx.shape("shape")? {
                Some(s) if !s.unknown_rank => Some(
                    s.dim
                        .iter()
                        .map(|d| match d.size {
                            0 => Err(err("has an empty (0) dimension".into())),
                            v if v > 0 && v as u64 <= MAX_DIM as u64 => Ok(Some(v as usize)),
                            v if v > 0 => Err(err(format!("dimension {v} is too large"))),
                            _ => Ok(None),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                _ => None,
            };
            let shape = match (given, declared) {
                (Some(given), declared) => {
                    if let Some(d) = &declared {
                        if d.len() != given.len() {
                            return Err(err(format!(
                                "--input-shape gives rank {} ({given:?}) but the graph declares rank {}",
                                given.len(),
                                d.len()
                            )));
                        }
                        if d.iter().zip(given).any(|(d, g)| d.is_some_and(|d| d != *g)) {
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
                    return Err(err("the graph does not declare its shape (unknown rank); give it with --input-shape".into()));
                }
            };
            check_shape(&shape).map_err(err)?;
            let id = self.graph.input(name, shape);
            self.values.insert((i, 0), Value::Node(id));
            self.done.insert(i);
        }
        if self.graph.inputs.is_empty() {
            return Err(TfError::Model("no Placeholder input reaches an output of the graph".into()));
        }
        Ok(())
    }

    fn import_node(&mut self, i: usize) -> Result<(), TfError> {
        let node = &self.nodes[i];
        let cx = Cx::new(node, i);
        if cx.op != "Merge" && (0..cx.inputs.len()).any(|k| matches!(self.input(&cx, k), Ok(Value::Dead))) {
            self.dead.insert(i);
            return Ok(());
        }
        let start = self.graph.nodes.len();
        let outputs = self.dispatch(&cx)?;
        for (k, v) in outputs.into_iter().enumerate() {
            let name = if k == 0 { cx.name.clone() } else { format!("{}:{k}", cx.name) };
            if let Value::Node(id) = v {
                if id >= start {
                    self.graph.nodes[id].name = name;
                }
            }
            self.values.insert((i, k), v);
        }
        for (id, name) in std::mem::take(&mut self.pending_names) {
            self.graph.nodes[id].name = name;
        }
        Ok(())
    }

    /// Binds output `k` of node `i` (used by fusions, which produce a later node's value).
    pub fn bind(&mut self, i: usize, k: usize, v: Value) {
        self.values.insert((i, k), v);
    }

    fn finish(&mut self) -> Result<(), TfError> {
        let mut outs: Vec<(String, NodeId)> = Vec::new();
        let mut skipped = Vec::new();
        for &s in &self.sinks.clone() {
            let name = self.nodes[s].name.clone();
            if self.dead.contains(&s) {
                continue;
            }
            match self.values.get(&(s, 0)) {
                Some(Value::Node(id)) => outs.push((name, *id)),
                Some(Value::Const(_)) => skipped.push(name),
                Some(Value::Dead) | None => {}
            }
        }
        if outs.is_empty() {
            return Err(TfError::Model(if skipped.is_empty() {
                "the graph has no output".into()
            } else {
                format!("no output of the graph depends on its inputs (constant outputs: {})", skipped.join(", "))
            }));
        }
        if !skipped.is_empty() {
            self.notices.push(format!(
                "nodes {} are not read by any node but are constants; they are not outputs",
                skipped.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
            ));
        }
        // Graph outputs keep their TensorFlow names: rename the producing node when it is not
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
                    .map_err(|e| TfError::Model(format!("graph output `{name}`: {e}")))?
            };
            final_ids.push(id);
        }
        self.graph.outputs = final_ids;
        self.graph.prune();
        self.graph
            .validate()
            .map_err(|e| TfError::Model(format!("internal check of the imported graph failed: {e}")))?;
        Ok(())
    }

    // ---- values ------------------------------------------------------------------------

    /// The value of data input `i`.
    pub fn input(&self, cx: &Cx, i: usize) -> Result<Value, TfError> {
        let r = cx.inputs.get(i).ok_or_else(|| cx.invalid(format!("missing input {i}")))?;
        let undefined = || TfError::UndefinedTensor {
            node: cx.name.clone(),
            op_type: cx.op.clone(),
            tensor: cx.input_name(i),
        };
        let &p = self.index.get(r.node).ok_or_else(undefined)?;
        if self.dead.contains(&p) {
            return Ok(Value::Dead);
        }
        match self.values.get(&(p, r.output)) {
            Some(v) => Ok(v.clone()),
            None if self.values.contains_key(&(p, 0)) => Err(cx.invalid(format!(
                "reads output {} of node `{}` ({}), which does not produce it (or whose extra outputs are not supported)",
                r.output, r.node, self.nodes[p].op
            ))),
            None => Err(undefined()),
        }
    }

    /// Input `i`, which must be known at import time.
    pub fn const_input(&self, cx: &Cx, i: usize, what: &str) -> Result<Rc<Const>, TfError> {
        match self.input(cx, i)? {
            Value::Const(c) => Ok(c),
            _ => Err(cx.unsupported(format!(
                "input {i} ({what}) must be a constant known at import time, but `{}` is computed from the graph inputs",
                cx.input_name(i)
            ))),
        }
    }

    /// Integer constant input `i` (e.g. a shape or axes).
    pub fn ints_input(&self, cx: &Cx, i: usize, what: &str) -> Result<Vec<i64>, TfError> {
        let c = self.const_input(cx, i, what)?;
        c.ints()
            .map(<[i64]>::to_vec)
            .ok_or_else(|| cx.invalid(format!("input {i} ({what}) must be an integer tensor")))
    }

    pub fn shape(&self, v: &Value) -> Vec<usize> {
        match v {
            Value::Const(c) => c.shape.clone(),
            Value::Node(id) => self.graph.nodes[*id].shape.clone(),
            Value::Dead => vec![],
        }
    }

    /// Adds a weight node holding a constant (converted to float).
    pub fn weight(&mut self, name: String, c: &Const) -> Result<NodeId, String> {
        check_shape(&c.shape)?;
        let t: FloatTensor = Tensor::new(c.shape.clone(), c.to_f32()).map_err(|e| e.to_string())?;
        Ok(self.graph.weight(name, t))
    }

    /// The weight node of a constant (one per constant and tag).
    pub fn materialize(&mut self, name: &str, c: &Rc<Const>, tag: &'static str) -> Result<NodeId, String> {
        let key = (Rc::as_ptr(c) as usize, tag);
        if let Some((_, id)) = self.materialized.get(&key) {
            return Ok(*id);
        }
        let id = self.weight(name.to_string(), c)?;
        self.materialized.insert(key, (c.clone(), id));
        Ok(id)
    }

    /// The weight node of a constant derived from `orig` (a permuted filter, a reshaped bias),
    /// one per original constant and tag.
    pub fn materialize_derived(&mut self, name: &str, orig: &Rc<Const>, tag: &'static str, value: Rc<Const>) -> Result<NodeId, String> {
        let key = (Rc::as_ptr(orig) as usize, tag);
        if let Some((_, id)) = self.materialized.get(&key) {
            return Ok(*id);
        }
        let id = self.weight(name.to_string(), &value)?;
        self.materialized.insert(key, (orig.clone(), id));
        Ok(id)
    }

    /// The HLIL node of data input `i` (a constant becomes a weight named after its tensor).
    pub fn node(&mut self, cx: &Cx, i: usize) -> Result<NodeId, TfError> {
        let v = self.input(cx, i)?;
        let name = cx.input_name(i);
        self.node_of(cx, &name, &v)
    }

    /// The HLIL node of a value; `name` is the tensor name used for a weight.
    pub fn node_of(&mut self, cx: &Cx, name: &str, v: &Value) -> Result<NodeId, TfError> {
        match v {
            Value::Node(id) => Ok(*id),
            Value::Const(c) => self.materialize(name, c, "").map_err(|e| cx.shape_err(e)),
            Value::Dead => Err(cx.invalid("reads a dead value")),
        }
    }

    /// Adds an HLIL node after checking, without panicking, everything `Graph::add` assumes.
    pub fn emit(&mut self, cx: &Cx, name: String, op: Op, inputs: &[NodeId]) -> Result<NodeId, TfError> {
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

    /// The single data consumer of node `i` if it has exactly one data edge and is not a
    /// graph output candidate: `(consumer, input position)`.
    pub fn sole_consumer(&self, i: usize) -> Option<(usize, usize)> {
        match self.consumers[i].as_slice() {
            [(c, pos, 0)] if !self.done.contains(c) => Some((*c, *pos)),
            _ => None,
        }
    }

    /// The constant value of output `k` of node `i`, if known already.
    pub fn known_const(&self, i: usize, k: usize) -> Option<Rc<Const>> {
        match self.values.get(&(i, k)) {
            Some(Value::Const(c)) => Some(c.clone()),
            _ => None,
        }
    }

    /// The constant read by data input `pos` of node `c`, if known already.
    pub fn const_operand(&self, c: usize, pos: usize) -> Option<Rc<Const>> {
        let s = self.nodes[c].input.iter().filter(|s| !s.starts_with('^')).nth(pos)?;
        let r = parse_input(s).ok()??;
        let &p = self.index.get(r.node)?;
        self.known_const(p, r.output)
    }

    /// Whether every use of node `i`'s result is a graph output, possibly through
    /// pass-through nodes (Identity, StopGradient, ...). Returns the first offending
    /// consumer otherwise.
    pub fn only_reaches_outputs(&self, i: usize) -> Result<(), (String, String)> {
        let mut stack = vec![i];
        let mut seen: HashSet<usize> = HashSet::new();
        while let Some(t) = stack.pop() {
            if !seen.insert(t) {
                continue;
            }
            for &(c, pos, k) in &self.consumers[t] {
                let node = &self.nodes[c];
                let passes = (PASS_THROUGH.contains(&node.op.as_str()) && pos == 0 && k == 0)
                    || (node.op == "IdentityN" && k == 0 && pos == 0 && self.consumers[c].iter().all(|e| e.2 == 0));
                if !passes {
                    return Err((node.name.clone(), node.op.clone()));
                }
                stack.push(c);
            }
        }
        Ok(())
    }

    /// Consumers of outputs `k >= 1` of node `i` (to reject uses of unsupported extra outputs).
    pub fn extra_output_used(&self, i: usize) -> Option<usize> {
        self.consumers[i].iter().find(|e| e.2 >= 1).map(|e| e.2)
    }
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
        Op::Conv(g) | Op::ConvTranspose(g) => check_conv(g, matches!(op, Op::ConvTranspose(_)))?,
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
