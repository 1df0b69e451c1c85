//! Typed access to node attributes, and the per-node error context.

use cryptflow_frontend::{Const, NodeContext};

use crate::consts::{from_sparse_proto, from_tensor_proto};
use crate::proto::attribute_proto::AttributeType;
use crate::proto::{AttributeProto, NodeProto};
use crate::OnnxError;

/// A node being imported: its identity for error messages and its attributes.
pub struct Cx<'a> {
    pub node: &'a NodeProto,
    /// Display name: the node name, else its first output, else `#index`.
    pub name: String,
    pub op: String,
    pub opset: i64,
}

impl<'a> Cx<'a> {
    pub fn new(node: &'a NodeProto, index: usize, opset: i64) -> Self {
        let name = match node.name.as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match node.output.first() {
                Some(o) if !o.is_empty() => o.clone(),
                _ => format!("#{index}"),
            },
        };
        Cx { node, name, op: node.op_type.clone().unwrap_or_default(), opset }
    }

    /// Name of input `i`, or None if absent (missing or the empty name of an omitted optional).
    pub fn input_name(&self, i: usize) -> Option<&'a str> {
        self.node.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }

    pub fn output_name(&self, i: usize) -> Option<&'a str> {
        self.node.output.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// The first output's name (every supported node has one).
    pub fn out0(&self) -> Result<String, OnnxError> {
        self.output_name(0).map(str::to_string).ok_or_else(|| self.invalid("node has no output"))
    }

    fn attr(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name.as_deref() == Some(name))
    }

    pub fn has_attr(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    /// The attribute's type: the declared one, or (IR version 1 models) the one in use.
    fn attr_type(a: &AttributeProto) -> Option<AttributeType> {
        if let Some(t) = a.r#type {
            if t != 0 {
                return AttributeType::try_from(t).ok();
            }
        }
        if a.f.is_some() {
            Some(AttributeType::Float)
        } else if a.i.is_some() {
            Some(AttributeType::Int)
        } else if a.s.is_some() {
            Some(AttributeType::String)
        } else if a.t.is_some() {
            Some(AttributeType::Tensor)
        } else if a.g.is_some() {
            Some(AttributeType::Graph)
        } else if a.sparse_tensor.is_some() {
            Some(AttributeType::SparseTensor)
        } else if !a.floats.is_empty() {
            Some(AttributeType::Floats)
        } else if !a.ints.is_empty() {
            Some(AttributeType::Ints)
        } else if !a.strings.is_empty() {
            Some(AttributeType::Strings)
        } else {
            None
        }
    }

    fn typed(&self, name: &str, want: AttributeType) -> Result<Option<&'a AttributeProto>, OnnxError> {
        let Some(a) = self.attr(name) else { return Ok(None) };
        if a.ref_attr_name.as_deref().is_some_and(|r| !r.is_empty()) {
            return Err(self.unsupported(format!("attribute `{name}` refers to a function attribute")));
        }
        match Self::attr_type(a) {
            Some(t) if t == want => Ok(Some(a)),
            // An empty list attribute carries no values, so its type cannot be inferred.
            None if matches!(want, AttributeType::Ints | AttributeType::Floats) => Ok(Some(a)),
            other => Err(self.invalid(format!(
                "attribute `{name}` must be of type {}, got {}",
                want.as_str_name(),
                other.map_or("UNDEFINED", |t| t.as_str_name())
            ))),
        }
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, OnnxError> {
        Ok(match self.typed(name, AttributeType::Int)? {
            Some(a) => Some(a.i.ok_or_else(|| self.invalid(format!("attribute `{name}` has no value")))?),
            None => None,
        })
    }

    pub fn int_or(&self, name: &str, default: i64) -> Result<i64, OnnxError> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    pub fn float(&self, name: &str) -> Result<Option<f32>, OnnxError> {
        Ok(match self.typed(name, AttributeType::Float)? {
            Some(a) => Some(a.f.ok_or_else(|| self.invalid(format!("attribute `{name}` has no value")))?),
            None => None,
        })
    }

    pub fn float_or(&self, name: &str, default: f32) -> Result<f32, OnnxError> {
        Ok(self.float(name)?.unwrap_or(default))
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        Ok(self.typed(name, AttributeType::Ints)?.map(|a| a.ints.clone()))
    }

    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, OnnxError> {
        Ok(self.typed(name, AttributeType::Floats)?.map(|a| a.floats.clone()))
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, OnnxError> {
        Ok(match self.typed(name, AttributeType::String)? {
            Some(a) => {
                let bytes = a.s.as_deref().unwrap_or(&[]);
                Some(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|_| self.invalid(format!("attribute `{name}` is not UTF-8")))?,
                )
            }
            None => None,
        })
    }

    pub fn tensor(&self, name: &str) -> Result<Option<Const>, OnnxError> {
        Ok(match self.typed(name, AttributeType::Tensor)? {
            Some(a) => {
                let t = a.t.as_ref().ok_or_else(|| self.invalid(format!("attribute `{name}` has no value")))?;
                Some(from_tensor_proto(t).map_err(|e| self.tensor_err(name, e))?)
            }
            None => None,
        })
    }

    pub fn sparse_tensor(&self, name: &str) -> Result<Option<Const>, OnnxError> {
        Ok(match self.typed(name, AttributeType::SparseTensor)? {
            Some(a) => {
                let t = a.sparse_tensor.as_ref().ok_or_else(|| self.invalid(format!("attribute `{name}` has no value")))?;
                Some(from_sparse_proto(t).map_err(|e| self.tensor_err(name, e))?)
            }
            None => None,
        })
    }

    fn tensor_err(&self, attr: &str, e: String) -> OnnxError {
        if e == "EXTERNAL" {
            OnnxError::ExternalData { tensor: format!("{attr} of node {}", self.name) }
        } else {
            self.invalid(format!("attribute `{attr}`: {e}"))
        }
    }
}

impl NodeContext for Cx<'_> {
    type Error = OnnxError;

    fn node_name(&self) -> &str {
        &self.name
    }

    fn op_type(&self) -> &str {
        &self.op
    }

    fn input_label(&self, i: usize) -> String {
        self.input_name(i).unwrap_or_default().to_string()
    }

    fn invalid(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Invalid { node: self.name.clone(), op_type: self.op.clone(), reason: reason.into() }
    }

    fn shape_err(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Shape { node: self.name.clone(), op_type: self.op.clone(), reason: reason.into() }
    }

    fn unsupported(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::UnsupportedOp { node: self.name.clone(), op_type: self.op.clone(), reason: Some(reason.into()) }
    }
}
