//! Typed access to node attributes, input references, and the per-node error context.

use cryptflow_frontend::{Const, NodeContext};

use crate::consts::from_tensor_proto;
use crate::proto::{attr_value, AttrValue, NodeDef, TensorShapeProto};
use crate::TfError;

/// A reference to one output of a node, as written in `NodeDef.input`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorRef<'a> {
    pub node: &'a str,
    pub output: usize,
}

/// Parses an input reference: `name`, `name:k`, or `^name` (a control dependency, None).
pub fn parse_input(s: &str) -> Result<Option<TensorRef<'_>>, String> {
    if s.starts_with('^') {
        return Ok(None);
    }
    if s.is_empty() {
        return Err("empty input name".into());
    }
    match s.rsplit_once(':') {
        Some((node, k)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => {
            let output: usize = k.parse().map_err(|_| format!("input `{s}`: output index out of range"))?;
            if node.is_empty() {
                return Err(format!("input `{s}` has no node name"));
            }
            if output > 1 << 20 {
                return Err(format!("input `{s}`: output index out of range"));
            }
            Ok(Some(TensorRef { node, output }))
        }
        _ => Ok(Some(TensorRef { node: s, output: 0 })),
    }
}

/// A node being imported: its identity for error messages and its attributes.
pub struct Cx<'a> {
    pub node: &'a NodeDef,
    /// Index of the node in the GraphDef.
    pub index: usize,
    /// Display name: the node name, else `#index`.
    pub name: String,
    pub op: String,
    /// The data inputs (control inputs removed), in order.
    pub inputs: Vec<TensorRef<'a>>,
}

impl<'a> Cx<'a> {
    pub fn new(node: &'a NodeDef, index: usize) -> Self {
        let name = if node.name.is_empty() { format!("#{index}") } else { node.name.clone() };
        let inputs = node.input.iter().filter_map(|s| parse_input(s).ok().flatten()).collect();
        Cx { node, index, name, op: node.op.clone(), inputs }
    }

    /// The name of data input `i` as written (for weight names): `node` or `node:k`.
    pub fn input_name(&self, i: usize) -> String {
        match self.inputs.get(i) {
            Some(r) if r.output == 0 => r.node.to_string(),
            Some(r) => format!("{}:{}", r.node, r.output),
            None => String::new(),
        }
    }

    /// Errors unless the node has at least `n` data inputs.
    pub fn need_inputs(&self, n: usize) -> Result<(), TfError> {
        if self.inputs.len() < n {
            return Err(self.invalid(format!("expected {n} inputs, found {}", self.inputs.len())));
        }
        Ok(())
    }

    fn attr(&self, name: &str) -> Option<&'a attr_value::Value> {
        self.node.attr.get(name).and_then(|a: &AttrValue| a.value.as_ref())
    }

    fn wrong_type(&self, name: &str, want: &str) -> TfError {
        self.invalid(format!("attribute `{name}` must be {want}"))
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, TfError> {
        match self.attr(name) {
            None => Ok(None),
            Some(attr_value::Value::I(v)) => Ok(Some(*v)),
            Some(_) => Err(self.wrong_type(name, "an integer")),
        }
    }

    pub fn float(&self, name: &str) -> Result<Option<f32>, TfError> {
        match self.attr(name) {
            None => Ok(None),
            Some(attr_value::Value::F(v)) => Ok(Some(*v)),
            Some(_) => Err(self.wrong_type(name, "a float")),
        }
    }

    pub fn float_or(&self, name: &str, default: f32) -> Result<f32, TfError> {
        Ok(self.float(name)?.unwrap_or(default))
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, TfError> {
        match self.attr(name) {
            None => Ok(None),
            Some(attr_value::Value::B(v)) => Ok(Some(*v)),
            Some(_) => Err(self.wrong_type(name, "a boolean")),
        }
    }

    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, TfError> {
        Ok(self.bool(name)?.unwrap_or(default))
    }

    pub fn dtype(&self, name: &str) -> Result<Option<i32>, TfError> {
        match self.attr(name) {
            None => Ok(None),
            Some(attr_value::Value::Type(v)) => Ok(Some(*v)),
            Some(_) => Err(self.wrong_type(name, "a data type")),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, TfError> {
        match self.attr(name) {
            None => Ok(None),
            Some(attr_value::Value::S(v)) => String::from_utf8(v.clone())
                .map(Some)
                .map_err(|_| self.invalid(format!("attribute `{name}` is not UTF-8"))),
            Some(_) => Err(self.wrong_type(name, "a string")),
        }
    }

    /// A list of integers (an absent attribute or an empty list gives None / an empty list).
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, TfError> {
        match self.attr(name) {
            None => Ok(None),
            Some(attr_value::Value::List(l)) => Ok(Some(l.i.clone())),
            Some(_) => Err(self.wrong_type(name, "a list of integers")),
        }
    }

    pub fn shape(&self, name: &str) -> Result<Option<&'a TensorShapeProto>, TfError> {
        match self.attr(name) {
            None => Ok(None),
            Some(attr_value::Value::Shape(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong_type(name, "a shape")),
        }
    }

    pub fn tensor(&self, name: &str) -> Result<Option<Const>, TfError> {
        match self.attr(name) {
            None => Ok(None),
            Some(attr_value::Value::Tensor(t)) => {
                from_tensor_proto(t).map(Some).map_err(|e| self.invalid(format!("attribute `{name}`: {e}")))
            }
            Some(_) => Err(self.wrong_type(name, "a tensor")),
        }
    }
}

impl NodeContext for Cx<'_> {
    type Error = TfError;

    fn node_name(&self) -> &str {
        &self.name
    }

    fn op_type(&self) -> &str {
        &self.op
    }

    fn input_label(&self, i: usize) -> String {
        self.input_name(i)
    }

    fn invalid(&self, reason: impl Into<String>) -> TfError {
        TfError::Invalid { node: self.name.clone(), op_type: self.op.clone(), reason: reason.into() }
    }

    fn shape_err(&self, reason: impl Into<String>) -> TfError {
        TfError::Shape { node: self.name.clone(), op_type: self.op.clone(), reason: reason.into() }
    }

    fn unsupported(&self, reason: impl Into<String>) -> TfError {
        TfError::UnsupportedOp { node: self.name.clone(), op_type: self.op.clone(), reason: Some(reason.into()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_references() {
        assert_eq!(parse_input("a/b").unwrap(), Some(TensorRef { node: "a/b", output: 0 }));
        assert_eq!(parse_input("split:2").unwrap(), Some(TensorRef { node: "split", output: 2 }));
        assert_eq!(parse_input("^NoOp").unwrap(), None);
        assert_eq!(parse_input("x:").unwrap(), Some(TensorRef { node: "x:", output: 0 }));
        assert!(parse_input("").is_err());
        assert!(parse_input(":3").is_err());
        assert!(parse_input("a:99999999999999999999999").is_err());
    }
}
