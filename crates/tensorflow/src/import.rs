//! The import driver: node index and edges, graph outputs, inputs, topological order, value
//! bookkeeping (including dead branches), graph outputs. The importer lowers values to HLIL
//! through the shared [`Lowering`](cryptflow_frontend::Lowering) trait.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::rc::Rc;

use cryptflow_frontend::io::{declared_dim, input_shape, not_a_float_input, set_outputs, unknown_input_shape_name};
use cryptflow_frontend::{Const, Lowering, NodeContext, ValueKind};
use cryptflow_ir::hlil::{Graph, NodeId};

use crate::attrs::{parse_input, Cx};
use crate::consts::{dtype_name, is_float_dtype, MAX_GENERATED};
use crate::proto::{GraphDef, NodeDef};
use crate::{ImportOptions, Imported, TfError};

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

impl ValueKind for Value {
    fn constant(c: Rc<Const>) -> Self {
        Value::Const(c)
    }

    fn node(id: NodeId) -> Self {
        Value::Node(id)
    }

    fn as_const(&self) -> Option<&Rc<Const>> {
        match self {
            Value::Const(c) => Some(c),
            _ => None,
        }
    }

    fn as_node(&self) -> Option<NodeId> {
        match self {
            Value::Node(id) => Some(*id),
            _ => None,
        }
    }
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
    /// [`ImportOptions::strip_output_softmax`].
    pub strip_output_softmax: bool,
    /// `Select`/`SelectV2` nodes recognised as Keras' ELU with `alpha != 1`
    /// (`select(x > 0, elu(x), alpha * elu(x))`), with their `x` and `alpha`.
    pub elu_selects: HashMap<usize, (NodeId, f32)>,
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
        strip_output_softmax: options.strip_output_softmax,
        elu_selects: HashMap::new(),
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

impl<'g> Importer<'g> {
    fn load_inputs(&mut self, needed: &[bool], options: &ImportOptions) -> Result<(), TfError> {
        let placeholders: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| matches!(self.nodes[i].op.as_str(), "Placeholder" | "PlaceholderWithDefault"))
            .collect();
        let names: Vec<String> = placeholders.iter().map(|&i| self.nodes[i].name.clone()).collect();
        if let Some(name) = unknown_input_shape_name(options, &names) {
            return Err(TfError::UnknownInputShapeName { name: name.clone(), inputs: names.clone() });
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
                    return Err(err(not_a_float_input(&dtype_name(dtype))));
                }
            }
            let declared: Option<Vec<Option<usize>>> = match cx.shape("shape")? {
                Some(s) if !s.unknown_rank => Some(
                    s.dim.iter().map(|d| declared_dim(d.size).map_err(err)).collect::<Result<_, _>>()?,
                ),
                _ => None,
            };
            let shape = input_shape(
                &name,
                given,
                declared,
                "graph",
                "the graph does not declare its shape (unknown rank); give it with --input-shape",
                &mut self.notices,
            )
            .map_err(err)?;
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
        crate::fuse::fuse_activations(&mut self.graph);
        // Graph outputs keep their TensorFlow names.
        set_outputs(&mut self.graph, outs).map_err(TfError::Model)
    }

    // ---- values ------------------------------------------------------------------------

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

impl<'g> Lowering for Importer<'g> {
    type Value = Value;
    type Error = TfError;
    type Cx<'a> = Cx<'a>;

    const MAX_GENERATED: usize = MAX_GENERATED;
    const INPUTS: &'static str = "graph inputs";
    const EMPTY_IS_CONSTANT: bool = false;

    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn graph_mut(&mut self) -> &mut Graph {
        &mut self.graph
    }

    /// The value of data input `i`.
    fn input(&self, cx: &Cx, i: usize) -> Result<Value, TfError> {
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

    /// The HLIL node of a value; `name` is the tensor name used for a weight.
    fn node_of(&mut self, cx: &Cx, name: &str, v: &Value) -> Result<NodeId, TfError> {
        match v {
            Value::Node(id) => Ok(*id),
            Value::Const(c) => self.materialize(name, c, "").map_err(|e| cx.shape_err(e)),
            Value::Dead => Err(cx.invalid("reads a dead value")),
        }
    }

    fn is_int_node(&self, id: NodeId) -> bool {
        self.int_nodes.contains(&id)
    }

    fn mark_int_node(&mut self, id: NodeId) {
        self.int_nodes.insert(id);
    }
}
