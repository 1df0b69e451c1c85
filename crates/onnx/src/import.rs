//! The import driver: opset check, graph inputs, topological order, value bookkeeping, graph
//! outputs. The importer lowers values to HLIL through the shared
//! [`Lowering`](cryptflow_frontend::Lowering) trait.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::rc::Rc;

use cryptflow_frontend::io::{declared_dim, input_shape, set_outputs, unknown_input_shape_name};
use cryptflow_frontend::{Const, Lowering, NodeContext, ValueKind};
use cryptflow_ir::hlil::{Graph, NodeId};

use crate::attrs::Cx;
use crate::consts::{from_sparse_proto, from_tensor_proto, MAX_GENERATED};
use crate::proto::{tensor_shape_proto::dimension, type_proto, GraphProto, ModelProto, NodeProto};
use crate::{ImportOptions, Imported, OnnxError, MAX_OPSET, MIN_OPSET};

/// A tensor of the ONNX graph: known at import time, or an HLIL node.
#[derive(Clone, Debug)]
pub enum Value {
    Const(Rc<Const>),
    Node(NodeId),
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
            Value::Node(_) => None,
        }
    }

    fn as_node(&self) -> Option<NodeId> {
        match self {
            Value::Node(id) => Some(*id),
            Value::Const(_) => None,
        }
    }
}

pub struct Importer<'m> {
    pub graph: Graph,
    values: HashMap<String, Value>,
    /// Weight nodes made from named constants, so a constant used twice is one weight.
    materialized: HashMap<String, NodeId>,
    /// HLIL nodes whose values are integers (ArgMax results).
    pub int_nodes: HashSet<NodeId>,
    pub notices: Vec<String>,
    /// [`ImportOptions::strip_output_softmax`].
    pub strip_output_softmax: bool,
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
        strip_output_softmax: options.strip_output_softmax,
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
        if let Some(name) = unknown_input_shape_name(options, &names) {
            return Err(OnnxError::UnknownInputShapeName { name: name.clone(), inputs: names.clone() });
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
            let mut integer = false;
            if let Some(elem) = tensor_type.and_then(|t| t.elem_type) {
                // UINT8, INT8, UINT16, INT16, INT32, INT64, UINT32, UINT64: integer client inputs.
                integer = [2, 3, 4, 5, 6, 7, 12, 13].contains(&elem);
                // FLOAT, FLOAT16, DOUBLE, BFLOAT16.
                if !integer && ![1, 10, 11, 16].contains(&elem) {
                    let ty = crate::proto::tensor_proto::DataType::try_from(elem)
                        .map(|d| d.as_str_name())
                        .unwrap_or("UNKNOWN");
                    return Err(err(format!("has element type {ty}; only floating-point and integer inputs are supported")));
                }
            }
            let declared: Option<Vec<Option<usize>>> = match tensor_type.and_then(|t| t.shape.as_ref()) {
                Some(s) => Some(
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(dimension::Value::DimValue(v)) => declared_dim(v).map_err(err),
                            _ => Ok(None),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                None => None,
            };
            let shape = input_shape(
                &name,
                options.input_shapes.get(&name),
                declared,
                "model",
                "the model does not declare its shape; give it with --input-shape",
                &mut self.notices,
            )
            .map_err(err)?;
            let id = if integer {
                let id = self.graph.integer_input(name.clone(), shape);
                self.int_nodes.insert(id);
                id
            } else {
                self.graph.input(name.clone(), shape)
            };
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
                if c.is_empty() {
                    return Err(OnnxError::Model(format!("graph output `{name}` is empty (shape {:?})", c.shape)));
                }
            }
            let id = match v {
                Value::Node(id) => id,
                Value::Const(c) => self.materialize_named(&name, &c).map_err(|r| OnnxError::Tensor { tensor: name.clone(), reason: r })?,
            };
            outs.push((name, id));
        }
        // Graph outputs keep their ONNX names.
        set_outputs(&mut self.graph, outs).map_err(OnnxError::Model)
    }

    // ---- values ------------------------------------------------------------------------

    pub fn lookup(&self, cx: &Cx, name: &str) -> Result<Value, OnnxError> {
        self.values.get(name).cloned().ok_or_else(|| OnnxError::UndefinedTensor {
            node: cx.name.clone(),
            op_type: cx.op.clone(),
            tensor: name.to_string(),
        })
    }

    /// Optional input `i` (absent or empty name gives None).
    pub fn opt_input(&self, cx: &Cx, i: usize) -> Result<Option<Value>, OnnxError> {
        match cx.input_name(i) {
            Some(name) => self.lookup(cx, name).map(Some),
            None => Ok(None),
        }
    }

    pub fn opt_const_input(&self, cx: &Cx, i: usize, what: &str) -> Result<Option<Rc<Const>>, OnnxError> {
        match cx.input_name(i) {
            Some(_) => self.const_input(cx, i, what).map(Some),
            None => Ok(None),
        }
    }

    pub fn opt_ints_input(&self, cx: &Cx, i: usize, what: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        match cx.input_name(i) {
            Some(_) => self.ints_input(cx, i, what).map(Some),
            None => Ok(None),
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

impl<'m> Lowering for Importer<'m> {
    type Value = Value;
    type Error = OnnxError;
    type Cx<'a> = Cx<'a>;

    const MAX_GENERATED: usize = MAX_GENERATED;
    const INPUTS: &'static str = "model inputs";
    const EMPTY_IS_CONSTANT: bool = true;

    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn graph_mut(&mut self) -> &mut Graph {
        &mut self.graph
    }

    /// Required input `i`.
    fn input(&self, cx: &Cx, i: usize) -> Result<Value, OnnxError> {
        match cx.input_name(i) {
            Some(name) => self.lookup(cx, name),
            None => Err(cx.invalid(format!("missing required input {i}"))),
        }
    }

    /// The HLIL node of a value; `name` is the tensor name used for (and caching) a weight.
    fn node_of(&mut self, cx: &Cx, name: &str, v: &Value) -> Result<NodeId, OnnxError> {
        match v {
            Value::Node(id) => Ok(*id),
            Value::Const(c) => self.materialize_named(name, c).map_err(|e| cx.shape_err(e)),
        }
    }

    fn is_int_node(&self, id: NodeId) -> bool {
        self.int_nodes.contains(&id)
    }

    fn mark_int_node(&mut self, id: NodeId) {
        self.int_nodes.insert(id);
    }
}
